package sds

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type caMetrics struct {
	issued        *prometheus.CounterVec
	failed        *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	refused       *prometheus.CounterVec
	materialValid prometheus.Gauge
}

func newCAMetrics(reg prometheus.Registerer, ca *CA) (*caMetrics, error) {
	m := &caMetrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_identity_leaves_issued_total",
			Help: "Workload certificates signed, by how the key was made (csr: by the workload; keypair: by the control plane).",
		}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_identity_issuance_failures_total",
			Help: "Leaf issuances refused, by reason (bad_csr, bad_identity, no_material, sign).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_identity_issuance_duration_seconds",
			Help:    "Time to issue one leaf, CSR checking or key generation included.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 12),
		}, []string{"kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_identity_material_refused_total",
			Help: "Trust material (issuer Secret, bundle ConfigMap) refused, by reason; the CA keeps its last valid material.",
		}, []string{"reason"}),
		materialValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_identity_material_valid",
			Help: "1 when the newest trust material read was accepted, 0 when it was refused.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	issuerExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_identity_issuer_expiry_seconds",
		Help: "Seconds until the issuer in use expires; negative once expired, -1e9 while there is none.",
	}, func() float64 { return ca.secondsUntil(func(s Status) time.Time { return s.IssuerNotAfter }) })
	anchorExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_identity_anchor_expiry_seconds",
		Help: "Seconds until the first trust anchor of the bundle in use expires; -1e9 while there is none.",
	}, func() float64 { return ca.secondsUntil(func(s Status) time.Time { return s.AnchorsNotAfter }) })
	for _, c := range []prometheus.Collector{m.issued, m.failed, m.latency, m.refused, m.materialValid, issuerExpiry, anchorExpiry} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering identity metrics: %w", err)
		}
	}
	return m, nil
}

// noMaterialSeconds is reported as the expiry of material that does not
// exist, far enough below zero that any "expires soon" alert fires.
const noMaterialSeconds = -1e9

func (ca *CA) secondsUntil(field func(Status) time.Time) float64 {
	t := field(ca.Status())
	if t.IsZero() {
		return noMaterialSeconds
	}
	return t.Sub(ca.now()).Seconds()
}

func (m *caMetrics) observe(kind string, start time.Time) {
	m.issued.WithLabelValues(kind).Inc()
	m.latency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}
