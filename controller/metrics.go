package controller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type controllerMetrics struct {
	configErrors     *prometheus.GaugeVec
	objectEvents     *prometheus.CounterVec
	flushes          prometheus.Counter
	flushSeconds     prometheus.Histogram
	proxiesPerFlush  prometheus.Histogram
	recomputes       prometheus.Counter
	translateSeconds prometheus.Histogram
	nackEvents       prometheus.Counter
}

func newControllerMetrics(reg prometheus.Registerer, counts func() map[string]int) (*controllerMetrics, error) {
	m := &controllerMetrics{
		configErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_config_errors",
			Help: "Invalid objects skipped by the control plane (value: number of problems); the series is deleted when the object is fixed or removed.",
		}, []string{"kind", "namespace", "name"}),
		objectEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_controller_object_events_total",
			Help: "Informer events by object kind and whether they changed the model (result=changed) or were dropped as no-ops (result=noop).",
		}, []string{"kind", "result"}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_controller_flushes_total",
			Help: "Debounced model publications.",
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_controller_flush_seconds",
			Help:    "Time from taking a model snapshot to every affected proxy's resources being set.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		proxiesPerFlush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_controller_proxies_recomputed",
			Help:    "Proxies the dependency index selected for recomputation, per flush.",
			Buckets: []float64{0, 1, 2, 5, 10, 50, 100, 500, 1000, 5000},
		}),
		recomputes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_controller_proxy_recomputes_total",
			Help: "Per-proxy translations (on flush and on connection).",
		}),
		translateSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_controller_translate_seconds",
			Help:    "Time to translate the model for one proxy.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		nackEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_controller_nack_events_total",
			Help: "NACKs turned into Kubernetes Events on the proxy's pod.",
		}),
	}
	objects := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_controller_proxies",
		Help: "Meshed pods (proxies) the control plane knows.",
	}, func() float64 { return float64(counts()["Proxy"]) })
	for _, c := range []prometheus.Collector{
		m.configErrors, m.objectEvents, m.flushes, m.flushSeconds, m.proxiesPerFlush,
		m.recomputes, m.translateSeconds, m.nackEvents, objects,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering controller metrics: %w", err)
		}
	}
	return m, nil
}
