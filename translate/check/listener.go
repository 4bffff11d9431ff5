package check

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/proxy"
)

// listenerState is what the listener checks of one run share: names and bound addresses
// collide across listeners.
type listenerState struct {
	names map[string]bool
	addrs map[string]string // "protocol address:port" -> listener name
}

func (c *checker) listenerSet() *listenerState {
	if c.listeners == nil {
		c.listeners = &listenerState{names: map[string]bool{}, addrs: map[string]string{}}
	}
	return c.listeners
}

func (c *checker) checkListener(l *listenerv3.Listener) {
	name := l.GetName()
	c.cross(func(c *checker) {
		set := c.listenerSet()
		// lds_api.cc rejects the whole response on a repeated name.
		if set.names[name] {
			c.errorf("duplicate listener %s found", name)
		}
		set.names[name] = true
	})

	if l.GetApiListener() != nil {
		c.checkAPIListener(l)
		return
	}
	addr := listenerAddress(l)
	if l.GetInternalListener() == nil && l.GetAddress() == nil {
		c.errorf("error adding listener named '%s': address is necessary", l.GetName())
	}
	c.checkListenerAddresses(l)
	connectionless := l.GetAddress().GetSocketAddress().GetProtocol() == corev3.SocketAddress_UDP &&
		l.GetUdpListenerConfig().GetQuicOptions() == nil
	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil && !connectionless {
		c.errorf("error adding listener '%s': no filter chains specified", addr)
	}
	ins := c.checkListenerFilters(l.GetListenerFilters())
	if l.GetFilterChainMatcher() != nil {
		c.checkChainNames(l, addr)
	} else {
		c.checkChainMatches(l, addr, ins)
	}
	for i, fc := range l.GetFilterChains() {
		c.pushIndex("filter_chains", i)
		c.checkFilterChain(fc)
		c.pop()
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		c.push("default_filter_chain")
		c.checkFilterChain(dfc)
		c.pop()
	}
	c.checkAccessLogs(l.GetAccessLog())
	if c.peer == proxy.GRPC {
		c.grpcServerListener(l)
	}
}

// checkAPIListener checks the listener grpc-go clients ask for by target name.
func (c *checker) checkAPIListener(l *listenerv3.Listener) {
	if c.peer == proxy.Envoy {
		c.warnAt("api_listener", "listener %s can not be added because currently only one ApiListener is allowed, and it can only be added via bootstrap configuration",
			l.GetName())
	}
	a := l.GetApiListener().GetApiListener()
	c.push("api_listener")
	c.push("api_listener")
	if a != nil {
		if _, known := lookupExtension(a); known {
			if h, ok := c.unpack(a).(*hcmv3.HttpConnectionManager); ok {
				c.checkHCM(h)
			} else {
				c.errorf("unexpected http connection manager resource type: %q", a.GetTypeUrl())
			}
		}
	}
	c.pop()
	c.pop()
	if c.peer == proxy.GRPC {
		c.grpcClientListener(l)
	}
}

// listenerAddress renders the listener's address as Envoy quotes it in errors.
func listenerAddress(l *listenerv3.Listener) string {
	a := l.GetAddress()
	if sa := a.GetSocketAddress(); sa != nil {
		return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	}
	if p := a.GetPipe(); p != nil {
		return p.GetPath()
	}
	return l.GetName()
}

// checkListenerAddresses checks that addresses are IPs and that no two listeners in the push
// bind the same one.
func (c *checker) checkListenerAddresses(l *listenerv3.Listener) {
	name := l.GetName()
	check := func(a *corev3.Address) {
		sa := a.GetSocketAddress()
		if sa == nil {
			return
		}
		if sa.GetResolverName() == "" {
			if _, err := netip.ParseAddr(sa.GetAddress()); err != nil {
				c.errorAt("socket_address.address", "malformed IP address: %s", sa.GetAddress())
				return
			}
		}
		port := sa.GetPortValue()
		if port == 0 {
			// Port 0 asks the kernel for a free port: never a collision.
			return
		}
		hostPort := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(port), 10))
		key := sa.GetProtocol().String() + " " + hostPort
		c.cross(func(c *checker) {
			set := c.listenerSet()
			if other, ok := set.addrs[key]; ok {
				// Binding listeners fail in bind(); non-binding ones are refused outright
				// (listener_manager_impl.cc). Either way the second listener is rejected.
				c.errorf("error adding listener: '%s' has duplicate address '%s' as existing listener (listener '%s')",
					name, hostPort, other)
				return
			}
			set.addrs[key] = name
		})
	}
	if a := l.GetAddress(); a != nil {
		c.push("address")
		check(a)
		c.pop()
	}
	for i, aa := range l.GetAdditionalAddresses() {
		c.pushIndex("additional_addresses", i)
		c.push("address")
		check(aa.GetAddress())
		c.pop()
		c.pop()
	}
}

