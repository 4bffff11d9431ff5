package check

// The rules of a proxyless grpc-go peer, from grpc-go v1.85.0
// internal/xds/xdsclient/xdsresource (unmarshal_{lds,rds,cds,eds}.go, filter_chain.go) and the
// filters registered by default (internal/xds/httpfilter: router, fault, rbac; ext_authz,
// ext_proc and gcp_authn are off unless their GRPC_EXPERIMENTAL_* variables are set).
// Differences from the account the gRFCs give, found in that code (docs/envoy-rejects.md
// summarises them):
//   - LEAST_REQUEST in lb_policy is accepted (gRFC A48), with choice_count >= 2; only other
//     enum values (and LOAD_BALANCING_POLICY_CONFIG!) are "unexpected lbPolicy".
//   - LOGICAL_DNS and aggregate clusters are accepted; STATIC, STRICT_DNS, ORIGINAL_DST are not.
//   - A locality is refused only when the Locality message is absent; an empty one
//     (no region/zone/sub_zone) is accepted, and two of them at one priority collide.
//   - A locality whose load_balancing_weight is unset counts as weight 0 and is dropped.
//   - Server-side listeners: RDS must be ads (self is refused there), only the client side
//     (api_listener) accepts self.
//   - SAN checks read only the deprecated match_subject_alt_names; typed SAN matchers are
//     ignored, so verification silently does not happen.

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// grpcFilter is an HTTP filter grpc-go has registered.
type grpcFilter struct {
	client, server, terminal bool
	// override is the only type accepted in typed_per_filter_config; empty for none.
	override protoreflect.FullName
}

var grpcFilters = map[protoreflect.FullName]grpcFilter{
	fullName(&routerv3.Router{}):         {client: true, server: true, terminal: true},
	fullName(&faultv3.HTTPFault{}):       {client: true, override: fullName(&faultv3.HTTPFault{})},
	fullName(&httprbacv3.RBAC{}):         {server: true, override: fullName(&httprbacv3.RBACPerRoute{})},
	fullName(&httprbacv3.RBACPerRoute{}): {server: true, override: fullName(&httprbacv3.RBACPerRoute{})},
}

// grpcLBPolicies are the load_balancing_policy types grpc-go's xdslbregistry converts.
var grpcLBPolicies = map[protoreflect.FullName]bool{
	fullName(&ringhashv3.RingHash{}):         true,
	fullName(&roundrobinv3.RoundRobin{}):     true,
	fullName(&leastrequestv3.LeastRequest{}): true,
	"envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin": true,
	"envoy.extensions.load_balancing_policies.pick_first.v3.PickFirst":                                          true,
	"envoy.extensions.load_balancing_policies.wrr_locality.v3.WrrLocality":                                      true,
	"udpa.type.v1.TypedStruct": true,
	"xds.type.v3.TypedStruct":  true,
}

const grpcTLSName = "envoy.transport_sockets.tls"

// grpcClientListener checks the api_listener a client resolves "xds:///target" with.
func (c *checker) grpcClientListener(l *listenerv3.Listener) {
	a := l.GetApiListener().GetApiListener()
	c.push("api_listener")
	c.push("api_listener")
	defer func() { c.pop(); c.pop() }()
	if !anyTypeIs(a, &hcmv3.HttpConnectionManager{}) {
		c.errorf("unexpected http connection manager resource type: %q", a.GetTypeUrl())
		return
	}
	h, ok := c.unpack(a).(*hcmv3.HttpConnectionManager)
	if !ok {
		return
	}
	c.grpcHCMAddressing(h)
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if cs := rs.Rds.GetConfigSource(); cs.GetAds() == nil && cs.GetSelf() == nil {
			c.errorAt("rds.config_source", "LDS's RDS configSource is not ADS or Self")
		}
		if rs.Rds.GetRouteConfigName() == "" {
			c.errorAt("rds.route_config_name", "empty route_config_name")
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		c.push("route_config")
		c.grpcRouteConfig(rs.RouteConfig, grpcClientSide)
		c.pop()
	case nil:
		c.errorf("no RouteSpecifier")
	default:
		c.errorf("unsupported type %T for RouteSpecifier", rs)
	}
	c.grpcHTTPFilters(h.GetHttpFilters(), false)
}

// grpcHCMAddressing: gRFC A41.
func (c *checker) grpcHCMAddressing(h *hcmv3.HttpConnectionManager) {
	if h.GetXffNumTrustedHops() != 0 {
		c.errorAt("xff_num_trusted_hops", "xff_num_trusted_hops must be unset or zero")
	}
	if len(h.GetOriginalIpDetectionExtensions()) != 0 {
		c.errorAt("original_ip_detection_extensions", "original_ip_detection_extensions must be empty")
	}
}

