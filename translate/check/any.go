package check

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	grpcstatsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	healthcheckv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tapv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/tap/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	directresponsev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/direct_response/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	genericpoolv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/generic/v3"
	httppoolv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/http/v3"
	tcppoolv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/tcp/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// extKind says where an extension may be configured: Envoy looks a typed_config up in the
// registry of the category the field belongs to, so a known type in the wrong place is as
// unknown to Envoy as a type it was never built with.
type extKind uint16

const (
	kindNetworkFilter extKind = 1 << iota
	kindListenerFilter
	kindHTTPFilter
	kindUpstreamHTTPFilter
	kindPerRoute
	kindDownstreamTransport
	kindUpstreamTransport
	kindProtocolOptions
	kindLBPolicy
	kindAccessLog
	kindUpstreamConfig
)

// extension describes one allow-listed extension type.
type extension struct {
	kinds extKind
	// factory is the Envoy factory name, which Envoy quotes as the "type" of a filter in
	// terminal-filter errors.
	factory string
	// terminal filters must be last in their chain (router, tcp_proxy, HCM, upstream_codec).
	terminal bool
	// perRoute is the type of the filter's per-route config; empty when the filter has none.
	perRoute protoreflect.FullName
}

func (e extension) is(k extKind) bool { return e.kinds&k != 0 }

// extensions is the allow-list: the extensions weft configures, which every supported Envoy
// build has compiled in. Anything else is reported as Envoy reports a type it does not know.
var extensions = map[protoreflect.FullName]extension{}

func fullName(m proto.Message) protoreflect.FullName { return m.ProtoReflect().Descriptor().FullName() }

