package translate

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// DefaultClusterDomain is used when neither Options nor the model name one.
const DefaultClusterDomain = "cluster.local"

// Options configure a Translator.
type Options struct {
	// ClusterDomain is the DNS suffix of services. Empty means the model's
	// ClusterDomain, and DefaultClusterDomain if that is empty too.
	ClusterDomain string
	// TrustDomain is the SPIFFE trust domain of workload identities, for
	// the mTLS config once it is wired (see inboundTLSContext).
	TrustDomain string
}

// Resources is the Envoy configuration of one proxy. The order is
// deterministic: the proxy's own resources (inbound), then the services'
// ordered by namespace and name, each service's by port, then the
// passthrough cluster. (xDS does not care about order; sorting 6,000 names
// on every push would cost more than the rest of a warm translation.)
// Resources, and the slices themselves, are shared between proxies and
// between calls: treat them as read-only.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
}

// ByType returns the resources keyed by xDS type URL, every type present
// (possibly empty), ready for a go-control-plane snapshot.
func (r *Resources) ByType() map[string][]types.Resource {
	out := map[string][]types.Resource{
		resourcev3.ListenerType: make([]types.Resource, 0, len(r.Listeners)),
		resourcev3.RouteType:    make([]types.Resource, 0, len(r.Routes)),
		resourcev3.ClusterType:  make([]types.Resource, 0, len(r.Clusters)),
		resourcev3.EndpointType: make([]types.Resource, 0, len(r.Endpoints)),
		resourcev3.SecretType:   make([]types.Resource, 0, len(r.Secrets)),
	}
	for _, x := range r.Listeners {
		out[resourcev3.ListenerType] = append(out[resourcev3.ListenerType], x)
	}
	for _, x := range r.Routes {
		out[resourcev3.RouteType] = append(out[resourcev3.RouteType], x)
	}
	for _, x := range r.Clusters {
		out[resourcev3.ClusterType] = append(out[resourcev3.ClusterType], x)
	}
	for _, x := range r.Endpoints {
		out[resourcev3.EndpointType] = append(out[resourcev3.EndpointType], x)
	}
	for _, x := range r.Secrets {
		out[resourcev3.SecretType] = append(out[resourcev3.SecretType], x)
	}
	return out
}

// Translator turns the mesh model into Envoy resources for one proxy at a
// time. It is safe for concurrent use.
//
// Work is cached at three levels, all keyed by the model's pointers (the
// model is immutable, so an unchanged pointer means unchanged input):
//
//   - per service: its clusters (keyed by the *Service and the chosen
//     *Profile), its endpoints (*Service, *ServiceEndpoints), and its
//     routes and listener parts (*Service, chosen *Profile, *Split, the
//     backend *Services a split names, and for headless services the
//     *ServiceEndpoints). A new model recomputes only the services whose
//     pointers changed.
//   - per view: everything outbound for one (model, client namespace, proxy
//     kind), assembled once and shared by every proxy of that namespace.
//   - per listener: the outbound and inbound listeners, shared by proxies
//     with the same ports.
//
// The caches keep what the last two models use: the controller may push a
// connecting proxy from one snapshot while it flushes others from the next,
// and with a single generation the two would evict each other's views.
// Entries neither model uses are swept each time a new model is seen.
type Translator struct {
	opts        Options
	passthrough *clusterv3.Cluster

	mu sync.Mutex
	// models are the current and the previous model; a call with either
	// evicts nothing.
	models     [2]*mesh.Model
	generation uint64
	// viewBuilds counts views built, for tests of the caching.
	viewBuilds atomic.Int64
	profiles   map[*mesh.Profile]*profileEntry
	frontends  map[frontendKey]*frontendEntry
	clusters   map[clusterKey]*clusterEntry
	endpoints  map[mesh.ServiceKey]*endpointsEntry
	views      map[viewKey]*viewEntry
	outbound   map[outboundKey]*listenerEntry
	inbound    map[string]*inboundEntry
	assemblies map[assemblyKey]*assembly

	infoMu sync.Mutex
	// info and prevInfo are of the last two models seen; read-only once
	// published.
	info, prevInfo *modelInfo
}

