package check

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/proxy"
)

// withCluster returns a push with one more cluster, built by f.
func withCluster(f func() *clusterv3.Cluster) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		n := baseNode()
		n.clusters = append(n.clusters, f())
		return n.res()
	}
}

func originalDst(lb clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 "passthrough",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             lb,
	}
}

func protocolOptions(key string, m proto.Message) func() *clusterv3.Cluster {
	return func() *clusterv3.Cluster {
		cl := edsCluster("x")
		cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{key: mustAny(m)}
		return cl
	}
}

func lbPolicy(m proto.Message) *clusterv3.LoadBalancingPolicy {
	return &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
		TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "lb", TypedConfig: mustAny(m)},
	}}}
}

func explicitHTTP2() *upstreamhttpv3.HttpProtocolOptions {
	return &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	}}
}

func TestClusterRules(t *testing.T) {
	runRows(t, []row{
		{
			name: "duplicate cluster names",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				n.clusters = append(n.clusters, edsCluster("c"))
				return n.res()
			},
			good:    withCluster(func() *clusterv3.Cluster { return edsCluster("d") }),
			typeURL: resource.ClusterType, resName: "c",
			path: "",
			msg:  "duplicate cluster c found",
		},
		{
			name:    "ORIGINAL_DST with a load-balancing policy of its own",
			bad:     withCluster(func() *clusterv3.Cluster { return originalDst(clusterv3.Cluster_ROUND_ROBIN) }),
			good:    withCluster(func() *clusterv3.Cluster { return originalDst(clusterv3.Cluster_CLUSTER_PROVIDED) }),
			typeURL: resource.ClusterType, resName: "passthrough",
			path: "lb_policy",
			msg:  "cluster: LB policy ROUND_ROBIN is not valid for Cluster type ORIGINAL_DST. Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST'",
		},
		{
			name: "ORIGINAL_DST with endpoints",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := originalDst(clusterv3.Cluster_CLUSTER_PROVIDED)
				cl.LoadAssignment = cla("passthrough", lbEndpoint("10.0.0.1", 80))
				return cl
			}),
			typeURL: resource.ClusterType, resName: "passthrough",
			path: "load_assignment",
			msg:  "ORIGINAL_DST clusters must have no load assignment configured",
		},
		{
			name: "CLUSTER_PROVIDED on a cluster that provides none",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
				return cl
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: "lb_policy",
			msg:  "cluster manager: cluster provided LB specified but cluster 'x' did not provide one. Check cluster documentation.",
		},
		{
			name: "EDS without an EDS config",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.EdsClusterConfig = nil
				return cl
			}),
			good:    withCluster(func() *clusterv3.Cluster { return edsCluster("x") }),
			typeURL: resource.ClusterType, resName: "x",
			path: "",
			msg:  "cannot create an EDS cluster without an EDS config",
		},
		{
			name: "EDS config without a config source",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.EdsClusterConfig.EdsConfig = nil
				return cl
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: "eds_cluster_config.eds_config",
			msg:  "Missing config source specifier in envoy::config::core::v3::ConfigSource",
		},
		{
			name: "EDS config on a STATIC cluster",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := staticCluster("s", clusterv3.Cluster_STATIC, lbEndpoint("10.0.0.9", 80))
				cl.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()}
				return cl
			}),
			good: withCluster(func() *clusterv3.Cluster {
				return staticCluster("s", clusterv3.Cluster_STATIC, lbEndpoint("10.0.0.9", 80))
			}),
			typeURL: resource.ClusterType, resName: "s",
			path: "eds_cluster_config",
			msg:  "eds_cluster_config set in a non-EDS cluster",
		},
		{
			name: "host name in a STATIC cluster",
			bad: withCluster(func() *clusterv3.Cluster {
				return staticCluster("s", clusterv3.Cluster_STATIC, lbEndpoint("10.0.0.9", 80), lbEndpoint("db.internal", 5432))
			}),
			good: withCluster(func() *clusterv3.Cluster {
				return staticCluster("s", clusterv3.Cluster_STRICT_DNS, lbEndpoint("10.0.0.9", 80), lbEndpoint("db.internal", 5432))
			}),
			typeURL: resource.ClusterType, resName: "s",
			path: "load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address",
			msg:  "malformed IP address: db.internal",
		},
		{
			name: "LOGICAL_DNS with two endpoints",
			bad: withCluster(func() *clusterv3.Cluster {
				return staticCluster("s", clusterv3.Cluster_LOGICAL_DNS, lbEndpoint("a.internal", 80), lbEndpoint("b.internal", 80))
			}),
			good: withCluster(func() *clusterv3.Cluster {
				return staticCluster("s", clusterv3.Cluster_LOGICAL_DNS, lbEndpoint("a.internal", 80))
			}),
			typeURL: resource.ClusterType, resName: "s",
			path: "load_assignment",
			msg:  "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
		},
		{
			name:    "protocol options under a filter's name",
			bad:     withCluster(protocolOptions("envoy.filters.network.http_connection_manager", explicitHTTP2())),
			good:    withCluster(protocolOptions(httpProtocolOptionsKey, explicitHTTP2())),
			typeURL: resource.ClusterType, resName: "x",
			path: `typed_extension_protocol_options["envoy.filters.network.http_connection_manager"]`,
			msg:  "Didn't find a registered network or http filter or protocol options implementation for name: 'envoy.filters.network.http_connection_manager'",
		},
		{
			name:    "protocol options of the wrong type",
			bad:     withCluster(protocolOptions(httpProtocolOptionsKey, &routerv3.Router{})),
			typeURL: resource.ClusterType, resName: "x",
			path: `typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]`,
			msg:  "Unable to unpack as envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
		},
		{
			name: "upstream HTTP filters not ending with the codec",
			bad: withCluster(func() *clusterv3.Cluster {
				po := explicitHTTP2()
				po.HttpFilters = []*hcmv3.HttpFilter{httpFilter("codec", &upstreamcodecv3.UpstreamCodec{}), httpFilter("codec2", &upstreamcodecv3.UpstreamCodec{})}
				return protocolOptions(httpProtocolOptionsKey, po)()
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: `typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].http_filters[0]`,
			msg:  "Error: terminal filter named codec of type envoy.filters.http.upstream_codec must be the last filter",
		},
		{
			name: "legacy HTTP/1 and HTTP/2 options with the default protocol selection",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.HttpProtocolOptions = &corev3.Http1ProtocolOptions{}
				cl.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
				return cl
			}),
			good: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.HttpProtocolOptions = &corev3.Http1ProtocolOptions{}
				cl.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
				cl.ProtocolSelection = clusterv3.Cluster_USE_DOWNSTREAM_PROTOCOL
				return cl
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: "",
			msg:  "Both HTTP1 and HTTP2 options may only be configured with non-default 'protocol_selection' values",
		},
		{
			name: "ring hash settings on a round-robin cluster",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}
				return cl
			}),
			good: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.LbPolicy = clusterv3.Cluster_RING_HASH
				cl.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}
				return cl
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: "ring_hash_lb_config",
			msg:  "ring_hash_lb_config is ignored: lb_policy is ROUND_ROBIN, not RING_HASH", warning: true,
		},
		{
			name: "lb_policy next to load_balancing_policy",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.LbPolicy = clusterv3.Cluster_MAGLEV
				cl.LoadBalancingPolicy = lbPolicy(&leastrequestv3.LeastRequest{})
				return cl
			}),
			good: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.LoadBalancingPolicy = lbPolicy(&leastrequestv3.LeastRequest{})
				return cl
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: "lb_policy",
			msg:  "lb_policy MAGLEV is ignored: load_balancing_policy takes precedence", warning: true,
		},
		{
			name: "a load-balancing policy that is not one",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.LoadBalancingPolicy = lbPolicy(&routerv3.Router{})
				return cl
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: "load_balancing_policy.policies[0].typed_extension_config.typed_config",
			msg:  "Didn't find a registered implementation for 'lb' with type URL: 'envoy.extensions.filters.http.router.v3.Router'",
		},
		{
			name: "a server TLS context on a cluster",
			bad: withCluster(func() *clusterv3.Cluster {
				cl := edsCluster("x")
				cl.TransportSocket = transportSocket(&tlsv3.DownstreamTlsContext{})
				return cl
			}),
			typeURL: resource.ClusterType, resName: "x",
			path: "transport_socket.typed_config",
			msg:  "Didn't find a registered implementation for 'envoy.transport_sockets.tls' with type URL: 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext'",
		},
	})
}