// grpcHTTPFilters applies processHTTPFilters: named, unique, registered for this side, and
// ending with the router (gRFC A39).
func (c *checker) grpcHTTPFilters(filters []*hcmv3.HttpFilter, server bool) {
	side := "client"
	if server {
		side = "server"
	}
	type kept struct {
		index    int
		name     string
		terminal bool
	}
	var chain []kept
	seen := make(map[string]bool, len(filters))
	for i, f := range filters {
		c.pushIndex("http_filters", i)
		name := f.GetName()
		switch {
		case name == "":
			c.errorf("filter missing name field")
		case seen[name]:
			c.errorf("duplicate filter name %q", name)
		}
		seen[name] = true
		typeURL := f.GetTypedConfig().GetTypeUrl()
		gf, ok := grpcFilters[typeName(typeURL)]
		switch {
		case !ok && f.GetIsOptional():
		case !ok:
			c.errorf("no filter implementation found for %q", typeURL)
		case (server && !gf.server) || (!server && !gf.client):
			if !f.GetIsOptional() {
				c.errorf("HTTP filter %q not supported %s-side", name, side)
			}
		default:
			chain = append(chain, kept{index: i, name: name, terminal: gf.terminal})
		}
		c.pop()
	}
	if len(chain) == 0 {
		if len(filters) == 0 {
			c.errorAt("http_filters", "http filters list is empty")
		}
		return
	}
	for _, k := range chain[:len(chain)-1] {
		if k.terminal {
			c.pushIndex("http_filters", k.index)
			c.errorf("http filter %q is a terminal filter but it is not last in the filter chain", k.name)
			c.pop()
		}
	}
	if last := chain[len(chain)-1]; !last.terminal {
		c.pushIndex("http_filters", last.index)
		c.errorf("http filter %q is not a terminal filter", last.name)
		c.pop()
	}
}

// grpcServerListener checks a listener an xDS-enabled gRPC server serves on (gRFC A36).
func (c *checker) grpcServerListener(l *listenerv3.Listener) {
	if n := len(l.GetListenerFilters()); n != 0 {
		c.errorAt("listener_filters", "unsupported field 'listener_filters' contains %d entries", n)
	}
	if l.GetUseOriginalDst().GetValue() {
		c.errorAt("use_original_dst", "unsupported field 'use_original_dst' is present and set to true")
	}
	if l.GetAddress() == nil {
		c.errorf("no address field in LDS response")
		return
	}
	if l.GetAddress().GetSocketAddress() == nil {
		c.errorAt("address", "no socket_address field in LDS response")
		return
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		c.push("default_filter_chain")
		c.grpcFilterChain(dfc)
		c.pop()
	}
	used := c.grpcFilterChainMap(l.GetFilterChains())
	if used == 0 && l.GetDefaultFilterChain() == nil {
		c.errorf("no supported filter chains and no default filter chain")
	}
}

// grpcChainKey is a leaf of grpc-go's filter chain map: destination prefix, source type,
// source prefix, source port. Nothing else is matched on.
type grpcChainKey struct {
	dst     netip.Prefix
	srcType listenerv3.FilterChainMatch_ConnectionSourceType
	src     netip.Prefix
	port    uint32
}

// grpcFilterChainMap mirrors buildFilterChainMap: chains matching on what grpc-go cannot
// see are dropped (a warning: they never match), a raw_buffer chain supersedes chains without
// a transport protocol for the same destination, and two chains owning one leaf are an error.
// It returns how many chains remain in use.
func (c *checker) grpcFilterChainMap(chains []*listenerv3.FilterChain) int {
	owner := map[grpcChainKey]int{}
	rawSeen := map[netip.Prefix]bool{}
	for i, fc := range chains {
		c.pushIndex("filter_chains", i)
		c.push("filter_chain_match")
		m := fc.GetFilterChainMatch()
		dropped := func(field, why string) {
			c.warnAt(field, "grpc-go drops a filter chain %s: it never matches", why)
		}
		dsts, ok := c.grpcPrefixes("prefix_ranges", "destination", m.GetPrefixRanges())
		switch {
		case m.GetDestinationPort().GetValue() != 0:
			dropped("destination_port", "that matches on destination_port")
		case !ok:
		case len(m.GetServerNames()) != 0:
			dropped("server_names", "that matches on server_names")
		case m.GetTransportProtocol() != "" && m.GetTransportProtocol() != "raw_buffer":
			dropped("transport_protocol", "whose transport_protocol is neither empty nor raw_buffer")
		case len(m.GetApplicationProtocols()) != 0:
			dropped("application_protocols", "that matches on application_protocols")
		default:
			c.grpcAddChain(i, m, dsts, owner, rawSeen)
		}
		c.pop()
		c.pop()
	}
	used := map[int]bool{}
	for _, i := range owner {
		used[i] = true
	}
	// Only chains still in use are parsed by grpc-go; a bad dropped chain goes unnoticed.
	for i := range chains {
		if used[i] {
			c.pushIndex("filter_chains", i)
			c.grpcFilterChain(chains[i])
			c.pop()
		}
	}
	return len(used)
}

