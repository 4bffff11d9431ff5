package promsource_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/telemetry/promsource"
	"github.com/weftmesh/weft/telemetry/promsource/promsourcetest"
)

func ptr(f float64) *float64 { return &f }

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// TestPrometheusSourceTables checks every table the Prometheus path answers against
// numbers computed by hand from promsourcetest.ShopTraffic. Percentiles interpolate linearly inside
// Envoy's buckets as histogram_quantile does: web's p95 is rank 95 of 100, in
// (10ms, 25ms] which holds ranks 91..100, so 10 + 15*(5/10) = 17.5 ms.
func TestPrometheusSourceTables(t *testing.T) {
	src := promsourcetest.ShopSource(t)
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
			{Namespace: "other", Name: "other", SuccessRate: ptr(1), RPS: 1, P50: ms(3), P95: ms(4.8), P99: ms(4.96), TCPConnections: 1},
			{Namespace: "shop", Name: "shop", SuccessRate: ptr(0.92), RPS: 25, P50: ms(1 + 4*125.0/150), P95: ms(10 + 15*7.5/20), P99: ms(10 + 15*17.5/20), TCPConnections: 6},
		}},
		// 60 requests per 10 s (final responses: a retried one is not charged), 10 failed;
		// 10 at 3 ms and 50 at 8 ms: p50 is rank 30, the 20th of the 50 in (5ms, 10ms].
		{"services, as their clients saw them", telemetry.Query{Resource: telemetry.ResourceService, Namespace: "shop"}, []telemetry.Row{
			{Namespace: "shop", Name: "api", SuccessRate: ptr(50.0 / 60), RPS: 6, P50: ms(7), P95: ms(9.7), P99: ms(9.94)},
		}},
		{"no service of that name", telemetry.Query{Resource: telemetry.ResourceService, Namespace: "shop", Name: "nope"}, []telemetry.Row{}},
		{"edges: deployment to service", telemetry.Query{Resource: telemetry.ResourceEdge, Namespace: "shop"}, []telemetry.Row{
			{Namespace: "shop", Name: "web > api", Src: "web", Dst: "api", DstNamespace: "shop", SuccessRate: ptr(50.0 / 60), RPS: 6, P50: ms(7), P95: ms(9.7), P99: ms(9.94)},
		}},
		{"no edges from another namespace", telemetry.Query{Resource: telemetry.ResourceEdge, Namespace: "other"}, []telemetry.Row{}},
		// 50 requests per 10 s, 10 failed; 6 retries, each after a failed attempt: 56
		// attempts, 16 failed.
		{"routes: actual adds the retried attempts", telemetry.Query{Resource: telemetry.ResourceRoute, Namespace: "shop", Name: "api"}, []telemetry.Row{
			{Namespace: "shop", Name: "GET /items", Dst: "api", SuccessRate: ptr(0.8), RPS: 5,
				EffectiveSuccess: ptr(0.8), EffectiveRPS: 5, ActualSuccess: ptr(1 - 16.0/56), ActualRPS: 5.6,
				P50: ms(7.5), P95: ms(9.75), P99: ms(9.95)},
			// the cluster's 60 requests and 6 retries less the route's 50 and 6: 10 2xx at 3 ms.
			{Namespace: "shop", Name: telemetry.DefaultRoute, Dst: "api", SuccessRate: ptr(1), RPS: 1,
				EffectiveSuccess: ptr(1), EffectiveRPS: 1, ActualSuccess: ptr(1), ActualRPS: 1,
				P50: ms(3), P95: ms(4.8), P99: ms(4.96)},
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
func diffRows(got, want []telemetry.Row) string { return diffRowsWithin(got, want, 0) }

// diffRowsWithin compares tables allowing a relative error in every number (real scrape
// times jitter), or float rounding when it is 0.
func diffRowsWithin(got, want []telemetry.Row, rel float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d rows, want %d:\n got %s\nwant %s", len(got), len(want), rowsString(got), rowsString(want))
	}
	var b strings.Builder
	for i := range got {
		g, w := got[i], want[i]
		near := func(a, b float64) bool { return math.Abs(a-b) < max(1e-6, rel*math.Abs(b)) }
		nearP := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || near(*a, *b)) }
		nearD := func(a, b time.Duration) bool { return near(float64(a)/1e3, float64(b)/1e3) }
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
	src, err := promsource.New("http://127.0.0.1:1", "cluster.local")
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
	src := promsource.NewWithQuery(func(context.Context, string, time.Time) (model.Vector, error) {
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

// TestSameTablesAsEmbedded: the same traffic, streamed to the control plane's embedded
// store by the metrics_service sink and scraped by Prometheus from /stats/prometheus,
// gives the same tables. MESHED is left out (Prometheus does not know the pods without
// a proxy), and so are services and edges, which the two paths measure at different
// ends: the embedded path knows which pods a service selects and reports their inbound
// side (and edges to the deployments behind a service, with identities), while
// Prometheus' series name only the service a client called.
func TestSameTablesAsEmbedded(t *testing.T) {
	prom := promsourcetest.ShopSource(t)
	embedded := promsourcetest.ShopEmbedded(t)
	for _, q := range []telemetry.Query{
		{Resource: telemetry.ResourceDeployment, Namespace: "shop"},
		{Resource: telemetry.ResourceDeployment, AllNamespaces: true},
		{Resource: telemetry.ResourcePod, Namespace: "shop"},
		{Resource: telemetry.ResourceNamespace},
		{Resource: telemetry.ResourceRoute, Namespace: "shop", Name: "api"},
	} {
		t.Run(fmt.Sprintf("%s ns=%s all=%v", q.Resource, q.Namespace, q.AllNamespaces), func(t *testing.T) {
			want, err := embedded.Query(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := prom.Query(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want.Rows {
				want.Rows[i].Meshed = ""
			}
			if len(want.Skipped) > 0 {
				t.Errorf("the embedded path skipped %v", want.Skipped)
			}
			if diff := diffRows(got.Rows, sortRows(want.Rows)); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func sortRows(rows []telemetry.Row) []telemetry.Row {
	slices.SortFunc(rows, func(a, b telemetry.Row) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return rows
}

// TestGRPCStatusOnBothPaths: gRPC calls that fail inside HTTP 200 responses (grpc-status
// UNAVAILABLE, counted by Envoy's grpc_stats filter in cluster.<name>.grpc.failure) are
// failures on both paths, with the same numbers, computed here by hand from
// promsourcetest.GRPCTraffic. Every call takes 3 or 5 ms, inside Envoy's (1ms, 5ms]
// bucket: p50 = 1 + 4*0.5, p95 = 1 + 4*0.95, p99 = 1 + 4*0.99.
func TestGRPCStatusOnBothPaths(t *testing.T) {
	prom := promsourcetest.SourceOf(t, promsourcetest.GRPCTraffic())
	embedded := promsourcetest.EmbeddedOf(t, promsourcetest.GRPCTraffic())
	row := func(name string, sr *float64, rps float64) telemetry.Row {
		return telemetry.Row{Namespace: "apps", Name: name, SuccessRate: sr, RPS: rps, P50: ms(3), P95: ms(4.8), P99: ms(4.96)}
	}
	route := func(svc, name string, sr *float64, rps float64) telemetry.Row {
		r := row(name, sr, rps)
		r.Dst, r.EffectiveSuccess, r.ActualSuccess, r.EffectiveRPS, r.ActualRPS = svc, sr, sr, rps, rps
		return r
	}
	retried := func(r telemetry.Row, actualSR *float64, actualRPS float64) telemetry.Row {
		r.ActualSuccess, r.ActualRPS = actualSR, actualRPS
		return r
	}
	server := func(name string, sr *float64, rps float64) telemetry.Row {
		r := row(name, sr, rps)
		r.TCPConnections = 1
		return r
	}
	unknown := fmt.Sprintf("route %%q: %s", telemetry.GRPCPerServiceOnly)
	cases := []struct {
		name        string
		q           telemetry.Query
		want        []telemetry.Row
		wantSkipped []string
	}{
		// greeter serves 42 calls per 10s, 10 failed; billing: 30, 3 failed; web: HTTP only.
		{"stat deploy", telemetry.Query{Resource: telemetry.ResourceDeployment, Namespace: "apps"}, []telemetry.Row{
			server("billing", ptr(0.9), 3), server("greeter", ptr(1-10.0/42), 4.2), server("web", ptr(1), 1),
		}, nil},
		// No profile routes: [DEFAULT] is the whole service, as web's proxy saw it: 40
		// calls, 8 failed; ACTUAL adds the 2 retried UNAVAILABLE attempts, and is what
		// greeter served.
		{"routes greeter", telemetry.Query{Resource: telemetry.ResourceRoute, Namespace: "apps", Name: "greeter"}, []telemetry.Row{
			retried(route("greeter", telemetry.DefaultRoute, ptr(0.8), 4), ptr(1-10.0/42), 4.2),
		}, nil},
		// A profile route took 10 of billing's 30 calls: which of them failed, Envoy's
		// stats do not say. No number rather than a guess.
		{"routes billing", telemetry.Query{Resource: telemetry.ResourceRoute, Namespace: "apps", Name: "billing"}, []telemetry.Row{
			route("billing", "Charge", nil, 1), route("billing", telemetry.DefaultRoute, nil, 2),
		}, []string{fmt.Sprintf(unknown, "Charge"), fmt.Sprintf(unknown, telemetry.DefaultRoute)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range []struct {
				name string
				src  telemetry.Source
			}{{"embedded", embedded}, {"prometheus", prom}} {
				tab, err := p.src.Query(context.Background(), c.q)
				if err != nil {
					t.Fatalf("%s: %v", p.name, err)
				}
				for i := range tab.Rows {
					tab.Rows[i].Meshed = ""
				}
				if diff := diffRowsWithin(sortRows(tab.Rows), c.want, 1e-6); diff != "" {
					t.Errorf("%s:\n%s", p.name, diff)
				}
				slices.Sort(tab.Skipped)
				want := slices.Sorted(slices.Values(c.wantSkipped))
				if !slices.Equal(tab.Skipped, want) {
					t.Errorf("%s: skipped %q, want %q", p.name, tab.Skipped, want)
				}
			}
		})
	}
	// stat svc is measured at different ends on the two paths (see
	// TestSameTablesAsEmbedded), but the calls are the same: web's outbound clusters saw
	// the failures greeter and billing served.
	tab, err := prom.Query(context.Background(), telemetry.Query{Resource: telemetry.ResourceService, Namespace: "apps"})
	if err != nil {
		t.Fatal(err)
	}
	want := []telemetry.Row{row("billing", ptr(0.9), 3), row("greeter", ptr(0.8), 4)}
	if diff := diffRowsWithin(tab.Rows, want, 1e-6); diff != "" {
		t.Errorf("prometheus stat svc:\n%s", diff)
	}
}