func TestEndpointRules(t *testing.T) {
	runRows(t, []row{
		{
			name: "an assignment no cluster uses",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				n.endpoints = append(n.endpoints, cla("orphan", lbEndpoint("10.0.0.2", 80)))
				return n.res()
			},
			good: func() map[string][]types.Resource {
				n := baseNode()
				cl := edsCluster("c2")
				cl.EdsClusterConfig.ServiceName = "orphan"
				n.clusters = append(n.clusters, cl)
				n.endpoints = append(n.endpoints, cla("orphan", lbEndpoint("10.0.0.2", 80)))
				return n.res()
			},
			typeURL: resource.EndpointType, resName: "orphan",
			path: "",
			msg:  `no EDS cluster in this push subscribes to "orphan"`, warning: true,
		},
		{
			name: "host name in an EDS assignment",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				n.endpoints[0] = cla("c", lbEndpoint("c.default.svc", 80))
				return n.res()
			},
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address",
			msg:  "malformed IP address: c.default.svc",
		},
		{
			name: "host name in an additional address",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				n.endpoints[0].Endpoints[0].LbEndpoints[0].GetEndpoint().AdditionalAddresses = []*endpointv3.Endpoint_AdditionalAddress{
					{Address: socketAddress("fd00::1", 80)}, {Address: socketAddress("v6.internal", 80)},
				}
				return n.res()
			},
			typeURL: resource.EndpointType, resName: "c",
			path: "endpoints[0].lb_endpoints[0].endpoint.additional_addresses[1].address.socket_address.address",
			msg:  "malformed IP address: v6.internal",
		},
	})
}

// An EDS cluster whose assignment is absent is not a problem: endpoints may come from a
// shared cache or later.
func TestClusterWithoutAssignmentIsFine(t *testing.T) {
	n := baseNode()
	n.endpoints = nil
	if probs := Problems(proxy.Envoy, n.res()); len(probs) != 0 {
		t.Fatalf("got:\n%s", dump(probs))
	}
}
