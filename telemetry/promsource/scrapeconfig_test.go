package promsource_test

import (
	"maps"
	"testing"

	"github.com/prometheus/prometheus/config"
	// Registers kubernetes_sd_configs with the config loader.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/weftmesh/weft/telemetry/promsource"
)

// TestScrapeConfig loads ScrapeConfig with Prometheus' own config loader and runs its
// relabelling, as Prometheus' pod discovery would, over the targets of a meshed
// Deployment's pod, a StatefulSet's pod and an unmeshed container.
func TestScrapeConfig(t *testing.T) {
	cfg, err := config.Load("scrape_configs:\n"+promsource.ScrapeConfig, nil)
	if err != nil {
		t.Fatalf("ScrapeConfig does not load: %v", err)
	}
	scs, err := cfg.GetScrapeConfigs()
	if err != nil || len(scs) != 1 {
		t.Fatalf("scrape configs %v, %v: want one", scs, err)
	}
	sc := scs[0]
	if sc.MetricsPath != "/stats/prometheus" {
		t.Errorf("metrics_path %q", sc.MetricsPath)
	}
	pod := func(container, kind, controller string) map[string]string {
		return map[string]string{
			"__address__": "10.0.0.7:8080", "__meta_kubernetes_namespace": "shop",
			"__meta_kubernetes_pod_name": "web-7d9c5b8f6-x2x4p", "__meta_kubernetes_pod_container_name": container,
			"__meta_kubernetes_pod_controller_kind": kind, "__meta_kubernetes_pod_controller_name": controller,
		}
	}
	tests := []struct {
		name   string
		target map[string]string
		want   map[string]string // nil: dropped
	}{
		{"a Deployment's proxy", pod("weft-proxy", "ReplicaSet", "web-7d9c5b8f6"),
			map[string]string{"__address__": "10.0.0.7:4192", "namespace": "shop", "pod": "web-7d9c5b8f6-x2x4p", "deployment": "web"}},
		{"a StatefulSet's proxy: no deployment", pod("weft-proxy", "StatefulSet", "db"),
			map[string]string{"__address__": "10.0.0.7:4192", "namespace": "shop", "pod": "web-7d9c5b8f6-x2x4p"}},
		{"the application's container is not scraped", pod("app", "ReplicaSet", "web-7d9c5b8f6"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lb := labels.NewBuilder(labels.FromMap(tc.target))
			keep := relabel.ProcessBuilder(lb, sc.RelabelConfigs...)
			if !keep {
				if tc.want != nil {
					t.Fatal("dropped")
				}
				return
			}
			if tc.want == nil {
				t.Fatalf("kept: %v", lb.Labels())
			}
			got := map[string]string{}
			lb.Labels().Range(func(l labels.Label) {
				if _, meta := tc.target[l.Name]; !meta || l.Name == "__address__" {
					got[l.Name] = l.Value
				}
			})
			if !maps.Equal(got, tc.want) {
				t.Errorf("labels %v, want %v", got, tc.want)
			}
		})
	}
}
