package proxyconfig

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func renderListeners(w io.Writer, cfg *config) {
	fmt.Fprintf(w, "LISTENERS (%d)\n", len(cfg.listeners))
	for _, p := range cfg.problems[resourcev3.ListenerType] {
		fmt.Fprintln(w, p)
	}
	if len(cfg.listeners) == 0 {
		fmt.Fprintln(w, "(none)")
		return
	}
	t := newTable(w, "", "NAME", "ADDRESS", "MATCH", "ACTION")
	for _, l := range cfg.listeners {
		name, addr := l.GetName(), listenerAddress(l)
		if api := l.GetApiListener().GetApiListener(); api != nil {
			t.row(name, addr, "(api listener)", anyNetworkFilter(cfg, "", api))
			continue
		}
		rows := 0
		for _, fc := range l.GetFilterChains() {
			t.row(name, addr, chainMatch(fc.GetFilterChainMatch()), chainAction(cfg, fc))
			name, addr = "", ""
			rows++
		}
		if fc := l.GetDefaultFilterChain(); fc != nil {
			t.row(name, addr, "(default)", chainAction(cfg, fc))
			rows++
		}
		if rows == 0 {
			t.row(name, addr, "(no filter chains)", "refuses every connection")
		}
	}
	t.flush()
}

func listenerAddress(l *listenerv3.Listener) string {
	if l.GetApiListener() != nil && l.GetAddress() == nil {
		return "-"
	}
	out := []string{address(l.GetAddress())}
	for _, a := range l.GetAdditionalAddresses() {
		out = append(out, address(a.GetAddress()))
	}
	return strings.Join(out, ",")
}

func address(a *corev3.Address) string {
	switch {
	case a.GetSocketAddress() != nil:
		sa := a.GetSocketAddress()
		port := ""
		switch p := sa.GetPortSpecifier().(type) {
		case *corev3.SocketAddress_PortValue:
			port = strconv.FormatUint(uint64(p.PortValue), 10)
		case *corev3.SocketAddress_NamedPort:
			port = p.NamedPort
		}
		return net.JoinHostPort(sa.GetAddress(), port)
	case a.GetPipe() != nil:
		return "unix:" + a.GetPipe().GetPath()
	case a.GetEnvoyInternalAddress() != nil:
		return "internal:" + a.GetEnvoyInternalAddress().GetServerListenerName()
	}
	return "-"
}

func cidr(c *corev3.CidrRange) string {
	l := c.GetPrefixLen().GetValue()
	if (l == 32 && !strings.Contains(c.GetAddressPrefix(), ":")) || l == 128 {
		return c.GetAddressPrefix()
	}
	if c.GetPrefixLen() == nil {
		return c.GetAddressPrefix() + "/0"
	}
	return c.GetAddressPrefix() + "/" + strconv.FormatUint(uint64(l), 10)
}

func cidrs(cs []*corev3.CidrRange) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = cidr(c)
	}
	return strings.Join(out, ",")
}

// chainMatch is a filter chain's match, most selective first: destination,
// transport, ALPN, SNI, source.
func chainMatch(m *listenerv3.FilterChainMatch) string {
	var parts []string
	port := ""
	if p := m.GetDestinationPort(); p != nil {
		port = strconv.FormatUint(uint64(p.GetValue()), 10)
	}
	switch {
	case len(m.GetPrefixRanges()) > 0 && port != "":
		if len(m.GetPrefixRanges()) == 1 && !strings.Contains(cidr(m.GetPrefixRanges()[0]), "/") {
			parts = append(parts, "dst "+net.JoinHostPort(cidr(m.GetPrefixRanges()[0]), port))
		} else {
			parts = append(parts, "dst "+cidrs(m.GetPrefixRanges())+" port "+port)
		}
	case len(m.GetPrefixRanges()) > 0:
		parts = append(parts, "dst "+cidrs(m.GetPrefixRanges()))
	case port != "":
		parts = append(parts, "port "+port)
	}
	if len(m.GetDirectSourcePrefixRanges()) > 0 {
		parts = append(parts, "direct src "+cidrs(m.GetDirectSourcePrefixRanges()))
	}
	if len(m.GetSourcePrefixRanges()) > 0 {
		parts = append(parts, "src "+cidrs(m.GetSourcePrefixRanges()))
	}
	if len(m.GetSourcePorts()) > 0 {
		ports := make([]string, len(m.GetSourcePorts()))
		for i, p := range m.GetSourcePorts() {
			ports[i] = strconv.FormatUint(uint64(p), 10)
		}
		parts = append(parts, "src port "+strings.Join(ports, ","))
	}
	if st := m.GetSourceType(); st != listenerv3.FilterChainMatch_ANY {
		parts = append(parts, "src "+strings.ToLower(st.String()))
	}
	if tp := m.GetTransportProtocol(); tp != "" {
		parts = append(parts, tp)
	}
	if alpn := m.GetApplicationProtocols(); len(alpn) > 0 {
		parts = append(parts, "alpn "+strings.Join(alpn, ","))
	}
	if sni := m.GetServerNames(); len(sni) > 0 {
		parts = append(parts, "sni "+strings.Join(sni, ","))
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, ", ")
}

