package check

import (
	"testing"

	xdsmatcherv3 "github.com/cncf/xds/go/xds/type/matcher/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func tcpProxy(cluster string) *listenerv3.Filter {
	return netFilter("envoy.filters.network.tcp_proxy", &tcpproxyv3.TcpProxy{
		StatPrefix: "tcp", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	})
}

// matched is a TCP proxy chain with this match.
func matched(name string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: []*listenerv3.Filter{tcpProxy("c")}}
}

func cidr(prefix string, bits uint32) *corev3.CidrRange {
	return &corev3.CidrRange{AddressPrefix: prefix, PrefixLen: wrapperspb.UInt32(bits)}
}

func withInspectors(l *listenerv3.Listener) *listenerv3.Listener {
	l.ListenerFilters = []*listenerv3.ListenerFilter{
		{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})}},
		{Name: "envoy.filters.listener.http_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&httpinspectorv3.HttpInspector{})}},
	}
	return l
}

// withChains returns a push with one more listener "out" on port 15001 holding these chains
// behind both inspectors.
func withChains(chains ...*listenerv3.FilterChain) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		n := baseNode()
		n.listeners = append(n.listeners, withInspectors(listener("out", 15001, chains...)))
		return n.res()
	}
}

func withListeners(ls ...*listenerv3.Listener) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		n := baseNode()
		n.listeners = ls
		return n.res()
	}
}

