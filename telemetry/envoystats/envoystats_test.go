package envoystats_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/telemetry/envoystats"
	"github.com/weftmesh/weft/telemetry/envoystats/envoystatstest"
)

// The series budget per proxy on the Prometheus path, as docs/prometheus-and-dashboards.md
// states it: per outbound service a proxy calls (mTLS on, two response classes seen), per
// profile route, and for the rest of the proxy.
const (
	budgetPerService = 26
	budgetPerRoute   = 25
	budgetFixed      = 300
)

func inclusion(patterns ...*matcherv3.StringMatcher) *metricsv3.StatsMatcher {
	return &metricsv3.StatsMatcher{StatsMatcher: &metricsv3.StatsMatcher_InclusionList{InclusionList: &matcherv3.ListStringMatcher{Patterns: patterns}}}
}

func safeRegex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func regexTag(name, re string) *metricsv3.TagSpecifier {
	return &metricsv3.TagSpecifier{TagName: name, TagValue: &metricsv3.TagSpecifier_Regex{Regex: re}}
}

// TestRules: the matcher and the tag rules behave as Envoy's, on hand-made stats_configs
// and on the one the bootstrap writes.
func TestRules(t *testing.T) {
	b, err := bootstrap.Envoy(bootstrap.Config{ControlPlaneAddress: "cp:8086"})
	if err != nil {
		t.Fatal(err)
	}
	noDefaults := wrapperspb.Bool(false)
	cases := []struct {
		name     string
		config   *metricsv3.StatsConfig
		stat     string
		keep     bool
		wantName string
		wantTags []envoystats.Tag
	}{
		{"safe_regex matches the whole name", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsMatcher: inclusion(safeRegex(`a\.b`))},
			"x.a.b", false, "x.a.b", nil},
		{"safe_regex full match", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsMatcher: inclusion(safeRegex(`.*\.b`))},
			"x.a.b", true, "x.a.b", nil},
		{"exclusion list", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsMatcher: &metricsv3.StatsMatcher{StatsMatcher: &metricsv3.StatsMatcher_ExclusionList{
			ExclusionList: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "x."}}}}}}},
			"x.a", false, "x.a", nil},
		{"reject all", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsMatcher: &metricsv3.StatsMatcher{StatsMatcher: &metricsv3.StatsMatcher_RejectAll{RejectAll: true}}},
			"server.live", false, "server.live", nil},
		{"first group removed, second is the value", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsTags: []*metricsv3.TagSpecifier{regexTag("t", `^a\.((x+)\.)`)}},
			"a.xx.b", true, "a.b", []envoystats.Tag{{Name: "t", Value: "xx"}}},
		{"one group is removed and is the value", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsTags: []*metricsv3.TagSpecifier{regexTag("t", `(_\d+)$`)}},
			"a_12", true, "a", []envoystats.Tag{{Name: "t", Value: "_12"}}},
		{"every rule runs on the original name", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsTags: []*metricsv3.TagSpecifier{
			regexTag("first", `^(a\.)`), regexTag("second", `^a\.(b\.)`)}},
			"a.b.c", true, "c", []envoystats.Tag{{Name: "first", Value: "a."}, {Name: "second", Value: "b."}}},
		{"fixed value", &metricsv3.StatsConfig{UseAllDefaultTags: noDefaults, StatsTags: []*metricsv3.TagSpecifier{{TagName: "mesh", TagValue: &metricsv3.TagSpecifier_FixedValue{FixedValue: "weft"}}}},
			"a.b", true, "a.b", []envoystats.Tag{{Name: "mesh", Value: "weft"}}},
		{"bootstrap: outbound cluster class", b.GetStatsConfig(), "cluster.outbound|80|web.shop.svc.cluster.local.upstream_rq_2xx", true,
			"cluster.upstream_rq", []envoystats.Tag{{Name: bootstrap.TagCluster, Value: "outbound|80|web.shop.svc.cluster.local"}, {Name: bootstrap.TagResponseCodeClass, Value: "2xx"}}},
		{"bootstrap: the router's external copy is not kept", b.GetStatsConfig(), "cluster.outbound|80|web.shop.svc.cluster.local.external.upstream_rq_2xx", false,
			"cluster.external.upstream_rq", []envoystats.Tag{{Name: bootstrap.TagCluster, Value: "outbound|80|web.shop.svc.cluster.local"}, {Name: bootstrap.TagResponseCodeClass, Value: "2xx"}}},
		{"bootstrap: route latency", b.GetStatsConfig(), "vhost.web.shop.svc.cluster.local:80.route.GET /a.b.upstream_rq_time", true,
			"vhost.route.upstream_rq_time", []envoystats.Tag{{Name: bootstrap.TagVirtualHost, Value: "web.shop.svc.cluster.local:80"}, {Name: bootstrap.TagRoute, Value: "GET /a.b"}}},
		{"bootstrap: a per-code counter is not kept", b.GetStatsConfig(), "cluster.inbound|8080.upstream_rq_503", false, "cluster.upstream_rq_503",
			[]envoystats.Tag{{Name: bootstrap.TagCluster, Value: "inbound|8080"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := envoystats.NewRules(tc.config)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Keeps(tc.stat); got != tc.keep {
				t.Errorf("Keeps(%q) = %v, want %v", tc.stat, got, tc.keep)
			}
			name, tags := r.Extract(tc.stat)
			if name != tc.wantName || !slices.Equal(tags, tc.wantTags) {
				t.Errorf("Extract(%q) = %q %v, want %q %v", tc.stat, name, tags, tc.wantName, tc.wantTags)
			}
		})
	}
}