// inspectors records which listener filters detect what filter chain matches look at.
type inspectors struct{ tls, http bool }

func (c *checker) checkListenerFilters(filters []*listenerv3.ListenerFilter) inspectors {
	var ins inspectors
	for i, lf := range filters {
		c.pushIndex("listener_filters", i)
		tc := lf.GetTypedConfig()
		factory := lf.GetName()
		if tc == nil {
			c.warnMissingTypedConfig(lf.GetConfigDiscovery() != nil)
		} else if e, ok := c.checkExtension(lf.GetName(), tc, kindListenerFilter); ok {
			factory = e.factory
		}
		switch factory {
		case "envoy.filters.listener.tls_inspector":
			ins.tls = true
		case "envoy.filters.listener.http_inspector":
			ins.http = true
		}
		c.pop()
	}
	return ins
}

func (c *checker) warnMissingTypedConfig(discovery bool) {
	if discovery {
		c.warnf("config_discovery (ECDS): weft serves no extension configs, so the filter waits for its configuration forever")
		return
	}
	c.warnf("no typed_config: Envoy falls back to looking the filter up by its name")
}

// checkChainNames applies the rules of listeners that pick chains with filter_chain_matcher.
func (c *checker) checkChainNames(l *listenerv3.Listener, addr string) {
	names := map[string]bool{}
	for i, fc := range l.GetFilterChains() {
		c.pushIndex("filter_chains", i)
		switch {
		case fc.GetName() == "":
			c.errorAt("name", "error adding listener '%s': \"name\" field is required when using a listener matcher", addr)
		case names[fc.GetName()]:
			c.errorAt("name", "error adding listener '%s': \"name\" field is duplicated with value '%s'", addr, fc.GetName())
		}
		names[fc.GetName()] = true
		c.pop()
	}
}

// chainTuple is one leaf of Envoy's filter chain lookup tree
// (filter_chain_manager_impl.cc): a filter chain match expands into the cross product of
// its repeated fields, and two chains owning the same leaf make the listener invalid.
type chainTuple struct {
	dstPort     uint32
	dstIP       netip.Prefix // the zero Prefix is Envoy's catch-all ""
	serverName  string
	transport   string
	alpn        string
	directSrcIP netip.Prefix
	srcType     int32
	srcIP       netip.Prefix
	srcPort     uint32
}

// maxChainTuples bounds the expansion of one chain's match; weft's chains expand to a handful.
const maxChainTuples = 1 << 16

// checkChainMatches reproduces Envoy's two filter chain match checks: an identical
// FilterChainMatch message ("the same matching rules") and, after expanding every repeated
// field, an identical leaf ("overlapping matching rules"). Envoy does not reject chains whose
// CIDRs merely contain one another (the longest prefix wins at run time), so neither does this:
// prefixes are compared after masking, as Envoy's CidrRange::asString() does.
func (c *checker) checkChainMatches(l *listenerv3.Listener, addr string, ins inspectors) {
	chains := l.GetFilterChains()
	exact := make(map[string]int, len(chains))
	tuples := make(map[chainTuple]int, len(chains))
	for i, fc := range chains {
		c.pushIndex("filter_chains", i)
		c.push("filter_chain_match")
		m := fc.GetFilterChainMatch()
		switch {
		case m.GetAddressSuffix() != "" || m.GetSuffixLen() != nil:
			c.errorf("error adding listener '%s': filter chain '%s' contains unimplemented fields", addr, fc.GetName())
		default:
			key, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				break
			}
			if j, dup := exact[string(key)]; dup {
				c.errorf("error adding listener '%s': filter chain '%s' has the same matching rules defined as '%s'",
					addr, fc.GetName(), chains[j].GetName())
				break
			}
			exact[string(key)] = i
			c.warnUninspected(m, ins)
			c.expandChainMatch(m, addr, i, chains, tuples)
		}
		c.pop()
		c.pop()
	}
}