func (c *checker) grpcAddChain(i int, m *listenerv3.FilterChainMatch, dsts []netip.Prefix,
	owner map[grpcChainKey]int, rawSeen map[netip.Prefix]bool) {
	srcs, ok := c.grpcPrefixes("source_prefix_ranges", "source", m.GetSourcePrefixRanges())
	if !ok {
		return
	}
	ports := m.GetSourcePorts()
	if len(ports) == 0 {
		ports = []uint32{0}
	}
	for _, dst := range dsts {
		switch tp := m.GetTransportProtocol(); {
		case tp == "" && rawSeen[dst]:
			c.warnAt("transport_protocol", "grpc-go drops a filter chain without transport_protocol when one with raw_buffer exists for the same destination")
			continue
		case tp != "" && !rawSeen[dst]:
			rawSeen[dst] = true
			for k := range owner {
				if k.dst == dst {
					delete(owner, k)
				}
			}
		}
		for _, src := range srcs {
			for _, port := range ports {
				k := grpcChainKey{dst: dst, srcType: m.GetSourceType(), src: src, port: port}
				if _, dup := owner[k]; dup {
					c.errorf("multiple filter chains with overlapping matching rules are defined")
					return
				}
				owner[k] = i
			}
		}
	}
}

// grpcPrefixes is parsePrefixRanges (which, unlike Envoy, unmaps IPv4-in-IPv6).
func (c *checker) grpcPrefixes(field, which string, ranges []*corev3.CidrRange) ([]netip.Prefix, bool) {
	if len(ranges) == 0 {
		return []netip.Prefix{{}}, true
	}
	out := make([]netip.Prefix, 0, len(ranges))
	for k, r := range ranges {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			c.pushIndex(field, k)
			c.errorf("failed to parse %s prefix ranges: invalid address: %q", which, r.GetAddressPrefix())
			c.pop()
			return nil, false
		}
		bits := int(r.GetPrefixLen().GetValue())
		p := netip.PrefixFrom(a.Unmap(), bits).Masked()
		if !p.IsValid() {
			c.pushIndex(field, k)
			c.errorf("failed to parse %s prefix ranges: length %d is invalid for %q (max %d)", which, bits, r.GetAddressPrefix(), a.BitLen())
			c.pop()
			return nil, false
		}
		out = append(out, p)
	}
	return out, true
}

// grpcFilterChain applies filterChainFromProto and processNetworkFilters.
func (c *checker) grpcFilterChain(fc *listenerv3.FilterChain) {
	seen := map[string]bool{}
	seenHCM := false
	for i, f := range fc.GetFilters() {
		c.pushIndex("filters", i)
		name := f.GetName()
		switch {
		case name == "":
			c.errorf("network filter is missing name field")
		case seen[name]:
			c.errorf("network filters have duplicate filter name %q", name)
		}
		seen[name] = true
		tc := f.GetTypedConfig()
		switch {
		case tc == nil:
			c.errorf("network filter %s has unsupported config_type %T", name, f.GetConfigType())
		case !anyTypeIs(tc, &hcmv3.HttpConnectionManager{}):
			c.errorAt("typed_config", "network filters have unsupported network filter %q", tc.GetTypeUrl())
		default:
			if h, ok := c.unpack(tc).(*hcmv3.HttpConnectionManager); ok {
				c.push("typed_config")
				c.grpcHTTPFilters(h.GetHttpFilters(), true)
				if !seenHCM {
					c.grpcServerHCM(h)
				}
				c.pop()
				seenHCM = true
			}
		}
		c.pop()
	}
	if !seenHCM {
		c.errorAt("filters", "network filters missing HttpConnectionManager filter")
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		c.push("transport_socket")
		c.grpcDownstreamTLS(ts)
		c.pop()
	}
}

func (c *checker) grpcServerHCM(h *hcmv3.HttpConnectionManager) {
	c.grpcHCMAddressing(h)
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if rs.Rds.GetConfigSource().GetAds() == nil {
			c.errorAt("rds.config_source", "ConfigSource is not ADS")
		}
		if rs.Rds.GetRouteConfigName() == "" {
			c.errorAt("rds.route_config_name", "empty route_config_name")
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		c.push("route_config")
		c.grpcRouteConfig(rs.RouteConfig, grpcServerSide)
		c.pop()
	case nil:
		c.errorf("no RouteSpecifier")
	default:
		c.errorf("unsupported type %T for RouteSpecifier", rs)
	}
}

// grpcTLSSocket returns ts's TLS context of type T, reporting what grpc-go refuses first: a
// socket other than its TLS one, or a typed_config of another type.
func grpcTLSSocket[T proto.Message](c *checker, ts *corev3.TransportSocket) (T, bool) {
	var tlsContext T
	if ts.GetName() != grpcTLSName {
		c.errorAt("name", "transport_socket field has unexpected name: %s", ts.GetName())
		return tlsContext, false
	}
	if !anyTypeIs(ts.GetTypedConfig(), tlsContext) {
		c.errorAt("typed_config", "transport_socket missing typed_config or wrong type_url: %q", ts.GetTypedConfig().GetTypeUrl())
		return tlsContext, false
	}
	tlsContext, ok := c.unpack(ts.GetTypedConfig()).(T)
	return tlsContext, ok
}