// NewTranslator returns a Translator with empty caches.
func NewTranslator(opts Options) *Translator {
	return &Translator{
		opts:        opts,
		passthrough: passthroughCluster(),
		profiles:    map[*mesh.Profile]*profileEntry{},
		frontends:   map[frontendKey]*frontendEntry{},
		clusters:    map[clusterKey]*clusterEntry{},
		endpoints:   map[mesh.ServiceKey]*endpointsEntry{},
		views:       map[viewKey]*viewEntry{},
		outbound:    map[outboundKey]*listenerEntry{},
		inbound:     map[string]*inboundEntry{},
		assemblies:  map[assemblyKey]*assembly{},
	}
}

func (t *Translator) domain(m *mesh.Model) string {
	switch {
	case t.opts.ClusterDomain != "":
		return t.opts.ClusterDomain
	case m.ClusterDomain != "":
		return m.ClusterDomain
	}
	return DefaultClusterDomain
}

// ForProxy returns the resources of proxy p. The errors are problems that
// were skipped (an unusable profile, a backend that does not exist, two
// services claiming one address); everything else is still translated.
func (t *Translator) ForProxy(m *mesh.Model, p *mesh.Proxy) (res *Resources, errs []error) {
	// Per-service work already turns panics into errors (see guard); this
	// is the last net, so a bug can cost a proxy its update but never the
	// control plane.
	defer func() {
		if r := recover(); r != nil {
			res, errs = &Resources{}, []error{fmt.Errorf("translate: internal error: %v", r)}
		}
	}()
	if m == nil || p == nil {
		return &Resources{}, []error{errors.New("translate: nil model or proxy")}
	}
	kind := p.Kind
	if !kind.Valid() {
		return &Resources{}, []error{fmt.Errorf("translate: proxy %s: unknown kind %s", p.NodeID(), p.Kind)}
	}
	info := t.modelInfo(m)
	// Proxies of every namespace share one view, except namespaces that
	// hold profiles for other namespaces' services: those profiles win for
	// their clients, so such a namespace gets a view of its own.
	clientNS := ""
	if info.crossNamespaceProfiles[p.Namespace] {
		clientNS = p.Namespace
	}
	t.mu.Lock()
	t.sweepLocked(m)
	vk := viewKey{model: m, namespace: clientNS, kind: kind}
	v := t.views[vk]
	if v == nil {
		v = &viewEntry{}
		t.views[vk] = v
	}
	t.mu.Unlock()
	v.once.Do(func() {
		t.viewBuilds.Add(1)
		v.view = t.buildView(m, info.keys, clientNS, kind)
	})

	errs = slices.Clone(v.errs)
	if kind == proxy.GRPC {
		return &Resources{
			Listeners: v.apiListeners,
			Routes:    v.routes,
			Clusters:  v.clusters,
			Endpoints: v.endpoints,
		}, errs
	}

	in, inErrs := t.inboundFor(p)
	errs = append(errs, inErrs...)
	out := t.outboundFor(v, p)
	// The replicas of a deployment have the same ports: their listener and
	// cluster lists are one pair of slices, not a copy each.
	ak := assemblyKey{view: v, inbound: in, outbound: out}
	t.mu.Lock()
	a := t.assemblies[ak]
	if a == nil {
		a = &assembly{}
		t.assemblies[ak] = a
	}
	t.mu.Unlock()
	a.once.Do(func() {
		a.listeners = []*listenerv3.Listener{in.listener, out}
		a.clusters = make([]*clusterv3.Cluster, 0, len(in.clusters)+len(v.clusters)+1)
		a.clusters = append(a.clusters, in.clusters...)
		a.clusters = append(a.clusters, v.clusters...)
		a.clusters = append(a.clusters, t.passthrough)
	})
	return &Resources{
		Listeners: a.listeners,
		Routes:    v.routes,
		Clusters:  a.clusters,
		Endpoints: v.endpoints,
	}, errs
}

type assemblyKey struct {
	view     *viewEntry
	inbound  *inboundEntry
	outbound *listenerv3.Listener
}

// assembly is a sidecar's listener and cluster lists.
type assembly struct {
	once      sync.Once
	listeners []*listenerv3.Listener
	clusters  []*clusterv3.Cluster
}

// Endpoints returns the ClusterLoadAssignments of one service, one per
// port, identical for every proxy (and the same pointers ForProxy returns).
func (t *Translator) Endpoints(m *mesh.Model, svc mesh.ServiceKey) []*endpointv3.ClusterLoadAssignment {
	if m == nil || m.Services[svc] == nil {
		return nil
	}
	t.mu.Lock()
	t.sweepLocked(m)
	e := t.endpointsEntryLocked(m, svc)
	t.mu.Unlock()
	e.once.Do(e.compute)
	return e.val
}

