package bootstrap

import (
	"regexp"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The stats configuration lives here and nowhere else: the metrics work reads tag names
// from StatTags and the families kept from StatsInclusion, and this is the only place that
// decides them. docs/capture.md lists them.
//
// Envoy's default tag rules assume cluster names without dots; Weft's outbound clusters are
// outbound|<port>|<service FQDN>, so the defaults would cut a name at the service's first
// dot and the rest would stay in the metric name, one metric per service. Weft therefore
// turns the defaults off and tags only what it names itself.

// Tag names Envoy attaches to the stats Weft keeps (Prometheus labels on /stats/prometheus).
const (
	TagCluster           = "weft_cluster"
	TagVirtualHost       = "weft_vhost"
	TagRoute             = "weft_route"
	TagHTTPPrefix        = "weft_http_prefix"
	TagTCPPrefix         = "weft_tcp_prefix"
	TagResponseCodeClass = "weft_response_code_class"
)

// StatTag is one tag rule: Envoy removes the regex's first capture group from the stat
// name and uses the second (or, without one, the first) as the tag's value.
type StatTag struct {
	Name  string
	Regex string
}

// StatTags are the tag rules for a cluster domain, in the order Envoy applies them.
func StatTags(clusterDomain string) []StatTag {
	fqdn := fqdnPattern(clusterDomain)
	return []StatTag{
		// cluster.outbound|80|web.shop.svc.cluster.local.upstream_rq_2xx,
		// cluster.inbound|8080.upstream_cx_active, cluster.passthrough.upstream_cx_total
		{TagCluster, `^cluster\.((outbound\|\d+\|` + fqdn + `|inbound\|\d+|passthrough)\.)`},
		// vhost.web.shop.svc.cluster.local:80.route.GET /items.upstream_rq_2xx: per-route
		// stats exist only for profile routes, which carry a stat_prefix.
		{TagVirtualHost, `^vhost\.((` + fqdn + `:\d+)\.)route\.`},
		{TagRoute, `^vhost\.` + fqdn + `:\d+\.route\.((.+?)\.)upstream_`},
		// http.inbound.downstream_rq_2xx, tcp.outbound.downstream_cx_total
		{TagHTTPPrefix, `^http\.((inbound|outbound)\.)`},
		{TagTCPPrefix, `^tcp\.((inbound|outbound)\.)`},
		{TagResponseCodeClass, `_rq(_([1-5]xx))$`},
	}
}

// Inclusion is the stats matcher's inclusion list: Envoy creates only the stats one of
// these matches, by prefix, by suffix or by a safe_regex matching the whole name.
type Inclusion struct {
	Prefixes, Suffixes, Regexes []string
}

// fqdnPattern matches a service FQDN of the cluster domain inside a stat name.
func fqdnPattern(clusterDomain string) string {
	return `.+?\.svc\.` + regexp.QuoteMeta(clusterDomain)
}

// StatsInclusion lists what Envoy keeps for a cluster domain; every other stat is never
// created. Prefixes keep the proxy's own health; the rest keep, for every cluster, route,
// HTTP and TCP prefix, the few series golden metrics need (success rate, request rate,
// latency, retries, connections), so that the count grows with services, not with
// services times Envoy's hundreds of stats per cluster. telemetry/envoystats measures
// what this keeps per proxy (docs/prometheus-and-dashboards.md).
func StatsInclusion(clusterDomain string) Inclusion {
	fqdn := fqdnPattern(clusterDomain)
	return Inclusion{
		Prefixes: []string{"server.", "cluster_manager.", "listener_manager.", "control_plane."},
		// Per cluster and route only what golden metrics read: every stat kept here is a
		// series per service (or route) in the mesh on every proxy, whether it is called
		// or not, since Envoy creates these with the cluster. Health counters such as
		// upstream_rq_timeout, upstream_cx_connect_fail or
		// outlier_detection.ejections_active are left out until something reads them.
		Suffixes: []string{
			".upstream_rq_retry",
			".downstream_rq_total", ".downstream_cx_active", ".downstream_cx_total",
			".downstream_cx_rx_bytes_total", ".downstream_cx_tx_bytes_total",
			// TLS handshakes per outbound cluster: the evidence `weft edges` shows as SECURED.
			".ssl.handshake",
			// Failed gRPC calls per cluster, from the grpc_stats filter on gRPC ports
			// (translate/feature_grpcstats.go; Envoy 1.40 ContextImpl::chargeStat,
			// source/common/grpc/context_impl.cc): a call answered 200 with a
			// grpc-status other than OK. Its .success, .total and .<status> siblings are
			// left out: every call is already counted in the status classes, so the
			// failures alone turn them into gRPC success at one series per gRPC cluster.
			".grpc.failure",
		},
		// A safe_regex must match the whole name (RE2::FullMatch). Response classes and
		// latency histograms are spelled out per kind of object rather than kept by suffix:
		// the router charges every response a second time as
		// cluster.<name>.external.upstream_rq_<class> and .external.upstream_rq_time
		// (source/common/http/codes.cc, writeCategory; Weft's requests are never internal),
		// and each listener repeats its connection managers' classes
		// (listener.<address>.http.<prefix>.downstream_rq_<class>). A suffix would keep
		// those copies, which no golden metric reads and which nearly double a service's
		// series (a histogram is 22 Prometheus series).
		Regexes: []string{
			`cluster\.(?:outbound\|\d+\|` + fqdn + `|inbound\|\d+)\.upstream_rq_(?:[1-5]xx|time)`,
			`vhost\.` + fqdn + `:\d+\.route\..+\.upstream_rq_(?:[1-5]xx|time)`,
			`http\.(?:inbound|outbound)\.downstream_rq_(?:[1-5]xx|time)`,
		},
	}
}

func statsConfig(clusterDomain string) *metricsv3.StatsConfig {
	sc := &metricsv3.StatsConfig{UseAllDefaultTags: wrapperspb.Bool(false)}
	for _, t := range StatTags(clusterDomain) {
		sc.StatsTags = append(sc.StatsTags, &metricsv3.TagSpecifier{
			TagName:  t.Name,
			TagValue: &metricsv3.TagSpecifier_Regex{Regex: t.Regex},
		})
	}
	var patterns []*matcherv3.StringMatcher
	inclusion := StatsInclusion(clusterDomain)
	for _, p := range inclusion.Prefixes {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}})
	}
	for _, s := range inclusion.Suffixes {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}})
	}
	for _, r := range inclusion.Regexes {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: r},
		}})
	}
	sc.StatsMatcher = &metricsv3.StatsMatcher{StatsMatcher: &metricsv3.StatsMatcher_InclusionList{
		InclusionList: &matcherv3.ListStringMatcher{Patterns: patterns},
	}}
	return sc
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// StatsFlushInterval is how often Envoy flushes its stats to the sinks (bootstrap
// stats_flush_interval; Envoy's default is 5s). Every flush of every proxy is one message
// the control plane decodes and stores, so 10s halves that work; a rate over the default
// one-minute window still rests on six flushes.
const StatsFlushInterval = 10 * time.Second

