// Package check finds, before a push, what Envoy or a proxyless grpc-go client would NACK
// although go-control-plane's ValidateAll() lets it through.
//
// Resources and Problems look at one node's complete set of resources at once, because most
// rejections are about relations: a route naming a cluster, a listener naming a route
// configuration or a secret, two filter chains or two listeners colliding. Every rule quotes the
// peer's own wording (Envoy's C++ sources, grpc-go's xdsresource package) so that a NACK seen in
// a log can be matched with the problem found here. The rules and where they come from are
// listed, with why, in docs/envoy-rejects.md; rule-by-rule comments below say why a rule is
// shaped the way it is, in particular where it deliberately differs from the peer.
package check

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftmesh/weft/proxy"
)

// Problem is one thing a peer would refuse (or, for a Warning, accept and then fail at run
// time) in one resource.
type Problem struct {
	// TypeURL is the go-control-plane type URL of the resource (resource.ListenerType...).
	TypeURL string
	// Name is the resource name (a ClusterLoadAssignment's cluster_name).
	Name string
	// Path is the proto field path inside the resource, through unpacked Anys, e.g.
	// "filter_chains[1].filters[0].typed_config.route_config.virtual_hosts[0].domains[2]".
	// Empty when the problem is about the resource as a whole.
	Path string
	// Msg says what is wrong, quoting the peer's wording where there is one.
	Msg string
	// Warning marks what the peer accepts but what fails at run time.
	Warning bool
}