// --- per-service caches ---

type profileEntry struct {
	once     sync.Once
	compiled *compiledProfile
	err      error
}

func (t *Translator) profileEntryLocked(p *mesh.Profile) *profileEntry {
	e := t.profiles[p]
	if e == nil {
		e = &profileEntry{}
		t.profiles[p] = e
	}
	return e
}

func (e *profileEntry) get(p *mesh.Profile) (*compiledProfile, error) {
	e.once.Do(func() {
		err := guard(func() error {
			var err error
			e.compiled, err = compileProfile(p)
			return err
		})
		if err != nil {
			e.compiled = nil
			e.err = mesh.ConfigError{Object: p.Source, Err: fmt.Errorf("profile skipped: %w", err)}
		}
	})
	return e.compiled, e.err
}

// guard turns a panic into an error: one bad service must never take the
// control plane down.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return f()
}

// chosenProfile applies Linkerd's rule: a profile in the client's namespace
// wins over one in the service's own namespace.
func chosenProfile(m *mesh.Model, clientNS string, svc mesh.ServiceKey) (*mesh.Profile, string) {
	if p := m.Profiles[mesh.ProfileKey{Namespace: clientNS, Service: svc}]; p != nil {
		return p, clientNS
	}
	if p := m.Profiles[mesh.ProfileKey{Namespace: svc.Namespace, Service: svc}]; p != nil {
		return p, svc.Namespace
	}
	return nil, ""
}

type frontendKey struct {
	svc       mesh.ServiceKey
	profileNS string
	kind      proxy.Kind
}

type frontendDeps struct {
	domain    string
	svc       *mesh.Service
	profile   *mesh.Profile
	split     *mesh.Split
	endpoints *mesh.ServiceEndpoints // headless sidecar chains only
	backends  []*mesh.Service
}

func (d frontendDeps) equal(o frontendDeps) bool {
	return d.domain == o.domain && d.svc == o.svc && d.profile == o.profile && d.split == o.split &&
		d.endpoints == o.endpoints && slices.Equal(d.backends, o.backends)
}

// frontend is a service's outbound routes and listener parts for one kind
// of proxy.
type frontend struct {
	routes       []*routev3.RouteConfiguration
	groups       []chainGroup           // sidecars
	apiListeners []*listenerv3.Listener // proxyless
	errs         []error
}

type frontendEntry struct {
	deps frontendDeps
	once sync.Once
	val  frontend
	// prev is the entry this one replaced, kept while the previous model
	// may still ask for it.
	prev *frontendEntry
}

type clusterKey struct {
	svc       mesh.ServiceKey
	profileNS string
}

type clusterDeps struct {
	domain  string
	svc     *mesh.Service
	profile *mesh.Profile
}

type clusterEntry struct {
	deps clusterDeps
	once sync.Once
	val  []*clusterv3.Cluster
	errs []error
	prev *clusterEntry // as frontendEntry.prev
}

type endpointsEntry struct {
	svc  *mesh.Service
	eps  *mesh.ServiceEndpoints
	dom  string
	once sync.Once
	val  []*endpointv3.ClusterLoadAssignment
	prev *endpointsEntry // as frontendEntry.prev
}

func (e *frontendEntry) replaced() **frontendEntry   { return &e.prev }
func (e *clusterEntry) replaced() **clusterEntry     { return &e.prev }
func (e *endpointsEntry) replaced() **endpointsEntry { return &e.prev }

// replaceable is a per-service cache entry that keeps the entry it replaced.
type replaceable[P any] interface {
	comparable
	replaced() *P
}

// currentEntry returns the entry of cache[k] that matches: the current one,
// or the one it replaced (which then becomes current again), or else a fresh
// one that replaces the current one. A key holds at most these two entries.
func currentEntry[K comparable, P replaceable[P]](cache map[K]P, k K, matches func(P) bool, fresh func() P) P {
	var none P
	e := cache[k]
	switch {
	case e == none:
	case matches(e):
		return e
	case *e.replaced() != none && matches(*e.replaced()):
		prev := *e.replaced()
		*e.replaced(), *prev.replaced() = none, e
		cache[k] = prev
		return prev
	default:
		*e.replaced() = none
	}
	n := fresh()
	*n.replaced() = e
	cache[k] = n
	return n
}

