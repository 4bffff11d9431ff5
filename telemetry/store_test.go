package telemetry

import (
	"context"
	"fmt"
	"testing"
	"time"

	promclient "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/injector/bootstrap"
)

// inboundOK is one flush of a proxy's http.inbound.downstream_rq_2xx, as Envoy 1.40's
// metrics_service sink sends it with emit_tags_as_labels (tag-extracted name, tags as labels).
func inboundOK(v float64, ts time.Time) []*promclient.MetricFamily {
	return []*promclient.MetricFamily{{
		Name: proto.String("http.downstream_rq"), Type: promclient.MetricType_COUNTER.Enum(),
		Metric: []*promclient.Metric{{
			Label: []*promclient.LabelPair{
				{Name: proto.String(bootstrap.TagHTTPPrefix), Value: proto.String("inbound")},
				{Name: proto.String(bootstrap.TagResponseCodeClass), Value: proto.String("2xx")},
			},
			Counter:     &promclient.Counter{Value: proto.Float64(v)},
			TimestampMs: proto.Int64(ts.UnixMilli()),
		}},
	}}
}

type oneDir []Workload

func (d oneDir) Workloads() []Workload                      { return d }
func (oneDir) ResponseClasses(_, _, _ string) []StatusRange { return nil }

func TestStoreRatesAndBadInput(t *testing.T) {
	now := t0
	dir := oneDir{{Namespace: "shop", Pod: "web-0", Deployment: "web", Meshed: true}}
	cases := []struct {
		name     string
		values   []float64 // one flush every 10s, the last one now
		wantRate string
		wantBad  int
	}{
		{"steady", []float64{0, 100, 200}, "10.0rps", 0},
		// The proxy restarted between the second and third flush: 100 -> 30 is a new
		// baseline, the rate rests on the 10s watched before it.
		{"counter goes backwards", []float64{0, 100, 30}, "10.0rps", 0},
		{"only a restart", []float64{500, 30}, "-", 0},
		{"negative and fractional counters are garbage", []float64{0, -5, 7.5}, "-", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var clock time.Time
			s := NewStore(func() time.Time { return clock })
			bad := 0
			for i, v := range c.values {
				clock = now.Add(time.Duration(i-len(c.values)+1) * 10 * time.Second)
				bad += s.Ingest("web-0", "shop", inboundOK(v, clock)).Bad
			}
			if bad != c.wantBad {
				t.Errorf("bad = %d, want %d", bad, c.wantBad)
			}
			tab, err := (&Embedded{Store: s, Dir: dir}).Query(context.Background(), Query{Resource: ResourceDeployment, Namespace: "shop"})
			if err != nil {
				t.Fatal(err)
			}
			if len(tab.Rows) != 1 || FormatRPS(tab.Rows[0].RPS) != c.wantRate {
				t.Fatalf("rows %+v, want one with %s", tab.Rows, c.wantRate)
			}
			if r := tab.Rows[0]; c.wantRate == "-" && r.SuccessRate != nil {
				t.Errorf("success %v without a usable rate", *r.SuccessRate)
			}
		})
	}
}

func TestStoreUnknownAndOutOfOrder(t *testing.T) {
	clock := t0
	s := NewStore(func() time.Time { return clock })
	unknown := []*promclient.MetricFamily{{Name: proto.String("listener.0.0.0.0_15006.downstream_cx_total"), Type: promclient.MetricType_COUNTER.Enum(),
		Metric: []*promclient.Metric{{Counter: &promclient.Counter{Value: proto.Float64(3)}}}}}
	if r := s.Ingest("web-0", "shop", unknown); r.Unknown != 1 || r.Kept != 0 || r.Bad != 0 {
		t.Errorf("unknown stat: %+v", r)
	}
	clock = clock.Add(10 * time.Second)
	s.Ingest("web-0", "shop", inboundOK(5, clock))
	// A flush stamped before the previous one cannot be placed in the window.
	if r := s.Ingest("web-0", "shop", inboundOK(9, clock.Add(-5*time.Second))); r.Bad != 1 || r.Kept != 0 {
		t.Errorf("out-of-order flush: %+v", r)
	}
}

func TestStoreBounds(t *testing.T) {
	clock := t0
	s := NewStore(func() time.Time { return clock })
	// Flood one flush with more series than a proxy may have.
	var fams []*promclient.MetricFamily
	for i := range MaxSeries + 10 {
		fams = append(fams, &promclient.MetricFamily{Name: proto.String("cluster.upstream_rq_total"), Type: promclient.MetricType_COUNTER.Enum(),
			Metric: []*promclient.Metric{{
				Label:   []*promclient.LabelPair{{Name: proto.String(bootstrap.TagCluster), Value: proto.String("outbound|80|s" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".shop.svc.cluster.local")}},
				Counter: &promclient.Counter{Value: proto.Float64(1)},
			}}})
	}
	if r := s.Ingest("web-0", "shop", fams); r.Kept != MaxSeries || r.Bad != 10 {
		t.Errorf("flood: %+v, want %d kept and 10 bad", r, MaxSeries)
	}
	// More flushes than Slots keep Slots.
	for range 2 * Slots {
		clock = clock.Add(10 * time.Second)
		s.Ingest("web-0", "shop", inboundOK(1, clock))
	}
	if n := s.proxies["shop/web-0"].n; n != Slots {
		t.Errorf("%d flushes kept, want %d", n, Slots)
	}
	// A proxy silent for longer than Retention is gone once another reports.
	clock = clock.Add(Retention + time.Second)
	s.Ingest("api-0", "shop", inboundOK(1, clock))
	if s.Proxies() != 1 {
		t.Errorf("%d proxies after retention, want 1", s.Proxies())
	}
}

