package translate

import (
	"net/netip"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// detectTimeout bounds protocol detection (Linkerd's detect timeout). A
// connection whose first bytes do not arrive in time — a server-speaks-first
// protocol on a port nobody marked opaque — continues as plain TCP.
const detectTimeout = 10 * time.Second

// httpALPN are the application protocols http_inspector reports for
// plaintext HTTP.
var httpALPN = []string{"http/1.0", "http/1.1", "h2c"}

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

// redirectListener is a listener iptables redirects connections to, on
// every address at port: original_dst restores where each connection was
// going, then the detectors run (each bounded by detectTimeout, after which
// the connection continues undetected); chains match on the restored
// address, and a connection no chain matches passes through.
func redirectListener(name string, port uint32, dir corev3.TrafficDirection, chains []*listenerv3.FilterChain, detectors ...*listenerv3.ListenerFilter) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:                             name,
		Address:                          socketAddress("0.0.0.0", port),
		TrafficDirection:                 dir,
		ListenerFilters:                  append([]*listenerv3.ListenerFilter{listenerFilter(wellknown.OriginalDestination, &originaldstv3.OriginalDst{})}, detectors...),
		ListenerFiltersTimeout:           durationpb.New(detectTimeout),
		ContinueOnListenerFiltersTimeout: true,
		FilterChains:                     chains,
		DefaultFilterChain:               passthroughChain(name),
	}
}

func passthroughChain(statPrefix string) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{
		Name:    PassthroughClusterName,
		Filters: []*listenerv3.Filter{tcpProxyFilter(statPrefix, routeTarget{cluster: PassthroughClusterName})},
	}
}