// sweepEntries drops the entries live says no live model uses; a key whose
// current entry is dead falls back to the one it replaced, if that lives.
func sweepEntries[K comparable, P replaceable[P]](cache map[K]P, live func(K, P) bool) {
	var none P
	for k, e := range cache {
		if prev := *e.replaced(); prev != none && !live(k, prev) {
			*e.replaced() = none
		}
		if !live(k, e) {
			if prev := *e.replaced(); prev == none {
				delete(cache, k)
			} else {
				cache[k] = prev
			}
		}
	}
}

func (t *Translator) endpointsEntryLocked(m *mesh.Model, k mesh.ServiceKey) *endpointsEntry {
	svc, eps, dom := m.Services[k], m.Endpoints[k], t.domain(m)
	return currentEntry(t.endpoints, k,
		func(e *endpointsEntry) bool { return e.svc == svc && e.eps == eps && e.dom == dom },
		func() *endpointsEntry { return &endpointsEntry{svc: svc, eps: eps, dom: dom} })
}

func (e *endpointsEntry) compute() {
	if err := guard(func() error {
		e.val = serviceLoadAssignments(e.svc, e.eps, e.dom)
		return nil
	}); err != nil {
		e.val = nil
	}
}

// backendServices lists the services a split (or the profile's
// dstOverrides) sends to, as the model has them now.
func backendServices(m *mesh.Model, split *mesh.Split, profile *mesh.Profile) []*mesh.Service {
	var list []mesh.WeightedBackend
	switch {
	case split != nil:
		list = split.Backends
	case profile != nil:
		list = profile.DstOverrides
	}
	if len(list) == 0 {
		return nil
	}
	out := make([]*mesh.Service, len(list))
	for i, b := range list {
		out[i] = m.Services[b.Service]
	}
	return out
}

// --- views ---

type viewKey struct {
	model     *mesh.Model
	namespace string
	kind      proxy.Kind
}

// view is everything outbound for the proxies of one namespace and kind.
type view struct {
	routes       []*routev3.RouteConfiguration
	clusters     []*clusterv3.Cluster
	endpoints    []*endpointv3.ClusterLoadAssignment
	apiListeners []*listenerv3.Listener
	groups       []chainGroup
	errs         []error
}

type viewEntry struct {
	once sync.Once
	view
}

type serviceParts struct {
	key       mesh.ServiceKey
	frontend  *frontendEntry
	clusters  *clusterEntry
	endpoints *endpointsEntry
	profile   *profileEntry
	prof      *mesh.Profile
}