// TestRulesRefuseWhatIsNotModelled: a count that rests on rules the stand-in does not
// apply would be wrong, so it refuses them.
func TestRulesRefuseWhatIsNotModelled(t *testing.T) {
	for name, sc := range map[string]*metricsv3.StatsConfig{
		"default tags (unset)": {},
		"default tags (true)":  {UseAllDefaultTags: wrapperspb.Bool(true)},
		"histogram buckets":    {UseAllDefaultTags: wrapperspb.Bool(false), HistogramBucketSettings: []*metricsv3.HistogramBucketSettings{{Buckets: []float64{1}}}},
		"a bad regex":          {UseAllDefaultTags: wrapperspb.Bool(false), StatsTags: []*metricsv3.TagSpecifier{regexTag("t", `(`)}},
		"a bad safe_regex":     {UseAllDefaultTags: wrapperspb.Bool(false), StatsMatcher: inclusion(safeRegex(`(`))},
	} {
		if _, err := envoystats.NewRules(sc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func hasStat(stats []envoystats.Stat, name string) bool {
	return slices.ContainsFunc(stats, func(s envoystats.Stat) bool { return s.Name == name })
}

// TestEnumerationFollowsConfig: what Envoy creates depends on the configuration and on
// traffic, as the families say.
func TestEnumerationFollowsConfig(t *testing.T) {
	base, _ := envoystatstest.Shape{Services: 4, Routes: 1, MTLS: true}.ProxyConfig(t)
	const c = "cluster.outbound|80|svc0001.ns1.svc.cluster.local."
	const route = "vhost.svc0001.ns1.svc.cluster.local:80.route.GET /api/items0/{id}."
	cases := []struct {
		stat          string
		atRest, inUse bool
	}{
		{c + "upstream_rq_total", true, true},
		{c + "ssl.handshake", true, true},
		{c + "outlier_detection.ejections_active", true, true},
		{c + "circuit_breakers.high.rq_open", true, true},
		{c + "upstream_rq_2xx", false, true},
		{c + "upstream_rq_503", false, true},
		{c + "upstream_rq_4xx", false, false},
		{c + "external.upstream_rq_time", false, true},
		{"cluster.passthrough.upstream_rq_time", false, false}, // TCP only: no router
		{"cluster.passthrough.ssl.handshake", false, false},
		{route + "upstream_rq_total", true, true},
		{route + "upstream_rq_time", false, true},
		{"http.inbound.downstream_rq_5xx", true, true},
		{"http.outbound.rds.outbound|80|svc0001.ns1.svc.cluster.local.update_success", true, true},
		{"listener.0.0.0.0_4143.ssl.handshake", true, true},
		{"listener.0.0.0.0_4140.ssl.handshake", false, false},
		{"listener.0.0.0.0_4143.worker_1.downstream_cx_total", true, true},
		{"listener.0.0.0.0_4143.worker_2.downstream_cx_total", false, false},
		{"tcp.inbound.downstream_cx_total", true, true},
		{"tls_inspector.tls_found", true, true},
		{"server.worker_1.watchdog_miss", true, true},
	}
	rest, err := envoystats.Enumerate(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	use, err := envoystats.Enumerate(base, envoystatstest.InUse)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		if got := hasStat(rest, tc.stat); got != tc.atRest {
			t.Errorf("at rest, %s exists = %v, want %v", tc.stat, got, tc.atRest)
		}
		if got := hasStat(use, tc.stat); got != tc.inUse {
			t.Errorf("in use, %s exists = %v, want %v", tc.stat, got, tc.inUse)
		}
	}

	bad := base
	bad.Listeners = append(slices.Clone(base.Listeners), &listenerv3.Listener{
		Name: "odd",
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "x",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &structpb.Struct{})}}}}},
	})
	if _, err := envoystats.Enumerate(bad, nil); err == nil || !strings.Contains(err.Error(), `listener "odd"`) {
		t.Errorf("a filter the stand-in does not know: error %v, want one naming the listener", err)
	}
	noTLS := base
	noTLS.Clusters = []*clusterv3.Cluster{{Name: "plain", TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer"}}}
	stats, err := envoystats.Enumerate(noTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hasStat(stats, "cluster.plain.ssl.handshake") || hasStat(stats, "cluster.plain.outlier_detection.ejections_active") {
		t.Error("a plaintext cluster without outlier detection has TLS or outlier stats")
	}
}

func mustAny(t *testing.T, m *structpb.Struct) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// marginal is how many series one more service adds to the client's proxy.
func marginal(t *testing.T, s envoystatstest.Shape, tr *envoystats.Traffic) int {
	t.Helper()
	next := s
	next.Services++
	return len(next.Series(t, tr)) - len(s.Series(t, tr))
}

// TestSeriesGrowWithServicesNotStats: one more service costs the same handful of series
// whatever the mesh's size, services add series but never metric names, and no service
// name is left in a metric name.
func TestSeriesGrowWithServicesNotStats(t *testing.T) {
	for _, tr := range []*envoystats.Traffic{nil, envoystatstest.InUse} {
		// Every fourth service serves gRPC (envoystatstest.Shape), so the mesh grows by
		// whole cycles of four.
		for _, s := range []envoystatstest.Shape{{Services: 12}, {Services: 12, Routes: 2, MTLS: true}} {
			t.Run(s.String(), func(t *testing.T) {
				cycle := s
				cycle.Services += 4
				m := len(cycle.Series(t, tr)) - len(s.Series(t, tr))
				small, big := s.Series(t, tr), envoystatstest.Shape{Services: 44, Routes: s.Routes, MTLS: s.MTLS}.Series(t, tr)
				if got, want := len(big)-len(small), 8*m; got != want {
					t.Errorf("32 more services add %d series, want 8 cycles x %d = %d (linear)", got, m, want)
				}
				names := func(ss []envoystats.Series) []string {
					set := map[string]bool{}
					for _, x := range ss {
						set[x.Name] = true
					}
					return slices.Sorted(maps.Keys(set))
				}
				if a, b := names(small), names(big); !slices.Equal(a, b) {
					t.Errorf("metric names differ between 10 and 40 services:\n%v\n%v", a, b)
				}
				for _, x := range big {
					for i := range 44 {
						if strings.Contains(x.Name, envoystatstest.ServiceName(i)) {
							t.Fatalf("%s: service %s left in the metric name (stat %s)", x.Name, envoystatstest.ServiceName(i), x.Stat)
						}
					}
					if strings.Contains(x.Name, "svc_cluster_local") {
						t.Fatalf("%s: a service FQDN left in the metric name (stat %s)", x.Name, x.Stat)
					}
				}
			})
		}
	}
}

// perObject are the tag-extracted stat names Weft means to keep per service and per
// profile route: what golden metrics read (telemetry's classify, promsource's queries,
// the Grafana dashboards).
var perObject = map[string]string{
	"cluster.upstream_rq":           "success, RPS, --to, edges, routes' [DEFAULT]",
	"cluster.upstream_rq_time":      "latency",
	"cluster.upstream_rq_retry":     "effective vs actual",
	"cluster.ssl.handshake":         "edges: SECURED",
	"vhost.route.upstream_rq":       "routes",
	"vhost.route.upstream_rq_time":  "routes: latency",
	"vhost.route.upstream_rq_retry": "routes: effective vs actual",
	"cluster.grpc.failure":          "gRPC success (grpc_stats filter)",
}

// TestOnlyWhatGoldenMetricsNeedGrowsWithServices: every series a service or a route adds
// is of a stat Weft means to keep; a copy (the router's external.*, a listener's repeat of
// its connection managers) would fail here.
func TestOnlyWhatGoldenMetricsNeedGrowsWithServices(t *testing.T) {
	s := envoystatstest.Shape{Services: 10, Routes: 2, MTLS: true}
	before := map[string]bool{}
	for _, x := range s.Series(t, envoystatstest.InUse) {
		before[x.Name+"{"+x.Labels] = true
	}
	s.Services += 4 // one of them gRPC
	for _, x := range s.Series(t, envoystatstest.InUse) {
		if before[x.Name+"{"+x.Labels] {
			continue
		}
		if _, ok := perObject[x.Family]; !ok {
			t.Errorf("a service adds %s{%s} (stat %s), which no golden metric reads", x.Name, x.Labels, x.Stat)
		}
	}
}

// TestSeriesWithinBudget: the measured cost of a service, a route and the rest of the
// proxy is within what the docs state.
func TestSeriesWithinBudget(t *testing.T) {
	s := envoystatstest.Shape{Services: 10, Routes: 1, MTLS: true}
	withRoutes := marginal(t, s, envoystatstest.InUse)
	s.Routes = 0
	perService := marginal(t, s, envoystatstest.InUse)
	perRoute := withRoutes - perService
	fixed := len(envoystatstest.Shape{Services: 1, MTLS: true}.Series(t, envoystatstest.InUse)) - perService
	t.Logf("per service %d, per route %d, fixed %d", perService, perRoute, fixed)
	if perService > budgetPerService {
		t.Errorf("a service costs %d series, the budget is %d", perService, budgetPerService)
	}
	if perRoute > budgetPerRoute {
		t.Errorf("a profile route costs %d series, the budget is %d", perRoute, budgetPerRoute)
	}
	if fixed > budgetFixed {
		t.Errorf("the rest of the proxy costs %d series, the budget is %d", fixed, budgetFixed)
	}
}