func (c *checker) grpcDownstreamTLS(ts *corev3.TransportSocket) {
	d, ok := grpcTLSSocket[*tlsv3.DownstreamTlsContext](c, ts)
	if !ok {
		return
	}
	c.push("typed_config")
	defer c.pop()
	if d.GetRequireSni().GetValue() {
		c.errorAt("require_sni", "require_sni field set to true in DownstreamTlsContext message")
	}
	if d.GetOcspStaplePolicy() != tlsv3.DownstreamTlsContext_LENIENT_STAPLING {
		c.errorAt("ocsp_staple_policy", "ocsp_staple_policy field set to unsupported value in DownstreamTlsContext message")
	}
	if d.GetCommonTlsContext() == nil {
		c.errorf("DownstreamTlsContext in LDS response does not contain a CommonTlsContext")
		return
	}
	c.push("common_tls_context")
	sec, ok := c.grpcSecurity(d.GetCommonTlsContext(), true)
	if ok && d.GetRequireClientCertificate().GetValue() && sec.root == "" {
		c.errorf("security configuration on the server-side does not contain root certificate provider instance name, but require_client_cert field is set")
	}
	c.pop()
}

// grpcSec is what grpc-go keeps of a CommonTlsContext: certificate provider instances only
// (gRFC A29). SDS and inline certificates are not consumed.
type grpcSec struct {
	identity, root string
	sans           int
}

func (s grpcSec) empty() bool { return s == grpcSec{} }

// grpcSecurity is securityConfigFromCommonTLSContext, including its fallback to the
// deprecated CertificateProviderInstance fields (the common_tls_context path is current).
func (c *checker) grpcSecurity(ct *tlsv3.CommonTlsContext, server bool) (grpcSec, bool) {
	if ct.GetTlsParams() != nil {
		c.errorAt("tls_params", "unsupported tls_params field in CommonTlsContext message")
		return grpcSec{}, false
	}
	if ct.GetCustomHandshaker() != nil {
		c.errorAt("custom_handshaker", "unsupported custom_handshaker field in CommonTlsContext message")
		return grpcSec{}, false
	}
	sec, field, msg := grpcSecurityNewFields(ct, server)
	if msg != "" || sec.empty() {
		dep, depField, depMsg := grpcSecurityDeprecatedFields(ct, server)
		if depMsg != "" {
			if msg != "" {
				c.errorAt(field, "%s", msg)
			}
			c.errorAt(depField, "failed to parse config using deprecated fields: %s", depMsg)
			return grpcSec{}, false
		}
		if msg != "" {
			c.warnAt(field, "%s (grpc-go falls back to the deprecated certificate provider fields and ignores this)", msg)
		}
		sec = dep
	}
	switch {
	case server && sec.identity == "":
		c.errorf("security configuration on the server-side does not contain identity certificate provider instance name")
		return sec, false
	case !server && sec.root == "":
		c.errorf("security configuration on the client-side does not contain root certificate provider instance name")
		return sec, false
	}
	return sec, true
}

func grpcSecurityNewFields(ct *tlsv3.CommonTlsContext, server bool) (grpcSec, string, string) {
	identity := ct.GetTlsCertificateProviderInstance()
	if identity == nil && len(ct.GetTlsCertificates()) != 0 {
		return grpcSec{}, "tls_certificates", "expected field tls_certificate_provider_instance is not set, while unsupported field tls_certificates is set in CommonTlsContext message"
	}
	if identity == nil && len(ct.GetTlsCertificateSdsSecretConfigs()) != 0 {
		return grpcSec{}, "tls_certificate_sds_secret_configs", "expected field tls_certificate_provider_instance is not set, while unsupported field tls_certificate_sds_secret_configs is set in CommonTlsContext message"
	}
	sec := grpcSec{identity: identity.GetInstanceName()}
	var vc *tlsv3.CertificateValidationContext
	field := "validation_context"
	switch t := ct.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = t.ValidationContext
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		vc = t.CombinedValidationContext.GetDefaultValidationContext()
		field = "combined_validation_context.default_validation_context"
	case nil:
		return sec, "", ""
	default:
		return grpcSec{}, validationFieldName(ct), fmt.Sprintf("validation context contains unexpected type: %T", t)
	}
	switch {
	case len(vc.GetVerifyCertificateSpki()) != 0:
		return grpcSec{}, field, "unsupported verify_certificate_spki field in CommonTlsContext message"
	case len(vc.GetVerifyCertificateHash()) != 0:
		return grpcSec{}, field, "unsupported verify_certificate_hash field in CommonTlsContext message"
	case vc.GetRequireSignedCertificateTimestamp().GetValue():
		return grpcSec{}, field, "unsupported require_signed_certificate_timestamp field in CommonTlsContext message"
	case vc.GetCrl() != nil:
		return grpcSec{}, field, "unsupported crl field in CommonTlsContext message"
	case vc.GetCustomValidatorConfig() != nil:
		return grpcSec{}, field, "unsupported custom_validator_config field in CommonTlsContext message"
	}
	ca := vc.GetCaCertificateProviderInstance()
	if ca == nil {
		return grpcSec{}, field, "expected field ca_certificate_provider_instance is missing in CommonTlsContext message"
	}
	sec.root = ca.GetInstanceName()
	for _, m := range vc.GetMatchSubjectAltNames() {
		if msg := grpcStringMatcherProblem(m); msg != "" {
			return grpcSec{}, field, msg
		}
	}
	sec.sans = len(vc.GetMatchSubjectAltNames())
	if server && sec.sans != 0 {
		return grpcSec{}, field, "match_subject_alt_names field in validation context is not supported on the server"
	}
	return sec, "", ""
}

