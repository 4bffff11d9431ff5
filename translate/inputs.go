package translate

import (
	"slices"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// Input is one kind of model value translation reads. It is named relative
// to the subject of the product reading it: a service S (seen by clients of
// one namespace, which picks S's profile) for the per-service products, a
// proxy P for the per-proxy one.
//
// What each product reads is declared once (productInputs, plus the reads
// of every feature in features.go). From that declaration come the cache
// keys of the per-service products (readServiceInputs), the liveness test
// of the sweep (the same function) and Reads, which the controller's
// dependency index turns into its rules: a feature that declares a new
// input is covered by all three, with no second list to keep in step.
type Input uint8

const (
	// InputService is m.Services[S].
	InputService Input = iota
	// InputProfile is the profile chosen for S by the client's namespace
	// (mesh.Model.ProfileFor: the client namespace's own, else S's namespace's).
	InputProfile
	// InputSplit is m.Splits[S].
	InputSplit
	// InputBackendServices are m.Services[B] for every backend B that S's
	// split, else its profile's dstOverrides, names.
	InputBackendServices
	// InputEndpoints is m.Endpoints[S].
	InputEndpoints
	// InputHeadlessEndpoints is m.Endpoints[S] when S is headless, read by
	// sidecars only (their chains match the endpoint addresses); nothing
	// otherwise.
	InputHeadlessEndpoints
	// InputProxy is the proxy itself: its namespace and kind (which view it
	// gets), its ports and skip lists, its mTLS mode, and for a proxyless
	// server its IP (its listeners are named by and bound to it).
	InputProxy
	// InputEndpointIdentities are m.Endpoints[S].Peers: whether every
	// endpoint of S is a meshed pod, and the sorted set of their
	// identities. Compared by value, so that endpoint churn which keeps
	// the same peers changes nothing that reads only this.
	InputEndpointIdentities
	// InputTap is whether someone is watching the proxy's traffic
	// (m.Tapped[P], `weft tap`/`weft top`): its HTTP connection managers
	// then stream access logs to the control plane.
	InputTap

	// NumInputs is the number of inputs.
	NumInputs
)

var inputNames = [NumInputs]string{"Service", "Profile", "Split", "BackendServices", "Endpoints", "HeadlessEndpoints", "Proxy", "EndpointIdentities", "Tap"}

func (in Input) String() string {
	if in < NumInputs {
		return inputNames[in]
	}
	return "Input(" + strconv.Itoa(int(in)) + ")"
}

// serviceKeyed reports whether the input is a value of a service, as
// opposed to one of a proxy.
func (in Input) serviceKeyed() bool { return in != InputProxy && in != InputTap }

// Inputs is a set of inputs.
type Inputs uint16

// InputsOf returns the set of the given inputs.
func InputsOf(list ...Input) Inputs {
	var s Inputs
	for _, in := range list {
		s |= 1 << in
	}
	return s
}

// Has reports whether in is in the set.
func (s Inputs) Has(in Input) bool { return s&(1<<in) != 0 }

// With returns the set plus the given inputs.
func (s Inputs) With(list ...Input) Inputs { return s | InputsOf(list...) }

func (s Inputs) String() string {
	var names []string
	for in := range NumInputs {
		if s.Has(in) {
			names = append(names, in.String())
		}
	}
	return "{" + strings.Join(names, ",") + "}"
}

// Product is a cached unit of translation output.
type Product uint8

const (
	// ServiceClusters are a service's EDS clusters, one per port. They are
	// part of every client's outbound view.
	ServiceClusters Product = iota
	// ServiceFrontend is a service's routes and outbound filter chains
	// (sidecars) or API listeners (proxyless clients). Part of every
	// client's outbound view.
	ServiceFrontend
	// ServiceEndpoints are a service's ClusterLoadAssignments, identical for
	// every proxy; the control plane serves them by EDS, outside any
	// proxy's own snapshot.
	ServiceEndpoints
	// ProxyOwn is what belongs to one proxy: its inbound listener and
	// clusters, its outbound listener (which skips the proxy's skipped
	// ports), a proxyless server's listeners, and the choice of view.
	ProxyOwn

	// NumProducts is the number of products.
	NumProducts
)

var productNames = [NumProducts]string{"ServiceClusters", "ServiceFrontend", "ServiceEndpoints", "ProxyOwn"}

func (p Product) String() string {
	if p < NumProducts {
		return productNames[p]
	}
	return "Product(?)"
}

// Scope says whose output a product is part of, and so who must be
// recomputed when something it reads changes.
type Scope uint8

const (
	// ScopeViews: the outbound view of every client of the subject service
	// (every proxy; for InputProfile, the clients whose namespace reads the
	// profile, see mesh.Model.ProfileReadBy).
	ScopeViews Scope = 1 << iota
	// ScopeEDS: the subject service's load assignments only.
	ScopeEDS
	// ScopeProxy: the subject proxy; for a service's input, the proxies of
	// the pods backing the service.
	ScopeProxy
)

// Scope of the product.
func (p Product) Scope() Scope {
	switch p {
	case ServiceClusters, ServiceFrontend:
		return ScopeViews
	case ServiceEndpoints:
		return ScopeEDS
	}
	return ScopeProxy
}

// productInputs are what the core of each product reads; features add
// their own reads (see featureTable.reads).
var productInputs = [NumProducts]Inputs{
	// Ports and protocols; the profile for its retry budget and opaque
	// ports.
	ServiceClusters: InputsOf(InputService, InputProfile),
	// Routes come from the profile, weighted clusters from the split (or
	// the profile's dstOverrides) and the backends' ports; a headless
	// service's chains list its endpoint addresses.
	ServiceFrontend: InputsOf(InputService, InputProfile, InputSplit, InputBackendServices, InputHeadlessEndpoints),
	// One assignment per service port.
	ServiceEndpoints: InputsOf(InputService, InputEndpoints),
	// Ports, skip lists, namespace and kind; a proxyless server's IP; the
	// tap, which adds the access logger to the proxy's connection managers.
	ProxyOwn: InputsOf(InputProxy, InputTap),
}

// Reads is, per product, the inputs it reads: its core's and those of
// every feature that adds to it.
type Reads [NumProducts]Inputs

// Scope returns the scopes a change of in reaches: those of the products
// that read it.
func (r Reads) Scope(in Input) Scope {
	var s Scope
	for p := range NumProducts {
		if r[p].Has(in) {
			s |= p.Scope()
		}
	}
	return s
}

// DeclaredReads returns what a translator with every feature on (a trust
// domain set) reads; ReadsFor says it for given options.
func DeclaredReads() Reads { return builtinFeatures.reads }

// ReadsFor returns what NewTranslator(opts) reads, for the controller's
// dependency index.
func ReadsFor(opts Options) Reads { return featuresFor(opts).reads }

// serviceSubject keys a per-service product: the service, the namespace
// whose profile applies ("" for none) and, for the frontend, the kind of
// client. Products that do not vary by one of these leave it zero.
type serviceSubject struct {
	svc       mesh.ServiceKey
	profileNS string
	kind      proxy.Kind
}

// serviceInputs are the model values one per-service product was built
// from, each set only if the product declares its input: the cache key
// compared on lookup and the liveness test of the sweep. Features are
// handed the same struct, narrowed to the inputs they declare.
type serviceInputs struct {
	// domain is read by every product (the names of everything).
	domain    string
	svc       *mesh.Service
	profile   *mesh.Profile
	split     *mesh.Split
	endpoints *mesh.ServiceEndpoints
	backends  []*mesh.Service
	// peers is a value, not a pointer: endpoints replaced by equal peers
	// keep the key.
	peers mesh.Peers
}

// readServiceInputs reads what a product declaring in reads for subject k
// from m. A lookup and the sweep both call it: an entry is current exactly
// when what it was built from reads the same from the model at hand.
func readServiceInputs(m *mesh.Model, domain string, k serviceSubject, in Inputs) serviceInputs {
	return readRowInputs(m, readServiceRow(m, k), domain, k, in)
}

// serviceRow is what the model holds under one subject's keys. A view
// reads it once per service and hands it to the lookups of all three
// per-service products, instead of each hashing the same keys into the
// same maps (the warm path of a 2,000-service view is mostly such
// lookups).
type serviceRow struct {
	svc       *mesh.Service
	split     *mesh.Split
	endpoints *mesh.ServiceEndpoints
	// profile is m.Profiles at (profileNS, service); profileNS "" reads
	// none.
	profileNS string
	profile   *mesh.Profile
}

func readServiceRow(m *mesh.Model, k serviceSubject) serviceRow {
	r := serviceRow{svc: m.Services[k.svc], split: m.Splits[k.svc], endpoints: m.Endpoints[k.svc], profileNS: k.profileNS}
	if k.profileNS != "" {
		r.profile = m.Profiles[mesh.ProfileKey{Namespace: k.profileNS, Service: k.svc}]
	}
	return r
}

// readRowInputs is readServiceInputs from a row already read for k's
// service; a row read for another profile namespace reads the profile
// again.
func readRowInputs(m *mesh.Model, r serviceRow, domain string, k serviceSubject, in Inputs) serviceInputs {
	d := serviceInputs{domain: domain}
	if in.Has(InputService) {
		d.svc = r.svc
	}
	var profile *mesh.Profile
	if k.profileNS != "" && in&InputsOf(InputProfile, InputBackendServices) != 0 {
		profile = r.profile
		if r.profileNS != k.profileNS {
			profile = m.Profiles[mesh.ProfileKey{Namespace: k.profileNS, Service: k.svc}]
		}
	}
	if in.Has(InputProfile) {
		d.profile = profile
	}
	if in.Has(InputSplit) {
		d.split = r.split
	}
	if in.Has(InputBackendServices) {
		d.backends = backendServices(m, r.split, profile)
	}
	switch {
	case in.Has(InputEndpoints):
		d.endpoints = r.endpoints
	case in.Has(InputHeadlessEndpoints) && r.svc != nil && r.svc.Headless && k.kind != proxy.GRPC:
		d.endpoints = r.endpoints
	}
	if in.Has(InputEndpointIdentities) && r.endpoints != nil {
		d.peers = r.endpoints.Peers
	}
	return d
}

func (d serviceInputs) equal(o serviceInputs) bool {
	return d.domain == o.domain && d.svc == o.svc && d.profile == o.profile && d.split == o.split &&
		d.endpoints == o.endpoints && slices.Equal(d.backends, o.backends) && d.peers.Equal(o.peers)
}

// only narrows d to the inputs in: what a feature declaring in may see.
func (d serviceInputs) only(in Inputs) serviceInputs {
	out := serviceInputs{domain: d.domain}
	if in.Has(InputService) {
		out.svc = d.svc
	}
	if in.Has(InputProfile) {
		out.profile = d.profile
	}
	if in.Has(InputSplit) {
		out.split = d.split
	}
	if in.Has(InputBackendServices) {
		out.backends = d.backends
	}
	if in.Has(InputEndpoints) || (in.Has(InputHeadlessEndpoints) && d.svc != nil && d.svc.Headless) {
		out.endpoints = d.endpoints
	}
	if in.Has(InputEndpointIdentities) {
		out.peers = d.peers
	}
	return out
}

// backendServices lists the services that mesh.BackendsFor sends to (a
// split, else the profile's dstOverrides), as the model has them now.
func backendServices(m *mesh.Model, split *mesh.Split, profile *mesh.Profile) []*mesh.Service {
	list := mesh.BackendsFor(split, profile).List
	if len(list) == 0 {
		return nil
	}
	out := make([]*mesh.Service, len(list))
	for i, b := range list {
		out[i] = m.Services[b.Service]
	}
	return out
}
