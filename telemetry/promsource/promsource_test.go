package promsource

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"

	"github.com/weftmesh/weft/telemetry"
)

// proxyTarget is one scraped proxy: the labels ScrapeConfig's relabelling gives it and
// the stand-in that serves its stats.
type proxyTarget struct {
	namespace, pod, deployment string
	proxy                      *standInProxy
	// perInterval is the traffic the proxy sees between two scrapes.
	perInterval func(p *standInProxy)
}

const scrapeInterval = 10 * time.Second

// shopTraffic is the traffic every test here measures, per 10 s scrape interval:
//   - shop/web (2 pods) serves 90 2xx and 10 5xx each on inbound|8080, 50 at 3 ms,
//     40 at 8 ms, 10 at 20 ms, with 3 inbound connections open; each pod calls api
//     25 times (3 ms), and its profile route "GET /items" sees 20 2xx, 5 5xx and 3 retries
//     at 8 ms;
//   - shop/api (1 pod) serves 50 2xx at 3 ms on inbound|9090;
//   - other/db-0 (a StatefulSet's pod: no deployment label) serves 10 2xx at 3 ms.
func shopTraffic() []*proxyTarget {
	inbound := func(port string, ok, fail float64, lat map[float64]float64, cx float64) func(p *standInProxy) {
		return func(p *standInProxy) {
			c := map[string]string{"weft_cluster": "inbound|" + port}
			p.counters[newSeries("envoy_cluster_upstream_rq", with(c, "weft_response_code_class", "2xx"))] += ok
			if fail > 0 {
				p.counters[newSeries("envoy_cluster_upstream_rq", with(c, "weft_response_code_class", "5xx"))] += fail
			}
			for ms, n := range lat {
				p.observe(newSeries("envoy_cluster_upstream_rq_time", c), ms, n)
			}
			p.gauges[newSeries("envoy_http_downstream_cx_active", map[string]string{"weft_http_prefix": "inbound"})] = cx
		}
	}
	webInbound := inbound("8080", 90, 10, map[float64]float64{3: 50, 8: 40, 20: 10}, 3)
	web := func(p *standInProxy) {
		webInbound(p)
		out := map[string]string{"weft_cluster": "outbound|80|api.shop.svc.cluster.local"}
		p.counters[newSeries("envoy_cluster_upstream_rq", with(out, "weft_response_code_class", "2xx"))] += 25
		p.observe(newSeries("envoy_cluster_upstream_rq_time", out), 3, 25)
		rt := map[string]string{"weft_vhost": "api.shop.svc.cluster.local:80", "weft_route": "GET /items"}
		p.counters[newSeries("envoy_vhost_route_upstream_rq", with(rt, "weft_response_code_class", "2xx"))] += 20
		p.counters[newSeries("envoy_vhost_route_upstream_rq", with(rt, "weft_response_code_class", "5xx"))] += 5
		p.counters[newSeries("envoy_vhost_route_upstream_rq_retry", rt)] += 3
		p.observe(newSeries("envoy_vhost_route_upstream_rq_time", rt), 8, 25)
	}
	return []*proxyTarget{
		{"shop", "web-7d9c-1", "web", newStandInProxy(), web},
		{"shop", "web-7d9c-2", "web", newStandInProxy(), web},
		{"shop", "api-5f6b-1", "api", newStandInProxy(), inbound("9090", 50, 0, map[float64]float64{3: 50}, 0)},
		{"other", "db-0", "", newStandInProxy(), inbound("5432", 10, 0, map[float64]float64{3: 10}, 1)},
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		out[mk] = mv
	}
	return out
}