func grpcSecurityDeprecatedFields(ct *tlsv3.CommonTlsContext, server bool) (grpcSec, string, string) {
	sec := grpcSec{identity: ct.GetTlsCertificateCertificateProviderInstance().GetInstanceName()}
	switch t := ct.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		def := t.CombinedValidationContext.GetDefaultValidationContext()
		for _, m := range def.GetMatchSubjectAltNames() {
			if msg := grpcStringMatcherProblem(m); msg != "" {
				return grpcSec{}, "combined_validation_context", msg
			}
		}
		sec.sans = len(def.GetMatchSubjectAltNames())
		if server && sec.sans != 0 {
			return grpcSec{}, "combined_validation_context", "match_subject_alt_names field in validation context is not supported on the server"
		}
		sec.root = t.CombinedValidationContext.GetValidationContextCertificateProviderInstance().GetInstanceName()
	case *tlsv3.CommonTlsContext_ValidationContextCertificateProviderInstance:
		sec.root = t.ValidationContextCertificateProviderInstance.GetInstanceName()
	case nil:
	default:
		return grpcSec{}, validationFieldName(ct), fmt.Sprintf("validation context contains unexpected type: %T", t)
	}
	return sec, "", ""
}

func validationFieldName(ct *tlsv3.CommonTlsContext) string {
	m := ct.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("validation_context_type")); fd != nil {
		return string(fd.Name())
	}
	return ""
}

// grpcStringMatcherProblem is matcher.StringMatcherFromProto's validation.
func grpcStringMatcherProblem(m *matcherv3.StringMatcher) string {
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Prefix:
		if p.Prefix == "" {
			return "empty prefix is not allowed in StringMatcher"
		}
	case *matcherv3.StringMatcher_Suffix:
		if p.Suffix == "" {
			return "empty suffix is not allowed in StringMatcher"
		}
	case *matcherv3.StringMatcher_Contains:
		if p.Contains == "" {
			return "empty contains is not allowed in StringMatcher"
		}
	case *matcherv3.StringMatcher_SafeRegex:
		if _, err := regexp.Compile(p.SafeRegex.GetRegex()); err != nil {
			return fmt.Sprintf("safe_regex matcher %q is invalid", p.SafeRegex.GetRegex())
		}
	case *matcherv3.StringMatcher_Exact:
	default:
		return fmt.Sprintf("unrecognized string matcher: %T", p)
	}
	return ""
}

// grpcCluster applies validateClusterAndConstructClusterUpdate.
func (c *checker) grpcCluster(cl *clusterv3.Cluster) {
	switch lb := cl.GetLbPolicy(); lb {
	case clusterv3.Cluster_ROUND_ROBIN:
	case clusterv3.Cluster_RING_HASH:
		if hf := cl.GetRingHashLbConfig().GetHashFunction(); hf != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			c.errorAt("ring_hash_lb_config.hash_function", "unsupported ring_hash hash function %v in response", hf)
		}
	case clusterv3.Cluster_LEAST_REQUEST:
		if cc := cl.GetLeastRequestLbConfig().GetChoiceCount(); cc != nil && cc.GetValue() < 2 {
			c.errorAt("least_request_lb_config.choice_count", "Cluster_LeastRequestLbConfig.ChoiceCount must be >= 2, got: %v", cc.GetValue())
		}
	default:
		c.errorAt("lb_policy", "unexpected lbPolicy %v in response", lb)
	}
	if tsm := cl.GetTransportSocketMatches(); len(tsm) != 0 {
		c.errorAt("transport_socket_matches", "unsupported transport_socket_matches field is non-empty")
	} else if ts := cl.GetTransportSocket(); ts != nil {
		c.push("transport_socket")
		c.grpcUpstreamTLS(ts)
		c.pop()
	}
	if lbp := cl.GetLoadBalancingPolicy(); lbp != nil {
		c.push("load_balancing_policy")
		c.grpcLBPolicy(lbp)
		c.pop()
	}
	if lrs := cl.GetLrsServer(); lrs != nil && lrs.GetSelf() == nil {
		c.errorAt("lrs_server", "unsupported config_source_specifier %T in lrs_server field", lrs.GetConfigSourceSpecifier())
	}
	switch {
	case cl.GetType() == clusterv3.Cluster_EDS && cl.GetClusterType() == nil:
		if cs := cl.GetEdsClusterConfig().GetEdsConfig(); cs.GetAds() == nil && cs.GetSelf() == nil {
			c.errorAt("eds_cluster_config.eds_config", "CDS's EDS config source is not ADS or Self")
		}
		if strings.HasPrefix(cl.GetName(), "xdstp:") && cl.GetEdsClusterConfig().GetServiceName() == "" {
			c.errorAt("eds_cluster_config.service_name", "CDS's EDS service name is not set with a new-style cluster name")
		}
	case cl.GetType() == clusterv3.Cluster_LOGICAL_DNS && cl.GetClusterType() == nil:
		c.grpcLogicalDNS(cl)
	case cl.GetClusterType().GetName() == "envoy.clusters.aggregate":
	default:
		c.errorAt("type", "unsupported cluster type (%v, %v) in response", cl.GetType(), cl.GetClusterType().GetName())
	}
}