// statsSinks streams every proxy's kept stats to the control plane (Envoy's
// envoy.stat_sinks.metrics_service, envoy.service.metrics.v3.MetricsService.StreamMetrics,
// source/extensions/stat_sinks/metrics_service/grpc_metrics_service_impl.cc) over the same
// gRPC service as ADS: the same cluster, or the same TLS channel and token, so the control
// plane authenticates the stream as it does xDS.
//
//   - report_counters_as_deltas false (the default): counters arrive cumulative. A message
//     lost while a stream reconnects, or a proxy that moves to another replica, then costs
//     nothing (the next value carries the total), and a restarted proxy shows as a counter
//     going backwards, which telemetry.Increase turns into a new baseline. Deltas would lose
//     those requests silently. This is also how Prometheus sees the same counters, so both
//     paths compute rates the same way.
//   - emit_tags_as_labels: names arrive tag-extracted with StatTags as labels (the same
//     labels /stats/prometheus shows), so the control plane never re-parses cluster names.
//   - histogram_emit_mode HISTOGRAM: the summary's quantiles cannot be merged across proxies
//     or flushes; the buckets can. The sink fills them from intervalStatistics(): each
//     message holds the samples of one flush interval only.
func statsSinks(ads *corev3.GrpcService) []*metricsv3.StatsSink {
	return []*metricsv3.StatsSink{{
		Name: wellknown.MetricsService,
		ConfigType: &metricsv3.StatsSink_TypedConfig{TypedConfig: mustAny(&metricsv3.MetricsServiceConfig{
			GrpcService:            ads,
			TransportApiVersion:    corev3.ApiVersion_V3,
			ReportCountersAsDeltas: wrapperspb.Bool(false),
			EmitTagsAsLabels:       true,
			HistogramEmitMode:      metricsv3.HistogramEmitMode_HISTOGRAM,
		})},
	}}
}
