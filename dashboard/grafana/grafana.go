// Package grafana generates Weft's Grafana dashboards (deploy/dashboards/*.json) with
// grafana-foundation-sdk: the mesh, a namespace, a deployment and a service's routes
// over the Envoy series a Prometheus scrapes from every proxy (the scrape job is
// promsource.ScrapeConfig, the series are those injector/bootstrap/stats.go keeps),
// and the control plane's own weft_ metrics. The queries are those promsource runs,
// so Grafana, `weft stat --prometheus` and `weft dashboard` show the same numbers.
package grafana

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Files are the dashboards by file name under deploy/dashboards.
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, b := range map[string]*dashboard.DashboardBuilder{
		"weft-mesh.json":          mesh(),
		"weft-namespace.json":     namespace(),
		"weft-deployment.json":    deployment(),
		"weft-route.json":         route(),
		"weft-control-plane.json": controlPlane(),
	} {
		d, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("building %s: %w", name, err)
		}
		j, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
		out[name] = append(j, '\n')
	}
	return out, nil
}

var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// inbound selects a proxy's inbound HTTP connection manager: the traffic a workload serves.
const inbound = `weft_http_prefix="inbound"`

// inboundClusters selects a proxy's inbound|<port> clusters, where the grpc_stats filter
// on gRPC ports counts the calls a workload serves that failed (grpc.failure).
const inboundClusters = `weft_cluster=~"inbound\\|.+"`

func board(uid, title string, vars ...cog.Builder[dashboard.VariableModel]) *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Tags([]string{"weft"}).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Readonly().
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus"))
	for _, v := range vars {
		b.WithVariable(v)
	}
	return b
}

// labelValues is a variable listing the values of label on metric, filtered by selector.
func labelValues(name, label, metric, selector string) *dashboard.QueryVariableBuilder {
	q := fmt.Sprintf("label_values(%s{%s}, %s)", metric, selector, label)
	return dashboard.NewQueryVariableBuilder(name).Label(label).
		Datasource(datasource).
		Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).
		Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// target is one PromQL query and how its series are named in the legend.
type target struct{ expr, legend string }

func panel(title, unit string, targets ...target) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Unit(unit).Datasource(datasource).Span(12).Height(8).Min(0)
	for _, t := range targets {
		p.WithTarget(prometheus.NewDataqueryBuilder().Expr(t.expr).LegendFormat(t.legend))
	}
	return p
}

// golden are the panels of success rate, request rate, latency and connections for the
// inbound side of the proxies scope selects, grouped by a label: the same expressions
// promsource runs. A response fails when it is 5xx or ends a gRPC call whose grpc-status
// is not OK (telemetry.ClassCounts.FailuresWithGRPC).
func golden(scope, by, legend string) []*timeseries.PanelBuilder {
	sel, grpcSel := inbound+scope, inboundClusters+scope
	total := fmt.Sprintf(`sum by (%s) (rate(envoy_http_downstream_rq{%s}[$__rate_interval]))`, by, sel)
	failed5xx := fmt.Sprintf(`sum by (%s) (rate(envoy_http_downstream_rq{%s,weft_response_code_class="5xx"}[$__rate_interval]))`, by, sel)
	failedGRPC := fmt.Sprintf(`sum by (%s) (rate(envoy_cluster_grpc_failure{%s}[$__rate_interval]))`, by, grpcSel)
	success := fmt.Sprintf(`clamp_min(1 - ((%[1]s or %[3]s * 0) + (%[2]s or %[3]s * 0)) / %[3]s, 0)`, failed5xx, failedGRPC, total)
	rps := fmt.Sprintf(`sum by (%s) (rate(envoy_http_downstream_rq{%s}[$__rate_interval]))`, by, sel)
	q := func(phi string) string {
		return fmt.Sprintf(`histogram_quantile(%s, sum by (%s, le) (rate(envoy_http_downstream_rq_time_bucket{%s}[$__rate_interval])))`, phi, by, sel)
	}
	return []*timeseries.PanelBuilder{
		panel("Success rate", "percentunit", target{success, legend}).Max(1),
		panel("Requests per second", "reqps", target{rps, legend}),
		panel("Latency p50 / p95 / p99", "ms",
			target{q("0.5"), legend + " p50"}, target{q("0.95"), legend + " p95"}, target{q("0.99"), legend + " p99"}),
	}
}

func mesh() *dashboard.DashboardBuilder {
	b := board("weft-mesh", "Weft / Mesh")
	for _, p := range golden("", "namespace", "{{namespace}}") {
		b.WithPanel(p)
	}
	return b.WithPanel(panel("Proxies scraped", "short", target{`count by (namespace) (up{job="weft-proxies"} == 1)`, "{{namespace}}"}))
}

func namespace() *dashboard.DashboardBuilder {
	b := board("weft-namespace", "Weft / Namespace",
		labelValues("namespace", "namespace", "envoy_http_downstream_rq", inbound))
	for _, p := range golden(`,namespace="$namespace"`, "deployment", "{{deployment}}") {
		b.WithPanel(p)
	}
	return b.WithPanel(panel("Open inbound connections", "short",
		target{`sum by (deployment) (envoy_http_downstream_cx_active{` + inbound + `,namespace="$namespace"})`, "{{deployment}}"}))
}