// warnUninspected flags matches on properties no listener filter detects: the chain is
// accepted and never matches.
func (c *checker) warnUninspected(m *listenerv3.FilterChainMatch, ins inspectors) {
	if m.GetTransportProtocol() == "tls" && !ins.tls {
		c.warnAt("transport_protocol", "transport_protocol \"tls\" is detected only by envoy.filters.listener.tls_inspector, which this listener lacks: the chain never matches")
	}
	if len(m.GetServerNames()) > 0 && !ins.tls {
		c.warnAt("server_names", "server_names (SNI) are detected only by envoy.filters.listener.tls_inspector, which this listener lacks: the chain never matches")
	}
	if len(m.GetApplicationProtocols()) > 0 && !ins.tls && !ins.http {
		c.warnAt("application_protocols", "application_protocols are detected only by envoy.filters.listener.tls_inspector or http_inspector, which this listener lacks: the chain never matches")
	}
}

// expandChainMatch adds chain i's leaves to tuples and reports the first leaf another chain
// (or an earlier repetition in chain i itself, which Envoy also rejects) already owns.
func (c *checker) expandChainMatch(m *listenerv3.FilterChainMatch, addr string, i int,
	chains []*listenerv3.FilterChain, tuples map[chainTuple]int) {
	dstIPs, ok := c.cidrKeys("prefix_ranges", m.GetPrefixRanges())
	if !ok {
		return
	}
	directSrcIPs, ok := c.cidrKeys("direct_source_prefix_ranges", m.GetDirectSourcePrefixRanges())
	if !ok {
		return
	}
	srcIPs, ok := c.cidrKeys("source_prefix_ranges", m.GetSourcePrefixRanges())
	if !ok {
		return
	}
	serverNames := []string{""}
	if len(m.GetServerNames()) > 0 {
		serverNames = make([]string, 0, len(m.GetServerNames()))
		for k, sn := range m.GetServerNames() {
			if strings.Contains(sn, "*") && !strings.HasPrefix(sn, "*.") {
				c.pushIndex("server_names", k)
				c.errorf("error adding listener '%s': partial wildcards are not supported in \"server_names\"", addr)
				c.pop()
				return
			}
			sn = strings.ToLower(sn)
			// "*.example.com" is stored as ".example.com": the two collide.
			if strings.HasPrefix(sn, "*.") {
				sn = sn[1:]
			}
			serverNames = append(serverNames, sn)
		}
	}
	alpns := []string{""}
	if len(m.GetApplicationProtocols()) > 0 {
		alpns = m.GetApplicationProtocols()
	}
	srcPorts := []uint32{0}
	if len(m.GetSourcePorts()) > 0 {
		srcPorts = m.GetSourcePorts()
	}
	if n := len(dstIPs) * len(directSrcIPs) * len(srcIPs) * len(serverNames) * len(alpns) * len(srcPorts); n > maxChainTuples {
		c.warnf("filter chain match expands to %d combinations: overlap not checked", n)
		return
	}
	t := chainTuple{dstPort: m.GetDestinationPort().GetValue(), transport: m.GetTransportProtocol(), srcType: int32(m.GetSourceType())}
	for _, t.dstIP = range dstIPs {
		for _, t.serverName = range serverNames {
			for _, t.alpn = range alpns {
				for _, t.directSrcIP = range directSrcIPs {
					for _, t.srcIP = range srcIPs {
						for _, t.srcPort = range srcPorts {
							if j, dup := tuples[t]; dup {
								c.errorf("error adding listener '%s': multiple filter chains with overlapping matching rules are defined (filter chain '%s' and filter chain '%s' both match %s)",
									addr, chains[i].GetName(), chains[j].GetName(), t.describe())
								return
							}
							tuples[t] = i
						}
					}
				}
			}
		}
	}
}

func (t chainTuple) describe() string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	if t.dstPort != 0 {
		add("destination_port", strconv.FormatUint(uint64(t.dstPort), 10))
	}
	add("prefix_range", prefixString(t.dstIP))
	add("server_name", t.serverName)
	add("transport_protocol", t.transport)
	add("application_protocol", t.alpn)
	add("direct_source_prefix_range", prefixString(t.directSrcIP))
	if t.srcType != 0 {
		add("source_type", listenerv3.FilterChainMatch_ConnectionSourceType(t.srcType).String())
	}
	add("source_prefix_range", prefixString(t.srcIP))
	if t.srcPort != 0 {
		add("source_port", strconv.FormatUint(uint64(t.srcPort), 10))
	}
	if b.Len() == 0 {
		return "every connection"
	}
	return b.String()
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

var catchAll = []netip.Prefix{{}}

