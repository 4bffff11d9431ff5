package translate

import (
	"net/netip"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
)

// detectTimeout bounds protocol detection (Linkerd's detect timeout). A
// connection whose first bytes do not arrive in time — a server-speaks-first
// protocol on a port nobody marked opaque — continues as plain TCP.
const detectTimeout = 10 * time.Second

// httpALPN are the application protocols http_inspector reports for
// plaintext HTTP.
var httpALPN = []string{"http/1.0", "http/1.1", "h2c"}

// chainKey is a destination a filter chain claims: two chains claiming the
// same one make Envoy refuse the whole listener.
type chainKey struct {
	addr netip.Addr
	port uint32
}

// chainGroup is the filter chains for one destination set (an HTTP chain and
// its TCP fallback), kept or dropped together.
type chainGroup struct {
	keys   []chainKey
	chains []*listenerv3.FilterChain
	owner  mesh.ServiceKey
	port   uint32
	http   bool // has an HCM chain, so http_inspector must run on port
}

func prefixRanges(addrs []netip.Addr) []*corev3.CidrRange {
	out := make([]*corev3.CidrRange, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))})
	}
	return out
}

func networkFilter(name string, cfg proto.Message) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

func tcpProxyFilter(statPrefix string, target routeTarget) *listenerv3.Filter {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix}
	if len(target.backends) == 0 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: target.cluster}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, b := range target.backends {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: b.cluster, Weight: b.weight})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return networkFilter(wellknown.TCPProxy, tp)
}

// routerFilter is the terminal HTTP filter. grpc-go wants every HTTP filter
// name unique and non-empty; Envoy wants the router last.
func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(routerConfig())},
	}
}

// websocketUpgrade lets HTTP/1.1 upgrades to WebSocket through, as they go
// through Linkerd; Envoy refuses upgrades it is not told about.
func websocketUpgrade() []*hcmv3.HttpConnectionManager_UpgradeConfig {
	return []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
}

func rdsHCM(statPrefix, routeName string, filters []*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: filters,
	}
}

func outboundHCM(routeName string) *hcmv3.HttpConnectionManager {
	hcm := rdsHCM(OutboundListenerName, routeName, []*hcmv3.HttpFilter{routerFilter()})
	hcm.UpgradeConfigs = websocketUpgrade()
	return hcm
}

// outboundChains builds the chains of one destination (a service port's
// cluster IPs, or one headless endpoint): for HTTP an HCM chain for
// connections http_inspector recognised as HTTP plus a TCP chain for the
// rest (an app speaking TLS or anything else to a port nobody declared
// opaque still gets through, balanced); for opaque ports the TCP chain only.
func outboundChains(name string, addrs []netip.Addr, port uint32, opaque bool, routeName string, target routeTarget) chainGroup {
	g := chainGroup{port: port, http: !opaque}
	for _, a := range addrs {
		g.keys = append(g.keys, chainKey{a, port})
	}
	match := func(alpn []string) *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{
			DestinationPort:      wrapperspb.UInt32(port),
			PrefixRanges:         prefixRanges(addrs),
			ApplicationProtocols: alpn,
		}
	}
	if !opaque {
		g.chains = append(g.chains, &listenerv3.FilterChain{
			Name:             name + "|http",
			FilterChainMatch: match(httpALPN),
			Filters:          []*listenerv3.Filter{networkFilter(wellknown.HTTPConnectionManager, outboundHCM(routeName))},
		})
	}
	g.chains = append(g.chains, &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: match(nil),
		Filters:          []*listenerv3.Filter{tcpProxyFilter(OutboundListenerName, target)},
	})
	return g
}

// portRanges merges sorted, distinct ports into half-open ranges.
func portRanges(ports []uint32) []*typev3.Int32Range {
	var out []*typev3.Int32Range
	for _, p := range ports {
		if n := len(out); n > 0 && out[n-1].End == int32(p) {
			out[n-1].End++
			continue
		}
		out = append(out, &typev3.Int32Range{Start: int32(p), End: int32(p) + 1})
	}
	return out
}

// onlyOnPorts is a listener-filter predicate for filter_disabled: true
// (filter off) for connections to any port but the given ones.
func onlyOnPorts(ports []uint32) *listenerv3.ListenerFilterChainMatchPredicate {
	ranges := portRanges(ports)
	if len(ranges) == 0 {
		return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_AnyMatch{AnyMatch: true}}
	}
	var on *listenerv3.ListenerFilterChainMatchPredicate
	if len(ranges) == 1 {
		on = &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{DestinationPortRange: ranges[0]}}
	} else {
		set := &listenerv3.ListenerFilterChainMatchPredicate_MatchSet{}
		for _, r := range ranges {
			set.Rules = append(set.Rules, &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{DestinationPortRange: r}})
		}
		on = &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_OrMatch{OrMatch: set}}
	}
	return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: on}}
}

