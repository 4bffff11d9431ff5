package check

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	healthcheckv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/proxy"
)

// grpcWith returns a proxyless client push changed by f.
func grpcWith(f func(n *node)) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		n := grpcNode()
		f(&n)
		return n.res()
	}
}

// grpcServerWith adds an xDS server listener on 50051 (built by f from a valid one).
func grpcServerWith(f func(l *listenerv3.Listener)) func() map[string][]types.Resource {
	return grpcWith(func(n *node) {
		l := listener("srv", 50051, httpChain("http", hcmRDS("rc")))
		f(l)
		n.listeners = append(n.listeners, l)
	})
}

func grpcEndpointsWith(lles ...*endpointv3.LocalityLbEndpoints) func() map[string][]types.Resource {
	return grpcWith(func(n *node) { n.endpoints[0].Endpoints = lles })
}

func locality(zone string, priority, w uint32, eps ...*endpointv3.LbEndpoint) *endpointv3.LocalityLbEndpoints {
	lle := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: zone}, Priority: priority, LbEndpoints: eps}
	if w > 0 {
		lle.LoadBalancingWeight = wrapperspb.UInt32(w)
	}
	return lle
}

func providerTLS(server bool) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default"},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default"},
		}},
	}
}

func grpcClusterTLS(ct func() *tlsv3.CommonTlsContext) func() map[string][]types.Resource {
	return grpcWith(func(n *node) {
		n.clusters[0].TransportSocket = transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: ct()})
	})
}

func grpcWithFilters(filters ...*hcmv3.HttpFilter) func() map[string][]types.Resource {
	return grpcWith(func(n *node) { n.listeners[0] = apiListener("svc", hcmRDS("rc", filters...)) })
}

func grpcRouteWith(f func(r *routev3.Route)) func() map[string][]types.Resource {
	return grpcWith(func(n *node) { f(n.routes[0].VirtualHosts[0].Routes[0]) })
}

const apiHCM = "api_listener.api_listener"

func TestGRPCEndpointRules(t *testing.T) {
	ep := lbEndpoint
	runRows(t, []row{
		{
			name: "locality without ID", peer: proxy.GRPC,
			bad: grpcEndpointsWith(&endpointv3.LocalityLbEndpoints{LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints: []*endpointv3.LbEndpoint{ep("10.0.0.1", 80)}}),
			good:    grpcEndpointsWith(locality("z", 0, 1, ep("10.0.0.1", 80))),
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[0]",
			msg:  "EDS response contains a locality without ID",
		},
		{
			name: "empty locality (accepted by grpc-go 1.85)", peer: proxy.GRPC,
			bad:     grpcEndpointsWith(locality("", 0, 1, ep("10.0.0.1", 80))),
			good:    grpcEndpointsWith(locality("z", 0, 1, ep("10.0.0.1", 80))),
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[0].locality",
			msg:  "a locality with no region, zone or sub_zone", warning: true,
		},
		{
			name: "the same locality twice at one priority", peer: proxy.GRPC,
			bad:     grpcEndpointsWith(locality("z", 0, 1, ep("10.0.0.1", 80)), locality("z", 0, 1, ep("10.0.0.2", 80))),
			good:    grpcEndpointsWith(locality("z", 0, 1, ep("10.0.0.1", 80)), locality("z", 1, 1, ep("10.0.0.2", 80))),
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[1]",
			msg:  `duplicate locality {region="" zone="z" sub_zone=""} with the same priority 0`,
		},
		{
			name: "duplicate endpoint addresses across localities", peer: proxy.GRPC,
			bad:     grpcEndpointsWith(locality("a", 0, 1, ep("10.0.0.1", 80)), locality("b", 0, 1, ep("10.0.0.1", 80))),
			good:    grpcEndpointsWith(locality("a", 0, 1, ep("10.0.0.1", 80)), locality("b", 0, 1, ep("10.0.0.1", 81))),
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[1].lb_endpoints[0].endpoint.address",
			msg:  "duplicate endpoint with the same address 10.0.0.1:80",
		},
		{
			name: "endpoint weight 0", peer: proxy.GRPC,
			bad: grpcEndpointsWith(locality("z", 0, 1, &endpointv3.LbEndpoint{
				HostIdentifier:      ep("10.0.0.1", 80).HostIdentifier,
				LoadBalancingWeight: wrapperspb.UInt32(0),
			})),
			good: grpcEndpointsWith(locality("z", 0, 1, &endpointv3.LbEndpoint{
				HostIdentifier:      ep("10.0.0.1", 80).HostIdentifier,
				LoadBalancingWeight: wrapperspb.UInt32(3),
			})),
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[0].lb_endpoints[0].load_balancing_weight",
			msg:  "EDS response contains an endpoint with zero weight",
		},
		{
			name: "priority gap", peer: proxy.GRPC,
			bad:     grpcEndpointsWith(locality("a", 0, 1, ep("10.0.0.1", 80)), locality("b", 2, 1, ep("10.0.0.2", 80))),
			good:    grpcEndpointsWith(locality("a", 0, 1, ep("10.0.0.1", 80)), locality("b", 1, 1, ep("10.0.0.2", 80))),
			typeURL: resource.EndpointType, resName: "c",
			path: "",
			msg:  "priority 1 missing (with different priorities [0 2] received)",
		},
		{
			name: "locality without weight is dropped", peer: proxy.GRPC,
			bad:     grpcEndpointsWith(locality("z", 0, 0, ep("10.0.0.1", 80))),
			good:    grpcEndpointsWith(locality("z", 0, 1, ep("10.0.0.1", 80))),
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[0].load_balancing_weight",
			msg:  "grpc-go ignores a locality whose load_balancing_weight is unset or 0", warning: true,
		},
	})
}