// grpcFlush is one flush of a gRPC server's proxy as Envoy 1.40's metrics_service sink
// sends it: the inbound connection manager's http.inbound.downstream_rq_2xx (every call
// answers 200) and, per gRPC port, the grpc_stats filter's cluster.inbound|<port>.grpc.failure
// (configuration/http/http_filters/grpc_stats_filter.rst; ContextImpl::chargeStat in
// source/common/grpc/context_impl.cc), tag-extracted with the cluster as a label. A port
// without a failed call yet has no such counter: Envoy creates it at the first.
func grpcFlush(ok float64, failuresByPort map[string]float64, ts time.Time) []*promclient.MetricFamily {
	fams := inboundOK(ok, ts)
	f := &promclient.MetricFamily{Name: proto.String("cluster.grpc.failure"), Type: promclient.MetricType_COUNTER.Enum()}
	for port, v := range failuresByPort {
		f.Metric = append(f.Metric, &promclient.Metric{
			Label:       []*promclient.LabelPair{{Name: proto.String(bootstrap.TagCluster), Value: proto.String("inbound|" + port)}},
			Counter:     &promclient.Counter{Value: proto.Float64(v)},
			TimestampMs: proto.Int64(ts.UnixMilli()),
		})
	}
	return append(fams, f)
}

// TestStoreGRPCFailures: failed gRPC calls, counted in 200 responses, are failures; the
// inbound side sums its gRPC ports; a counter first seen mid-window starts from zero; a
// restart drops the pair like any other counter.
func TestStoreGRPCFailures(t *testing.T) {
	type flush struct {
		ok       float64
		failures map[string]float64
	}
	cases := []struct {
		name        string
		flushes     []flush
		wantSuccess string
		wantRPS     string
	}{
		// 200 calls over 20s, 10 + 4 failed on two ports.
		{"two gRPC ports", []flush{
			{100, nil},
			{200, map[string]float64{"50051": 6, "9090": 4}},
			{300, map[string]float64{"50051": 10, "9090": 4}},
		}, "93.00%", "10.0rps"},
		{"no failed call: no counter", []flush{{100, nil}, {200, nil}}, "100.00%", "10.0rps"},
		// The proxy restarted before the last flush: only the first pair counts.
		{"restart", []flush{
			{100, map[string]float64{"50051": 0}},
			{200, map[string]float64{"50051": 10}},
			{50, map[string]float64{"50051": 1}},
		}, "90.00%", "10.0rps"},
	}
	dir := oneDir{{Namespace: "apps", Pod: "greeter-0", Deployment: "greeter", Meshed: true}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var clock time.Time
			s := NewStore(func() time.Time { return clock })
			for i, f := range c.flushes {
				clock = t0.Add(time.Duration(i-len(c.flushes)+1) * 10 * time.Second)
				if r := s.Ingest("greeter-0", "apps", grpcFlush(f.ok, f.failures, clock)); r.Bad > 0 || r.Unknown > 0 {
					t.Fatalf("flush %d refused: %+v", i, r)
				}
			}
			tab, err := (&Embedded{Store: s, Dir: dir}).Query(context.Background(), Query{Resource: ResourceDeployment, Namespace: "apps"})
			if err != nil {
				t.Fatal(err)
			}
			if len(tab.Rows) != 1 {
				t.Fatalf("rows %+v, want one", tab.Rows)
			}
			r := tab.Rows[0]
			if FormatSuccess(r.SuccessRate) != c.wantSuccess || FormatRPS(r.RPS) != c.wantRPS {
				t.Errorf("success %s rps %s, want %s %s", FormatSuccess(r.SuccessRate), FormatRPS(r.RPS), c.wantSuccess, c.wantRPS)
			}
		})
	}
}

// TestStoreManyBuckets: a flush whose histograms have more buckets than a sample's
// 16-bit offsets into the flush can address must not corrupt or crash the window.
func TestStoreManyBuckets(t *testing.T) {
	clock := t0
	s := NewStore(func() time.Time { return clock })
	const buckets = 300
	flush := func(n float64) []*promclient.MetricFamily {
		h := &promclient.Histogram{SampleCount: proto.Uint64(uint64(n))}
		for b := range buckets {
			h.Bucket = append(h.Bucket, &promclient.Bucket{UpperBound: proto.Float64(float64(b + 1)), CumulativeCount: proto.Uint64(uint64(n) * uint64(b) / buckets)})
		}
		var fams []*promclient.MetricFamily
		for i := range MaxSeries {
			fams = append(fams, &promclient.MetricFamily{Name: proto.String("cluster.upstream_rq_time"), Type: promclient.MetricType_HISTOGRAM.Enum(),
				Metric: []*promclient.Metric{{
					Label:       []*promclient.LabelPair{{Name: proto.String(bootstrap.TagCluster), Value: proto.String(fmt.Sprintf("outbound|80|s%d.shop.svc.cluster.local", i))}},
					Histogram:   h,
					TimestampMs: proto.Int64(clock.UnixMilli()),
				}}})
		}
		return fams
	}
	cases := []struct {
		name     string
		n        float64
		wantKept int
	}{
		{"first flush", 100, 0},
		{"second flush", 200, 0},
	}
	for _, tc := range cases {
		clock = clock.Add(10 * time.Second)
		r := s.Ingest("web-0", "shop", flush(tc.n))
		if r.Kept != tc.wantKept || r.Bad != MaxSeries {
			t.Errorf("%s: %+v, want %d kept and %d bad", tc.name, r, tc.wantKept, MaxSeries)
		}
	}
	s.window(time.Minute) // must not panic
}
