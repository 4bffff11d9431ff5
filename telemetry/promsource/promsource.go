// Package promsource answers telemetry queries with PromQL against a Prometheus
// that scrapes every proxy's /stats/prometheus (Envoy 1.40, admin endpoint
// "/stats/prometheus", source/server/admin/prometheus_stats.cc), for clusters too
// large for the control plane's embedded window.
//
// The series are those injector/bootstrap/stats.go keeps, named as Envoy's
// Prometheus formatter names a tag-extracted stat: "envoy_" + the name with the
// tags' text removed and dots as underscores, the tags as labels. So
// cluster.inbound|8080.upstream_rq_2xx becomes
// envoy_cluster_upstream_rq{weft_cluster="inbound|8080",weft_response_code_class="2xx"}
// and the histogram cluster.<c>.upstream_rq_time becomes
// envoy_cluster_upstream_rq_time_bucket{weft_cluster=...,le=...} in milliseconds
// (Envoy's stats docs, "cluster manager / general upstream stats": upstream_rq_<*xx>,
// upstream_rq_time; "HTTP connection manager statistics": downstream_cx_active).
//
// Which proxy a series came from is not in Envoy's text: the scrape adds it.
// ScrapeConfig is the job that does, and the labels it sets are the ones below.
package promsource

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/telemetry"
)

// Labels ScrapeConfig's relabelling puts on every series of a proxy.
const (
	LabelNamespace  = "namespace"
	LabelPod        = "pod"
	LabelDeployment = "deployment"
)

// ScrapeConfig is a Prometheus scrape job for every meshed pod's proxy. Weft's
// bootstrap keeps the admin API on 127.0.0.1 only (the admin API can change the
// proxy), so Prometheus reaches /stats/prometheus through the health listener's
// port, which is the one port kubelet already reaches; the deployment label is the
// ReplicaSet's name without its pod-template-hash.
var ScrapeConfig = `- job_name: weft-proxies
  metrics_path: /stats/prometheus
  kubernetes_sd_configs:
    - role: pod
  relabel_configs:
    - source_labels: [__meta_kubernetes_pod_container_name]
      regex: weft-proxy
      action: keep
    - source_labels: [__address__]
      regex: '([^:]+)(?::\d+)?'
      replacement: '$1:` + strconv.Itoa(int(mesh.ProxyHealthPort)) + `'
      target_label: __address__
    - source_labels: [__meta_kubernetes_namespace]
      target_label: namespace
    - source_labels: [__meta_kubernetes_pod_name]
      target_label: pod
    - source_labels: [__meta_kubernetes_pod_controller_kind, __meta_kubernetes_pod_controller_name]
      regex: 'ReplicaSet;(.+)-[a-z0-9]+'
      target_label: deployment
`

// Metric names on the Prometheus path (Envoy's formatter, see the package comment).
const (
	metricUpstreamRq       = "envoy_cluster_upstream_rq"
	metricUpstreamRqTime   = "envoy_cluster_upstream_rq_time_bucket"
	metricDownstreamRq     = "envoy_http_downstream_rq"
	metricDownstreamRqTime = "envoy_http_downstream_rq_time_bucket"
	metricDownstreamCx     = "envoy_http_downstream_cx_active"
	metricRouteRq          = "envoy_vhost_route_upstream_rq"
	metricRouteRqTime      = "envoy_vhost_route_upstream_rq_time_bucket"
	metricRouteRetry       = "envoy_vhost_route_upstream_rq_retry"
	metricClusterRetry     = "envoy_cluster_upstream_rq_retry"
	// metricGRPCFailure is cluster.<name>.grpc.failure, failed gRPC calls on gRPC
	// ports (Envoy 1.40 configuration/http/http_filters/grpc_stats_filter.rst); the
	// inbound side's are on the inbound|<port> clusters.
	metricGRPCFailure = "envoy_cluster_grpc_failure"
)