// buildView assembles the outbound resources of every service for clients
// in clientNS ("" for clients whose namespace holds no profile of another
// namespace's service).
func (t *Translator) buildView(m *mesh.Model, keys []mesh.ServiceKey, clientNS string, kind proxy.Kind) view {
	dom := t.domain(m)
	parts := make([]serviceParts, len(keys))
	t.mu.Lock()
	for i, k := range keys {
		svc := m.Services[k]
		prof, profNS := chosenProfile(m, clientNS, k)
		split := m.Splits[k]
		fd := frontendDeps{domain: dom, svc: svc, profile: prof, split: split, backends: backendServices(m, split, prof)}
		if svc.Headless && kind == proxy.Envoy {
			fd.endpoints = m.Endpoints[k]
		}
		fe := currentEntry(t.frontends, frontendKey{svc: k, profileNS: profNS, kind: kind},
			func(e *frontendEntry) bool { return e.deps.equal(fd) },
			func() *frontendEntry { return &frontendEntry{deps: fd} })
		cd := clusterDeps{domain: dom, svc: svc, profile: prof}
		ce := currentEntry(t.clusters, clusterKey{svc: k, profileNS: profNS},
			func(e *clusterEntry) bool { return e.deps == cd },
			func() *clusterEntry { return &clusterEntry{deps: cd} })
		parts[i] = serviceParts{key: k, frontend: fe, clusters: ce, endpoints: t.endpointsEntryLocked(m, k), prof: prof}
		if prof != nil {
			parts[i].profile = t.profileEntryLocked(prof)
		}
	}
	t.mu.Unlock()

	var v view
	v.routes = make([]*routev3.RouteConfiguration, 0, len(parts))
	v.clusters = make([]*clusterv3.Cluster, 0, len(parts))
	v.endpoints = make([]*endpointv3.ClusterLoadAssignment, 0, len(parts))
	if kind == proxy.GRPC {
		v.apiListeners = make([]*listenerv3.Listener, 0, 2*len(parts))
	} else {
		v.groups = make([]chainGroup, 0, len(parts))
	}
	for _, sp := range parts {
		var compiled *compiledProfile
		var profErr error
		if sp.profile != nil {
			compiled, profErr = sp.profile.get(sp.prof)
		}
		sp.clusters.once.Do(func() { t.computeClusters(sp.clusters, compiled) })
		sp.frontend.once.Do(func() { t.computeFrontend(m, sp.frontend, kind, compiled, profErr) })
		sp.endpoints.once.Do(sp.endpoints.compute)

		v.routes = append(v.routes, sp.frontend.val.routes...)
		v.apiListeners = append(v.apiListeners, sp.frontend.val.apiListeners...)
		v.groups = append(v.groups, sp.frontend.val.groups...)
		v.clusters = append(v.clusters, sp.clusters.val...)
		v.endpoints = append(v.endpoints, sp.endpoints.val...)
		v.errs = append(v.errs, sp.frontend.val.errs...)
		v.errs = append(v.errs, sp.clusters.errs...)
	}
	v.groups, v.errs = dropOverlaps(v.groups, v.errs)
	// Full slice expressions: a caller appending to a shared slice must
	// reallocate rather than write into the next caller's view.
	v.routes = v.routes[:len(v.routes):len(v.routes)]
	v.apiListeners = v.apiListeners[:len(v.apiListeners):len(v.apiListeners)]
	v.clusters = v.clusters[:len(v.clusters):len(v.clusters)]
	v.endpoints = v.endpoints[:len(v.endpoints):len(v.endpoints)]
	return v
}

// modelInfo is what every view of one model needs: the services in order
// and which namespaces override other namespaces' profiles.
type modelInfo struct {
	model *mesh.Model
	// keys orders the services by namespace and name.
	keys []mesh.ServiceKey
	// crossNamespaceProfiles holds the namespaces with a profile for a
	// service of another namespace.
	crossNamespaceProfiles map[string]bool
}

func (t *Translator) modelInfo(m *mesh.Model) *modelInfo {
	t.infoMu.Lock()
	defer t.infoMu.Unlock()
	last := t.info
	if last != nil && last.model == m {
		return last
	}
	if prev := t.prevInfo; prev != nil && prev.model == m {
		t.info, t.prevInfo = prev, last
		return prev
	}
	info := &modelInfo{model: m, crossNamespaceProfiles: map[string]bool{}}
	for k, p := range m.Profiles {
		if p != nil && k.Namespace != k.Service.Namespace {
			info.crossNamespaceProfiles[k.Namespace] = true
		}
	}
	// The set of services changes far less often than the model does: the
	// last order is reused when the set is the same.
	same := last != nil && len(last.keys) == len(m.Services)
	for i := 0; same && i < len(last.keys); i++ {
		same = m.Services[last.keys[i]] != nil
	}
	if same {
		info.keys = last.keys
	} else {
		info.keys = make([]mesh.ServiceKey, 0, len(m.Services))
		for k, s := range m.Services {
			if s != nil {
				info.keys = append(info.keys, k)
			}
		}
		slices.SortFunc(info.keys, func(a, b mesh.ServiceKey) int {
			return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
		})
	}
	t.info, t.prevInfo = info, last
	return info
}

// dropOverlaps keeps the first chain group (in service order) claiming an
// address:port; Envoy refuses a listener whose chains overlap, which would
// take every destination down for one conflict.
func dropOverlaps(groups []chainGroup, errs []error) ([]chainGroup, []error) {
	owner := make(map[chainKey]mesh.ServiceKey, len(groups))
	out := groups[:0:0]
next:
	for _, g := range groups {
		for _, k := range g.keys {
			if o, taken := owner[k]; taken {
				errs = append(errs, mesh.ConfigError{
					Object: mesh.ObjectRef{Kind: "Service", Namespace: g.owner.Namespace, Name: g.owner.Name},
					Err:    fmt.Errorf("destination %s already belongs to service %s; outbound chain %s skipped", netip.AddrPortFrom(k.addr, uint16(k.port)), o, g.chains[0].Name),
				})
				continue next
			}
		}
		for _, k := range g.keys {
			owner[k] = g.owner
		}
		out = append(out, g)
	}
	return out, errs
}