func deployment() *dashboard.DashboardBuilder {
	b := board("weft-deployment", "Weft / Deployment",
		labelValues("namespace", "namespace", "envoy_http_downstream_rq", inbound),
		labelValues("deployment", "deployment", "envoy_http_downstream_rq", inbound+`,namespace="$namespace"`))
	scope := `,namespace="$namespace",deployment="$deployment"`
	sel := inbound + scope
	for _, p := range golden(scope, "pod", "{{pod}}") {
		b.WithPanel(p)
	}
	b.WithPanel(panel("Responses by class", "reqps",
		target{fmt.Sprintf(`sum by (weft_response_code_class) (rate(envoy_http_downstream_rq{%s}[$__rate_interval]))`, sel), "{{weft_response_code_class}}"}))
	b.WithPanel(panel("Outbound requests per second by service", "reqps",
		target{`sum by (weft_cluster) (rate(envoy_cluster_upstream_rq{weft_cluster=~"outbound\\|.+",namespace="$namespace",deployment="$deployment"}[$__rate_interval]))`, "{{weft_cluster}}"}))
	return b.WithPanel(panel("Open inbound connections", "short",
		target{`sum by (pod) (envoy_http_downstream_cx_active{` + sel + `})`, "{{pod}}"}))
}

func route() *dashboard.DashboardBuilder {
	b := board("weft-route", "Weft / Routes",
		labelValues("vhost", "weft_vhost", "envoy_vhost_route_upstream_rq", ""))
	sel := `weft_vhost="$vhost"`
	// Envoy 1.40's router charges a route's upstream_rq_<N>xx for the final response of
	// each request only (a retried response or reset returns before chargeUpstreamCode,
	// source/common/router/router.cc), so they are the requests as the client saw them;
	// each upstream_rq_retry is one more attempt, after a failed one
	// (telemetry.EffectiveActual).
	effective := fmt.Sprintf(`sum by (weft_route) (rate(envoy_vhost_route_upstream_rq{%s}[$__rate_interval]))`, sel)
	retries := fmt.Sprintf(`sum by (weft_route) (rate(envoy_vhost_route_upstream_rq_retry{%s}[$__rate_interval]))`, sel)
	failed := fmt.Sprintf(`sum by (weft_route) (rate(envoy_vhost_route_upstream_rq{%s,weft_response_code_class="5xx"}[$__rate_interval]))`, sel)
	orZero := func(expr string) string { return fmt.Sprintf(`(%s or %s * 0)`, expr, effective) }
	actual := fmt.Sprintf(`(%s + %s)`, effective, orZero(retries))
	// Route stats see HTTP statuses only and grpc.failure is charged to the service's
	// clusters, so once the vhost's service had failed gRPC calls no route's success is
	// known (telemetry.GRPCFailuresUnattributed): the success panels show none, as
	// `weft routes --prometheus` shows "-".
	unknown := fmt.Sprintf(`(sum by (weft_svc) (label_replace(rate(envoy_cluster_grpc_failure{weft_cluster=~"outbound\\|.+"}[$__rate_interval]), "weft_svc", "$1", "weft_cluster", "outbound\\|\\d+\\|(.+)")) > 0`+
		` and on (weft_svc) group by (weft_svc) (label_replace(envoy_vhost_route_upstream_rq{%s}, "weft_svc", "$1", "weft_vhost", "(.+):\\d+")))`, sel)
	known := func(expr string) string { return fmt.Sprintf(`(%s) unless on () %s`, expr, unknown) }
	return b.
		WithPanel(panel("Requests per second: effective (as the client saw them) and actual (every attempt)", "reqps",
			target{effective, "{{weft_route}} effective"},
			target{actual, "{{weft_route}} actual"})).
		WithPanel(panel("Success rate: effective and actual", "percentunit",
			target{known(fmt.Sprintf(`1 - %s / %s`, orZero(failed), effective)), "{{weft_route}} effective"},
			target{known(fmt.Sprintf(`1 - (%s + %s) / %s`, orZero(failed), orZero(retries), actual)), "{{weft_route}} actual"}).Max(1)).
		WithPanel(panel("Retries per second", "reqps", target{retries, "{{weft_route}}"})).
		WithPanel(panel("Latency p95", "ms",
			target{fmt.Sprintf(`histogram_quantile(0.95, sum by (weft_route, le) (rate(envoy_vhost_route_upstream_rq_time_bucket{%s}[$__rate_interval])))`, sel), "{{weft_route}}"}))
}

func controlPlane() *dashboard.DashboardBuilder {
	return board("weft-control-plane", "Weft / Control plane").
		WithPanel(panel("Connected proxies", "short", target{`sum(weft_xds_connected_proxies)`, "proxies"})).
		WithPanel(panel("xDS pushes per second by type", "ops", target{`sum by (type) (rate(weft_xds_pushes_total[$__rate_interval]))`, "{{type}}"})).
		WithPanel(panel("NACKs per second by type", "ops", target{`sum by (type) (rate(weft_xds_nacks_total[$__rate_interval]))`, "{{type}}"})).
		WithPanel(panel("Cache update p99", "s", target{`histogram_quantile(0.99, sum by (le) (rate(weft_xds_cache_update_seconds_bucket[$__rate_interval])))`, "p99"})).
		WithPanel(panel("Controller flush p99", "s", target{`histogram_quantile(0.99, sum by (le) (rate(weft_controller_flush_seconds_bucket[$__rate_interval])))`, "p99"})).
		WithPanel(panel("Translate p99", "s", target{`histogram_quantile(0.99, sum by (le) (rate(weft_controller_translate_seconds_bucket[$__rate_interval])))`, "p99"})).
		WithPanel(panel("Object events per second", "ops", target{`sum by (kind) (rate(weft_controller_object_events_total[$__rate_interval]))`, "{{kind}}"})).
		WithPanel(panel("Configuration errors", "short", target{`sum(weft_config_errors)`, "errors"}))
}