func init() {
	for _, e := range []struct {
		msg proto.Message
		ext extension
	}{
		{&hcmv3.HttpConnectionManager{}, extension{kinds: kindNetworkFilter, factory: "envoy.filters.network.http_connection_manager", terminal: true}},
		{&tcpproxyv3.TcpProxy{}, extension{kinds: kindNetworkFilter, factory: "envoy.filters.network.tcp_proxy", terminal: true}},
		{&netrbacv3.RBAC{}, extension{kinds: kindNetworkFilter, factory: "envoy.filters.network.rbac"}},
		// Terminal: DirectResponseConfigFactory's isTerminalFilterByProtoTyped returns true
		// (source/extensions/filters/network/direct_response/config.h).
		{&directresponsev3.Config{}, extension{kinds: kindNetworkFilter, factory: "envoy.filters.network.direct_response", terminal: true}},

		{&tlsinspectorv3.TlsInspector{}, extension{kinds: kindListenerFilter, factory: "envoy.filters.listener.tls_inspector"}},
		{&httpinspectorv3.HttpInspector{}, extension{kinds: kindListenerFilter, factory: "envoy.filters.listener.http_inspector"}},
		{&originaldstv3.OriginalDst{}, extension{kinds: kindListenerFilter, factory: "envoy.filters.listener.original_dst"}},

		{&routerv3.Router{}, extension{kinds: kindHTTPFilter, factory: "envoy.filters.http.router", terminal: true}},
		{&httprbacv3.RBAC{}, extension{kinds: kindHTTPFilter, factory: "envoy.filters.http.rbac", perRoute: fullName(&httprbacv3.RBACPerRoute{})}},
		{&httprbacv3.RBACPerRoute{}, extension{kinds: kindPerRoute, factory: "envoy.filters.http.rbac", perRoute: fullName(&httprbacv3.RBACPerRoute{})}},
		{&healthcheckv3.HealthCheck{}, extension{kinds: kindHTTPFilter, factory: "envoy.filters.http.health_check"}},
		{&faultv3.HTTPFault{}, extension{kinds: kindHTTPFilter | kindPerRoute, factory: "envoy.filters.http.fault", perRoute: fullName(&faultv3.HTTPFault{})}},
		{&localratelimitv3.LocalRateLimit{}, extension{kinds: kindHTTPFilter | kindPerRoute, factory: "envoy.filters.http.local_ratelimit", perRoute: fullName(&localratelimitv3.LocalRateLimit{})}},
		{&grpcstatsv3.FilterConfig{}, extension{kinds: kindHTTPFilter, factory: "envoy.filters.http.grpc_stats"}},
		{&tapv3.Tap{}, extension{kinds: kindHTTPFilter, factory: "envoy.filters.http.tap"}},
		{&upstreamcodecv3.UpstreamCodec{}, extension{kinds: kindUpstreamHTTPFilter, factory: "envoy.filters.http.upstream_codec", terminal: true}},
		// The per-route wrapper that carries is_optional / disabled.
		{&routev3.FilterConfig{}, extension{kinds: kindPerRoute}},

		{&tlsv3.DownstreamTlsContext{}, extension{kinds: kindDownstreamTransport, factory: "envoy.transport_sockets.tls"}},
		{&tlsv3.UpstreamTlsContext{}, extension{kinds: kindUpstreamTransport, factory: "envoy.transport_sockets.tls"}},
		{&rawbufferv3.RawBuffer{}, extension{kinds: kindDownstreamTransport | kindUpstreamTransport, factory: "envoy.transport_sockets.raw_buffer"}},

		{&upstreamhttpv3.HttpProtocolOptions{}, extension{kinds: kindProtocolOptions, factory: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"}},
		{&httppoolv3.HttpConnectionPoolProto{}, extension{kinds: kindUpstreamConfig, factory: "envoy.filters.connection_pools.http.http"}},
		{&tcppoolv3.TcpConnectionPoolProto{}, extension{kinds: kindUpstreamConfig, factory: "envoy.filters.connection_pools.http.tcp"}},
		{&genericpoolv3.GenericConnectionPoolProto{}, extension{kinds: kindUpstreamConfig, factory: "envoy.filters.connection_pools.http.generic"}},

		{&leastrequestv3.LeastRequest{}, extension{kinds: kindLBPolicy, factory: "envoy.load_balancing_policies.least_request"}},
		{&roundrobinv3.RoundRobin{}, extension{kinds: kindLBPolicy, factory: "envoy.load_balancing_policies.round_robin"}},
		{&ringhashv3.RingHash{}, extension{kinds: kindLBPolicy, factory: "envoy.load_balancing_policies.ring_hash"}},

		{&filev3.FileAccessLog{}, extension{kinds: kindAccessLog, factory: "envoy.access_loggers.file"}},
		{&streamv3.StdoutAccessLog{}, extension{kinds: kindAccessLog, factory: "envoy.access_loggers.stdout"}},
		{&streamv3.StderrAccessLog{}, extension{kinds: kindAccessLog, factory: "envoy.access_loggers.stderr"}},
		{&grpclogv3.HttpGrpcAccessLogConfig{}, extension{kinds: kindAccessLog, factory: "envoy.access_loggers.http_grpc"}},
		{&grpclogv3.TcpGrpcAccessLogConfig{}, extension{kinds: kindAccessLog, factory: "envoy.access_loggers.tcp_grpc"}},
	} {
		extensions[fullName(e.msg)] = e.ext
	}
}

// typeName is the message name an Any's type URL names (what follows the last '/').
func typeName(typeURL string) protoreflect.FullName {
	return protoreflect.FullName(typeURL[strings.LastIndexByte(typeURL, '/')+1:])
}

func lookupExtension(a *anypb.Any) (extension, bool) {
	e, ok := extensions[typeName(a.GetTypeUrl())]
	return e, ok
}

// anyEntry is one unpacked Any, shared by every place the same bytes occur.
type anyEntry struct {
	msg proto.Message
	err error
	// walked is set once the generic walk ran on msg; rel holds what it found, with paths
	// relative to the Any, so that a second occurrence reports the same problems at its own
	// path without walking again.
	walked bool
	rel    []relProblem
}

type relProblem struct {
	path    string
	msg     string
	warning bool
}

// entry unpacks a, once per distinct (type URL, bytes) in a run.
func (c *checker) entry(a *anypb.Any) *anyEntry {
	byValue := c.anys[a.GetTypeUrl()]
	if byValue == nil {
		byValue = map[string]*anyEntry{}
		c.anys[a.GetTypeUrl()] = byValue
	}
	if e := byValue[string(a.GetValue())]; e != nil {
		return e
	}
	e := &anyEntry{}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		e.err = err
	} else {
		m := mt.New().Interface()
		if err := proto.Unmarshal(a.GetValue(), m); err != nil {
			e.err = err
		} else {
			e.msg = m
		}
	}
	byValue[string(a.GetValue())] = e
	return e
}

// unpack returns the message inside a known Any, or nil when it is unknown or does not
// decode (the generic walk reports both).
func (c *checker) unpack(a *anypb.Any) proto.Message {
	if a == nil {
		return nil
	}
	if _, ok := lookupExtension(a); !ok {
		return nil
	}
	return c.entry(a).msg
}

var (
	anyName      = fullName(&anypb.Any{})
	regexName    = fullName(&matcherv3.RegexMatcher{})
	metadataName = fullName(&corev3.Metadata{})
)

// walkPlan lists, for one message type, the fields that can hold an Any or a RegexMatcher at
// any depth: the walk skips everything else (addresses, durations, wrappers...), which is
// most of a resource, and looks the plan up once per message rather than once per field.
type walkPlan struct {
	fields []protoreflect.FieldDescriptor
}

var (
	// plans is keyed by the descriptor itself: generated types have one descriptor value,
	// and hashing its pointer is much cheaper than hashing its name on every message.
	plans       sync.Map // protoreflect.MessageDescriptor -> *walkPlan
	interesting sync.Map // protoreflect.FullName -> bool, while plans are built
)

func planFor(md protoreflect.MessageDescriptor) *walkPlan {
	if p, ok := plans.Load(md); ok {
		return p.(*walkPlan)
	}
	p := &walkPlan{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		vd := fd
		if fd.IsMap() {
			vd = fd.MapValue()
		}
		if (vd.Kind() == protoreflect.MessageKind || vd.Kind() == protoreflect.GroupKind) &&
			canContainInteresting(vd.Message()) {
			p.fields = append(p.fields, fd)
		}
	}
	actual, _ := plans.LoadOrStore(md, p)
	return actual.(*walkPlan)
}

func canContainInteresting(md protoreflect.MessageDescriptor) bool {
	if v, ok := interesting.Load(md.FullName()); ok {
		return v.(bool)
	}
	return computeInteresting(md, map[protoreflect.FullName]bool{})
}

func computeInteresting(md protoreflect.MessageDescriptor, visiting map[protoreflect.FullName]bool) bool {
	name := md.FullName()
	switch name {
	case anyName, regexName:
		return true
	case metadataName:
		// typed_filter_metadata is opaque to Envoy unless a filter asks for it: its Anys are
		// not configuration and are not looked up in any registry.
		return false
	}
	if v, ok := interesting.Load(name); ok {
		return v.(bool)
	}
	if visiting[name] {
		// A recursive type (matchers, RBAC permissions): assume yes. A "yes" only costs a
		// walk; "no" is cached only when no field could reach an Any.
		return true
	}
	visiting[name] = true
	result := false
	fields := md.Fields()
	for i := 0; i < fields.Len() && !result; i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
			result = computeInteresting(fd.Message(), visiting)
		}
	}
	delete(visiting, name)
	interesting.Store(name, result)
	return result
}