// cidrKeys normalizes CIDR ranges the way Envoy's CidrRange does (address masked to the
// prefix length, length clamped to the address size), so that "10.1.2.3/8" and "10.0.0.0/8"
// are the same key. An empty list is the catch-all key.
func (c *checker) cidrKeys(field string, ranges []*corev3.CidrRange) ([]netip.Prefix, bool) {
	if len(ranges) == 0 {
		return catchAll, true
	}
	keys := make([]netip.Prefix, 0, len(ranges))
	for k, r := range ranges {
		key, err := cidrKey(r)
		if err != "" {
			c.pushIndex(field, k)
			c.errorf("%s", err)
			c.pop()
			return nil, false
		}
		keys = append(keys, key)
	}
	return keys, true
}

func cidrKey(r *corev3.CidrRange) (netip.Prefix, string) {
	a, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, "malformed IP address: " + r.GetAddressPrefix()
	}
	bits := int(r.GetPrefixLen().GetValue())
	bits = min(bits, a.BitLen())
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return netip.Prefix{}, "Invalid CIDR range"
	}
	return p, ""
}

// checkFilterChain checks one chain's transport socket and network filters.
func (c *checker) checkFilterChain(fc *listenerv3.FilterChain) {
	if ts := fc.GetTransportSocket(); ts != nil {
		c.push("transport_socket")
		c.checkTransportSocket(ts, kindDownstreamTransport)
		c.pop()
	}
	filters := fc.GetFilters()
	if len(filters) == 0 {
		c.warnAt("filters", "no network filters: Envoy closes every connection this chain matches")
	}
	for i, f := range filters {
		c.pushIndex("filters", i)
		tc := f.GetTypedConfig()
		if tc == nil {
			c.warnMissingTypedConfig(f.GetConfigDiscovery() != nil)
			c.pop()
			continue
		}
		if e, ok := c.checkExtension(f.GetName(), tc, kindNetworkFilter); ok {
			c.checkTerminal(f.GetName(), e, i == len(filters)-1, "network", "")
			switch m := c.unpack(tc).(type) {
			case *hcmv3.HttpConnectionManager:
				c.push("typed_config")
				c.checkHCM(m)
				c.pop()
			case *tcpproxyv3.TcpProxy:
				c.push("typed_config")
				c.checkTCPProxy(m)
				c.pop()
			}
		}
		c.pop()
	}
}

// checkTerminal applies Config::Utility::validateTerminalFilters.
func (c *checker) checkTerminal(name string, e extension, last bool, chainType, extra string) {
	switch {
	case e.terminal && !last:
		c.errorf("Error: terminal filter named %s of type %s must be the last filter in a %s filter chain.",
			name, e.factory, chainType)
	case !e.terminal && last:
		c.errorf("Error: non-terminal filter named %s of type %s is the last filter in a %s filter chain.%s",
			name, e.factory, chainType, extra)
	}
}

func (c *checker) checkTransportSocket(ts *corev3.TransportSocket, kind extKind) {
	tc := ts.GetTypedConfig()
	if tc == nil {
		return
	}
	if _, ok := c.checkExtension(ts.GetName(), tc, kind); !ok {
		return
	}
	switch m := c.unpack(tc).(type) {
	case *tlsv3.DownstreamTlsContext:
		c.push("typed_config")
		c.checkDownstreamTLS(m)
		c.pop()
	case *tlsv3.UpstreamTlsContext:
		c.push("typed_config")
		c.checkUpstreamTLS(m)
		c.pop()
	}
}

// checkHCM checks an HTTP connection manager (its typed_config path is current).
func (c *checker) checkHCM(h *hcmv3.HttpConnectionManager) {
	c.checkHTTPFilters(h.GetHttpFilters())
	c.checkAccessLogs(h.GetAccessLog())
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		c.push("rds")
		c.checkConfigSource("config_source", rs.Rds.GetConfigSource())
		if n := rs.Rds.GetRouteConfigName(); n != "" {
			c.cross(func(c *checker) {
				if c.routesGiven && c.routes[n] == nil {
					c.errorAt("route_config_name", "route configuration %q is not in this push: Envoy keeps the listener warming until RDS delivers it", n)
				}
			})
		}
		c.pop()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		c.push("route_config")
		c.checkRouteConfig(rs.RouteConfig, true)
		c.pop()
	case *hcmv3.HttpConnectionManager_ScopedRoutes:
		c.warnAt("scoped_routes", "scoped routes are not checked")
	}
}

