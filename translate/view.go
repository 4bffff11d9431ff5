package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// Views: everything outbound for the clients of one namespace and kind,
// assembled from the per-service products.

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
	// conv is the lists above as types.Resource, converted once per view:
	// a proxyless pod has an assembly of its own (its server listeners
	// are per IP), and converting these per assembly kept a copy of each
	// per pod.
	conv *converted
}

type viewEntry struct {
	once sync.Once
	view
}

type serviceParts struct {
	key       mesh.ServiceKey
	frontend  *serviceEntry[frontend]
	clusters  *serviceEntry[clusterList]
	endpoints *serviceEntry[[]*endpointv3.ClusterLoadAssignment]
	profile   *profileEntry
	prof      *mesh.Profile
}

// viewFor returns the view of the proxies of kind in namespace ns, built
// once per model.
func (t *Translator) viewFor(m *mesh.Model, ns string, kind proxy.Kind) *viewEntry {
	info := t.modelInfo(m)
	// Proxies of every namespace share one view, except namespaces that
	// hold profiles for other namespaces' services: those profiles win for
	// their clients, so such a namespace gets a view of its own.
	clientNS := ""
	if info.crossNamespaceProfiles[ns] {
		clientNS = ns
	}
	t.mu.Lock()
	t.sweepLocked(m)
	vk := viewKey{model: m, namespace: clientNS, kind: kind}
	v := entryLocked(t.views, vk)
	t.mu.Unlock()
	v.once.Do(func() {
		t.viewBuilds.Add(1)
		v.view = t.buildView(m, info.keys, clientNS, kind)
	})
	return v
}

// buildView assembles the outbound resources of every service for clients
// in clientNS ("" for clients whose namespace holds no profile of another
// namespace's service).
func (t *Translator) buildView(m *mesh.Model, keys []mesh.ServiceKey, clientNS string, kind proxy.Kind) view {
	dom := t.domain(m)
	parts := make([]serviceParts, len(keys))
	// Clusters are the same for every kind of client unless a feature
	// says otherwise.
	var clusterKind proxy.Kind
	if t.features.clustersByKind {
		clusterKind = kind
	}
	t.mu.Lock()
	for i, k := range keys {
		prof, profNS := m.ProfileFor(clientNS, k)
		row := serviceRow{svc: m.Services[k], split: m.Splits[k], endpoints: m.Endpoints[k], profileNS: profNS, profile: prof}
		parts[i] = serviceParts{
			key:       k,
			frontend:  t.frontends.lookupRowLocked(m, row, dom, serviceSubject{svc: k, profileNS: profNS, kind: kind}),
			clusters:  t.clusters.lookupRowLocked(m, row, dom, serviceSubject{svc: k, profileNS: profNS, kind: clusterKind}),
			endpoints: t.endpoints.lookupRowLocked(m, row, dom, serviceSubject{svc: k}),
			prof:      prof,
		}
		if prof != nil {
			parts[i].profile = entryLocked(t.profiles, prof)
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
		sp.clusters.once.Do(func() { t.computeClusters(sp.clusters, clusterKind, compiled) })
		sp.frontend.once.Do(func() { t.computeFrontend(sp.frontend, kind, compiled, profErr) })
		sp.endpoints.once.Do(func() { computeEndpoints(sp.endpoints) })

		v.routes = append(v.routes, sp.frontend.val.routes...)
		v.apiListeners = append(v.apiListeners, sp.frontend.val.apiListeners...)
		v.groups = append(v.groups, sp.frontend.val.groups...)
		v.clusters = append(v.clusters, sp.clusters.val.clusters...)
		v.endpoints = append(v.endpoints, sp.endpoints.val...)
		v.errs = append(v.errs, sp.frontend.val.errs...)
		v.errs = append(v.errs, sp.clusters.val.errs...)
	}
	v.groups, v.errs = dropOverlaps(v.groups, v.errs)
	// Full slice expressions: a caller appending to a shared slice must
	// reallocate rather than write into the next caller's view.
	v.routes = v.routes[:len(v.routes):len(v.routes)]
	v.apiListeners = v.apiListeners[:len(v.apiListeners):len(v.apiListeners)]
	v.clusters = v.clusters[:len(v.clusters):len(v.clusters)]
	v.endpoints = v.endpoints[:len(v.endpoints):len(v.endpoints)]
	v.conv = convert(v.apiListeners, v.routes, v.clusters, v.endpoints)
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