func (c *checker) grpcLogicalDNS(cl *clusterv3.Cluster) {
	la := cl.GetLoadAssignment()
	if la == nil {
		c.errorf("load_assignment not present for LOGICAL_DNS cluster")
		return
	}
	c.push("load_assignment")
	defer c.pop()
	if len(la.GetEndpoints()) != 1 {
		c.errorf("load_assignment for LOGICAL_DNS cluster must have exactly one locality")
		return
	}
	eps := la.GetEndpoints()[0].GetLbEndpoints()
	if len(eps) != 1 {
		c.errorAt("endpoints[0]", "locality for LOGICAL_DNS cluster must have exactly one endpoint")
		return
	}
	sa := eps[0].GetEndpoint().GetAddress().GetSocketAddress()
	switch {
	case sa == nil:
		c.errorAt("endpoints[0].lb_endpoints[0]", "socket address for endpoint for LOGICAL_DNS cluster not set")
	case sa.GetResolverName() != "":
		c.errorAt("endpoints[0].lb_endpoints[0]", "socket address for endpoint for LOGICAL_DNS cluster not set has unexpected custom resolver name: %v", sa.GetResolverName())
	case sa.GetAddress() == "":
		c.errorAt("endpoints[0].lb_endpoints[0]", "host for endpoint for LOGICAL_DNS cluster not set")
	case sa.GetPortValue() == 0:
		c.errorAt("endpoints[0].lb_endpoints[0]", "port for endpoint for LOGICAL_DNS cluster not set")
	}
}

func (c *checker) grpcUpstreamTLS(ts *corev3.TransportSocket) {
	u, ok := grpcTLSSocket[*tlsv3.UpstreamTlsContext](c, ts)
	if !ok {
		return
	}
	c.push("typed_config")
	defer c.pop()
	if u.GetCommonTlsContext() == nil {
		c.errorf("UpstreamTlsContext in CDS response does not contain a CommonTlsContext")
		return
	}
	c.push("common_tls_context")
	c.grpcSecurity(u.GetCommonTlsContext(), false)
	ct := u.GetCommonTlsContext()
	for _, v := range []struct {
		field string
		vc    *tlsv3.CertificateValidationContext
	}{
		{"validation_context", ct.GetValidationContext()},
		{"combined_validation_context.default_validation_context", ct.GetCombinedValidationContext().GetDefaultValidationContext()},
	} {
		if len(v.vc.GetMatchTypedSubjectAltNames()) > 0 {
			c.warnAt(v.field+".match_typed_subject_alt_names", "grpc-go ignores match_typed_subject_alt_names: the server's identity is not checked (use match_subject_alt_names)")
		}
	}
	c.pop()
}

// grpcLBPolicy: xdslbregistry.ConvertToServiceConfig uses the first policy it knows and
// fails when it knows none.
func (c *checker) grpcLBPolicy(lbp *clusterv3.LoadBalancingPolicy) {
	for i, p := range lbp.GetPolicies() {
		tc := p.GetTypedExtensionConfig().GetTypedConfig()
		if !grpcLBPolicies[typeName(tc.GetTypeUrl())] {
			continue
		}
		// DEFAULT_HASH, the zero value, is refused too: XX_HASH must be explicit.
		if rh, ok := c.unpack(tc).(*ringhashv3.RingHash); ok && rh.GetHashFunction() != ringhashv3.RingHash_XX_HASH {
			c.pushIndex("policies", i)
			c.errorf("unsupported ring_hash hash function %v", rh.GetHashFunction())
			c.pop()
		}
		return
	}
	c.errorf("error converting LoadBalancingPolicy: no supported policy found in the list")
}

// grpcRouteSide is who routes with a route configuration: an RDS resource may serve either.
type grpcRouteSide uint8

const (
	grpcEitherSide grpcRouteSide = iota
	grpcClientSide
	grpcServerSide
)

// grpcRouteConfig applies generateRDSUpdateFromRouteConfiguration (the route configuration's
// path is current).
func (c *checker) grpcRouteConfig(rc *routev3.RouteConfiguration, side grpcRouteSide) {
	for i, vh := range rc.GetVirtualHosts() {
		c.pushIndex("virtual_hosts", i)
		for j, r := range vh.GetRoutes() {
			c.pushIndex("routes", j)
			c.grpcRoute(r, side)
			c.pop()
		}
		if rp := vh.GetRetryPolicy(); rp != nil {
			c.push("retry_policy")
			c.grpcRetryPolicy(rp)
			c.pop()
		}
		c.grpcOverrides(vh.GetTypedPerFilterConfig())
		c.pop()
	}
}

