package telemetry

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	promclient "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/injector/bootstrap"
)

// benchBuckets are Envoy's default histogram bounds (ms).
var benchBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// benchFlush is one proxy's flush as its metrics_service sink would send it: the inbound
// side, 5 outbound services and 3 profile routes, each with the series the stats matcher
// keeps (response classes, total, retries, request-time histogram).
func benchFlush(proxy int, flushN int, ts time.Time) []byte {
	var fams []*promclient.MetricFamily
	add := func(name string, typ promclient.MetricType, m *promclient.Metric) {
		m.TimestampMs = proto.Int64(ts.UnixMilli())
		fams = append(fams, &promclient.MetricFamily{Name: proto.String(name), Type: typ.Enum(), Metric: []*promclient.Metric{m}})
	}
	lbl := func(kv ...string) []*promclient.LabelPair {
		var out []*promclient.LabelPair
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &promclient.LabelPair{Name: proto.String(kv[i]), Value: proto.String(kv[i+1])})
		}
		return out
	}
	hist := func() *promclient.Histogram {
		h := &promclient.Histogram{SampleCount: proto.Uint64(100)}
		for i, b := range benchBuckets {
			h.Bucket = append(h.Bucket, &promclient.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(uint64(min(100, 10*(i+1))))})
		}
		return h
	}
	n := float64(flushN * 100)
	group := func(prefix string, kv []string) {
		for _, c := range []string{"2xx", "4xx", "5xx"} {
			add(prefix+"upstream_rq", promclient.MetricType_COUNTER, &promclient.Metric{Label: lbl(append(kv, bootstrap.TagResponseCodeClass, c)...), Counter: &promclient.Counter{Value: proto.Float64(n)}})
		}
		add(prefix+"upstream_rq_total", promclient.MetricType_COUNTER, &promclient.Metric{Label: lbl(kv...), Counter: &promclient.Counter{Value: proto.Float64(3 * n)}})
		add(prefix+"upstream_rq_retry", promclient.MetricType_COUNTER, &promclient.Metric{Label: lbl(kv...), Counter: &promclient.Counter{Value: proto.Float64(n / 10)}})
		add(prefix+"upstream_rq_time", promclient.MetricType_HISTOGRAM, &promclient.Metric{Label: lbl(kv...), Histogram: hist()})
	}
	in := []string{bootstrap.TagHTTPPrefix, "inbound"}
	for _, c := range []string{"2xx", "5xx"} {
		add("http.downstream_rq", promclient.MetricType_COUNTER, &promclient.Metric{Label: lbl(append(in, bootstrap.TagResponseCodeClass, c)...), Counter: &promclient.Counter{Value: proto.Float64(n)}})
	}
	add("http.downstream_rq_time", promclient.MetricType_HISTOGRAM, &promclient.Metric{Label: lbl(in...), Histogram: hist()})
	add("http.downstream_cx_active", promclient.MetricType_GAUGE, &promclient.Metric{Label: lbl(in...), Gauge: &promclient.Gauge{Value: proto.Float64(4)}})
	for s := range 5 {
		fqdn := fmt.Sprintf("svc%d.ns%d.svc.cluster.local", (proxy+s)%500, proxy%10)
		group("cluster.", []string{bootstrap.TagCluster, "outbound|80|" + fqdn})
		if s < 3 {
			group("vhost.route.", []string{bootstrap.TagVirtualHost, fqdn + ":80", bootstrap.TagRoute, fmt.Sprintf("GET /r%d", s)})
		}
	}
	b, err := proto.Marshal(&metricsv3.StreamMetricsMessage{EnvoyMetrics: fams})
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkEmbeddedMetrics is one 10s flush interval of 1,000 proxies through the
// embedded path: decode each StreamMetricsMessage (as the gRPC receiver does) and ingest
// it. It reports CPU per proxy per interval and the store's memory per proxy once every
// proxy holds a full window (goal: < 1 ms and < 10 KB).
func BenchmarkEmbeddedMetrics(b *testing.B) {
	const proxies = 1000
	clock := t0
	s := NewStore(func() time.Time { return clock })
	msgs := make([][]byte, proxies)
	interval := 0
	fill := func() {
		clock = clock.Add(bootstrap.StatsFlushInterval)
		interval++
		for p := range proxies {
			msgs[p] = benchFlush(p, interval, clock)
		}
	}
	ingest := func() {
		for p, raw := range msgs {
			m := &metricsv3.StreamMetricsMessage{}
			if err := proto.Unmarshal(raw, m); err != nil {
				b.Fatal(err)
			}
			if r := s.Ingest(fmt.Sprintf("pod-%d", p), fmt.Sprintf("ns%d", p%10), m.GetEnvoyMetrics()); r.Bad > 0 {
				b.Fatalf("bad metrics: %+v", r)
			}
		}
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range Slots {
		fill()
		ingest()
	}
	// The messages are the receiver's transient buffers, not the store's.
	clear(msgs)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	storePerProxy := float64(after.HeapAlloc-before.HeapAlloc) / proxies

	b.ResetTimer()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		fill()
		b.StartTimer()
		start := time.Now()
		ingest()
		cpu += time.Since(start)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/proxies/1e3, "µs/proxy/interval")
	b.ReportMetric(storePerProxy, "store-B/proxy")

	// One query over everything, the cost of `weft stat ns -A`.
	dir := oneDir{}
	start := time.Now()
	if _, err := (&Embedded{Store: s, Dir: dir}).Query(context.Background(), Query{Resource: ResourceNamespace, AllNamespaces: true}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1e3, "ms/query-all")
}