// scrapeInto plays the part of Prometheus' scrape loop: every interval each stand-in
// proxy's traffic advances, its /stats/prometheus text is parsed as Prometheus parses
// it, and the samples are stored with the target labels and an up series. It returns
// the time of the last scrape.
func scrapeInto(t *testing.T, app storage.Appender, targets []*proxyTarget, start time.Time, scrapes int) time.Time {
	t.Helper()
	at := start
	for i := range scrapes {
		at = start.Add(time.Duration(i) * scrapeInterval)
		for _, tg := range targets {
			if i > 0 {
				tg.perInterval(tg.proxy)
			} else {
				// Counters start at a proxy's earlier traffic, not at zero, as a
				// Prometheus that starts scraping a running mesh sees them.
				for range 100 {
					tg.perInterval(tg.proxy)
				}
			}
			var text bytes.Buffer
			tg.proxy.render(&text)
			target := []string{"job", "weft-proxies", "instance", tg.pod + ":4192", LabelNamespace, tg.namespace, LabelPod, tg.pod}
			if tg.deployment != "" {
				target = append(target, LabelDeployment, tg.deployment)
			}
			appendExposition(t, app, &text, target, at)
			if _, err := app.Append(0, labels.FromStrings(append([]string{"__name__", "up"}, target...)...), at.UnixMilli(), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return at
}

func appendExposition(t *testing.T, app storage.Appender, text *bytes.Buffer, target []string, at time.Time) {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(text)
	if err != nil {
		t.Fatalf("stand-in exposition does not parse: %v", err)
	}
	add := func(name string, lbls []string, v float64) {
		all := append(append([]string{"__name__", name}, target...), lbls...)
		if _, err := app.Append(0, labels.FromStrings(all...), at.UnixMilli(), v); err != nil {
			t.Fatal(err)
		}
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			var lbls []string
			for _, lp := range m.GetLabel() {
				lbls = append(lbls, lp.GetName(), lp.GetValue())
			}
			switch {
			case m.Counter != nil:
				add(name, lbls, m.GetCounter().GetValue())
			case m.Gauge != nil:
				add(name, lbls, m.GetGauge().GetValue())
			case m.Histogram != nil:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", append(lbls[:len(lbls):len(lbls)], "le", model.FloatString(b.GetUpperBound()).String()), float64(b.GetCumulativeCount()))
				}
				add(name+"_bucket", append(lbls[:len(lbls):len(lbls)], "le", "+Inf"), float64(h.GetSampleCount()))
				add(name+"_sum", lbls, h.GetSampleSum())
				add(name+"_count", lbls, float64(h.GetSampleCount()))
			}
		}
	}
}

// engineSource is the Source over Prometheus' own PromQL engine and TSDB, holding what
// a Prometheus would have scraped from shopTraffic for two minutes.
func engineSource(t *testing.T) *Source {
	t.Helper()
	st := teststorage.New(t)
	start := time.Unix(1_800_000_000, 0)
	end := scrapeInto(t, st.Appender(context.Background()), shopTraffic(), start, 13)
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: 10 * time.Second})
	q := func(ctx context.Context, expr string, at time.Time) (model.Vector, error) {
		qry, err := engine.NewInstantQuery(ctx, st, nil, expr, at)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", expr, err)
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, fmt.Errorf("%s: %w", expr, res.Err)
		}
		vec, err := res.Vector()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", expr, err)
		}
		out := make(model.Vector, 0, len(vec))
		for _, s := range vec {
			m := model.Metric{}
			s.Metric.Range(func(l labels.Label) { m[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
			out = append(out, &model.Sample{Metric: m, Value: model.SampleValue(s.F), Timestamp: model.Time(s.T)})
		}
		return out, nil
	}
	return NewWithQuery(q, "cluster.local", func() time.Time { return end })
}

func ptr(f float64) *float64 { return &f }

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// TestPrometheusSourceTables checks every table the Prometheus path answers against
// numbers computed by hand from shopTraffic. Percentiles interpolate linearly inside
// Envoy's buckets as histogram_quantile does: web's p95 is rank 95 of 100, in
// (10ms, 25ms] which holds ranks 91..100, so 10 + 15*(5/10) = 17.5 ms.
func TestPrometheusSourceTables(t *testing.T) {
	src := engineSource(t)
	web := telemetry.Row{Namespace: "shop", Name: "web", SuccessRate: ptr(0.9), RPS: 20, P50: ms(5), P95: ms(17.5), P99: ms(23.5), TCPConnections: 6}
	api := telemetry.Row{Namespace: "shop", Name: "api", SuccessRate: ptr(1), RPS: 5, P50: ms(3), P95: ms(4.8), P99: ms(4.96)}
	tests := []struct {
		name string
		q    telemetry.Query
		want []telemetry.Row
	}{
		{"deployments in a namespace", telemetry.Query{Resource: telemetry.ResourceDeployment, Namespace: "shop"}, []telemetry.Row{api, web}},
		{"one deployment", telemetry.Query{Resource: telemetry.ResourceDeployment, Namespace: "shop", Name: "web"}, []telemetry.Row{web}},
		{"deployments everywhere skip pods without one", telemetry.Query{Resource: telemetry.ResourceDeployment, AllNamespaces: true}, []telemetry.Row{api, web}},
		{"pods", telemetry.Query{Resource: telemetry.ResourcePod, Namespace: "shop"}, []telemetry.Row{
			{Namespace: "shop", Name: "api-5f6b-1", SuccessRate: ptr(1), RPS: 5, P50: ms(3), P95: ms(4.8), P99: ms(4.96)},
			{Namespace: "shop", Name: "web-7d9c-1", SuccessRate: ptr(0.9), RPS: 10, P50: ms(5), P95: ms(17.5), P99: ms(23.5), TCPConnections: 3},
			{Namespace: "shop", Name: "web-7d9c-2", SuccessRate: ptr(0.9), RPS: 10, P50: ms(5), P95: ms(17.5), P99: ms(23.5), TCPConnections: 3},
		}},
		// shop: 250 responses per 10 s, 20 of them 5xx; 150 at or under 5 ms, 230 under 10 ms.
		{"namespaces", telemetry.Query{Resource: telemetry.ResourceNamespace}, []telemetry.Row{
			{Name: "other", SuccessRate: ptr(1), RPS: 1, P50: ms(3), P95: ms(4.8), P99: ms(4.96), TCPConnections: 1},
			{Name: "shop", SuccessRate: ptr(0.92), RPS: 25, P50: ms(1 + 4*125.0/150), P95: ms(10 + 15*7.5/20), P99: ms(10 + 15*17.5/20), TCPConnections: 6},
		}},
		{"services, as their clients saw them", telemetry.Query{Resource: telemetry.ResourceService, Namespace: "shop"}, []telemetry.Row{
			{Namespace: "shop", Name: "api", SuccessRate: ptr(1), RPS: 5, P50: ms(3), P95: ms(4.8), P99: ms(4.96)},
		}},
		{"no service of that name", telemetry.Query{Resource: telemetry.ResourceService, Namespace: "shop", Name: "nope"}, []telemetry.Row{}},
		{"edges: deployment to service", telemetry.Query{Resource: telemetry.ResourceEdge, Namespace: "shop"}, []telemetry.Row{
			{Namespace: "shop", Name: "web > api", Src: "web", Dst: "api", DstNamespace: "shop", SuccessRate: ptr(1), RPS: 5, P50: ms(3), P95: ms(4.8), P99: ms(4.96)},
		}},
		{"no edges from another namespace", telemetry.Query{Resource: telemetry.ResourceEdge, Namespace: "other"}, []telemetry.Row{}},
		// 50 attempts per 10 s, 10 failed, 6 of them retried: 44 requests, 4 failures.
		{"routes: effective takes the retries out", telemetry.Query{Resource: telemetry.ResourceRoute, Namespace: "shop", Name: "api"}, []telemetry.Row{
			{Namespace: "shop", Name: "GET /items", Dst: "api", SuccessRate: ptr(1 - 4.0/44), RPS: 4.4,
				EffectiveSuccess: ptr(1 - 4.0/44), EffectiveRPS: 4.4, ActualSuccess: ptr(0.8), ActualRPS: 5,
				P50: ms(7.5), P95: ms(9.75), P99: ms(9.95)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := src.Query(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got.Resource != tc.q.Resource {
				t.Errorf("resource %q, want %q", got.Resource, tc.q.Resource)
			}
			if diff := diffRows(got.Rows, tc.want); diff != "" {
				t.Error(diff)
			}
		})
	}
}

// diffRows compares tables allowing for float rounding in rates and interpolation.
func diffRows(got, want []telemetry.Row) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d rows, want %d:\n got %s\nwant %s", len(got), len(want), rowsString(got), rowsString(want))
	}
	var b strings.Builder
	for i := range got {
		g, w := got[i], want[i]
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
		nearP := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || near(*a, *b)) }
		nearD := func(a, b time.Duration) bool { return math.Abs(float64(a-b)) < float64(time.Microsecond) }
		ok := g.Namespace == w.Namespace && g.Name == w.Name && g.Src == w.Src && g.Dst == w.Dst && g.DstNamespace == w.DstNamespace && g.Meshed == w.Meshed &&
			nearP(g.SuccessRate, w.SuccessRate) && near(g.RPS, w.RPS) &&
			nearD(g.P50, w.P50) && nearD(g.P95, w.P95) && nearD(g.P99, w.P99) && g.TCPConnections == w.TCPConnections &&
			nearP(g.EffectiveSuccess, w.EffectiveSuccess) && nearP(g.ActualSuccess, w.ActualSuccess) &&
			near(g.EffectiveRPS, w.EffectiveRPS) && near(g.ActualRPS, w.ActualRPS)
		if !ok {
			fmt.Fprintf(&b, "row %d:\n got %s\nwant %s\n", i, rowString(g), rowString(w))
		}
	}
	return b.String()
}