// chainAction says what a filter chain does with a connection: its TLS,
// then its network filters in order, the last one (which handles the
// traffic) described in full.
func chainAction(cfg *config, fc *listenerv3.FilterChain) string {
	var steps []string
	if ts := fc.GetTransportSocket(); ts != nil {
		steps = append(steps, downstreamTLS(ts))
	}
	for _, f := range fc.GetFilters() {
		steps = append(steps, networkFilter(cfg, f))
	}
	if len(fc.GetFilters()) == 0 {
		steps = append(steps, "no filters: closes the connection")
	}
	return strings.Join(steps, " -> ")
}

func networkFilter(cfg *config, f *listenerv3.Filter) string {
	if tc := f.GetTypedConfig(); tc != nil {
		return anyNetworkFilter(cfg, f.GetName(), tc)
	}
	return shortFilterName(f.GetName())
}

func anyNetworkFilter(cfg *config, name string, tc *anypb.Any) string {
	m, err := tc.UnmarshalNew()
	if err != nil {
		return cmp.Or(shortFilterName(name), shortTypeURL(tc.GetTypeUrl())) + " (not understood)"
	}
	switch v := m.(type) {
	case *hcmv3.HttpConnectionManager:
		return hcmAction(v)
	case *tcpproxyv3.TcpProxy:
		return tcpAction(cfg, v)
	}
	return cmp.Or(shortFilterName(name), shortTypeURL(tc.GetTypeUrl()))
}

func hcmAction(h *hcmv3.HttpConnectionManager) string {
	var s string
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		s = "HTTP via route config " + rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		s = "HTTP via inline route config " + rs.RouteConfig.GetName()
	case *hcmv3.HttpConnectionManager_ScopedRoutes:
		s = "HTTP via scoped routes " + rs.ScopedRoutes.GetName()
	default:
		s = "HTTP without routes"
	}
	var extra []string
	for _, f := range h.GetHttpFilters() {
		n := shortFilterName(f.GetName())
		if n == "router" {
			continue
		}
		extra = append(extra, n)
	}
	if len(extra) > 0 {
		s += " (filters: " + strings.Join(extra, ", ") + ")"
	}
	return s
}

func tcpAction(cfg *config, t *tcpproxyv3.TcpProxy) string {
	switch cs := t.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		if cfg.isPassthrough(cs.Cluster) {
			return "passthrough to the original destination (cluster " + cs.Cluster + ")"
		}
		return "TCP to cluster " + cs.Cluster
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		var ws []weighted
		for _, c := range cs.WeightedClusters.GetClusters() {
			ws = append(ws, weighted{c.GetName(), uint64(c.GetWeight())})
		}
		return "TCP to " + splitString(ws, 0)
	}
	return "TCP to nowhere"
}

func downstreamTLS(ts *corev3.TransportSocket) string {
	tc := ts.GetTypedConfig()
	m, err := tc.UnmarshalNew()
	if err != nil {
		return "transport " + cmp.Or(shortFilterName(ts.GetName()), shortTypeURL(tc.GetTypeUrl()))
	}
	d, ok := m.(*tlsv3.DownstreamTlsContext)
	if !ok {
		return "transport " + shortTypeURL(tc.GetTypeUrl())
	}
	s := "TLS"
	if d.GetRequireClientCertificate().GetValue() {
		s = "mTLS"
	}
	if certs := tlsCertNames(d.GetCommonTlsContext()); certs != "" {
		s += " (" + certs + ")"
	}
	return s
}

// tlsCertNames names where a TLS context's certificates come from; the
// certificates themselves, and keys, are never printed.
func tlsCertNames(c *tlsv3.CommonTlsContext) string {
	var parts []string
	for _, s := range c.GetTlsCertificateSdsSecretConfigs() {
		parts = append(parts, "cert sds "+s.GetName())
	}
	if n := len(c.GetTlsCertificates()); n > 0 {
		parts = append(parts, fmt.Sprintf("%d inline cert(s)", n))
	}
	switch v := c.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		parts = append(parts, "ca sds "+v.ValidationContextSdsSecretConfig.GetName())
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		parts = append(parts, "ca sds "+v.CombinedValidationContext.GetValidationContextSdsSecretConfig().GetName())
	case *tlsv3.CommonTlsContext_ValidationContext:
		parts = append(parts, "inline ca")
	}
	return strings.Join(parts, ", ")
}

// inlineRouteConfigs returns the route configurations carried inside a
// listener's HTTP connection managers.
func inlineRouteConfigs(l *listenerv3.Listener) []*routev3.RouteConfiguration {
	var out []*routev3.RouteConfiguration
	add := func(tc *anypb.Any) {
		var h hcmv3.HttpConnectionManager
		if tc.GetTypeUrl() != resourcev3.APITypePrefix+string(proto.MessageName(&h)) {
			return
		}
		if err := tc.UnmarshalTo(&h); err != nil {
			return
		}
		if rc := h.GetRouteConfig(); rc != nil {
			out = append(out, rc)
		}
	}
	add(l.GetApiListener().GetApiListener())
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			add(f.GetTypedConfig())
		}
	}
	return out
}

func shortFilterName(n string) string {
	for _, p := range []string{"envoy.filters.network.", "envoy.filters.http.", "envoy.filters.listener.", "envoy.transport_sockets."} {
		if strings.HasPrefix(n, p) {
			return strings.TrimPrefix(n, p)
		}
	}
	return n
}

func shortTypeURL(u string) string {
	return u[strings.LastIndexByte(u, '/')+1:]
}