func TestListenerRules(t *testing.T) {
	sni := func(names ...string) *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{ServerNames: names, TransportProtocol: "tls"}
	}
	dst := func(ranges ...*corev3.CidrRange) *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{PrefixRanges: ranges, DestinationPort: wrapperspb.UInt32(80)}
	}
	runRows(t, []row{
		{
			name:    "identical filter chain matches",
			bad:     withChains(matched("a", sni("a.example.com")), matched("b", sni("a.example.com"))),
			good:    withChains(matched("a", sni("a.example.com")), matched("b", sni("b.example.com"))),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[1].filter_chain_match",
			msg:  "error adding listener '0.0.0.0:15001': filter chain 'b' has the same matching rules defined as 'a'",
		},
		{
			name:    "chains without any match are identical",
			bad:     withChains(matched("a", nil), matched("b", &listenerv3.FilterChainMatch{})),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[1].filter_chain_match",
			msg:  "filter chain 'b' has the same matching rules defined as 'a'",
		},
		{
			name:    "chains overlapping after expansion",
			bad:     withChains(matched("a", sni("a.example.com", "b.example.com")), matched("b", sni("B.example.com", "c.example.com"))),
			good:    withChains(matched("a", sni("a.example.com", "b.example.com")), matched("b", sni("c.example.com"))),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[1].filter_chain_match",
			msg:  "error adding listener '0.0.0.0:15001': multiple filter chains with overlapping matching rules are defined (filter chain 'b' and filter chain 'a' both match server_name=b.example.com, transport_protocol=tls)",
		},
		{
			name:    "a wildcard and its dotted suffix are one key",
			bad:     withChains(matched("a", sni("*.example.com")), matched("b", sni(".example.com"))),
			good:    withChains(matched("a", sni("*.example.com")), matched("b", sni("example.com"))),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[1].filter_chain_match",
			msg:  "multiple filter chains with overlapping matching rules are defined",
		},
		{
			name:    "prefixes identical after masking overlap",
			bad:     withChains(matched("a", dst(cidr("10.0.0.0", 8))), matched("b", dst(cidr("10.1.2.3", 8)))),
			good:    withChains(matched("a", dst(cidr("10.0.0.0", 8))), matched("b", dst(cidr("10.1.0.0", 16)))),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[1].filter_chain_match",
			msg:  "both match destination_port=80, prefix_range=10.0.0.0/8",
		},
		{
			name:    "a repeated value inside one chain",
			bad:     withChains(matched("a", &listenerv3.FilterChainMatch{SourcePorts: []uint32{1000, 1000}})),
			good:    withChains(matched("a", &listenerv3.FilterChainMatch{SourcePorts: []uint32{1000, 1001}})),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[0].filter_chain_match",
			msg:  "multiple filter chains with overlapping matching rules are defined (filter chain 'a' and filter chain 'a' both match source_port=1000)",
		},
		{
			name:    "malformed prefix",
			bad:     withChains(matched("a", dst(cidr("10.0.0", 8)))),
			good:    withChains(matched("a", dst(cidr("10.0.0.0", 40)))),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[0].filter_chain_match.prefix_ranges[0]",
			msg:  "malformed IP address: 10.0.0",
		},
		{
			name:    "partial wildcard server name",
			bad:     withChains(matched("a", sni("api*.example.com"))),
			good:    withChains(matched("a", sni("*.example.com"))),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[0].filter_chain_match.server_names[0]",
			msg:  `error adding listener '0.0.0.0:15001': partial wildcards are not supported in "server_names"`,
		},
		{
			name:    "unimplemented suffix matching",
			bad:     withChains(matched("a", &listenerv3.FilterChainMatch{AddressSuffix: "::1"})),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[0].filter_chain_match",
			msg:  "filter chain 'a' contains unimplemented fields",
		},
		{
			name: "TLS matches without tls_inspector",
			bad: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc"))),
				listener("out", 15001, matched("a", sni("a.example.com")))),
			good:    withChains(matched("a", sni("a.example.com"))),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[0].filter_chain_match.server_names",
			msg:  "detected only by envoy.filters.listener.tls_inspector", warning: true,
		},
		{
			name: "ALPN matches without any inspector",
			bad: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc"))),
				listener("out", 15001, matched("a", &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"h2c"}}))),
			good:    withChains(matched("a", &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"h2c"}})),
			typeURL: resource.ListenerType, resName: "out",
			path: "filter_chains[0].filter_chain_match.application_protocols",
			msg:  "application_protocols are detected only by", warning: true,
		},
		{
			name: "router not last",
			bad: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc", routerFilter(),
				httpFilter("envoy.filters.http.fault", &faultv3.HTTPFault{}))))),
			good: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc",
				httpFilter("envoy.filters.http.fault", &faultv3.HTTPFault{}), routerFilter())))),
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath + ".http_filters[0]",
			msg:  "Error: terminal filter named envoy.filters.http.router of type envoy.filters.http.router must be the last filter in a http filter chain.",
		},
		{
			name: "non-terminal filter last",
			bad: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc", routerFilter(),
				httpFilter("fault", &faultv3.HTTPFault{}))))),
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath + ".http_filters[1]",
			msg:  "Error: non-terminal filter named fault of type envoy.filters.http.fault is the last filter in a http filter chain.",
		},
		{
			name: "tcp_proxy not last in a network chain",
			bad: withListeners(listener("in", 80, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{
				tcpProxy("c"), netFilter("envoy.filters.network.rbac", &netrbacv3.RBAC{StatPrefix: "rbac"})}})),
			good: withListeners(listener("in", 80, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{
				netFilter("envoy.filters.network.rbac", &netrbacv3.RBAC{StatPrefix: "rbac"}), tcpProxy("c")}})),
			typeURL: resource.ListenerType, resName: "in",
			path: "filter_chains[0].filters[0]",
			msg:  "Error: terminal filter named envoy.filters.network.tcp_proxy of type envoy.filters.network.tcp_proxy must be the last filter in a network filter chain.",
		},
		{
			name: "non-terminal network filter last",
			bad: withListeners(listener("in", 80, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{
				netFilter("rbac", &netrbacv3.RBAC{StatPrefix: "rbac"})}})),
			typeURL: resource.ListenerType, resName: "in",
			path: "filter_chains[0].filters[0]",
			msg:  "Error: non-terminal filter named rbac of type envoy.filters.network.rbac is the last filter in a network filter chain.",
		},
		{
			name: "router upstream filters not ending with the codec",
			bad: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc", httpFilter("envoy.filters.http.router",
				&routerv3.Router{UpstreamHttpFilters: []*hcmv3.HttpFilter{
					httpFilter("codec", &upstreamcodecv3.UpstreamCodec{}), httpFilter("codec2", &upstreamcodecv3.UpstreamCodec{})}}))))),
			good: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc", httpFilter("envoy.filters.http.router",
				&routerv3.Router{UpstreamHttpFilters: []*hcmv3.HttpFilter{httpFilter("codec", &upstreamcodecv3.UpstreamCodec{})}}))))),
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath + ".http_filters[0].typed_config.upstream_http_filters[0]",
			msg:  "must be the last filter in a router upstream http filter chain.",
		},
		{
			name:    "empty network filter list",
			bad:     withListeners(listener("in", 80, &listenerv3.FilterChain{Name: "empty"})),
			good:    withListeners(listener("in", 80, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxy("c")}})),
			typeURL: resource.ListenerType, resName: "in",
			path: "filter_chains[0].filters",
			msg:  "no network filters", warning: true,
		},
		{
			name: "duplicate listener names",
			bad: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc"))),
				listener("in", 81, httpChain("http", hcmRDS("rc")))),
			good: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc"))),
				listener("in2", 81, httpChain("http", hcmRDS("rc")))),
			typeURL: resource.ListenerType, resName: "in",
			path: "",
			msg:  "duplicate listener in found",
		},
		{
			name: "two listeners on one address",
			bad: withListeners(listener("in", 80, httpChain("http", hcmRDS("rc"))),
				listener("in2", 80, httpChain("http", hcmRDS("rc")))),
			good: func() map[string][]types.Resource {
				udp := listener("in2", 80, httpChain("http", hcmRDS("rc")))
				udp.Address.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
				return withListeners(listener("in", 80, httpChain("http", hcmRDS("rc"))), udp)()
			},
			typeURL: resource.ListenerType, resName: "in2",
			path: "address",
			msg:  "error adding listener: 'in2' has duplicate address '0.0.0.0:80' as existing listener",
		},
		{
			name: "no filter chains and no default chain",
			bad:  withListeners(listener("in", 80)),
			good: func() map[string][]types.Resource {
				l := listener("in", 80)
				l.DefaultFilterChain = httpChain("http", hcmRDS("rc"))
				return withListeners(l)()
			},
			typeURL: resource.ListenerType, resName: "in",
			path: "",
			msg:  "error adding listener '0.0.0.0:80': no filter chains specified",
		},
		{
			name: "no address",
			bad: func() map[string][]types.Resource {
				l := listener("in", 80, httpChain("http", hcmRDS("rc")))
				l.Address = nil
				return withListeners(l)()
			},
			typeURL: resource.ListenerType, resName: "in",
			path: "",
			msg:  "error adding listener named 'in': address is necessary",
		},
		{
			name: "listener address is a host name",
			bad: func() map[string][]types.Resource {
				l := listener("in", 80, httpChain("http", hcmRDS("rc")))
				l.Address = socketAddress("localhost", 80)
				return withListeners(l)()
			},
			typeURL: resource.ListenerType, resName: "in",
			path: "address.socket_address.address",
			msg:  "malformed IP address: localhost",
		},
		{
			name: "chains picked by a matcher must be named",
			bad: func() map[string][]types.Resource {
				l := listener("in", 80, httpChain("", hcmRDS("rc")))
				l.FilterChainMatcher = &xdsmatcherv3.Matcher{}
				return withListeners(l)()
			},
			good: func() map[string][]types.Resource {
				l := listener("in", 80, httpChain("http", hcmRDS("rc")))
				l.FilterChainMatcher = &xdsmatcherv3.Matcher{}
				return withListeners(l)()
			},
			typeURL: resource.ListenerType, resName: "in",
			path: "filter_chains[0].name",
			msg:  `"name" field is required when using a listener matcher`,
		},
		{
			name:    "RDS names a route configuration not in the push",
			bad:     withListeners(listener("in", 80, httpChain("http", hcmRDS("other")))),
			good:    withListeners(listener("in", 80, httpChain("http", hcmRDS("rc")))),
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath + ".rds.route_config_name",
			msg:  `route configuration "other" is not in this push`,
		},
		{
			name: "GRPC config source naming a cluster",
			bad: func() map[string][]types.Resource {
				h := hcmRDS("rc")
				h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{
					ApiConfigSource: &corev3.ApiConfigSource{ApiType: corev3.ApiConfigSource_GRPC, ClusterNames: []string{"xds"}},
				}}
				return withListeners(listener("in", 80, httpChain("http", h)))()
			},
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath + ".rds.config_source.api_config_source",
			msg:  "envoy::config::core::v3::ApiConfigSource::(DELTA_)GRPC must not have a cluster specified: xds",
		},
		{
			name:    "api_listener sent to Envoy",
			bad:     withListeners(listener("in", 80, httpChain("http", hcmRDS("rc"))), apiListener("svc", hcmRDS("rc"))),
			typeURL: resource.ListenerType, resName: "svc",
			path: "api_listener",
			msg:  "can not be added because currently only one ApiListener is allowed", warning: true,
		},
		{
			name:    "tcp_proxy to a cluster not in the push",
			bad:     withListeners(listener("in", 80, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxy("missing")}})),
			good:    withListeners(listener("in", 80, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxy("c")}})),
			typeURL: resource.ListenerType, resName: "in",
			path: "filter_chains[0].filters[0].typed_config.cluster",
			msg:  `cluster "missing" is not in this push`, warning: true,
		},
	})
}
