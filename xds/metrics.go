package xds

import (
	"fmt"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// TypeLabel is the short name (lds, rds, cds, eds, sds; "other") used in
// metric labels, debug output and the weft CLI.
func TypeLabel(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType:
		return "lds"
	case resourcev3.RouteType:
		return "rds"
	case resourcev3.ClusterType:
		return "cds"
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.SecretType:
		return "sds"
	default:
		return "other"
	}
}

type metrics struct {
	connectedProxies prometheus.Gauge
	openStreams      prometheus.Gauge
	pushes           *prometheus.CounterVec
	nacks            *prometheus.CounterVec
	// proxyNacks is labelled by proxy, which is unbounded over time: the
	// series of a proxy are deleted when its last stream closes (and by
	// ClearNode), so only connected proxies have series.
	proxyNacks         *prometheus.CounterVec
	convergence        *prometheus.HistogramVec
	cacheUpdate        *prometheus.HistogramVec
	rejectedSnapshots  *prometheus.CounterVec // by proxy; deleted by ClearNode
	rejectedEndpoints  prometheus.Counter
	refusedConnections *prometheus.CounterVec
	waitingStreams     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connectedProxies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_xds_connected_proxies",
			Help: "Proxies (distinct node ids) with at least one open, validated xDS stream.",
		}),
		openStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_xds_streams",
			Help: "Open ADS streams (SotW and delta), validated or not.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_pushes_total",
			Help: "xDS responses sent, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_nacks_total",
			Help: "xDS responses rejected by a proxy (NACK), by resource type.",
		}, []string{"type"}),
		proxyNacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_proxy_nacks_total",
			Help: "NACKs by connected proxy and resource type; a proxy's series are deleted when it disconnects.",
		}, []string{"proxy", "type"}),
		convergence: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_xds_convergence_seconds",
			Help: "From the moment the controller saw a change to a connected proxy's ACK of the version carrying it, by resource type.",
			// 1 ms .. ~65 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}, []string{"type"}),
		cacheUpdate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_xds_cache_update_seconds",
			Help:    "Time to check, hash and set a node snapshot (kind=snapshot) or an endpoint batch (kind=endpoints).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"kind"}),
		rejectedSnapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_rejected_snapshots_total",
			Help: "Node resource sets refused by the checker (not pushed; the last good set stays), by proxy.",
		}, []string{"proxy"}),
		rejectedEndpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_xds_rejected_endpoints_total",
			Help: "ClusterLoadAssignments refused by the checker (the previous one stays).",
		}),
		refusedConnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_refused_streams_total",
			Help: "Streams ended before serving, by gRPC code (Unauthenticated, NotFound, PermissionDenied...).",
		}, []string{"code"}),
		waitingStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_xds_waiting_streams",
			Help: "Streams waiting to be served because MaxSyncingStreams others are receiving their initial configuration.",
		}),
	}
	for _, c := range []prometheus.Collector{
		m.connectedProxies, m.openStreams, m.pushes, m.nacks, m.proxyNacks, m.convergence,
		m.cacheUpdate, m.rejectedSnapshots, m.rejectedEndpoints, m.refusedConnections, m.waitingStreams,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering xds metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) forgetProxy(nodeID string) {
	m.proxyNacks.DeletePartialMatch(prometheus.Labels{"proxy": nodeID})
}
