package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// The inbound side of a proxyless grpc-go server (xds.NewGRPCServer): no
// sidecar stands in front of it, so instead of an inbound listener it gets
// one Listener per port it serves, under the name its bootstrap's template
// makes of the address it listens on (GRPCServerListenerName), which grpc-go
// reads by gRFC A36 and, for security, A29. What grpc-go refuses there is in
// translate/check (grpcServerListener): no listener filters, chains matching
// only on addresses and source ports, the HTTP connection manager as the
// only network filter, RDS over ADS or an inline route configuration, and
// only certificate provider instances for TLS.

// grpcServerListener is the listener of one served port of a proxyless
// server at ip. grpc-go drops any chain that matches a transport protocol
// other than raw_buffer, so a port is either plaintext or TLS: permissive
// is one plaintext chain (grpc-go's xDS server credentials then use their
// fallback, plaintext), strict one chain terminating mTLS, which a
// plaintext client fails to handshake with. mesh.PodTerminatesMTLS makes
// clients originate TLS to the pod exactly in the second case.
func grpcServerListener(ip string, p inboundPort, ft *featureTable, base featureInputs) *listenerv3.Listener {
	in := base
	in.inbound = p
	name := InboundClusterName(p.port)
	chain := &listenerv3.FilterChain{
		Name:    name,
		Filters: ft.networkFilters(onInboundChain, in, networkFilter(wellknown.HTTPConnectionManager, grpcServerHCM(name, ft, in))),
	}
	if tls := ft.inboundTLS(in); tls.strict {
		chain.TransportSocket = tls.socket
	}
	return &listenerv3.Listener{
		Name:             GRPCServerListenerName(ip, p.port),
		Address:          socketAddress(ip, p.port),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains:     []*listenerv3.FilterChain{chain},
	}
}

// grpcServerHCM routes every RPC to the server's own handlers: grpc-go
// fails an RPC whose route is anything but a non-forwarding action
// (internal/xds/server/routing.go).
func grpcServerHCM(name string, ft *featureTable, in featureInputs) *hcmv3.HttpConnectionManager {
	return localHCM(name, &routev3.Route{Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}}},
		ft.httpFilters(onInboundChain, in))
}