// detectionPorts are the ports where protocol detection has a use: some
// chain there needs to tell HTTP from the rest. Everywhere else — opaque
// ports, ports only unknown destinations use — detection is off, so a
// server-speaks-first protocol never waits for the detect timeout there.
// A port that is opaque for one destination and HTTP for another is left
// undetected: the HTTP destination then gets TCP handling (still
// balanced), which is better than stalling the opaque one.
func detectionPorts(httpPorts, opaquePorts []uint32) []uint32 {
	slices.Sort(opaquePorts)
	out := make([]uint32, 0, len(httpPorts))
	for _, p := range httpPorts {
		if _, opaque := slices.BinarySearch(opaquePorts, p); !opaque {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func listenerFilter(name string, cfg proto.Message) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       name,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(cfg)},
	}
}

// detectingFilter is a listener filter that runs only on the given ports.
func detectingFilter(name string, cfg proto.Message, ports []uint32) *listenerv3.ListenerFilter {
	f := listenerFilter(name, cfg)
	f.FilterDisabled = onlyOnPorts(ports)
	return f
}

func passthroughChain(statPrefix string) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{
		Name:    PassthroughClusterName,
		Filters: []*listenerv3.Filter{tcpProxyFilter(statPrefix, routeTarget{cluster: PassthroughClusterName})},
	}
}

// outboundListener takes every connection the app opens (iptables
// redirects them here). The original_dst listener filter restores where the
// connection was going, and chains match on that address: a chain per known
// destination, and a default chain passing everything else through
// untouched. use_original_dst is not set: there are no per-destination
// listeners to hand connections to. Ports in the proxy's skip-outbound list
// never reach the proxy (iptables lets them out directly), so they get no
// chain.
func outboundListener(chains []*listenerv3.FilterChain, detectOn []uint32) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             OutboundListenerName,
		Address:          socketAddress("0.0.0.0", mesh.ProxyOutboundPort),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{
			listenerFilter(wellknown.OriginalDestination, &originaldstv3.OriginalDst{}),
			detectingFilter(wellknown.HTTPInspector, &httpinspectorv3.HttpInspector{}, detectOn),
		},
		ListenerFiltersTimeout:           durationpb.New(detectTimeout),
		ContinueOnListenerFiltersTimeout: true,
		FilterChains:                     chains,
		DefaultFilterChain:               passthroughChain(OutboundListenerName),
	}
}

// apiListener is what a proxyless grpc-go client asks LDS for: no address,
// only an HCM whose routes come over ADS.
func apiListener(name, routeName string) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(
			rdsHCM(OutboundListenerName, routeName, []*hcmv3.HttpFilter{routerFilter()}))},
	}
}

// inboundPort is one port the app serves, as the inbound listener sees it.
type inboundPort struct {
	port     uint32
	protocol mesh.Protocol
	opaque   bool
}

// inboundChains: for an opaque port a TCP chain; otherwise an HTTP chain
// (plaintext HTTP recognised by http_inspector) and a TCP fallback.
func inboundChains(p inboundPort) []*listenerv3.FilterChain {
	cluster := InboundClusterName(p.port)
	tcp := &listenerv3.FilterChain{
		Name:             cluster,
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.port)},
		Filters:          []*listenerv3.Filter{tcpProxyFilter(InboundListenerName, routeTarget{cluster: cluster})},
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
		HttpFilters:    inboundHTTPFilters(),
		UpgradeConfigs: websocketUpgrade(),
	}
	httpChain := &listenerv3.FilterChain{
		Name: cluster + "|http",
		FilterChainMatch: &listenerv3.FilterChainMatch{
			DestinationPort:      wrapperspb.UInt32(p.port),
			TransportProtocol:    "raw_buffer",
			ApplicationProtocols: httpALPN,
		},
		Filters: []*listenerv3.Filter{networkFilter(wellknown.HTTPConnectionManager, hcm)},
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
// may reach (TODO(identity), see inboundTLSContext).
func inboundListener(ports []inboundPort) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	var detect []uint32
	for _, p := range ports {
		chains = append(chains, inboundChains(p)...)
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