func (p *Problem) Error() string {
	var b strings.Builder
	b.Grow(len(p.Name) + len(p.Path) + len(p.Msg) + 32)
	b.WriteString(shortType(p.TypeURL))
	b.WriteByte(' ')
	b.WriteString(p.Name)
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Resources checks one node's full set of resources, keyed by go-control-plane type URL
// (resource.ListenerType, RouteType, ClusterType, EndpointType, SecretType). It returns nil
// or an error that is errors.Join of *Problem values; warnings are left out.
//
// A type URL present with an empty list means the push carries none of that type, so a
// reference to one (a route configuration, cluster or secret name) is a problem; a type URL
// absent from the map means "not part of this check", and references into it are not
// checked. The xDS server passes all five.
//
// peer is the kind of client the set is meant for: a proxyless gRPC peer runs every Envoy
// rule plus its own, stricter ones (gRFC A27/A28/A29/A36/A39/A41/A52).
func Resources(peer proxy.Kind, res map[string][]types.Resource) error {
	var errs []error
	for _, p := range Problems(peer, res) {
		if !p.Warning {
			errs = append(errs, p)
		}
	}
	return errors.Join(errs...)
}

// Problems returns every problem found in one node's resources, warnings included, in a
// deterministic order: by resource type (listeners, routes, clusters, endpoints, secrets,
// then other types by URL), then by resource name, then in the order they were found.
func Problems(peer proxy.Kind, res map[string][]types.Resource) []*Problem {
	c := newChecker(peer, res)
	c.run()
	slices.SortStableFunc(c.problems, func(a, b *Problem) int {
		if ra, rb := typeRank(a.TypeURL), typeRank(b.TypeURL); ra != rb {
			return ra - rb
		}
		if a.TypeURL != b.TypeURL {
			return strings.Compare(a.TypeURL, b.TypeURL)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return c.problems
}

// The order resources are checked and problems are sorted in.
var typeOrder = []string{
	resource.ListenerType,
	resource.RouteType,
	resource.ClusterType,
	resource.EndpointType,
	resource.SecretType,
}

func typeRank(typeURL string) int {
	if i := slices.Index(typeOrder, typeURL); i >= 0 {
		return i
	}
	return len(typeOrder)
}

func shortType(typeURL string) string {
	if i := strings.LastIndexByte(typeURL, '.'); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// checker holds one run's indexes, caches and the position being checked.
type checker struct {
	peer proxy.Kind
	res  map[string][]types.Resource

	clusters      map[string]*clusterv3.Cluster
	clustersGiven bool
	routes        map[string]*routev3.RouteConfiguration
	routesGiven   bool
	secrets       map[string]*tlsv3.Secret
	secretsGiven  bool
	// edsNames are the names EDS clusters subscribe to (service_name, else the cluster name).
	edsNames map[string]bool

	// anys caches unpacked Anys by type URL and then by value bytes: the same typed_config
	// (router, TLS context, protocol options) recurs across hundreds of resources, and the
	// two-level map lets a lookup convert the bytes to a string key without allocating.
	anys map[string]map[string]*anyEntry
	// pemResults caches inline PEM checks by content: parsing certificates is the most
	// expensive thing done here and the same chain is referenced many times.
	pemResults map[string]string
	listeners  *listenerState
	regexes    map[string]regexResult
	// seen holds, by type URL, the names checked so far, for duplicate checks.
	seen map[string]map[string]bool
	// deferred collects the cross-resource checks of the resource being recorded.
	deferred []deferredCheck

	typeURL  string
	name     string
	path     []pathSeg
	problems []*Problem
}

// pathSeg is one step of a field path: a field, optionally indexed or keyed.
type pathSeg struct {
	field string
	index int // -1 when not a list element
	key   string
	keyed bool
}

func newChecker(peer proxy.Kind, res map[string][]types.Resource) *checker {
	return &checker{
		peer:       peer,
		res:        res,
		clusters:   map[string]*clusterv3.Cluster{},
		routes:     map[string]*routev3.RouteConfiguration{},
		secrets:    map[string]*tlsv3.Secret{},
		edsNames:   map[string]bool{},
		anys:       map[string]map[string]*anyEntry{},
		pemResults: map[string]string{},
		regexes:    map[string]regexResult{},
		seen:       map[string]map[string]bool{},
		path:       make([]pathSeg, 0, 32),
	}
}

func (c *checker) run() {
	c.index()
	for _, typeURL := range typeOrder {
		for _, r := range c.res[typeURL] {
			c.replay(c.local(typeURL, r))
		}
	}
	// Other types (runtime, extension configs...) get the generic checks only.
	var others []string
	for typeURL := range c.res {
		if typeRank(typeURL) == len(typeOrder) {
			others = append(others, typeURL)
		}
	}
	slices.Sort(others)
	for _, typeURL := range others {
		for _, r := range c.res[typeURL] {
			c.replay(c.local(typeURL, r))
		}
	}
}

// checkLocal runs the checks of one resource. What depends on other resources of the node
// goes through c.cross, so that the rest can be memoized (memo.go).
func (c *checker) checkLocal(typeURL string, r types.Resource) {
	m := c.begin(typeURL, r)
	switch typeURL {
	case resource.ListenerType:
		if l, ok := m.(*listenerv3.Listener); ok {
			c.checkListener(l)
		}
	case resource.RouteType:
		if rc, ok := m.(*routev3.RouteConfiguration); ok {
			name := rc.GetName()
			c.cross(func(c *checker) { c.checkDuplicate(c.seenIn(resource.RouteType), name, "RouteConfiguration") })
			c.checkRouteConfig(rc, false)
			if c.peer == proxy.GRPC {
				c.grpcRouteConfig(rc, grpcEitherSide)
			}
		}
	case resource.ClusterType:
		if cl, ok := m.(*clusterv3.Cluster); ok {
			name := cl.GetName()
			c.cross(func(c *checker) {
				seen := c.seenIn(resource.ClusterType)
				if seen[name] {
					c.errorf("duplicate cluster %s found", name)
				}
				seen[name] = true
			})
			c.checkCluster(cl)
		}
	case resource.EndpointType:
		if cla, ok := m.(*endpointv3.ClusterLoadAssignment); ok {
			name := cla.GetClusterName()
			c.cross(func(c *checker) { c.checkDuplicate(c.seenIn(resource.EndpointType), name, "ClusterLoadAssignment") })
			c.checkEndpoints(cla)
		}
	case resource.SecretType:
		if s, ok := m.(*tlsv3.Secret); ok {
			name := s.GetName()
			c.cross(func(c *checker) { c.checkDuplicate(c.seenIn(resource.SecretType), name, "Secret") })
			c.checkSecret(s)
		}
	}
}

// seenIn returns the names of the given type seen so far in this run.
func (c *checker) seenIn(typeURL string) map[string]bool {
	seen := c.seen[typeURL]
	if seen == nil {
		seen = map[string]bool{}
		c.seen[typeURL] = seen
	}
	return seen
}

// checkDuplicate reports a second resource of the same name: the snapshot cache keeps only
// one of them, so the other silently never reaches the peer.
func (c *checker) checkDuplicate(seen map[string]bool, name, kind string) {
	if seen[name] {
		c.errorf("duplicate %s %q in one push: the xDS cache keeps only one of them", kind, name)
	}
	seen[name] = true
}

// index records the names other resources refer to, before anything is checked.
func (c *checker) index() {
	if cls, ok := c.res[resource.ClusterType]; ok {
		c.clustersGiven = true
		for _, r := range cls {
			cl, ok := r.(*clusterv3.Cluster)
			if !ok || cl == nil {
				continue
			}
			if _, dup := c.clusters[cl.GetName()]; !dup {
				c.clusters[cl.GetName()] = cl
			}
			if cl.GetType() == clusterv3.Cluster_EDS && cl.GetClusterType() == nil {
				name := cl.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = cl.GetName()
				}
				c.edsNames[name] = true
			}
		}
	}
	_, c.routesGiven = c.res[resource.RouteType]
	_, c.secretsGiven = c.res[resource.SecretType]
	for _, r := range c.res[resource.RouteType] {
		if rc, ok := r.(*routev3.RouteConfiguration); ok && rc != nil {
			if _, dup := c.routes[rc.GetName()]; !dup {
				c.routes[rc.GetName()] = rc
			}
		}
	}
	for _, r := range c.res[resource.SecretType] {
		if s, ok := r.(*tlsv3.Secret); ok && s != nil {
			if _, dup := c.secrets[s.GetName()]; !dup {
				c.secrets[s.GetName()] = s
			}
		}
	}
}

// begin makes r the current resource and runs the checks every resource gets: its own proto
// constraints, then the generic walk through every Any and regex inside it. It returns nil
// when r cannot be checked further.
func (c *checker) begin(typeURL string, r types.Resource) proto.Message {
	c.typeURL = typeURL
	c.name = resourceName(r)
	c.path = c.path[:0]
	if r == nil || reflect.ValueOf(r).IsNil() {
		c.errorf("nil resource")
		return nil
	}
	if want := typeURL[strings.LastIndexByte(typeURL, '/')+1:]; typeURL != "" &&
		string(r.ProtoReflect().Descriptor().FullName()) != want {
		c.errorf("a %s listed under type URL %s", r.ProtoReflect().Descriptor().FullName(), typeURL)
		return nil
	}
	c.validateMessage(r)
	c.walk(r.ProtoReflect())
	return r
}

func resourceName(r types.Resource) string {
	switch v := r.(type) {
	case nil:
		return ""
	case *endpointv3.ClusterLoadAssignment:
		return v.GetClusterName()
	case types.ResourceWithName:
		return v.GetName()
	}
	m := r.ProtoReflect()
	if !m.IsValid() {
		return ""
	}
	if fd := m.Descriptor().Fields().ByName("name"); fd != nil && fd.Kind() == protoreflect.StringKind {
		return m.Get(fd).String()
	}
	return ""
}

// validator is what protoc-gen-validate generates for every go-control-plane message.
type validator interface{ ValidateAll() error }

// validateMessage runs the message's own constraints and reports them at the current path in
// Envoy's wording.
func (c *checker) validateMessage(m proto.Message) {
	v, ok := m.(validator)
	if !ok {
		return
	}
	if err := v.ValidateAll(); err != nil {
		c.errorf("Proto constraint validation failed (%s)", err.Error())
	}
}

// Path handling. Segments are pushed and popped around each nested check and rendered only
// when a problem is reported, so that a clean run builds no strings.

func (c *checker) push(field string) {
	c.path = append(c.path, pathSeg{field: field, index: -1})
}

func (c *checker) pushIndex(field string, i int) {
	c.path = append(c.path, pathSeg{field: field, index: i})
}

func (c *checker) pushKey(field, key string) {
	c.path = append(c.path, pathSeg{field: field, index: -1, key: key, keyed: true})
}

func (c *checker) pop() { c.path = c.path[:len(c.path)-1] }

func (c *checker) renderPath() string {
	if len(c.path) == 0 {
		return ""
	}
	var b strings.Builder
	for _, s := range c.path {
		if s.field != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.field)
		}
		if s.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		}
		if s.keyed {
			b.WriteByte('[')
			b.WriteString(strconv.Quote(s.key))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func (c *checker) report(warning bool, msg string) {
	c.problems = append(c.problems, &Problem{
		TypeURL: c.typeURL,
		Name:    c.name,
		Path:    c.renderPath(),
		Msg:     msg,
		Warning: warning,
	})
}

func (c *checker) errorf(format string, args ...any) { c.report(false, sprintf(format, args...)) }

func (c *checker) warnf(format string, args ...any) { c.report(true, sprintf(format, args...)) }

// errorAt and warnAt report at a field of the current message.
func (c *checker) errorAt(field string, format string, args ...any) {
	c.push(field)
	c.errorf(format, args...)
	c.pop()
}

func (c *checker) warnAt(field string, format string, args ...any) {
	c.push(field)
	c.warnf(format, args...)
	c.pop()
}