// servicePorts drops ports that repeat an earlier port number: the cluster
// and route names would collide.
func servicePorts(svc *mesh.Service) ([]mesh.ServicePort, []error) {
	var out []mesh.ServicePort
	var errs []error
	seen := map[uint32]bool{}
	for i, sp := range svc.Ports {
		if sp.Port == 0 || sp.Port > 65535 || seen[sp.Port] {
			errs = append(errs, mesh.ConfigError{
				Object: mesh.ObjectRef{Kind: "Service", Namespace: svc.Key.Namespace, Name: svc.Key.Name},
				Err:    fmt.Errorf("spec.ports[%d]: port %d is invalid or repeated; skipped", i, sp.Port),
			})
			continue
		}
		seen[sp.Port] = true
		out = append(out, sp)
	}
	return out, errs
}

func portIsOpaque(sp mesh.ServicePort, profile *mesh.Profile, port uint32) bool {
	if sp.Protocol == mesh.ProtocolOpaque {
		return true
	}
	return profile != nil && slices.Contains(profile.OpaquePorts, port)
}

func (t *Translator) computeClusters(e *clusterEntry, compiled *compiledProfile) {
	err := guard(func() error {
		budget := mesh.DefaultRetryBudget
		profile := e.deps.profile
		if compiled == nil {
			profile = nil // an unusable profile is skipped entirely
		}
		if profile != nil && profile.RetryBudget != nil {
			budget = *profile.RetryBudget
		}
		ports, _ := servicePorts(e.deps.svc)
		for _, sp := range ports {
			proto := sp.Protocol
			if portIsOpaque(sp, profile, sp.Port) {
				proto = mesh.ProtocolOpaque
			}
			e.val = append(e.val, outboundCluster(e.deps.svc, sp, proto, budget, e.deps.domain))
		}
		return nil
	})
	if err != nil {
		e.val = nil
		e.errs = []error{serviceError(e.deps.svc, err)}
	}
}

func serviceError(svc *mesh.Service, err error) error {
	return mesh.ConfigError{Object: mesh.ObjectRef{Kind: "Service", Namespace: svc.Key.Namespace, Name: svc.Key.Name}, Err: err}
}

func (t *Translator) computeFrontend(m *mesh.Model, e *frontendEntry, kind proxy.Kind, compiled *compiledProfile, profErr error) {
	var val frontend
	err := guard(func() error {
		val = buildFrontend(m, e.deps, kind, compiled, profErr)
		return nil
	})
	if err != nil {
		val = frontend{errs: []error{serviceError(e.deps.svc, err)}}
	}
	e.val = val
}

