package translate

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// Options configure a Translator.
type Options struct {
	// ClusterDomain is the DNS suffix of services. Empty means the model's
	// ClusterDomain, and DefaultClusterDomain if that is empty too.
	ClusterDomain string
	// TrustDomain is the SPIFFE trust domain of workload identities. Empty
	// turns mTLS off entirely: no TLS is originated or terminated and the
	// output is exactly that of a translator without the mTLS feature. Set,
	// the proxies need their certificates and the bundle by SDS (names in
	// mesh/secrets.go) or every meshed hop fails.
	TrustDomain string
	// TapLogService is how a proxy reaches the control plane's access log
	// service (the bootstrap's: injector/bootstrap.ControlPlaneService). It
	// is asked at every translation of a tapped proxy: with identity the
	// service carries the trust bundle, which rotates. nil, or nil
	// returned: no proxy is tapped, whatever the model's Tapped says.
	TapLogService func() *corev3.GrpcService
}

// Translator turns the mesh model into Envoy resources for one proxy at a
// time. It is safe for concurrent use.
//
// Work is cached at three levels, all keyed by the model's pointers (the
// model is immutable, so an unchanged pointer means unchanged input):
//
//   - per service: its clusters, its endpoints, and its routes and
//     listener parts (the products of inputs.go), each keyed by the model
//     values it reads, as declared there and by the features of
//     features.go. A new model recomputes only the services whose inputs
//     changed.
//   - per view: everything outbound for one (model, client namespace, proxy
//     kind), assembled once and shared by every proxy of that namespace.
//   - per listener: the outbound and inbound listeners, shared by proxies
//     with the same ports.
//
// The caches keep what the last two models use: the controller may push a
// connecting proxy from one snapshot while it flushes others from the next,
// and with a single generation the two would evict each other's views.
// Entries neither model uses are swept each time a new model is seen
// (cache.go).
type Translator struct {
	opts        Options
	features    *featureTable
	passthrough *clusterv3.Cluster

	mu sync.Mutex
	// models are the current and the previous model; a call with either
	// evicts nothing.
	models     [2]*mesh.Model
	generation uint64
	// viewBuilds counts views built, for tests of the caching.
	viewBuilds atomic.Int64
	profiles   map[*mesh.Profile]*profileEntry
	frontends  *serviceCache[frontend]
	clusters   *serviceCache[clusterList]
	endpoints  *serviceCache[[]*endpointv3.ClusterLoadAssignment]
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
func NewTranslator(opts Options) *Translator { return newTranslator(opts, featuresFor(opts)) }

// Reads is what this translator reads, per product: what the controller's
// dependency index must follow for it.
func (t *Translator) Reads() Reads { return t.features.reads }

func newTranslator(opts Options, ft *featureTable) *Translator {
	return &Translator{
		opts:        opts,
		features:    ft,
		passthrough: passthroughCluster(),
		profiles:    map[*mesh.Profile]*profileEntry{},
		frontends:   newServiceCache[frontend](ServiceFrontend, ft.reads),
		clusters:    newServiceCache[clusterList](ServiceClusters, ft.reads),
		endpoints:   newServiceCache[[]*endpointv3.ClusterLoadAssignment](ServiceEndpoints, ft.reads),
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
	v := t.viewFor(m, p.Namespace, kind)
	errs = slices.Clone(v.errs)
	in, inErrs := t.inboundFor(p)
	errs = append(errs, inErrs...)
	var out *listenerv3.Listener
	if kind != proxy.GRPC {
		out = t.outboundFor(v, p)
	}
	a := t.assemble(v, in, out)
	listeners := a.listeners
	// Proxyless clients have no access log (grpc-go reads none), so only
	// sidecars are tapped; the controller refuses to tap the others.
	if len(m.Tapped) > 0 && kind != proxy.GRPC && t.opts.TapLogService != nil && m.Tapped[p.NodeID()] {
		if svc := t.opts.TapLogService(); svc != nil {
			tl, err := tapped(listeners, svc)
			if err != nil {
				errs = append(errs, err)
			} else {
				listeners = tl
			}
		}
	}
	return &Resources{
		Listeners: listeners,
		Routes:    v.routes,
		Clusters:  a.clusters,
		Endpoints: v.endpoints,
		conv:      a.conv,
	}, errs
}

// Endpoints returns the ClusterLoadAssignments of one service, one per
// port, identical for every proxy (and the same pointers ForProxy returns).
func (t *Translator) Endpoints(m *mesh.Model, svc mesh.ServiceKey) []*endpointv3.ClusterLoadAssignment {
	if m == nil || m.Services[svc] == nil {
		return nil
	}
	t.mu.Lock()
	t.sweepLocked(m)
	e := t.endpoints.lookupLocked(m, t.domain(m), serviceSubject{svc: svc})
	t.mu.Unlock()
	e.once.Do(func() { computeEndpoints(e) })
	return e.val
}
