package translate

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// Resource names. They are stable functions of the service and port, so a
// proxy's resources keep their names across pushes and Envoy only sees
// changes where the content changed.
//
// A name does not always identify one content across proxies: a route config
// or cluster of the same name differs between proxies whose namespaces pick
// different ServiceProfiles (a profile in the client's namespace wins), and
// between sidecars and proxyless clients. Caches in the xDS server must key
// by resource pointer or content, never by name alone — except endpoints
// (ClusterLoadAssignments), which are identical for every proxy.
const (
	// OutboundListenerName receives traffic redirected from the app's
	// outgoing connections (mesh.ProxyOutboundPort).
	OutboundListenerName = "outbound"
	// InboundListenerName receives traffic redirected on its way to the app
	// (mesh.ProxyInboundPort).
	InboundListenerName = "inbound"
	// PassthroughClusterName forwards to the connection's original
	// destination: traffic to destinations the mesh does not know.
	PassthroughClusterName = "passthrough"
	// DefaultRouteName is the catch-all after a profile's routes, named as
	// Linkerd names it in `linkerd routes`.
	DefaultRouteName = "[DEFAULT]"
)

// OutboundClusterName names the EDS cluster (and its
// ClusterLoadAssignment) of one service port:
// outbound|<port>|<svc>.<ns>.svc.<domain>.
func OutboundClusterName(svc mesh.ServiceKey, port uint32, domain string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + svc.FQDN(domain)
}

// OutboundRouteName names the RouteConfiguration of one service port. It is
// the cluster's name: the two live in different resource types.
func OutboundRouteName(svc mesh.ServiceKey, port uint32, domain string) string {
	return OutboundClusterName(svc, port, domain)
}

// InboundClusterName names the static cluster to the local app's port.
func InboundClusterName(port uint32) string {
	return "inbound|" + strconv.FormatUint(uint64(port), 10)
}

// GRPCServerListenerName is the listener a proxyless grpc-go server
// listening on ip:port asks for under proxy.GRPCServerListenerTemplate. The
// server must listen on its pod IP, not on 0.0.0.0: grpc-go also refuses
// to serve when the listener's address differs from the one it listens on
// (internal/xds/server/listener_wrapper.go).
func GRPCServerListenerName(ip string, port uint32) string {
	return strings.Replace(proxy.GRPCServerListenerTemplate, "%s", net.JoinHostPort(ip, strconv.FormatUint(uint64(port), 10)), 1)
}

// ProxylessListenerNames are the LDS names a grpc-go client asks for: the
// target host:port of xds:///svc.ns:port and xds:///svc.ns.svc.<domain>:port.
func ProxylessListenerNames(svc mesh.ServiceKey, port uint32, domain string) []string {
	p := ":" + strconv.FormatUint(uint64(port), 10)
	return []string{svc.Name + "." + svc.Namespace + p, svc.FQDN(domain) + p}
}

// serviceDomains lists every authority a client may use for a service port:
// svc, svc.ns, svc.ns.svc, svc.ns.svc.<domain> and each cluster IP, each with
// and without the port; lower-case, without duplicates.
func serviceDomains(svc *mesh.Service, port uint32, domain string) []string {
	k := svc.Key
	hosts := []string{
		k.Name,
		k.Name + "." + k.Namespace,
		k.Name + "." + k.Namespace + ".svc",
		k.FQDN(domain),
	}
	for _, ip := range svc.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
			// The host part of an authority carries IPv6 in brackets.
			hosts = append(hosts, "["+a.String()+"]")
			continue
		}
		hosts = append(hosts, ip)
	}
	p := ":" + strconv.FormatUint(uint64(port), 10)
	seen := make(map[string]bool, 2*len(hosts))
	out := make([]string, 0, 2*len(hosts))
	for _, h := range hosts {
		for _, d := range []string{h, h + p} {
			d = strings.ToLower(d)
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}
