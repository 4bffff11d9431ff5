package promsourcetest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"

	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/telemetry/promsource"
)

// ProxyTarget is one scraped proxy: the labels ScrapeConfig's relabelling gives it and
// the stand-in that serves its stats.
type ProxyTarget struct {
	namespace, pod, deployment string
	proxy                      *standInProxy
	// perInterval is the traffic the proxy sees between two scrapes.
	perInterval func(p *standInProxy)
}

const scrapeInterval = 10 * time.Second

// ShopTraffic is the traffic the tests measure, per 10 s scrape interval:
//   - shop/web (2 pods) serves 90 2xx and 10 5xx each (inbound HTTP), 50 at 3 ms,
//     40 at 8 ms, 10 at 20 ms, with 3 inbound connections open; each pod makes 30
//     requests to api: 25 on its profile route "GET /items" (20 2xx, 3 of them after a
//     503 retried once, and 5 5xx whose retry the budget refused: 28 attempts, at 8 ms)
//     and 5 no route matched (2xx at 3 ms);
//   - shop/api (1 pod) serves 50 2xx at 3 ms;
//   - other/db-0 (a StatefulSet's pod: no deployment label) serves 10 2xx at 3 ms.
func ShopTraffic() []*ProxyTarget {
	inbound := func(ok, fail float64, lat map[float64]float64, cx float64) func(p *standInProxy) {
		return func(p *standInProxy) {
			h := map[string]string{"weft_http_prefix": "inbound"}
			p.counters[newSeries("http.downstream_rq", with(h, "weft_response_code_class", "2xx"))] += ok
			p.counters[newSeries("http.downstream_rq_total", h)] += ok + fail
			if fail > 0 {
				p.counters[newSeries("http.downstream_rq", with(h, "weft_response_code_class", "5xx"))] += fail
			}
			for ms, n := range lat {
				p.observe(newSeries("http.downstream_rq_time", h), ms, n)
			}
			p.gauges[newSeries("http.downstream_cx_active", h)] = cx
		}
	}
	webInbound := inbound(90, 10, map[float64]float64{3: 50, 8: 40, 20: 10}, 3)
	web := func(p *standInProxy) {
		webInbound(p)
		// Envoy 1.40's router charges upstream_rq_<N>xx, on the cluster and the route, for
		// the final response of each request only: a response that triggers a retry is
		// charged to the cluster's retry.upstream_rq_<N>xx and onUpstreamHeaders returns
		// before chargeUpstreamCode; each retry charges upstream_rq_retry on the cluster
		// and the route (RetryStateImpl::shouldRetry); upstream_rq_time is charged once,
		// from the request's end to the final response (onUpstreamComplete).
		// source/common/router/router.cc, retry_state_impl.cc;
		// configuration/upstream/cluster_manager/cluster_stats.rst.
		// The cluster: the route's 25 requests (20 2xx, 5 5xx, 3 retries at 8 ms) and 5
		// no route matched (2xx at 3 ms).
		out := map[string]string{"weft_cluster": "outbound|80|api.shop.svc.cluster.local"}
		p.counters[newSeries("cluster.upstream_rq", with(out, "weft_response_code_class", "2xx"))] += 25
		p.counters[newSeries("cluster.upstream_rq", with(out, "weft_response_code_class", "5xx"))] += 5
		p.counters[newSeries("cluster.upstream_rq_retry", out)] += 3
		// Its retry.upstream_rq_5xx (3) exists in Envoy but the stats matcher keeps
		// response classes of Weft's own clusters only (injector/bootstrap/stats.go).
		p.observe(newSeries("cluster.upstream_rq_time", out), 8, 25)
		p.observe(newSeries("cluster.upstream_rq_time", out), 3, 5)
		rt := map[string]string{"weft_vhost": "api.shop.svc.cluster.local:80", "weft_route": "GET /items"}
		p.counters[newSeries("vhost.route.upstream_rq", with(rt, "weft_response_code_class", "2xx"))] += 20
		p.counters[newSeries("vhost.route.upstream_rq", with(rt, "weft_response_code_class", "5xx"))] += 5
		p.counters[newSeries("vhost.route.upstream_rq_retry", rt)] += 3
		p.observe(newSeries("vhost.route.upstream_rq_time", rt), 8, 25)
	}
	return []*ProxyTarget{
		{"shop", "web-7d9c-1", "web", newStandInProxy(), web},
		{"shop", "web-7d9c-2", "web", newStandInProxy(), web},
		{"shop", "api-5f6b-1", "api", newStandInProxy(), inbound(50, 0, map[float64]float64{3: 50}, 0)},
		{"other", "db-0", "", newStandInProxy(), inbound(10, 0, map[float64]float64{3: 10}, 1)},
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
func scrapeInto(t testing.TB, app storage.Appender, targets []*ProxyTarget, start time.Time, scrapes int) time.Time {
	t.Helper()
	at := start
	for i := range scrapes {
		at = start.Add(time.Duration(i) * scrapeInterval)
		for _, tg := range targets {
			advance(tg, i)
			var text bytes.Buffer
			tg.proxy.render(&text)
			target := []string{"job", "weft-proxies", "instance", tg.pod + ":4192", promsource.LabelNamespace, tg.namespace, promsource.LabelPod, tg.pod}
			if tg.deployment != "" {
				target = append(target, promsource.LabelDeployment, tg.deployment)
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

func appendExposition(t testing.TB, app storage.Appender, text *bytes.Buffer, target []string, at time.Time) {
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

// ShopSource is the Source over Prometheus' own PromQL engine and TSDB, holding what
// a Prometheus would have scraped from ShopTraffic for two minutes.
func ShopSource(t testing.TB) *promsource.Source {
	t.Helper()
	return SourceOf(t, ShopTraffic())
}

// SourceOf is ShopSource for any traffic.
func SourceOf(t testing.TB, targets []*ProxyTarget) *promsource.Source {
	t.Helper()
	q, end := QueryOf(t, targets)
	return promsource.NewWithQuery(q, "cluster.local", func() time.Time { return end })
}

// QueryOf is the PromQL evaluator behind SourceOf, for queries of one's own (the
// Grafana dashboards'), and the time of the last scrape.
func QueryOf(t testing.TB, targets []*ProxyTarget) (promsource.InstantQuery, time.Time) {
	t.Helper()
	st := teststorage.New(t)
	start := time.Unix(1_800_000_000, 0)
	end := scrapeInto(t, st.Appender(context.Background()), targets, start, 13)
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
	return q, end
}

// Handler serves the target's /stats/prometheus as a running Envoy would at wall-clock
// time: every counter and histogram grows linearly from start at the traffic's
// per-interval rate (over a base of earlier traffic), so a real Prometheus scraping it
// at any moments computes the same rates as ShopSource.
func (tg *ProxyTarget) Handler(start time.Time) http.Handler {
	base, step := newStandInProxy(), newStandInProxy()
	for range 100 {
		tg.perInterval(base)
	}
	tg.perInterval(step)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats/prometheus" {
			http.NotFound(w, r)
			return
		}
		k := time.Since(start).Seconds() / scrapeInterval.Seconds()
		now := newStandInProxy()
		for s, v := range base.counters {
			now.counters[s] = v + k*step.counters[s]
		}
		maps.Copy(now.gauges, step.gauges)
		for s, h := range base.histograms {
			grown := make([]float64, len(h))
			for i := range h {
				grown[i] = h[i] + k*step.histograms[s][i]
			}
			now.histograms[s] = grown
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		now.render(w)
	})
}

// Labels are the target labels a scrape job gives the proxy (ScrapeConfig's relabelling).
func (tg *ProxyTarget) Labels() map[string]string {
	l := map[string]string{promsource.LabelNamespace: tg.namespace, promsource.LabelPod: tg.pod}
	if tg.deployment != "" {
		l[promsource.LabelDeployment] = tg.deployment
	}
	return l
}

// shopDirectory is the mesh model's view of ShopTraffic's pods for the embedded path.
type shopDirectory []telemetry.Workload

func (d shopDirectory) Workloads() []telemetry.Workload { return d }

func (shopDirectory) ResponseClasses(_, _, _ string) []telemetry.StatusRange { return nil }

// ShopEmbedded is the control plane's embedded Source holding the same traffic as
// ShopSource, streamed by the same stand-in proxies as Envoy's metrics_service sink
// streams it, one message per 10 s flush, over the same two minutes.
func ShopEmbedded(t testing.TB) *telemetry.Embedded {
	t.Helper()
	return EmbeddedOf(t, ShopTraffic())
}

// EmbeddedOf is ShopEmbedded for any traffic.
func EmbeddedOf(t testing.TB, targets []*ProxyTarget) *telemetry.Embedded {
	t.Helper()
	start := time.Unix(1_800_000_000, 0)
	now := start
	store := telemetry.NewStore(func() time.Time { return now })
	var dir shopDirectory
	for _, tg := range targets {
		w := telemetry.Workload{Namespace: tg.namespace, Pod: tg.pod, Deployment: tg.deployment, Meshed: true}
		if tg.deployment != "" {
			w.Services = []string{tg.deployment}
		}
		dir = append(dir, w)
	}
	for i := range 13 {
		now = start.Add(time.Duration(i) * scrapeInterval)
		for _, tg := range targets {
			advance(tg, i)
			if r := store.Ingest(tg.pod, tg.namespace, tg.proxy.families(now)); r.Bad > 0 || r.Unknown > 0 {
				t.Fatalf("the store refused the stand-in's stats for %s: %+v", tg.pod, r)
			}
		}
	}
	return &telemetry.Embedded{Store: store, Dir: dir, ClusterDomain: "cluster.local"}
}

// advance moves a target's traffic on to scrape i: the first scrape finds 100
// intervals of earlier traffic, as a scrape of a running mesh does.
func advance(tg *ProxyTarget, i int) {
	if i > 0 {
		tg.perInterval(tg.proxy)
		return
	}
	for range 100 {
		tg.perInterval(tg.proxy)
	}
}
