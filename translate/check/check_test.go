package check

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
)

// node is one node's resources, built fresh by every test case so that cases never share
// (and mutate) a message.
type node struct {
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment
	secrets   []*tlsv3.Secret
}

// res returns the push, with every type present (an empty list still says "this push
// carries no clusters").
func (n node) res() map[string][]types.Resource {
	return (&translate.Resources{
		Listeners: n.listeners,
		Routes:    n.routes,
		Clusters:  n.clusters,
		Endpoints: n.endpoints,
		Secrets:   n.secrets,
	}).ByType()
}

// baseNode is a minimal valid Envoy node: a listener whose HCM fetches "rc" over RDS, "rc"
// routing everything to the EDS cluster "c", and c's endpoints.
func baseNode() node {
	return node{
		listeners: []*listenerv3.Listener{listener("in", 80, httpChain("http", hcmRDS("rc")))},
		routes:    []*routev3.RouteConfiguration{routeConfig("rc", vhost("vh", []string{"*"}, routeTo("c")))},
		clusters:  []*clusterv3.Cluster{edsCluster("c")},
		endpoints: []*endpointv3.ClusterLoadAssignment{cla("c", lbEndpoint("10.0.0.1", 80))},
	}
}

// grpcNode is a minimal valid proxyless client node for the target "svc".
func grpcNode() node {
	return node{
		listeners: []*listenerv3.Listener{apiListener("svc", hcmRDS("rc"))},
		routes:    []*routev3.RouteConfiguration{routeConfig("rc", vhost("vh", []string{"svc"}, routeTo("c")))},
		clusters:  []*clusterv3.Cluster{edsCluster("c")},
		endpoints: []*endpointv3.ClusterLoadAssignment{cla("c", lbEndpoint("10.0.0.1", 80))},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func httpFilter(name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(m)}}
}

func routerFilter() *hcmv3.HttpFilter {
	return httpFilter("envoy.filters.http.router", &routerv3.Router{})
}

func hcmRDS(rc string, filters ...*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	if len(filters) == 0 {
		filters = []*hcmv3.HttpFilter{routerFilter()}
	}
	return &hcmv3.HttpConnectionManager{
		StatPrefix: "http",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads(), RouteConfigName: rc,
		}},
		HttpFilters: filters,
	}
}

func hcmInline(rc *routev3.RouteConfiguration, filters ...*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	h := hcmRDS("", filters...)
	h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	return h
}

func netFilter(name string, m proto.Message) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

func httpChain(name string, h *hcmv3.HttpConnectionManager) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{
		Name:    name,
		Filters: []*listenerv3.Filter{netFilter("envoy.filters.network.http_connection_manager", h)},
	}
}

func listener(name string, port uint32, chains ...*listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: socketAddress("0.0.0.0", port), FilterChains: chains}
}

func apiListener(name string, h *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(h)}}
}

func routeConfig(name string, vhs ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
}

func vhost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

func routeTo(cluster string) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	}
}

func weighted(clusters ...*routev3.WeightedCluster_ClusterWeight) *routev3.Route {
	r := routeTo("")
	r.GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: clusters}}
	return r
}

func weight(name string, w uint32) *routev3.WeightedCluster_ClusterWeight {
	return &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(w)}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
	}
}

func staticCluster(name string, t clusterv3.Cluster_DiscoveryType, eps ...*endpointv3.LbEndpoint) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: t},
		LoadAssignment:       cla(name, eps...),
	}
}

func lbEndpoint(ip string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: socketAddress(ip, port),
	}}}
}

func cla(name string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{Zone: "z"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints:         eps,
		}},
	}
}

func transportSocket(m proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(m)},
	}
}

// row is one rule: the smallest resources that break it and, when it has one, the closest
// resources that do not.
type row struct {
	name    string
	peer    proxy.Kind
	bad     func() map[string][]types.Resource
	good    func() map[string][]types.Resource
	typeURL string
	resName string
	path    string
	msg     string // a substring of Problem.Msg
	warning bool
}

func runRows(t *testing.T, rows []row) {
	t.Helper()
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			probs := Problems(r.peer, r.bad())
			checkMemoEquivalence(t, r.peer, r.bad)
			var got *Problem
			for _, p := range probs {
				if p.TypeURL == r.typeURL && p.Name == r.resName && p.Path == r.path &&
					strings.Contains(p.Msg, r.msg) && p.Warning == r.warning {
					got = p
					break
				}
			}
			if got == nil {
				t.Fatalf("want %s %s at %q: %q (warning=%v); got:\n%s",
					shortType(r.typeURL), r.resName, r.path, r.msg, r.warning, dump(probs))
			}
			err := Resources(r.peer, r.bad())
			var p *Problem
			if r.warning {
				if err != nil && strings.Contains(err.Error(), r.msg) {
					t.Errorf("a warning leaked into Resources(): %v", err)
				}
			} else if err == nil || !errors.As(err, &p) {
				t.Errorf("Resources() = %v, want an error joining *Problem values", err)
			}
			if r.good == nil {
				return
			}
			good := r.good()
			if err := Resources(r.peer, good); err != nil {
				t.Errorf("good case: unexpected errors:\n%v", err)
			}
			for _, p := range Problems(r.peer, good) {
				if strings.Contains(p.Msg, r.msg) {
					t.Errorf("good case still reports: %v", p)
				}
			}
		})
	}
}