func buildFrontend(m *mesh.Model, d frontendDeps, kind proxy.Kind, compiled *compiledProfile, profErr error) frontend {
	var f frontend
	svc := d.svc
	ports, errs := servicePorts(svc)
	f.errs = append(f.errs, errs...)
	profile := d.profile
	var routes []compiledRoute
	switch {
	case profErr != nil:
		f.errs = append(f.errs, profErr)
		profile = nil
	case compiled != nil && kind == proxy.GRPC:
		if compiled.proxylessErr != nil {
			f.errs = append(f.errs, mesh.ConfigError{Object: profile.Source, Err: fmt.Errorf("routes skipped for proxyless gRPC clients: %w", compiled.proxylessErr)})
		}
		routes = compiled.proxyless
	case compiled != nil:
		routes = compiled.sidecar
	}
	proxyless := kind == proxy.GRPC

	for _, sp := range ports {
		opaque := portIsOpaque(sp, profile, sp.Port)
		clusterName := OutboundClusterName(svc.Key, sp.Port, d.domain)
		routeName := OutboundRouteName(svc.Key, sp.Port, d.domain)
		backends, berrs := backendsFor(m, svc, sp, d.split, profile, d.domain)
		f.errs = append(f.errs, berrs...)
		target := routeTarget{cluster: clusterName, backends: backends}

		if proxyless {
			if opaque {
				continue // gRPC clients cannot use a raw TCP port
			}
			f.routes = append(f.routes, routeConfiguration(routeConfigParams{
				name:      routeName,
				vhostName: svc.Key.FQDN(d.domain) + ":" + portString(sp.Port),
				domains:   serviceDomains(svc, sp.Port, d.domain),
				target:    target,
				grpc:      true,
				proxyless: true,
				routes:    routes,
			}))
			for _, name := range ProxylessListenerNames(svc.Key, sp.Port, d.domain) {
				f.apiListeners = append(f.apiListeners, apiListener(name, routeName))
			}
			continue
		}

		domains := append(serviceDomains(svc, sp.Port, d.domain), "*")
		if svc.Headless {
			// Clients of a headless service dial a pod they picked (by pod
			// DNS name or IP); the connection goes where it was dialled.
			// Any Host is accepted: the chains, matching the pod's address,
			// already decided this is the service.
			target = routeTarget{cluster: PassthroughClusterName}
			domains = []string{"*"}
		}
		if !opaque {
			f.routes = append(f.routes, routeConfiguration(routeConfigParams{
				name:      routeName,
				vhostName: svc.Key.FQDN(d.domain) + ":" + portString(sp.Port),
				domains:   domains,
				target:    target,
				grpc:      sp.Protocol == mesh.ProtocolGRPC,
				routes:    routes,
			}))
		}

		if svc.Headless {
			f.groups = append(f.groups, headlessChains(svc, sp, profile, d.endpoints, routeName, target, clusterName)...)
			continue
		}
		var addrs []netip.Addr
		for i, ip := range svc.ClusterIPs {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				f.errs = append(f.errs, serviceError(svc, fmt.Errorf("spec.clusterIPs[%d]: %q is not an IP address; skipped", i, ip)))
				continue
			}
			addrs = append(addrs, a.Unmap())
		}
		if len(addrs) == 0 {
			continue
		}
		g := outboundChains(clusterName, addrs, sp.Port, opaque, routeName, target)
		g.owner = svc.Key
		f.groups = append(f.groups, g)
	}
	return f
}

// headlessChains gives each endpoint address of a headless service port its
// own chain (one address per chain, so that two headless services selecting
// the same pods conflict on that address only, and the conflict drops one
// chain rather than a service). Every endpoint is included whatever its
// readiness: the client chose the pod, the proxy only decides how to carry
// the bytes.
func headlessChains(svc *mesh.Service, sp mesh.ServicePort, profile *mesh.Profile, eps *mesh.ServiceEndpoints, routeName string, target routeTarget, clusterName string) []chainGroup {
	if eps == nil {
		return nil
	}
	var groups []chainGroup
	seen := map[chainKey]bool{}
	var keys []chainKey
	for _, e := range eps.ByPort[sp.Name] {
		a, err := netip.ParseAddr(e.Address)
		if err != nil {
			continue
		}
		keys = append(keys, chainKey{a.Unmap(), cmp.Or(e.Port, sp.TargetPort, sp.Port)})
	}
	slices.SortFunc(keys, func(a, b chainKey) int { return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port)) })
	for _, k := range keys {
		a, port := k.addr, k.port
		if seen[k] {
			continue
		}
		seen[k] = true
		opaque := portIsOpaque(sp, profile, sp.Port) || portIsOpaque(sp, profile, port)
		g := outboundChains(clusterName+"|"+netip.AddrPortFrom(a, uint16(port)).String(), []netip.Addr{a}, port, opaque, routeName, target)
		g.owner = svc.Key
		groups = append(groups, g)
	}
	return groups
}

// --- per-proxy listeners ---

type outboundKey struct {
	view *viewEntry
	skip string
}

type listenerEntry struct {
	once     sync.Once
	listener *listenerv3.Listener
}

func portsKey(ports []uint32) string {
	s := slices.Clone(ports)
	slices.Sort(s)
	s = slices.Compact(s)
	var b strings.Builder
	for i, p := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(p), 10))
	}
	return b.String()
}

func (t *Translator) outboundFor(v *viewEntry, p *mesh.Proxy) *listenerv3.Listener {
	k := outboundKey{view: v, skip: portsKey(p.SkipOutboundPorts)}
	t.mu.Lock()
	e := t.outbound[k]
	if e == nil {
		e = &listenerEntry{}
		t.outbound[k] = e
	}
	t.mu.Unlock()
	e.once.Do(func() {
		var chains []*listenerv3.FilterChain
		var httpPorts, opaquePorts []uint32
		for _, g := range v.groups {
			if slices.Contains(p.SkipOutboundPorts, g.port) {
				continue
			}
			chains = append(chains, g.chains...)
			if g.http {
				httpPorts = append(httpPorts, g.port)
			} else {
				opaquePorts = append(opaquePorts, g.port)
			}
		}
		e.listener = outboundListener(chains, detectionPorts(httpPorts, opaquePorts))
	})
	return e.listener
}