func rowsString(rows []telemetry.Row) string {
	var parts []string
	for _, r := range rows {
		parts = append(parts, rowString(r))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func rowString(r telemetry.Row) string {
	f := func(p *float64) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprintf("%.6f", *p)
	}
	return fmt.Sprintf("%s/%s dst=%s meshed=%q sr=%s rps=%.4f p=%v/%v/%v tcp=%d eff=%s/%.4f act=%s/%.4f",
		r.Namespace, r.Name, r.Dst, r.Meshed, f(r.SuccessRate), r.RPS, r.P50, r.P95, r.P99, r.TCPConnections,
		f(r.EffectiveSuccess), r.EffectiveRPS, f(r.ActualSuccess), r.ActualRPS)
}

// TestPrometheusDown: a Prometheus that is not there is a sentence naming it, not a stack of url errors.
func TestPrometheusDown(t *testing.T) {
	src, err := New("http://127.0.0.1:1", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Query(context.Background(), telemetry.Query{Resource: telemetry.ResourceDeployment, Namespace: "shop"})
	if err == nil || !strings.Contains(err.Error(), "cannot reach Prometheus at http://127.0.0.1:1") {
		t.Fatalf("err = %v, want one saying Prometheus at http://127.0.0.1:1 cannot be reached", err)
	}
}

// TestPrometheusSourceRefuses: what the Prometheus path cannot answer is said, not guessed.
func TestPrometheusSourceRefuses(t *testing.T) {
	src := NewWithQuery(func(context.Context, string, time.Time) (model.Vector, error) {
		t.Fatal("no query should be sent")
		return nil, nil
	}, "", time.Now)
	for _, q := range []telemetry.Query{
		{Resource: telemetry.ResourceDeployment, From: "deploy/web"},
		{Resource: "bogus"},
		{Resource: telemetry.ResourceRoute},
	} {
		if _, err := src.Query(context.Background(), q); err == nil {
			t.Errorf("%+v: no error", q)
		}
	}
}
