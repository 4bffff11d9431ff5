package promsource_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/telemetry/envoystats"
	"github.com/weftmesh/weft/telemetry/envoystats/envoystatstest"
	"github.com/weftmesh/weft/telemetry/promsource"
	"github.com/weftmesh/weft/telemetry/promsource/promsourcetest"
	"github.com/weftmesh/weft/testenv"
)

// prometheusBinary is the Prometheus server `make bins` builds from
// testenv/tools/prometheus into bin/. Without it the test is skipped, except under CI.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	dir, err := testenv.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus")
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Prometheus server at %s (make bins builds it)", path)
		}
		t.Skipf("no Prometheus server at %s (make bins builds it)", path)
	}
	return path
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPrometheus runs the Prometheus server scraping every second with scrapeConfigs
// (the YAML list under scrape_configs) and returns its URL once it is ready.
func startPrometheus(t *testing.T, bin, scrapeConfigs string) string {
	t.Helper()
	dir := t.TempDir()
	config := "global:\n  scrape_interval: 1s\nscrape_configs:\n" + scrapeConfigs
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus at %s not ready after 30 s (last error: %v)", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRealPrometheus runs the Prometheus server, which scrapes the stand-in proxies'
// /stats/prometheus (Envoy's text format; static target labels stand in for
// ScrapeConfig's Kubernetes relabelling, which needs pods), and checks that
// `weft stat --prometheus` gets the tables the in-process engine gives for the same
// traffic (TestPrometheusSourceTables), within the jitter of real scrape times.
func TestRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Prometheus server for 20 s")
	}
	bin := prometheusBinary(t)
	start := time.Now()
	var targets strings.Builder
	for _, tg := range promsourcetest.ShopTraffic() {
		srv := httptest.NewServer(tg.Handler(start))
		t.Cleanup(srv.Close)
		fmt.Fprintf(&targets, "      - targets: [%q]\n        labels:\n", strings.TrimPrefix(srv.URL, "http://"))
		for k, v := range tg.Labels() {
			fmt.Fprintf(&targets, "          %s: %q\n", k, v)
		}
	}
	url := startPrometheus(t, bin, "  - job_name: weft-proxies\n    metrics_path: /stats/prometheus\n    static_configs:\n"+targets.String())
	// 15 scrapes at 1 s fill a 10 s window with room to spare.
	time.Sleep(15 * time.Second)

	real, err := promsource.New(url, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	engine := promsourcetest.ShopSource(t)
	for _, q := range []telemetry.Query{
		{Resource: telemetry.ResourceDeployment, Namespace: "shop"},
		{Resource: telemetry.ResourcePod, Namespace: "shop"},
		{Resource: telemetry.ResourceNamespace},
		{Resource: telemetry.ResourceService, Namespace: "shop"},
		{Resource: telemetry.ResourceRoute, Namespace: "shop", Name: "api"},
		{Resource: telemetry.ResourceEdge, Namespace: "shop"},
	} {
		t.Run(q.Resource, func(t *testing.T) {
			q.Window = 10 * time.Second
			got, err := real.Query(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			q.Window = 0
			want, err := engine.Query(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := diffRowsWithin(got.Rows, want.Rows, 0.02); diff != "" {
				t.Error(diff)
			}
		})
	}
}

// TestRealPrometheusSeriesPerProxy measures series per proxy end to end: the Prometheus
// server scrapes targets serving exactly what telemetry/envoystats derives for a sidecar
// (BenchmarkSeriesPerProxy's count), and its own scrape_samples_scraped and
// scrape_series_added for each target must be that count: the figure the benchmark
// prints is the one Prometheus stores.
func TestRealPrometheusSeriesPerProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Prometheus server")
	}
	bin := prometheusBinary(t)
	cases := []struct {
		shape envoystatstest.Shape
		tr    *envoystats.Traffic
	}{
		{envoystatstest.Shape{Services: 10}, nil},
		{envoystatstest.Shape{Services: 100, Routes: 3, MTLS: true}, envoystatstest.InUse},
	}
	want := map[string]int{}
	var targets strings.Builder
	for _, c := range cases {
		series := c.shape.Series(t, c.tr)
		text := envoystatstest.Exposition(series)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprint(w, text)
		}))
		t.Cleanup(srv.Close)
		name := c.shape.String()
		if c.tr != nil {
			name += "/in-use"
		}
		want[name] = len(series)
		fmt.Fprintf(&targets, "      - targets: [%q]\n        labels: {shape: %q}\n", strings.TrimPrefix(srv.URL, "http://"), name)
	}
	url := startPrometheus(t, bin, "  - job_name: weft-measure\n    metrics_path: /stats/prometheus\n    static_configs:\n"+targets.String())
	for _, q := range []string{`scrape_samples_scraped{job="weft-measure"}`, `max_over_time(scrape_series_added{job="weft-measure"}[1m])`} {
		var got map[string]float64
		deadline := time.Now().Add(20 * time.Second)
		for len(got) < len(want) && time.Now().Before(deadline) {
			time.Sleep(time.Second)
			got = instantByLabel(t, url, q, "shape")
		}
		for shape, n := range want {
			t.Logf("%s: %s = %v (envoystats: %d)", shape, q, got[shape], n)
			if got[shape] != float64(n) {
				t.Errorf("%s: %s = %v, envoystats counts %d", shape, q, got[shape], n)
			}
		}
	}
}

// instantByLabel runs an instant query through Prometheus' HTTP API and returns each
// sample's value by the value of one label.
func instantByLabel(t *testing.T, url, query, label string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/query?query=" + neturl.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s: value %v: %v", query, r.Value[1], err)
		}
		out[r.Metric[label]] = v
	}
	return out
}
