package check

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/weftmesh/weft/proxy"
)

// httpProtocolOptionsKey is the only typed_extension_protocol_options key weft uses, and the
// name of Envoy's ProtocolOptionsFactory for HTTP upstreams.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

func (c *checker) checkCluster(cl *clusterv3.Cluster) {
	t, lb := cl.GetType(), cl.GetLbPolicy()
	if cl.GetClusterType() == nil {
		c.checkDiscoveryType(cl, t, lb)
	}
	c.checkLBConfig(cl, t, lb)
	if ts := cl.GetTransportSocket(); ts != nil {
		c.push("transport_socket")
		c.checkTransportSocket(ts, kindUpstreamTransport)
		c.pop()
	}
	for i, m := range cl.GetTransportSocketMatches() {
		if ts := m.GetTransportSocket(); ts != nil {
			c.pushIndex("transport_socket_matches", i)
			c.push("transport_socket")
			c.checkTransportSocket(ts, kindUpstreamTransport)
			c.pop()
			c.pop()
		}
	}
	c.checkProtocolOptions(cl)
	if uc := cl.GetUpstreamConfig(); uc.GetTypedConfig() != nil {
		c.push("upstream_config")
		c.checkExtension(uc.GetName(), uc.GetTypedConfig(), kindUpstreamConfig)
		c.pop()
	}
	if c.peer == proxy.GRPC {
		c.grpcCluster(cl)
	}
}

// checkDiscoveryType applies the rules of the built-in cluster types (upstream_impl.cc,
// eds.cc, original_dst_cluster.cc, logical_dns_cluster.cc).
func (c *checker) checkDiscoveryType(cl *clusterv3.Cluster, t clusterv3.Cluster_DiscoveryType, lb clusterv3.Cluster_LbPolicy) {
	switch t {
	case clusterv3.Cluster_ORIGINAL_DST:
		if lb != clusterv3.Cluster_CLUSTER_PROVIDED {
			c.errorAt("lb_policy", "cluster: LB policy %s is not valid for Cluster type %s. Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST'",
				lb, t)
		}
		if cl.GetLoadAssignment() != nil {
			c.errorAt("load_assignment", "ORIGINAL_DST clusters must have no load assignment configured")
		}
	case clusterv3.Cluster_EDS:
		if cl.GetEdsClusterConfig() == nil {
			c.errorf("cannot create an EDS cluster without an EDS config")
		} else {
			c.push("eds_cluster_config")
			c.checkConfigSource("eds_config", cl.GetEdsClusterConfig().GetEdsConfig())
			c.pop()
		}
		if cl.GetLoadAssignment() != nil {
			c.warnAt("load_assignment", "ignored on an EDS cluster: its endpoints come from the ClusterLoadAssignment")
		}
	case clusterv3.Cluster_STATIC:
		if cla := cl.GetLoadAssignment(); cla != nil {
			c.push("load_assignment")
			c.checkEndpointIPs(cla)
			c.pop()
		}
	case clusterv3.Cluster_LOGICAL_DNS:
		eps := cl.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			c.errorAt("load_assignment", "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint")
		}
	}
	if t != clusterv3.Cluster_EDS && cl.GetEdsClusterConfig() != nil {
		c.errorAt("eds_cluster_config", "eds_cluster_config set in a non-EDS cluster")
	}
	if lb == clusterv3.Cluster_CLUSTER_PROVIDED && t != clusterv3.Cluster_ORIGINAL_DST {
		c.errorAt("lb_policy", "cluster manager: cluster provided LB specified but cluster '%s' did not provide one. Check cluster documentation.",
			cl.GetName())
	}
}

// checkLBConfig flags load-balancer settings Envoy silently ignores, and checks the typed
// load_balancing_policy.
func (c *checker) checkLBConfig(cl *clusterv3.Cluster, t clusterv3.Cluster_DiscoveryType, lb clusterv3.Cluster_LbPolicy) {
	lbp := cl.GetLoadBalancingPolicy()
	ignored := func(field string, set bool, wantPolicy clusterv3.Cluster_LbPolicy) {
		switch {
		case !set:
		case lbp != nil:
			c.warnAt(field, "%s is ignored: load_balancing_policy takes precedence", field)
		case lb != wantPolicy:
			c.warnAt(field, "%s is ignored: lb_policy is %s, not %s", field, lb, wantPolicy)
		}
	}
	ignored("ring_hash_lb_config", cl.GetRingHashLbConfig() != nil, clusterv3.Cluster_RING_HASH)
	ignored("maglev_lb_config", cl.GetMaglevLbConfig() != nil, clusterv3.Cluster_MAGLEV)
	ignored("least_request_lb_config", cl.GetLeastRequestLbConfig() != nil, clusterv3.Cluster_LEAST_REQUEST)
	ignored("round_robin_lb_config", cl.GetRoundRobinLbConfig() != nil, clusterv3.Cluster_ROUND_ROBIN)
	if cl.GetOriginalDstLbConfig() != nil && t != clusterv3.Cluster_ORIGINAL_DST {
		c.warnAt("original_dst_lb_config", "original_dst_lb_config is ignored: the cluster type is %s, not ORIGINAL_DST", t)
	}
	if lbp == nil {
		return
	}
	if lb != clusterv3.Cluster_ROUND_ROBIN && lb != clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG &&
		t != clusterv3.Cluster_ORIGINAL_DST {
		c.warnAt("lb_policy", "lb_policy %s is ignored: load_balancing_policy takes precedence", lb)
	}
	c.push("load_balancing_policy")
	for i, p := range lbp.GetPolicies() {
		if tc := p.GetTypedExtensionConfig().GetTypedConfig(); tc != nil {
			c.pushIndex("policies", i)
			c.push("typed_extension_config")
			c.checkExtension(p.GetTypedExtensionConfig().GetName(), tc, kindLBPolicy)
			c.pop()
			c.pop()
		}
	}
	c.pop()
}

// checkProtocolOptions: Envoy looks typed_extension_protocol_options keys up among network
// filters, HTTP filters and protocol options factories; weft only sets HttpProtocolOptions.
func (c *checker) checkProtocolOptions(cl *clusterv3.Cluster) {
	opts := cl.GetTypedExtensionProtocolOptions()
	if len(opts) > 0 {
		keys := make([]string, 0, len(opts))
		for k := range opts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			a := opts[k]
			c.pushKey("typed_extension_protocol_options", k)
			switch {
			case k != httpProtocolOptionsKey:
				c.errorf("Didn't find a registered network or http filter or protocol options implementation for name: '%s'", k)
			case !anyTypeIs(a, &upstreamhttpv3.HttpProtocolOptions{}):
				if _, known := lookupExtension(a); known {
					c.errorf("Unable to unpack as %s: got %s", httpProtocolOptionsKey, typeName(a.GetTypeUrl()))
				}
			default:
				if po, ok := c.unpack(a).(*upstreamhttpv3.HttpProtocolOptions); ok && len(po.GetHttpFilters()) > 0 {
					c.checkUpstreamHTTPFilters("http_filters", po.GetHttpFilters(), "router upstream http")
				}
			}
			c.pop()
		}
	}
	if cl.GetHttpProtocolOptions() != nil && cl.GetHttp2ProtocolOptions() != nil &&
		cl.GetProtocolSelection() == clusterv3.Cluster_USE_CONFIGURED_PROTOCOL {
		c.errorf("Both HTTP1 and HTTP2 options may only be configured with non-default 'protocol_selection' values")
	}
}