func (c *checker) grpcRoute(r *routev3.Route, side grpcRouteSide) {
	m := r.GetMatch()
	if m == nil {
		c.errorf("route doesn't have a match")
		return
	}
	if len(m.GetQueryParameters()) != 0 {
		c.warnAt("match.query_parameters", "grpc-go ignores a route with query parameter matchers")
		return
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix, *routev3.RouteMatch_Path:
	case *routev3.RouteMatch_SafeRegex:
		if _, err := regexp.Compile(p.SafeRegex.GetRegex()); err != nil {
			c.errorAt("match.safe_regex", "route contains an invalid regex %q", p.SafeRegex.GetRegex())
		}
	case nil:
		c.errorAt("match", "route doesn't have a path specifier")
	default:
		c.errorAt("match", "route has an unrecognized path specifier: %T", p)
	}
	for k, h := range m.GetHeaders() {
		var msg string
		switch hm := h.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_SafeRegexMatch:
			if _, err := regexp.Compile(hm.SafeRegexMatch.GetRegex()); err != nil {
				msg = fmt.Sprintf("route contains an invalid regex %q", hm.SafeRegexMatch.GetRegex())
			}
		case *routev3.HeaderMatcher_StringMatch:
			if hm.StringMatch == nil {
				msg = "route has an empty string matcher"
			} else if p := grpcStringMatcherProblem(hm.StringMatch); p != "" {
				msg = "route has an invalid header matcher: " + p
			}
		case *routev3.HeaderMatcher_PrefixMatch:
			if hm.PrefixMatch == "" {
				msg = "route has an invalid header matcher: empty prefix is not allowed in StringMatcher"
			}
		case *routev3.HeaderMatcher_SuffixMatch:
			if hm.SuffixMatch == "" {
				msg = "route has an invalid header matcher: empty suffix is not allowed in StringMatcher"
			}
		case *routev3.HeaderMatcher_ContainsMatch:
			if hm.ContainsMatch == "" {
				msg = "route has an invalid header matcher: empty contains is not allowed in StringMatcher"
			}
		case *routev3.HeaderMatcher_ExactMatch, *routev3.HeaderMatcher_RangeMatch, *routev3.HeaderMatcher_PresentMatch:
		default:
			msg = fmt.Sprintf("route has an unrecognized header matcher: %T", hm)
		}
		if msg != "" {
			c.pushIndex("match.headers", k)
			c.errorf("%s", msg)
			c.pop()
		}
	}
	// Each side fails, UNAVAILABLE, every RPC matching a route with the other side's action:
	// internal/xds/server/routing.go (gRFC A36) and internal/xds/resolver/serviceconfig.go.
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		if side == grpcServerSide {
			c.warnAt("route", "grpc-go's server fails every RPC matching a route whose action is not non_forwarding_action: \"the incoming RPC matched to a route that was not of action type non forwarding\"")
		}
		c.push("route")
		c.grpcRouteAction(a.Route)
		c.pop()
	case *routev3.Route_NonForwardingAction:
		if side == grpcClientSide {
			c.warnAt("non_forwarding_action", "grpc-go's client fails every RPC matching a route with non_forwarding_action: \"matched route does not have a supported route action type\"")
		}
	default:
		c.warnf("grpc-go fails every RPC matching a route whose action is %T", a)
	}
	c.grpcOverrides(r.GetTypedPerFilterConfig())
}

func (c *checker) grpcRouteAction(ra *routev3.RouteAction) {
	for k, hp := range ra.GetHashPolicy() {
		if rr := hp.GetHeader().GetRegexRewrite(); rr != nil {
			if _, err := regexp.Compile(rr.GetPattern().GetRegex()); err != nil {
				c.pushIndex("hash_policy", k)
				c.errorf("hash policy contains an invalid regex %q", rr.GetPattern().GetRegex())
				c.pop()
			}
		}
	}
	switch cs := ra.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster, *routev3.RouteAction_ClusterSpecifierPlugin:
	case *routev3.RouteAction_WeightedClusters:
		c.push("weighted_clusters")
		var total uint64
		for k, wc := range cs.WeightedClusters.GetClusters() {
			w := wc.GetWeight().GetValue()
			if w == 0 {
				continue
			}
			total += uint64(w)
			if total > math.MaxUint32 {
				c.errorf("xds: total weight of clusters exceeds MaxUint32")
				break
			}
			c.pushIndex("clusters", k)
			c.grpcOverrides(wc.GetTypedPerFilterConfig())
			c.pop()
		}
		if total == 0 {
			c.errorf("route has no valid cluster in WeightedCluster action")
		}
		c.pop()
	default:
		c.warnf("grpc-go ignores a route whose cluster is given by %T", cs)
	}
	if rp := ra.GetRetryPolicy(); rp != nil {
		c.push("retry_policy")
		c.grpcRetryPolicy(rp)
		c.pop()
	}
}

// grpcRetryStatuses are the retry_on tokens grpc-go understands; Envoy's HTTP tokens are
// ignored.
var grpcRetryStatuses = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