// inboundClusters selects the inbound|<port> clusters, whose gRPC failures are the
// pod's as a server.
var inboundClusters = fmt.Sprintf(`%s=~%q`, bootstrap.TagCluster, `inbound\|\d+`)

// InstantQuery evaluates one PromQL expression at one time and returns its vector.
type InstantQuery func(ctx context.Context, expr string, at time.Time) (model.Vector, error)

// Source is a telemetry.Source over Prometheus.
type Source struct {
	query InstantQuery
	now   func() time.Time
	// ClusterDomain is the Kubernetes cluster domain in the outbound cluster names.
	clusterDomain string
}

// New returns a Source that asks the Prometheus HTTP API at url.
func New(url, clusterDomain string) (*Source, error) {
	c, err := promapi.NewClient(promapi.Config{Address: url, Client: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", url, err)
	}
	api := promv1.NewAPI(c)
	q := func(ctx context.Context, expr string, at time.Time) (model.Vector, error) {
		// Warnings and infos concern partial data from remote storage or annotations
		// on the expression, not the numbers' meaning.
		v, _, _, err := api.Query(ctx, expr, at)
		if err != nil {
			return nil, describeAPIError(url, err)
		}
		vec, ok := v.(model.Vector)
		if !ok {
			return nil, fmt.Errorf("prometheus %s: query %q returned a %s, want a vector", url, expr, v.Type())
		}
		return vec, nil
	}
	return NewWithQuery(q, clusterDomain, time.Now), nil
}

// NewWithQuery returns a Source over any PromQL evaluator, such as Prometheus'
// own engine in a test.
func NewWithQuery(q InstantQuery, clusterDomain string, now func() time.Time) *Source {
	return &Source{query: q, now: now, clusterDomain: cmp.Or(clusterDomain, "cluster.local")}
}

// describeAPIError turns "connection refused" deep in an url.Error into a sentence a
// person can act on.
func describeAPIError(url string, err error) error {
	var apiErr *promv1.Error
	if errors.As(err, &apiErr) {
		return fmt.Errorf("prometheus at %s refused the query: %w", url, err)
	}
	return fmt.Errorf("cannot reach Prometheus at %s (is it running, and is the URL right?): %w", url, err)
}

// Query answers q with PromQL.
func (s *Source) Query(ctx context.Context, q telemetry.Query) (telemetry.Table, error) {
	if err := q.Validate(); err != nil {
		return telemetry.Table{}, err
	}
	if q.From != "" || q.To != "" {
		return telemetry.Table{}, fmt.Errorf("query.from/to: --from and --to are answered by the embedded path only; Weft's Envoy stats name the destination service, not the calling workload's peer")
	}
	switch q.Resource {
	case telemetry.ResourceNamespace, telemetry.ResourceDeployment, telemetry.ResourcePod:
		return s.workloads(ctx, q)
	case telemetry.ResourceService:
		return s.services(ctx, q)
	case telemetry.ResourceRoute:
		return s.routes(ctx, q)
	default:
		return s.edges(ctx, q)
	}
}

// groupLabels are the labels that name a row of each workload resource.
var groupLabels = map[string][]string{
	telemetry.ResourceNamespace:  {LabelNamespace},
	telemetry.ResourceDeployment: {LabelNamespace, LabelDeployment},
	telemetry.ResourcePod:        {LabelNamespace, LabelPod},
}

// rowKey names a row: namespace and name.
type rowKey struct{ ns, name string }

// workloads is stat ns|deploy|pod: inbound traffic as the serving proxies' inbound HTTP
// connection manager saw it (http.inbound.downstream_rq_<*xx>, downstream_rq_time,
// downstream_cx_active), as Linkerd's stat and the embedded path do.
func (s *Source) workloads(ctx context.Context, q telemetry.Query) (telemetry.Table, error) {
	group := groupLabels[q.Resource]
	nameLabel := group[len(group)-1]
	var scope []string
	if q.Resource != telemetry.ResourceNamespace && !q.AllNamespaces && q.Namespace != "" {
		scope = append(scope, matchEq(LabelNamespace, q.Namespace))
	}
	if q.Name != "" {
		scope = append(scope, matchEq(nameLabel, q.Name))
	}
	inbound := selector(append([]string{matchEq(bootstrap.TagHTTPPrefix, "inbound")}, scope...))
	by := strings.Join(group, ", ")
	w := promDuration(q.WindowOrDefault())
	g := golden{
		classes: fmt.Sprintf(`sum by (%s, %s) (rate(%s%s[%s]))`, by, bootstrap.TagResponseCodeClass, metricDownstreamRq, inbound, w),
		buckets: fmt.Sprintf(`sum by (%s, le) (rate(%s%s[%s]))`, by, metricDownstreamRqTime, inbound, w),
		tcp:     fmt.Sprintf(`sum by (%s) (%s%s)`, by, metricDownstreamCx, inbound),
		grpcFailures: fmt.Sprintf(`sum by (%s) (rate(%s%s[%s]))`, by, metricGRPCFailure,
			selector(append([]string{inboundClusters}, scope...)), w),
	}
	key := func(m model.Metric) rowKey {
		if q.Resource == telemetry.ResourceNamespace {
			return rowKey{string(m[LabelNamespace]), string(m[LabelNamespace])}
		}
		return rowKey{string(m[LabelNamespace]), string(m[model.LabelName(nameLabel)])}
	}
	rows, err := s.collect(ctx, g, key)
	if err != nil {
		return telemetry.Table{}, err
	}
	return telemetry.Table{Resource: q.Resource, Rows: rows}, nil
}

// edges is edges: which deployment calls which service, from the callers' outbound
// clusters. Envoy's stats name the destination service, not the pods behind it, and
// carry no peer identity, so Dst is a service and SECURED, CLIENT_ID and SERVER_ID
// stay unknown ("-") on this path; the embedded path has them from access logs.
func (s *Source) edges(ctx context.Context, q telemetry.Query) (telemetry.Table, error) {
	matchers := []string{s.outboundClusters(`[^.]+`, `[^.]+`)}
	if !q.AllNamespaces && q.Namespace != "" {
		matchers = append(matchers, matchEq(LabelNamespace, q.Namespace))
	}
	by := fmt.Sprintf("%s, %s, weft_service", LabelNamespace, LabelDeployment)
	w := promDuration(q.WindowOrDefault())
	g := golden{
		classes: fmt.Sprintf(`sum by (%s, %s) (%s)`, by, bootstrap.TagResponseCodeClass, withService(fmt.Sprintf(`rate(%s%s[%s])`, metricUpstreamRq, selector(matchers), w))),
		buckets: fmt.Sprintf(`sum by (%s, le) (%s)`, by, withService(fmt.Sprintf(`rate(%s%s[%s])`, metricUpstreamRqTime, selector(matchers), w))),
	}
	// The row key packs source and destination; rows are unpacked below.
	key := func(m model.Metric) rowKey {
		if m[LabelDeployment] == "" {
			return rowKey{}
		}
		return rowKey{string(m[LabelNamespace]), string(m[LabelDeployment]) + "\x00" + string(m["weft_service"])}
	}
	rows, err := s.collect(ctx, g, key)
	if err != nil {
		return telemetry.Table{}, err
	}
	for i, r := range rows {
		src, dst, _ := strings.Cut(r.Name, "\x00")
		name, ns, _ := strings.Cut(dst, ".")
		rows[i].Src, rows[i].Dst, rows[i].DstNamespace, rows[i].Name = src, name, ns, src+" > "+name
	}
	return telemetry.Table{Resource: q.Resource, Rows: rows}, nil
}

// services is stat svc: traffic to each service as its clients' proxies saw it
// (their outbound clusters), summed over the service's ports.
func (s *Source) services(ctx context.Context, q telemetry.Query) (telemetry.Table, error) {
	ns := `[^.]+`
	if !q.AllNamespaces && q.Namespace != "" {
		ns = regexp.QuoteMeta(q.Namespace)
	}
	name := `[^.]+`
	if q.Name != "" {
		name = regexp.QuoteMeta(q.Name)
	}
	sel := s.outboundClusters(name, ns)
	w := promDuration(q.WindowOrDefault())
	g := golden{
		classes: fmt.Sprintf(`sum by (weft_service, %s) (%s)`, bootstrap.TagResponseCodeClass,
			withService(fmt.Sprintf(`rate(%s{%s}[%s])`, metricUpstreamRq, sel, w))),
		buckets:      fmt.Sprintf(`sum by (weft_service, le) (%s)`, withService(fmt.Sprintf(`rate(%s{%s}[%s])`, metricUpstreamRqTime, sel, w))),
		grpcFailures: fmt.Sprintf(`sum by (weft_service) (%s)`, withService(fmt.Sprintf(`rate(%s{%s}[%s])`, metricGRPCFailure, sel, w))),
	}
	key := func(m model.Metric) rowKey {
		name, ns, _ := strings.Cut(string(m["weft_service"]), ".")
		return rowKey{ns, name}
	}
	rows, err := s.collect(ctx, g, key)
	if err != nil {
		return telemetry.Table{}, err
	}
	return telemetry.Table{Resource: q.Resource, Rows: rows}, nil
}

// routes is routes svc/NAME: the profile routes' stats (vhost.<fqdn>:<port>.route.<stat_prefix>.*,
// Envoy's "virtual cluster / route statistics") from every client proxy, summed over ports.
// Route stats count one final response per request (a response or reset Envoy retries is
// charged no upstream_rq_<class>), so Effective is what they say and Actual adds the
// retries (upstream_rq_retry), each one more attempt after a failed one
// (telemetry.EffectiveActual).
func (s *Source) routes(ctx context.Context, q telemetry.Query) (telemetry.Table, error) {
	ns := cmp.Or(q.Namespace, "default")
	vhost := fmt.Sprintf(`%s\.%s\.svc\.%s:\d+`, regexp.QuoteMeta(q.Name), regexp.QuoteMeta(ns), regexp.QuoteMeta(s.clusterDomain))
	sel := fmt.Sprintf(`%s=~%q`, bootstrap.TagVirtualHost, vhost)
	w := promDuration(q.WindowOrDefault())
	g := golden{
		classes: fmt.Sprintf(`sum by (%s, %s) (rate(%s{%s}[%s]))`, bootstrap.TagRoute, bootstrap.TagResponseCodeClass, metricRouteRq, sel, w),
		buckets: fmt.Sprintf(`sum by (%s, le) (rate(%s{%s}[%s]))`, bootstrap.TagRoute, metricRouteRqTime, sel, w),
		retries: fmt.Sprintf(`sum by (%s) (rate(%s{%s}[%s]))`, bootstrap.TagRoute, metricRouteRetry, sel, w),
	}
	key := func(m model.Metric) rowKey { return rowKey{ns, string(m[bootstrap.TagRoute])} }
	rows, err := s.collect(ctx, g, key)
	if err != nil {
		return telemetry.Table{}, err
	}
	// [DEFAULT] is the service's outbound clusters (every port) minus its routes: the
	// requests no profile route matched and their retries, as the embedded path computes it.
	cluster := s.outboundClusters(regexp.QuoteMeta(q.Name), regexp.QuoteMeta(ns))
	minus := func(by, clusterMetric, routeMetric string) string {
		c := fmt.Sprintf(`sum by (%s) (rate(%s{%s}[%s]))`, by, clusterMetric, cluster, w)
		r := fmt.Sprintf(`sum by (%s) (rate(%s{%s}[%s]))`, by, routeMetric, sel, w)
		return fmt.Sprintf(`clamp_min(%s - (%s or %s * 0), 0)`, c, r, c)
	}
	def := golden{
		classes: minus(bootstrap.TagResponseCodeClass, metricUpstreamRq, metricRouteRq),
		buckets: minus("le", metricUpstreamRqTime, metricRouteRqTime),
		retries: fmt.Sprintf(`clamp_min(sum(rate(%s{%s}[%s])) - (sum(rate(%s{%s}[%s])) or vector(0)), 0)`,
			metricClusterRetry, cluster, w, metricRouteRetry, sel, w),
		// Route stats carry no gRPC status: every failed call is the service's.
		grpcFailures: fmt.Sprintf(`sum(rate(%s{%s}[%s]))`, metricGRPCFailure, cluster, w),
	}
	defParts, err := s.gather(ctx, def, func(model.Metric) rowKey { return rowKey{ns, telemetry.DefaultRoute} })
	if err != nil {
		return telemetry.Table{}, err
	}
	withTraffic := 0
	for _, r := range rows {
		if r.EffectiveRPS > 0 {
			withTraffic++
		}
	}
	t := telemetry.Table{Resource: q.Resource}
	// def.grpcFailures is the whole service's: [DEFAULT]'s partial already holds it.
	var serviceGRPCFailures float64
	for _, p := range defParts {
		serviceGRPCFailures += p.grpcFailures
	}
	unattributed := telemetry.GRPCFailuresUnattributed(withTraffic, serviceGRPCFailures)
	rows = append(rows, rowsOf(defParts, def)...)
	for i := range rows {
		rows[i].Dst = q.Name
		if unattributed {
			rows[i].SuccessRate, rows[i].EffectiveSuccess, rows[i].ActualSuccess = nil, nil, nil
			t.Skipped = append(t.Skipped, fmt.Sprintf("route %q: %s", rows[i].Name, telemetry.GRPCPerServiceOnly))
		}
	}
	t.Rows = rows
	return t, nil
}

// golden holds the expressions for one table; empty ones are not asked. buckets is
// the per-row sum of bucket rates that histogram_quantile interpolates.
type golden struct {
	classes, buckets, tcp, retries, grpcFailures string
}

// partial accumulates one row's numbers across the expressions' vectors.
type partial struct {
	perClass map[string]float64
	quantile map[float64]time.Duration
	tcp      float64
	retries  float64
	// grpcFailures is the rate of failed gRPC calls (telemetry.ClassCounts.FailuresWithGRPC).
	grpcFailures float64
}

// quantiles are the latency percentiles a row shows.
var quantiles = []float64{0.5, 0.95, 0.99}

// collect asks g's expressions and returns a row per key.
func (s *Source) collect(ctx context.Context, g golden, key func(model.Metric) rowKey) ([]telemetry.Row, error) {
	parts, err := s.gather(ctx, g, key)
	if err != nil {
		return nil, err
	}
	return rowsOf(parts, g), nil
}

// gather asks g's expressions and sums their samples per key.
func (s *Source) gather(ctx context.Context, g golden, key func(model.Metric) rowKey) (map[rowKey]*partial, error) {
	at := s.now()
	parts := map[rowKey]*partial{}
	get := func(k rowKey) *partial {
		p := parts[k]
		if p == nil {
			p = &partial{perClass: map[string]float64{}, quantile: map[float64]time.Duration{}}
			parts[k] = p
		}
		return p
	}
	each := func(expr string, f func(*partial, *model.Sample)) error {
		if expr == "" {
			return nil
		}
		vec, err := s.query(ctx, expr, at)
		if err != nil {
			return err
		}
		for _, smp := range vec {
			if math.IsNaN(float64(smp.Value)) || math.IsInf(float64(smp.Value), 0) {
				continue
			}
			k := key(smp.Metric)
			if k.name == "" {
				continue // series without the scrape's labels: not from a Weft proxy job
			}
			f(get(k), smp)
		}
		return nil
	}
	steps := []struct {
		expr string
		f    func(*partial, *model.Sample)
	}{
		{g.classes, func(p *partial, smp *model.Sample) {
			p.perClass[string(smp.Metric[bootstrap.TagResponseCodeClass])] += float64(smp.Value)
		}},
		{g.tcp, func(p *partial, smp *model.Sample) { p.tcp += float64(smp.Value) }},
		{g.retries, func(p *partial, smp *model.Sample) { p.retries += float64(smp.Value) }},
		{g.grpcFailures, func(p *partial, smp *model.Sample) { p.grpcFailures += float64(smp.Value) }},
	}
	for _, phi := range quantiles {
		if g.buckets == "" {
			break
		}
		steps = append(steps, struct {
			expr string
			f    func(*partial, *model.Sample)
		}{fmt.Sprintf(`histogram_quantile(%g, %s)`, phi, g.buckets), func(p *partial, smp *model.Sample) {
			// Envoy's *_time histograms are in milliseconds.
			p.quantile[phi] = time.Duration(float64(smp.Value) * float64(time.Millisecond))
		}})
	}
	for _, st := range steps {
		if err := each(st.expr, st.f); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// rowsOf turns gathered partials into rows, in namespace and name order.
func rowsOf(parts map[rowKey]*partial, g golden) []telemetry.Row {
	rows := make([]telemetry.Row, 0, len(parts))
	for k, p := range parts {
		rows = append(rows, p.row(k, g))
	}
	slices.SortFunc(rows, func(a, b telemetry.Row) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return rows
}

func (p *partial) row(k rowKey, g golden) telemetry.Row {
	r := telemetry.Row{Namespace: k.ns, Name: k.name, TCPConnections: int(math.Round(p.tcp))}
	var classes telemetry.ClassCounts
	for class, v := range p.perClass {
		if i, ok := telemetry.ClassOf(class); ok {
			classes[i] += v
		}
	}
	total := classes.Total()
	failed, _ := classes.FailuresWithGRPC(nil, p.grpcFailures)
	r.RPS, r.SuccessRate = total, telemetry.SuccessRate(total, failed)
	if g.retries != "" {
		classFailed, _ := classes.Failures(nil)
		effT, effF, actT, actF := telemetry.EffectiveActual(telemetry.RouteCounts{Responses: total, Failures: classFailed, Retries: p.retries, GRPCFailures: p.grpcFailures})
		r.ActualRPS, r.ActualSuccess = actT, telemetry.SuccessRate(actT, actF)
		r.EffectiveRPS, r.EffectiveSuccess = effT, telemetry.SuccessRate(effT, effF)
		r.RPS, r.SuccessRate = effT, r.EffectiveSuccess
	}
	r.P50, r.P95, r.P99 = p.quantile[0.5], p.quantile[0.95], p.quantile[0.99]
	return r
}

// outboundClusters matches the outbound clusters (every port) of the services whose
// name and namespace match the regular expressions name and ns.
func (s *Source) outboundClusters(name, ns string) string {
	return fmt.Sprintf(`%s=~%q`, bootstrap.TagCluster, fmt.Sprintf(`outbound\|\d+\|%s\.%s\.svc\.%s`, name, ns, regexp.QuoteMeta(s.clusterDomain)))
}

// withService labels inner's series with weft_service, "<name>.<namespace>" of the
// outbound cluster they count.
func withService(inner string) string {
	return fmt.Sprintf(`label_replace(%s, "weft_service", "$1", %q, %q)`, inner, bootstrap.TagCluster, `outbound\|\d+\|([^.]+\.[^.]+)\..*`)
}

func matchEq(label, value string) string { return fmt.Sprintf(`%s=%q`, label, value) }

func selector(matchers []string) string { return "{" + strings.Join(matchers, ",") + "}" }

// promDuration writes d as a PromQL duration ("1m", "30s", "1500ms").
func promDuration(d time.Duration) string { return model.Duration(d).String() }
