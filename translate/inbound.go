package translate

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	directresponsev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/direct_response/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
)

// Inbound: the ports a pod serves, its inbound listener and the clusters
// reaching the app on loopback, all functions of the proxy's ports.

// inboundPorts lists the ports the inbound listener serves: the pod's
// declared ports, minus those iptables skips and the proxy's own.
func inboundPorts(p *mesh.Proxy) ([]inboundPort, []error) {
	var out []inboundPort
	var errs []error
	seen := map[uint32]bool{}
	for i, pp := range p.InboundPorts {
		switch {
		case pp.Port == 0 || pp.Port > 65535:
			errs = append(errs, mesh.ConfigError{
				Object: mesh.ObjectRef{Kind: "Pod", Namespace: p.Namespace, Name: p.Pod},
				Err:    fmt.Errorf("inbound port [%d] %d is invalid; skipped", i, pp.Port),
			})
			continue
		case seen[pp.Port], slices.Contains(p.SkipInboundPorts, pp.Port),
			pp.Port == mesh.ProxyInboundPort, pp.Port == mesh.ProxyOutboundPort, pp.Port == mesh.ProxyAdminPort:
			continue
		}
		seen[pp.Port] = true
		opaque := pp.Protocol == mesh.ProtocolOpaque || slices.Contains(p.OpaquePorts, pp.Port)
		proto := pp.Protocol
		if proto == "" {
			proto = mesh.ProtocolHTTP1
		}
		if opaque {
			proto = mesh.ProtocolOpaque
		}
		out = append(out, inboundPort{port: pp.Port, protocol: proto, opaque: opaque})
	}
	slices.SortFunc(out, func(a, b inboundPort) int { return cmp.Compare(a.port, b.port) })
	return out, errs
}

// inboundPort is one port the app serves, as the inbound listener sees it.
type inboundPort struct {
	port     uint32
	protocol mesh.Protocol
	opaque   bool
}

// tlsHTTPALPN are the application protocols that send a TLS connection to
// the HTTP connection manager; TLS chains offer them, and a TLS connection
// negotiating none of them goes to tcp_proxy.
var tlsHTTPALPN = []string{"h2", "http/1.1"}

// inboundChains: for an opaque port a TCP chain; otherwise an HTTP chain
// (plaintext HTTP recognised by http_inspector) and a TCP fallback. When a
// feature asks for TLS (inboundTLS), chains matching TLS come first,
// terminating it: an HTTP one for connections negotiating an HTTP ALPN
// (not on opaque ports) and a TCP one for the rest, since the chain cannot
// see inside TLS to detect HTTP. Strict TLS replaces the plaintext chains
// by one that closes every connection: without a chain for the port,
// Envoy would use the listener's default chain and pass the connection
// through to the app, around the proxy.
//
// inspect says which listener filters the chains need on this port.
func inboundChains(p inboundPort, ft *featureTable, base featureInputs) (chains []*listenerv3.FilterChain, inspect inboundInspection) {
	cluster := InboundClusterName(p.port)
	in := base
	in.inbound = p
	tls := ft.inboundTLS(in)
	match := func(transport string, alpn []string) *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.port), TransportProtocol: transport, ApplicationProtocols: alpn}
	}
	tcp := func(name string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{
			Name:             name,
			FilterChainMatch: m,
			Filters:          ft.networkFilters(onInboundChain, in, tcpProxyFilter(InboundListenerName, routeTarget{cluster: cluster})),
		}
	}
	http := func(name string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{
			Name:             name,
			FilterChainMatch: m,
			Filters:          ft.networkFilters(onInboundChain, in, networkFilter(wellknown.HTTPConnectionManager, inboundHCM(cluster, ft, in))),
		}
	}
	if tls.socket != nil {
		inspect.tls = true
		if !p.opaque {
			c := http(cluster+"|tls-http", match("tls", tlsHTTPALPN))
			c.TransportSocket = tls.socket
			chains = append(chains, c)
		}
		c := tcp(cluster+"|tls", match("tls", nil))
		c.TransportSocket = tls.socket
		chains = append(chains, c)
	}
	switch {
	case tls.strict:
		return append(chains, &listenerv3.FilterChain{
			Name:             cluster + "|plaintext-refused",
			FilterChainMatch: match("", nil),
			Filters:          []*listenerv3.Filter{networkFilter(directResponseFilterName, &directresponsev3.Config{})},
		}), inspect
	case p.opaque:
		return append(chains, tcp(cluster, match("", nil))), inspect
	}
	// http_inspector reports its ALPN for plaintext only; tls_inspector
	// has to run first to say a connection is plaintext.
	inspect.tls, inspect.http = true, true
	return append(chains, http(cluster+"|http", match("raw_buffer", httpALPN)), tcp(cluster, match("", nil))), inspect
}

// directResponseFilterName is Envoy's filter that writes a fixed response
// (none here) and closes the connection.
const directResponseFilterName = "envoy.filters.network.direct_response"

// inboundInspection is which listener filters a port's chains need.
type inboundInspection struct{ tls, http bool }

func inboundHCM(cluster string, ft *featureTable, in featureInputs) *hcmv3.HttpConnectionManager {
	// Inline, the route names only the local cluster, delivered in the
	// same CDS update.
	h := localHCM(cluster, &routev3.Route{Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		// The client's proxy enforces the profile's timeout; the server
		// side must not add Envoy's 15s default.
		Timeout: durationpb.New(0),
	}}}, ft.httpFilters(onInboundChain, in))
	h.UpgradeConfigs = websocketUpgrade()
	return h
}

// localHCM is an HCM whose route configuration, inline since it is private
// to this pod, is one route taking every request: route brings its action,
// its name and match are set here.
func localHCM(name string, route *routev3.Route, filters []*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	route.Name = InboundListenerName
	route.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	return &hcmv3.HttpConnectionManager{
		StatPrefix: InboundListenerName,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         name,
			VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{route}}},
		}},
		HttpFilters: filters,
	}
}

// inboundListener takes every connection redirected to the app. Listener
// filters: original_dst (chains match the port the client dialled), and
// tls_inspector and http_inspector for detection, each only on the ports
// whose chains need it (never on plaintext opaque ports, where detection
// would stall server-speaks-first protocols). Connections to ports the pod
// does not declare pass through, undetected, to where they were going.
func inboundListener(ports []inboundPort, ft *featureTable, in featureInputs) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	var detectTLS, detectHTTP []uint32
	for _, p := range ports {
		c, inspect := inboundChains(p, ft, in)
		chains = append(chains, c...)
		if inspect.tls {
			detectTLS = append(detectTLS, p.port)
		}
		if inspect.http {
			detectHTTP = append(detectHTTP, p.port)
		}
	}
	return redirectListener(InboundListenerName, mesh.ProxyInboundPort, corev3.TrafficDirection_INBOUND, chains,
		detectingFilter(wellknown.TLSInspector, &tlsinspectorv3.TlsInspector{}, detectTLS),
		detectingFilter(wellknown.HTTPInspector, &httpinspectorv3.HttpInspector{}, detectHTTP))
}

// inboundCluster reaches the app on loopback.
func inboundCluster(port uint32, proto mesh.Protocol) *clusterv3.Cluster {
	name := InboundClusterName(port)
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(inboundConnectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress("127.0.0.1", port),
					}},
				}},
			}},
		},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
			MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
			MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		}}},
		TypedExtensionProtocolOptions: upstreamProtocolOptions(proto),
	}
}
