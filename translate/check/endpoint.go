package check

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/weftmesh/weft/proxy"
)

// checkEndpoints checks a ClusterLoadAssignment. An EDS cluster whose assignment is missing
// is fine (endpoints may come from a shared cache, or later); an assignment no cluster asks
// for is only dead weight, hence a warning.
func (c *checker) checkEndpoints(cla *endpointv3.ClusterLoadAssignment) {
	name := cla.GetClusterName()
	c.cross(func(c *checker) {
		if c.clustersGiven && !c.edsNames[name] {
			c.warnf("no EDS cluster in this push subscribes to %q: the assignment is never used", name)
		}
	})
	c.checkEndpointIPs(cla)
	if c.peer == proxy.GRPC {
		c.grpcEndpoints(cla)
	}
}

// checkEndpointIPs: STATIC and EDS endpoints are parsed as IP addresses; a host name is
// "malformed IP address" (only STRICT_DNS / LOGICAL_DNS resolve names).
func (c *checker) checkEndpointIPs(cla *endpointv3.ClusterLoadAssignment) {
	for i, lle := range cla.GetEndpoints() {
		for j, lbe := range lle.GetLbEndpoints() {
			ep := lbe.GetEndpoint()
			if ep == nil {
				continue
			}
			c.pushIndex("endpoints", i)
			c.pushIndex("lb_endpoints", j)
			c.push("endpoint")
			c.checkEndpointIP("address", ep.GetAddress())
			for k, aa := range ep.GetAdditionalAddresses() {
				c.pushIndex("additional_addresses", k)
				c.checkEndpointIP("address", aa.GetAddress())
				c.pop()
			}
			c.pop()
			c.pop()
			c.pop()
		}
	}
}

func (c *checker) checkEndpointIP(field string, a *corev3.Address) {
	sa := a.GetSocketAddress()
	if sa == nil || sa.GetResolverName() != "" {
		return
	}
	if _, err := netip.ParseAddr(sa.GetAddress()); err != nil {
		c.push(field)
		c.errorAt("socket_address.address", "malformed IP address: %s", sa.GetAddress())
		c.pop()
	}
}