func TestGRPCClusterRules(t *testing.T) {
	runRows(t, []row{
		{
			name: "lb_policy grpc-go does not implement", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) { n.clusters[0].LbPolicy = clusterv3.Cluster_MAGLEV }),
			// Least request is accepted since gRFC A48, unlike what the notes say.
			good:    grpcWith(func(n *node) { n.clusters[0].LbPolicy = clusterv3.Cluster_LEAST_REQUEST }),
			typeURL: resource.ClusterType, resName: "c",
			path: "lb_policy",
			msg:  "unexpected lbPolicy MAGLEV in response",
		},
		{
			name: "LOAD_BALANCING_POLICY_CONFIG is refused even with a typed policy", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.clusters[0].LbPolicy = clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG
				n.clusters[0].LoadBalancingPolicy = lbPolicy(&ringhashv3.RingHash{HashFunction: ringhashv3.RingHash_XX_HASH})
			}),
			good: grpcWith(func(n *node) {
				n.clusters[0].LoadBalancingPolicy = lbPolicy(&ringhashv3.RingHash{HashFunction: ringhashv3.RingHash_XX_HASH})
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "lb_policy",
			msg:  "unexpected lbPolicy LOAD_BALANCING_POLICY_CONFIG in response",
		},
		{
			name: "typed ring hash policy without an explicit XX_HASH", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.clusters[0].LoadBalancingPolicy = lbPolicy(&ringhashv3.RingHash{})
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "load_balancing_policy.policies[0]",
			msg:  "unsupported ring_hash hash function DEFAULT_HASH",
		},
		{
			name: "ring hash with murmur", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.clusters[0].LbPolicy = clusterv3.Cluster_RING_HASH
				n.clusters[0].LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
					HashFunction: clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2}}
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "ring_hash_lb_config.hash_function",
			msg:  "unsupported ring_hash hash function MURMUR_HASH_2 in response",
		},
		{
			name: "STATIC cluster", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.clusters = append(n.clusters, staticCluster("s", clusterv3.Cluster_STATIC, lbEndpoint("10.0.0.9", 80)))
			}),
			good: grpcWith(func(n *node) {
				n.clusters = append(n.clusters, staticCluster("s", clusterv3.Cluster_LOGICAL_DNS, lbEndpoint("s.internal", 80)))
			}),
			typeURL: resource.ClusterType, resName: "s",
			path: "type",
			msg:  "unsupported cluster type (STATIC, ) in response",
		},
		{
			name: "EDS config source neither ADS nor self", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.clusters[0].EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{
					ApiConfigSource: &corev3.ApiConfigSource{ApiType: corev3.ApiConfigSource_GRPC}}}
			}),
			good: grpcWith(func(n *node) {
				n.clusters[0].EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}}
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "eds_cluster_config.eds_config",
			msg:  "CDS's EDS config source is not ADS or Self",
		},
		{
			name: "SDS certificates instead of a certificate provider", peer: proxy.GRPC,
			bad: grpcClusterTLS(func() *tlsv3.CommonTlsContext {
				ct := providerTLS(false)
				ct.TlsCertificateProviderInstance = nil
				ct.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsRef("cert")}
				return ct
			}),
			good:    grpcClusterTLS(func() *tlsv3.CommonTlsContext { return providerTLS(false) }),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs",
			msg:  "expected field tls_certificate_provider_instance is not set, while unsupported field tls_certificate_sds_secret_configs is set in CommonTlsContext message",
		},
		{
			name: "SDS validation context", peer: proxy.GRPC,
			bad: grpcClusterTLS(func() *tlsv3.CommonTlsContext {
				ct := providerTLS(false)
				ct.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sdsRef("ca")}
				return ct
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context.validation_context_sds_secret_config",
			msg:  "validation context contains unexpected type: *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig",
		},
		{
			name: "tls_params", peer: proxy.GRPC,
			bad: grpcClusterTLS(func() *tlsv3.CommonTlsContext {
				ct := providerTLS(false)
				ct.TlsParams = &tlsv3.TlsParameters{}
				return ct
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context.tls_params",
			msg:  "unsupported tls_params field in CommonTlsContext message",
		},
		{
			name: "typed SAN matchers are ignored", peer: proxy.GRPC,
			bad: grpcClusterTLS(func() *tlsv3.CommonTlsContext {
				ct := providerTLS(false)
				ct.GetValidationContext().MatchTypedSubjectAltNames = sanMatcher("spiffe://weft/ns/default/sa/api")
				return ct
			}),
			good: grpcClusterTLS(func() *tlsv3.CommonTlsContext {
				ct := providerTLS(false)
				ct.GetValidationContext().MatchSubjectAltNames = []*matcherv3.StringMatcher{
					{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://weft/ns/default/sa/api"}}}
				return ct
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names",
			msg:  "grpc-go ignores match_typed_subject_alt_names", warning: true,
		},
		{
			name: "transport_socket_matches", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.clusters[0].TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{{Name: "tls",
					TransportSocket: transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: providerTLS(false)})}}
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket_matches",
			msg:  "unsupported transport_socket_matches field is non-empty",
		},
		{
			name: "transport socket with another name", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				ts := transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: providerTLS(false)})
				ts.Name = "tls"
				n.clusters[0].TransportSocket = ts
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.name",
			msg:  "transport_socket field has unexpected name: tls",
		},
		{
			name: "LRS server other than self", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) { n.clusters[0].LrsServer = ads() }),
			good: grpcWith(func(n *node) {
				n.clusters[0].LrsServer = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}}
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "lrs_server",
			msg:  "unsupported config_source_specifier *corev3.ConfigSource_Ads in lrs_server field",
		},
	})
}