func (c *checker) checkHTTPFilters(filters []*hcmv3.HttpFilter) {
	if len(filters) == 0 {
		c.warnAt("http_filters", "no http_filters: without envoy.filters.http.router no request is forwarded")
	}
	for i, f := range filters {
		c.pushIndex("http_filters", i)
		tc := f.GetTypedConfig()
		if tc == nil {
			c.warnMissingTypedConfig(f.GetConfigDiscovery() != nil)
			c.pop()
			continue
		}
		if e, ok := c.checkExtension(f.GetName(), tc, kindHTTPFilter); ok {
			c.checkTerminal(f.GetName(), e, i == len(filters)-1, "http", "")
			if r, ok := c.unpack(tc).(*routerv3.Router); ok && len(r.GetUpstreamHttpFilters()) > 0 {
				c.push("typed_config")
				c.checkUpstreamHTTPFilters("upstream_http_filters", r.GetUpstreamHttpFilters(), "router upstream http")
				c.pop()
			}
		}
		c.pop()
	}
}

// checkUpstreamHTTPFilters checks an upstream HTTP filter chain (router or cluster), which
// must end with the upstream codec.
func (c *checker) checkUpstreamHTTPFilters(field string, filters []*hcmv3.HttpFilter, chainType string) {
	for i, f := range filters {
		c.pushIndex(field, i)
		if tc := f.GetTypedConfig(); tc == nil {
			c.warnMissingTypedConfig(f.GetConfigDiscovery() != nil)
		} else if e, ok := c.checkExtension(f.GetName(), tc, kindUpstreamHTTPFilter); ok {
			c.checkTerminal(f.GetName(), e, i == len(filters)-1, chainType,
				" When upstream_http_filters are specified, they must explicitly end with an UpstreamCodec filter.")
		}
		c.pop()
	}
}

func (c *checker) checkAccessLogs(logs []*accesslogv3.AccessLog) {
	for i, al := range logs {
		if tc := al.GetTypedConfig(); tc != nil {
			c.pushIndex("access_log", i)
			c.checkExtension(al.GetName(), tc, kindAccessLog)
			c.pop()
		}
	}
}

// checkTCPProxy: Envoy accepts a tcp_proxy naming a cluster it does not have and closes
// every connection at run time.
func (c *checker) checkTCPProxy(t *tcpproxyv3.TcpProxy) {
	cluster := t.GetCluster()
	weighted := make([]string, len(t.GetWeightedClusters().GetClusters()))
	for i, wc := range t.GetWeightedClusters().GetClusters() {
		weighted[i] = wc.GetName()
	}
	c.cross(func(c *checker) {
		if !c.clustersGiven {
			return
		}
		if cluster != "" && c.clusters[cluster] == nil {
			c.warnAt("cluster", "cluster %q is not in this push: tcp_proxy closes every connection until it exists", cluster)
		}
		for i, name := range weighted {
			if c.clusters[name] == nil {
				c.pushIndex("weighted_clusters.clusters", i)
				c.warnAt("name", "cluster %q is not in this push: tcp_proxy closes the connections sent to it", name)
				c.pop()
			}
		}
	})
}

// checkConfigSource: weft serves everything on the ADS stream, so every config source it
// emits should be ads (or self, which grpc-go also accepts).
func (c *checker) checkConfigSource(field string, cs *corev3.ConfigSource) {
	c.push(field)
	defer c.pop()
	switch s := cs.GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Ads, *corev3.ConfigSource_Self:
	case *corev3.ConfigSource_ApiConfigSource:
		api := s.ApiConfigSource
		t := api.GetApiType()
		if (t == corev3.ApiConfigSource_GRPC || t == corev3.ApiConfigSource_DELTA_GRPC) && len(api.GetClusterNames()) > 0 {
			c.errorAt("api_config_source", "envoy::config::core::v3::ApiConfigSource::(DELTA_)GRPC must not have a cluster specified: %s",
				strings.Join(api.GetClusterNames(), ","))
			return
		}
		c.warnAt("api_config_source", "a config source other than ads: weft serves every resource on the ADS stream")
	case *corev3.ConfigSource_Path, *corev3.ConfigSource_PathConfigSource:
		c.warnf("a file config source: weft serves every resource on the ADS stream")
	default:
		c.errorf("Missing config source specifier in envoy::config::core::v3::ConfigSource")
	}
}

// anyTypeIs reports whether a holds a message of m's type.
func anyTypeIs(a *anypb.Any, m proto.Message) bool {
	return a != nil && typeName(a.GetTypeUrl()) == fullName(m)
}
