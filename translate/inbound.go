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
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
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

// inboundChains: for an opaque port a TCP chain; otherwise an HTTP chain
// (plaintext HTTP recognised by http_inspector) and a TCP fallback.
func inboundChains(p inboundPort, ft *featureTable) []*listenerv3.FilterChain {
	cluster := InboundClusterName(p.port)
	in := featureInputs{inbound: p}
	tcp := &listenerv3.FilterChain{
		Name:             cluster,
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.port)},
		Filters:          ft.networkFilters(onInboundChain, in, tcpProxyFilter(InboundListenerName, routeTarget{cluster: cluster})),
	}
	if p.opaque {
		return []*listenerv3.FilterChain{tcp}
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: InboundListenerName,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		// Inline: the route is private to this pod and names only the
		// local cluster, delivered in the same CDS update.
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: cluster,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    cluster,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Name:  InboundListenerName,
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
						// The client's proxy enforces the profile's timeout;
						// the server side must not add Envoy's 15s default.
						Timeout: durationpb.New(0),
					}},
				}},
			}},
		}},
		HttpFilters:    ft.httpFilters(onInboundChain, in),
		UpgradeConfigs: websocketUpgrade(),
	}
	httpChain := &listenerv3.FilterChain{
		Name: cluster + "|http",
		FilterChainMatch: &listenerv3.FilterChainMatch{
			DestinationPort:      wrapperspb.UInt32(p.port),
			TransportProtocol:    "raw_buffer",
			ApplicationProtocols: httpALPN,
		},
		Filters: ft.networkFilters(onInboundChain, in, networkFilter(wellknown.HTTPConnectionManager, hcm)),
	}
	return []*listenerv3.FilterChain{httpChain, tcp}
}

// inboundListener takes every connection redirected to the app. Listener
// filters: original_dst (chains match the port the client dialled),
// tls_inspector and http_inspector for detection, only on the ports with an
// HTTP chain (never on opaque ones). Connections to ports the pod does not
// declare pass through, undetected, to where they were going.
//
// With mTLS, tls_inspector will have to run on every port a meshed client
// may reach.
func inboundListener(ports []inboundPort, ft *featureTable) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	var detect []uint32
	for _, p := range ports {
		chains = append(chains, inboundChains(p, ft)...)
		if !p.opaque {
			detect = append(detect, p.port)
		}
	}
	slices.Sort(detect)
	return &listenerv3.Listener{
		Name:             InboundListenerName,
		Address:          socketAddress("0.0.0.0", mesh.ProxyInboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{
			listenerFilter(wellknown.OriginalDestination, &originaldstv3.OriginalDst{}),
			detectingFilter(wellknown.TLSInspector, &tlsinspectorv3.TlsInspector{}, detect),
			detectingFilter(wellknown.HTTPInspector, &httpinspectorv3.HttpInspector{}, detect),
		},
		ListenerFiltersTimeout:           durationpb.New(detectTimeout),
		ContinueOnListenerFiltersTimeout: true,
		FilterChains:                     chains,
		DefaultFilterChain:               passthroughChain(InboundListenerName),
	}
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