func TestGRPCListenerRules(t *testing.T) {
	faultFilter := func(name string) *hcmv3.HttpFilter { return httpFilter(name, &faultv3.HTTPFault{}) }
	runRows(t, []row{
		{
			name: "RDS config source neither ADS nor self", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				h := hcmRDS("rc")
				h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/etc/rds.yaml"}}
				n.listeners[0] = apiListener("svc", h)
			}),
			good: grpcWith(func(n *node) {
				h := hcmRDS("rc")
				h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}}
				n.listeners[0] = apiListener("svc", h)
			}),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".rds.config_source",
			msg:  "LDS's RDS configSource is not ADS or Self",
		},
		{
			name: "HTTP filter without a name", peer: proxy.GRPC,
			bad:     grpcWithFilters(&hcmv3.HttpFilter{ConfigType: routerFilter().ConfigType}),
			good:    grpcWithFilters(routerFilter()),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".http_filters[0]",
			msg:  "filter missing name field",
		},
		{
			name: "duplicate HTTP filter names", peer: proxy.GRPC,
			bad:     grpcWithFilters(faultFilter("f"), httpFilter("f", &routerv3.Router{})),
			good:    grpcWithFilters(faultFilter("f"), httpFilter("r", &routerv3.Router{})),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".http_filters[1]",
			msg:  `duplicate filter name "f"`,
		},
		{
			name: "HTTP filter grpc-go does not have", peer: proxy.GRPC,
			bad: grpcWithFilters(httpFilter("hc", &healthcheckv3.HealthCheck{PassThroughMode: wrapperspb.Bool(true)}), routerFilter()),
			good: grpcWithFilters(&hcmv3.HttpFilter{Name: "hc", IsOptional: true, ConfigType: &hcmv3.HttpFilter_TypedConfig{
				TypedConfig: mustAny(&healthcheckv3.HealthCheck{PassThroughMode: wrapperspb.Bool(true)})}}, routerFilter()),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".http_filters[0]",
			msg:  `no filter implementation found for "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"`,
		},
		{
			name: "server-only filter on a client", peer: proxy.GRPC,
			bad:     grpcWithFilters(httpFilter("rbac", &httprbacv3.RBAC{}), routerFilter()),
			good:    grpcWithFilters(faultFilter("fault"), routerFilter()),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".http_filters[0]",
			msg:  `HTTP filter "rbac" not supported client-side`,
		},
		{
			name: "router not last", peer: proxy.GRPC,
			bad:     grpcWithFilters(routerFilter(), faultFilter("fault")),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".http_filters[0]",
			msg:  `http filter "envoy.filters.http.router" is a terminal filter but it is not last in the filter chain`,
		},
		{
			name: "xff_num_trusted_hops", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				h := hcmRDS("rc")
				h.XffNumTrustedHops = 1
				n.listeners[0] = apiListener("svc", h)
			}),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".xff_num_trusted_hops",
			msg:  "xff_num_trusted_hops must be unset or zero",
		},
		{
			name: "server listener with listener filters", peer: proxy.GRPC,
			bad:     grpcServerWith(func(l *listenerv3.Listener) { withInspectors(l) }),
			good:    grpcServerWith(func(*listenerv3.Listener) {}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "listener_filters",
			msg:  "unsupported field 'listener_filters' contains 2 entries",
		},
		{
			name: "server listener with use_original_dst", peer: proxy.GRPC,
			bad:     grpcServerWith(func(l *listenerv3.Listener) { l.UseOriginalDst = wrapperspb.Bool(true) }),
			typeURL: resource.ListenerType, resName: "srv",
			path: "use_original_dst",
			msg:  "unsupported field 'use_original_dst' is present and set to true",
		},
		{
			name: "server listener RDS from self", peer: proxy.GRPC,
			bad: grpcServerWith(func(l *listenerv3.Listener) {
				h := hcmRDS("rc")
				h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}}
				l.FilterChains[0] = httpChain("http", h)
			}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "filter_chains[0].filters[0].typed_config.rds.config_source",
			msg:  "ConfigSource is not ADS",
		},
		{
			name: "server listener without an HCM", peer: proxy.GRPC,
			bad: grpcServerWith(func(l *listenerv3.Listener) {
				l.FilterChains[0] = &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxy("c")}}
			}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "filter_chains[0].filters",
			msg:  "network filters missing HttpConnectionManager filter",
		},
		{
			name: "client-only filter on a server", peer: proxy.GRPC,
			bad: grpcServerWith(func(l *listenerv3.Listener) {
				l.FilterChains[0] = httpChain("http", hcmRDS("rc", faultFilter("fault"), routerFilter()))
			}),
			good: grpcServerWith(func(l *listenerv3.Listener) {
				l.FilterChains[0] = httpChain("http", hcmRDS("rc", httpFilter("rbac", &httprbacv3.RBAC{}), routerFilter()))
			}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "filter_chains[0].filters[0].typed_config.http_filters[0]",
			msg:  `HTTP filter "fault" not supported server-side`,
		},
		{
			name: "chains distinct for Envoy but not for grpc-go", peer: proxy.GRPC,
			bad: grpcServerWith(func(l *listenerv3.Listener) {
				a, b := httpChain("a", hcmRDS("rc")), httpChain("b", hcmRDS("rc"))
				a.FilterChainMatch = &listenerv3.FilterChainMatch{DirectSourcePrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0", 8)}}
				b.FilterChainMatch = &listenerv3.FilterChainMatch{DirectSourcePrefixRanges: []*corev3.CidrRange{cidr("192.168.0.0", 16)}}
				l.FilterChains = []*listenerv3.FilterChain{a, b}
			}),
			good: grpcServerWith(func(l *listenerv3.Listener) {
				a, b := httpChain("a", hcmRDS("rc")), httpChain("b", hcmRDS("rc"))
				a.FilterChainMatch = &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0", 8)}}
				b.FilterChainMatch = &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{cidr("192.168.0.0", 16)}}
				l.FilterChains = []*listenerv3.FilterChain{a, b}
			}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "filter_chains[1].filter_chain_match",
			msg:  "multiple filter chains with overlapping matching rules are defined",
		},
		{
			name: "chain matching on server names is dropped", peer: proxy.GRPC,
			bad: grpcServerWith(func(l *listenerv3.Listener) {
				b := httpChain("b", hcmRDS("rc"))
				b.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"svc.example.com"}}
				l.FilterChains = append(l.FilterChains, b)
			}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "filter_chains[1].filter_chain_match.server_names",
			msg:  "grpc-go drops a filter chain that matches on server_names", warning: true,
		},
		{
			name: "server route forwarding to a cluster", peer: proxy.GRPC,
			bad: grpcServerWith(func(l *listenerv3.Listener) {
				l.FilterChains[0] = httpChain("http", hcmInline(routeConfig("in", vhost("in", []string{"*"}, routeTo("c")))))
			}),
			good: grpcServerWith(func(l *listenerv3.Listener) {
				l.FilterChains[0] = httpChain("http", hcmInline(routeConfig("in", vhost("in", []string{"*"}, nonForwarding()))))
			}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route",
			msg:  "the incoming RPC matched to a route that was not of action type non forwarding", warning: true,
		},
		{
			name: "client route with the server's non-forwarding action", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.listeners[0] = apiListener("svc", hcmInline(routeConfig("rc", vhost("vh", []string{"svc"}, nonForwarding()))))
			}),
			good: grpcWith(func(n *node) {
				n.listeners[0] = apiListener("svc", hcmInline(routeConfig("rc", vhost("vh", []string{"svc"}, routeTo("c")))))
			}),
			typeURL: resource.ListenerType, resName: "svc",
			path: apiHCM + ".route_config.virtual_hosts[0].routes[0].non_forwarding_action",
			msg:  "matched route does not have a supported route action type", warning: true,
		},
		{
			name: "server TLS without an identity provider", peer: proxy.GRPC,
			bad: grpcServerWith(func(l *listenerv3.Listener) {
				ct := providerTLS(true)
				ct.TlsCertificateProviderInstance = nil
				l.FilterChains[0].TransportSocket = transportSocket(&tlsv3.DownstreamTlsContext{CommonTlsContext: ct})
			}),
			good: grpcServerWith(func(l *listenerv3.Listener) {
				l.FilterChains[0].TransportSocket = transportSocket(&tlsv3.DownstreamTlsContext{
					CommonTlsContext: providerTLS(true), RequireClientCertificate: wrapperspb.Bool(true)})
			}),
			typeURL: resource.ListenerType, resName: "srv",
			path: "filter_chains[0].transport_socket.typed_config.common_tls_context",
			msg:  "security configuration on the server-side does not contain identity certificate provider instance name",
		},
	})
}