func dump(probs []*Problem) string {
	if len(probs) == 0 {
		return "  (no problems)"
	}
	var b strings.Builder
	for _, p := range probs {
		fmt.Fprintf(&b, "  warning=%v %v\n", p.Warning, p)
	}
	return b.String()
}

func TestBaselinesAreClean(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer proxy.Kind
		n    node
	}{
		{"envoy", proxy.Envoy, baseNode()},
		{"grpc", proxy.GRPC, grpcNode()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if probs := Problems(tc.peer, tc.n.res()); len(probs) != 0 {
				t.Fatalf("baseline has problems:\n%s", dump(probs))
			}
		})
	}
}

func TestProblemError(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{TypeURL: resource.RouteType, Name: "rc", Path: "virtual_hosts[1].domains[0]", Msg: "boom"},
			"RouteConfiguration rc: virtual_hosts[1].domains[0]: boom"},
		{Problem{TypeURL: resource.ClusterType, Name: "c", Msg: "duplicate cluster c found"},
			"Cluster c: duplicate cluster c found"},
	} {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestResourcesLeavesOutWarnings(t *testing.T) {
	n := baseNode()
	n.endpoints = append(n.endpoints, cla("unused", lbEndpoint("10.0.0.2", 80)))
	probs := Problems(proxy.Envoy, n.res())
	if len(probs) != 1 || !probs[0].Warning {
		t.Fatalf("want exactly one warning, got:\n%s", dump(probs))
	}
	if err := Resources(proxy.Envoy, n.res()); err != nil {
		t.Fatalf("Resources() = %v, want nil", err)
	}
}

func TestResourcesJoinsEveryError(t *testing.T) {
	n := baseNode()
	n.clusters = append(n.clusters, edsCluster("c"), edsCluster("c"))
	err := Resources(proxy.Envoy, n.res())
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Resources() = %T, want a joined error", err)
	}
	if got := len(joined.Unwrap()); got != 2 {
		t.Fatalf("got %d errors, want 2 (one per duplicate):\n%v", got, err)
	}
	for _, e := range joined.Unwrap() {
		if _, ok := e.(*Problem); !ok {
			t.Errorf("joined error %T is not a *Problem", e)
		}
	}
}

// TestDeterministicOrder checks that maps (typed_per_filter_config, protocol options) and
// input order do not change what comes out.
func TestDeterministicOrder(t *testing.T) {
	build := func(reverse bool) map[string][]types.Resource {
		n := baseNode()
		vh := n.routes[0].GetVirtualHosts()[0]
		vh.TypedPerFilterConfig = map[string]*anypb.Any{}
		for _, name := range []string{"f1", "f2", "f3", "f4", "f5", "f6"} {
			vh.TypedPerFilterConfig[name] = mustAny(&routerv3.Router{})
		}
		n.clusters = append(n.clusters, edsCluster("z"), edsCluster("z"), edsCluster("a"), edsCluster("a"))
		if reverse {
			for i, j := 0, len(n.clusters)-1; i < j; i, j = i+1, j-1 {
				n.clusters[i], n.clusters[j] = n.clusters[j], n.clusters[i]
			}
		}
		return n.res()
	}
	first := fmt.Sprint(Problems(proxy.Envoy, build(false)))
	for i := range 20 {
		if got := fmt.Sprint(Problems(proxy.Envoy, build(i%2 == 1))); got != first {
			t.Fatalf("run %d differs:\n%s\nvs\n%s", i, got, first)
		}
	}
}

func TestWrongTypeUnderTypeURLAndNil(t *testing.T) {
	res := baseNode().res()
	res[resource.ClusterType] = append(res[resource.ClusterType], routeConfig("oops"), (*clusterv3.Cluster)(nil))
	probs := Problems(proxy.Envoy, res)
	var wrong, nilRes bool
	for _, p := range probs {
		wrong = wrong || strings.Contains(p.Msg, "a envoy.config.route.v3.RouteConfiguration listed under type URL")
		nilRes = nilRes || p.Msg == "nil resource"
	}
	if !wrong || !nilRes {
		t.Fatalf("want a wrong-type and a nil-resource problem, got:\n%s", dump(probs))
	}
}

// TestConcurrentChecks: the xDS server checks several nodes at once, sharing resources
// (and the package's per-type walk plans) between them.
func TestConcurrentChecks(t *testing.T) {
	res := largeNode(20).res()
	want := fmt.Sprint(Problems(proxy.GRPC, res))
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() { got[i] = fmt.Sprint(Problems(proxy.GRPC, res)) })
	}
	wg.Wait()
	for i, g := range got {
		if g != want {
			t.Fatalf("goroutine %d got a different result", i)
		}
	}
}