type inboundEntry struct {
	once       sync.Once
	listener   *listenerv3.Listener
	clusters   []*clusterv3.Cluster
	generation uint64
}

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

func (t *Translator) inboundFor(p *mesh.Proxy) (*inboundEntry, []error) {
	ports, errs := inboundPorts(p)
	var b strings.Builder
	for _, ip := range ports {
		fmt.Fprintf(&b, "%d/%s;", ip.port, ip.protocol)
	}
	k := b.String()
	t.mu.Lock()
	e := t.inbound[k]
	if e == nil {
		e = &inboundEntry{}
		t.inbound[k] = e
	}
	e.generation = t.generation
	t.mu.Unlock()
	e.once.Do(func() {
		e.listener = inboundListener(ports)
		for _, ip := range ports {
			e.clusters = append(e.clusters, inboundCluster(ip.port, ip.protocol))
		}
		slices.SortFunc(e.clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.Name, b.Name) })
	})
	return e, errs
}

// --- eviction ---

// sweepEvery is how many new models pass between sweeps of the per-service
// caches.
const sweepEvery = 16

// sweepLocked drops cache entries neither the current nor the previous
// model has any use for, once per new model.
func (t *Translator) sweepLocked(m *mesh.Model) {
	if t.models[0] == m {
		return
	}
	if t.models[1] == m {
		// Back to the previous model: both are still live, nothing to drop.
		t.models[0], t.models[1] = m, t.models[0]
		return
	}
	t.models[0], t.models[1] = m, t.models[0]
	t.generation++
	// Views belong to one model: drop those of models no longer live.
	for k := range t.views {
		if k.model != t.models[0] && k.model != t.models[1] {
			delete(t.views, k)
		}
	}
	live := make(map[*viewEntry]bool, len(t.views))
	for _, v := range t.views {
		live[v] = true
	}
	for k := range t.outbound {
		if !live[k.view] {
			delete(t.outbound, k)
		}
	}
	for k := range t.assemblies {
		if !live[k.view] {
			delete(t.assemblies, k)
		}
	}
	for k, e := range t.inbound {
		if e.generation+1 < t.generation {
			delete(t.inbound, k)
		}
	}
	// Per-service entries of changed services are replaced when looked up;
	// what remains are entries of deleted services and profiles. Looking
	// for them costs a pass over every entry, so it is done every
	// sweepEvery models: a deleted service's resources outlive it by that
	// many models at most.
	if t.generation%sweepEvery != 0 {
		return
	}
	liveModels := t.models[:1]
	if t.models[1] != nil {
		liveModels = t.models[:]
	}
	for p := range t.profiles {
		if !slices.ContainsFunc(liveModels, func(m *mesh.Model) bool {
			return m.Profiles[mesh.ProfileKey{Namespace: p.Source.Namespace, Service: p.Service}] == p
		}) {
			delete(t.profiles, p)
		}
	}
	sweepEntries(t.frontends, func(k frontendKey, e *frontendEntry) bool {
		return slices.ContainsFunc(liveModels, func(m *mesh.Model) bool {
			return m.Services[k.svc] == e.deps.svc && m.Splits[k.svc] == e.deps.split &&
				(k.profileNS == "" || m.Profiles[mesh.ProfileKey{Namespace: k.profileNS, Service: k.svc}] == e.deps.profile)
		})
	})
	sweepEntries(t.clusters, func(k clusterKey, e *clusterEntry) bool {
		return slices.ContainsFunc(liveModels, func(m *mesh.Model) bool {
			return m.Services[k.svc] == e.deps.svc &&
				(k.profileNS == "" || m.Profiles[mesh.ProfileKey{Namespace: k.profileNS, Service: k.svc}] == e.deps.profile)
		})
	})
	sweepEntries(t.endpoints, func(k mesh.ServiceKey, e *endpointsEntry) bool {
		return slices.ContainsFunc(liveModels, func(m *mesh.Model) bool {
			return m.Services[k] == e.svc && m.Endpoints[k] == e.eps
		})
	})
}