func TestGRPCRouteRules(t *testing.T) {
	const routePath = "virtual_hosts[0].routes[0]"
	runRows(t, []row{
		{
			name: "num_retries 0", peer: proxy.GRPC,
			bad: grpcRouteWith(func(r *routev3.Route) {
				r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0)}
			}),
			good: grpcRouteWith(func(r *routev3.Route) {
				r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(1)}
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + ".route.retry_policy.num_retries",
			msg:  "retry_policy.num_retries = 0; must be >= 1",
		},
		{
			name: "retry_on without any gRPC status", peer: proxy.GRPC,
			bad: grpcRouteWith(func(r *routev3.Route) {
				r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,reset"}
			}),
			good: grpcRouteWith(func(r *routev3.Route) {
				r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,Unavailable"}
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + ".route.retry_policy.retry_on",
			msg:  "grpc-go does not retry", warning: true,
		},
		{
			name: "weighted clusters all at 0", peer: proxy.GRPC,
			bad: grpcWith(func(n *node) {
				n.routes[0].VirtualHosts[0].Routes[0] = weighted(weight("c", 0))
			}),
			good: grpcWith(func(n *node) {
				n.routes[0].VirtualHosts[0].Routes[0] = weighted(weight("c", 0), weight("c", 5))
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + ".route.weighted_clusters",
			msg:  "route has no valid cluster in WeightedCluster action",
		},
		{
			name: "path_separated_prefix", peer: proxy.GRPC,
			bad: grpcRouteWith(func(r *routev3.Route) {
				r.Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/pkg.Svc"}
			}),
			good: grpcRouteWith(func(r *routev3.Route) {
				r.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/pkg.Svc/"}
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + ".match",
			msg:  "route has an unrecognized path specifier: *routev3.RouteMatch_PathSeparatedPrefix",
		},
		{
			name: "header matcher with an empty prefix", peer: proxy.GRPC,
			bad: grpcRouteWith(func(r *routev3.Route) {
				r.Match.Headers = []*routev3.HeaderMatcher{{Name: "x-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: ""}}}}}
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + ".match.headers[0]",
			msg:  "route has an invalid header matcher: empty prefix is not allowed in StringMatcher",
		},
		{
			name: "query parameter matchers make grpc-go skip the route", peer: proxy.GRPC,
			bad: grpcRouteWith(func(r *routev3.Route) {
				r.Match.QueryParameters = []*routev3.QueryParameterMatcher{{Name: "debug",
					QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + ".match.query_parameters",
			msg:  "grpc-go ignores a route with query parameter matchers", warning: true,
		},
		{
			name: "per-route config for the router", peer: proxy.GRPC,
			bad: grpcRouteWith(func(r *routev3.Route) {
				r.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.router": mustAny(&routev3.FilterConfig{
					Config: mustAny(&routerv3.Router{})})}
			}),
			good: grpcRouteWith(func(r *routev3.Route) {
				r.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": mustAny(&faultv3.HTTPFault{})}
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + `.typed_per_filter_config["envoy.filters.http.router"]`,
			msg:  `filter override "envoy.filters.http.router": error parsing config for filter "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router": unexpected config override specified`,
		},
		{
			name: "route with cluster_header", peer: proxy.GRPC,
			bad: grpcRouteWith(func(r *routev3.Route) {
				r.GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: routePath + ".route",
			msg:  "grpc-go ignores a route whose cluster is given by *routev3.RouteAction_ClusterHeader", warning: true,
		},
	})
}

// The same resources are clean for Envoy: the GRPC rules only run for GRPC peers.
func TestGRPCRulesOnlyForGRPCPeers(t *testing.T) {
	n := baseNode()
	n.clusters[0].LbPolicy = clusterv3.Cluster_MAGLEV
	n.routes[0].VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(0)}
	n.endpoints[0].Endpoints[0].Locality = nil
	if probs := Problems(proxy.Envoy, n.res()); len(probs) != 0 {
		t.Fatalf("Envoy: got:\n%s", dump(probs))
	}
	if err := Resources(proxy.GRPC, n.res()); err == nil {
		t.Fatal("GRPC: want errors")
	}
}

// nonForwarding is the route of a grpc-go server: to its own handlers.
func nonForwarding() *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
	}
}