func (c *checker) grpcRetryPolicy(rp *routev3.RetryPolicy) {
	if n := rp.GetNumRetries(); n != nil && n.GetValue() < 1 {
		c.errorAt("num_retries", "retry_policy.num_retries = %v; must be >= 1", n.GetValue())
	}
	if bo := rp.GetRetryBackOff(); bo != nil {
		if d := bo.GetBaseInterval().AsDuration(); d <= 0 {
			c.errorAt("retry_back_off.base_interval", "retry_policy.base_interval = %v; must be > 0", d)
		}
		if mi := bo.GetMaxInterval(); mi != nil && mi.AsDuration() <= 0 {
			c.errorAt("retry_back_off.max_interval", "retry_policy.max_interval = %v; must be > 0", mi.AsDuration())
		}
	}
	if rp.GetRetryOn() != "" && !slices.ContainsFunc(strings.Split(rp.GetRetryOn(), ","), func(s string) bool {
		return slices.Contains(grpcRetryStatuses, strings.ToLower(strings.TrimSpace(s)))
	}) {
		c.warnAt("retry_on", "retry_on %q names no gRPC status (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable): grpc-go does not retry", rp.GetRetryOn())
	}
}

// grpcOverrides applies processHTTPFilterOverrides.
func (c *checker) grpcOverrides(m map[string]*anypb.Any) {
	if len(m) == 0 {
		return
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		a := m[name]
		optional := false
		c.pushKey("typed_per_filter_config", name)
		if anyTypeIs(a, &routev3.FilterConfig{}) {
			fc, ok := c.unpack(a).(*routev3.FilterConfig)
			if !ok {
				c.pop()
				continue
			}
			a, optional = fc.GetConfig(), fc.GetIsOptional()
		}
		typeURL := a.GetTypeUrl()
		gf, known := grpcFilters[typeName(typeURL)]
		switch {
		case !known && optional:
		case !known:
			c.errorf("filter override %q: no filter implementation found for %q", name, typeURL)
		case gf.override == "":
			c.errorf("filter override %q: error parsing config for filter %q: unexpected config override specified", name, typeURL)
		case gf.override != typeName(typeURL):
			c.errorf("filter override %q: error parsing config for filter %q: the override must be a %s", name, typeURL, gf.override)
		}
		c.pop()
	}
}

// grpcEndpoints applies parseEDSRespProto.
func (c *checker) grpcEndpoints(cla *endpointv3.ClusterLoadAssignment) {
	type localityID struct{ region, zone, subZone string }
	localities := map[uint32]map[localityID]bool{}
	sums := map[uint32]uint64{}
	addrs := map[string]bool{}
	for i, lle := range cla.GetEndpoints() {
		c.pushIndex("endpoints", i)
		l := lle.GetLocality()
		if l == nil {
			c.errorf("EDS response contains a locality without ID")
			c.pop()
			continue
		}
		if l.GetRegion() == "" && l.GetZone() == "" && l.GetSubZone() == "" {
			c.warnAt("locality", "a locality with no region, zone or sub_zone: grpc-go accepts it, but two such localities at one priority are duplicates")
		}
		w := lle.GetLoadBalancingWeight().GetValue()
		if w == 0 {
			c.warnAt("load_balancing_weight", "grpc-go ignores a locality whose load_balancing_weight is unset or 0: its endpoints get no traffic")
			c.pop()
			continue
		}
		p := lle.GetPriority()
		sums[p] += uint64(w)
		if sums[p] > math.MaxUint32 {
			c.errorf("sum of weights of localities at the same priority %d exceeded maximal value", p)
		}
		id := localityID{l.GetRegion(), l.GetZone(), l.GetSubZone()}
		if localities[p] == nil {
			localities[p] = map[localityID]bool{}
		}
		if localities[p][id] {
			c.errorf("duplicate locality {region=%q zone=%q sub_zone=%q} with the same priority %v", id.region, id.zone, id.subZone, p)
		}
		localities[p][id] = true
		c.grpcLbEndpoints(lle.GetLbEndpoints(), addrs)
		c.pop()
	}
	var seen []uint32
	for p := range localities {
		seen = append(seen, p)
	}
	slices.Sort(seen)
	for p := range uint32(len(localities)) {
		if localities[p] == nil {
			c.errorf("priority %v missing (with different priorities %v received)", p, seen)
			break
		}
	}
}

func (c *checker) grpcLbEndpoints(eps []*endpointv3.LbEndpoint, addrs map[string]bool) {
	var total uint64
	for j, e := range eps {
		c.pushIndex("lb_endpoints", j)
		w := uint32(1)
		if lw := e.GetLoadBalancingWeight(); lw != nil {
			if lw.GetValue() == 0 {
				c.errorAt("load_balancing_weight", "EDS response contains an endpoint with zero weight")
			}
			w = lw.GetValue()
		}
		total += uint64(w)
		if total > math.MaxUint32 {
			c.errorf("sum of weights of endpoints in the same locality exceeds maximum value %d", uint64(math.MaxUint32))
		}
		// Dual-stack endpoints are read by default (GRPC_EXPERIMENTAL_XDS_DUALSTACK_ENDPOINTS).
		check := func(field string, sa *corev3.SocketAddress) {
			a := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			if addrs[a] {
				c.errorAt(field, "duplicate endpoint with the same address %s", a)
			}
			addrs[a] = true
		}
		check("endpoint.address", e.GetEndpoint().GetAddress().GetSocketAddress())
		for k, aa := range e.GetEndpoint().GetAdditionalAddresses() {
			check("endpoint.additional_addresses["+strconv.Itoa(k)+"].address", aa.GetAddress().GetSocketAddress())
		}
		c.pop()
	}
}
