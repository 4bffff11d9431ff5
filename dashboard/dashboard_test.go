package dashboard_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weftmesh/weft/dashboard"
	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/telemetry/promsource"
)

// tableSource answers every query with fixed edges, or an error: input for the
// rendering, which is what these cases test.
type tableSource struct {
	edges []telemetry.Row
	err   error
}

func (s tableSource) Query(_ context.Context, q telemetry.Query) (telemetry.Table, error) {
	if s.err != nil {
		return telemetry.Table{}, s.err
	}
	if q.Resource == telemetry.ResourceEdge {
		return telemetry.Table{Resource: q.Resource, Rows: s.edges}, nil
	}
	return telemetry.Table{Resource: q.Resource}, nil
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func sr(f float64) *float64 { return &f }

func TestDashboardPages(t *testing.T) {
	down, err := promsource.New("http://127.0.0.1:1", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		src      telemetry.Source
		tapper   dashboard.Tapper
		path     string
		wantCode int
		want     []string
		dontWant []string
	}{
		{name: "Prometheus down: the page says so", src: down, path: "/namespaces/shop", wantCode: 200,
			want: []string{`class="error"`, "cannot reach Prometheus at http://127.0.0.1:1", "No traffic in this window."}},
		{name: "a source error on the index", src: tableSource{err: errors.New("control plane unreachable")}, path: "/", wantCode: 200,
			want: []string{"namespaces: control plane unreachable"}},
		{name: "names are escaped", path: "/namespaces/shop", wantCode: 200, src: tableSource{edges: []telemetry.Row{
			{Namespace: "shop", Src: "<script>x</script>", Dst: "api", DstNamespace: "shop", RPS: 1, SuccessRate: sr(1)},
		}}, want: []string{"&lt;script&gt;x&lt;/script&gt;"}, dontWant: []string{"<script>x</script>"}},
		// a -> b -> a and a call to itself must still draw, once per edge.
		{name: "a cycle draws", path: "/namespaces/shop/topology.svg", wantCode: 200, src: tableSource{edges: []telemetry.Row{
			{Namespace: "shop", Src: "a", Dst: "b", RPS: 1, SuccessRate: sr(0.5)},
			{Namespace: "shop", Src: "b", Dst: "a", RPS: 1, SuccessRate: sr(0.9)},
			{Namespace: "shop", Src: "a", Dst: "a", RPS: 1},
		}}, want: []string{`data-src="shop/a" data-dst="shop/b"`, `data-src="shop/b" data-dst="shop/a"`, `data-src="shop/a" data-dst="shop/a"`,
			`class="edge bad"`, `class="edge warn"`, `class="edge none"`}},
		{name: "an edge to another namespace names it", path: "/namespaces/shop/topology.svg", wantCode: 200, src: tableSource{edges: []telemetry.Row{
			{Namespace: "shop", Src: "web", Dst: "db", DstNamespace: "data", RPS: 1, SuccessRate: sr(1)},
		}}, want: []string{">db.data<", `href="/namespaces/data/deployments/db"`}},
		{name: "unknown page", src: tableSource{}, path: "/nope", wantCode: 404},
		// The tap page's stream says why a session could not start; without a Tapper
		// there are no tap pages.
		{name: "a deployment that cannot be tapped", src: tableSource{}, tapper: hubTapper{tap.NewHub(&tapSet{}, nil)},
			path: "/namespaces/shop/deployments/nope/tap/events", wantCode: 200,
			want: []string{"event: end\n", `"failed":"true"`, `"reason":"no such deployment"`}},
		{name: "no tap page without a tapper", src: tableSource{}, path: "/namespaces/shop/deployments/web/tap", wantCode: 404},
		{name: "no tap link without a tapper", src: tableSource{}, path: "/namespaces/shop/deployments/web", wantCode: 200,
			dontWant: []string{"/tap"}},
		{name: "the deployment page links to its tap page", src: tableSource{}, tapper: hubTapper{tap.NewHub(&tapSet{}, nil)},
			path: "/namespaces/shop/deployments/web", wantCode: 200, want: []string{`href="/namespaces/shop/deployments/web/tap"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := dashboard.New(tc.src, dashboard.Options{Tapper: tc.tapper})
			if err != nil {
				t.Fatal(err)
			}
			code, body := get(t, h, tc.path)
			if code != tc.wantCode {
				t.Errorf("status %d, want %d", code, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(body, w) {
					t.Errorf("page has %q", w)
				}
			}
		})
	}
}