// walk visits every Any and RegexMatcher below m, in field order (map entries by key), so
// that problems come out in the same order on every run.
func (c *checker) walk(m protoreflect.Message) {
	for _, fd := range planFor(m.Descriptor()).fields {
		if !m.Has(fd) {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Get(fd).Map()
			keys := make([]protoreflect.MapKey, 0, mp.Len())
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
			for _, k := range keys {
				c.pushKey(string(fd.Name()), k.String())
				c.visit(mp.Get(k).Message(), m)
				c.pop()
			}
		case fd.IsList():
			list := m.Get(fd).List()
			for j := 0; j < list.Len(); j++ {
				c.pushIndex(string(fd.Name()), j)
				c.visit(list.Get(j).Message(), m)
				c.pop()
			}
		default:
			c.push(string(fd.Name()))
			c.visit(m.Get(fd).Message(), m)
			c.pop()
		}
	}
}

func (c *checker) visit(m protoreflect.Message, parent protoreflect.Message) {
	switch m.Descriptor().FullName() {
	case anyName:
		c.visitAny(m.Interface().(*anypb.Any), parent)
	case regexName:
		c.checkRegex(m.Interface().(*matcherv3.RegexMatcher))
	default:
		c.walk(m)
	}
}

// visitAny checks that Envoy knows the type, unpacks it, runs the inner message's own
// constraints (which go-control-plane's ValidateAll does not reach) and walks into it.
func (c *checker) visitAny(a *anypb.Any, parent protoreflect.Message) {
	if _, ok := lookupExtension(a); !ok {
		c.errorf("Didn't find a registered implementation for '%s' with type URL: '%s'",
			enclosingName(parent), typeName(a.GetTypeUrl()))
		return
	}
	e := c.entry(a)
	if e.walked {
		if len(e.rel) > 0 {
			prefix := c.renderPath()
			for _, p := range e.rel {
				c.problems = append(c.problems, &Problem{
					TypeURL: c.typeURL, Name: c.name, Path: prefix + p.path, Msg: p.msg, Warning: p.warning,
				})
			}
		}
		return
	}
	start := len(c.problems)
	if e.err != nil {
		c.errorf("Unable to unpack as %s: %v", typeName(a.GetTypeUrl()), e.err)
	} else {
		c.validateMessage(e.msg)
		c.walk(e.msg.ProtoReflect())
	}
	e.walked = true
	if len(c.problems) > start {
		prefixLen := len(c.renderPath())
		for _, p := range c.problems[start:] {
			e.rel = append(e.rel, relProblem{path: p.Path[prefixLen:], msg: p.Msg, warning: p.Warning})
		}
	}
}

// enclosingName is the name Envoy quotes for an extension: the "name" field of the message
// holding the typed_config (a filter, a transport socket, a TypedExtensionConfig).
func enclosingName(m protoreflect.Message) string {
	if m == nil {
		return ""
	}
	if fd := m.Descriptor().Fields().ByName("name"); fd != nil && fd.Kind() == protoreflect.StringKind {
		return m.Get(fd).String()
	}
	return ""
}

// checkExtension reports a known extension used where Envoy's registry for that place does
// not have it (an HCM given as a listener filter, a router as a network filter...). Unknown
// types are left to the generic walk, which has already reported them.
func (c *checker) checkExtension(name string, a *anypb.Any, want extKind) (extension, bool) {
	e, ok := lookupExtension(a)
	if !ok {
		return e, false
	}
	if !e.is(want) {
		c.errorAt("typed_config", "Didn't find a registered implementation for '%s' with type URL: '%s'",
			name, typeName(a.GetTypeUrl()))
		return e, false
	}
	return e, true
}
