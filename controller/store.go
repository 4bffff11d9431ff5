package controller

import (
	"cmp"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
	"github.com/weftmesh/weft/proxy"
)

// Snapshot is one published state of the mesh: the model plus the proxies
// config is built for. Nothing reachable from it is ever mutated; the next
// snapshot shares every value that did not change (same pointer), which is
// what keeps translate's pointer-keyed caches hitting.
type Snapshot struct {
	// Gen increases with every published snapshot; pushes of an older
	// generation never overwrite a newer one.
	Gen   uint64
	Model *mesh.Model
	// Proxies by node id ("<pod>.<namespace>").
	Proxies map[string]*mesh.Proxy
}

// Changes says which model values were replaced since the previous snapshot
// and when the object change behind each was first seen. A key is present
// for adds, updates and deletes alike.
type Changes struct {
	Services  map[mesh.ServiceKey]time.Time
	Endpoints map[mesh.ServiceKey]time.Time
	Profiles  map[mesh.ProfileKey]time.Time
	Splits    map[mesh.ServiceKey]time.Time
	// Proxies by node id.
	Proxies map[string]time.Time
	// Taps by node id: proxies tapped or untapped (mesh.Model.Tapped).
	Taps map[string]time.Time
}

func newChanges() *Changes {
	return &Changes{
		Services:  map[mesh.ServiceKey]time.Time{},
		Endpoints: map[mesh.ServiceKey]time.Time{},
		Profiles:  map[mesh.ProfileKey]time.Time{},
		Splits:    map[mesh.ServiceKey]time.Time{},
		Proxies:   map[string]time.Time{},
		Taps:      map[string]time.Time{},
	}
}

// Empty reports that nothing changed.
func (c *Changes) Empty() bool {
	return len(c.Services)+len(c.Endpoints)+len(c.Profiles)+len(c.Splits)+len(c.Proxies)+len(c.Taps) == 0
}

// endpointsOnly reports that something changed and all of it is endpoints.
func (c *Changes) endpointsOnly() bool {
	return len(c.Endpoints) > 0 && len(c.Services)+len(c.Profiles)+len(c.Splits)+len(c.Proxies)+len(c.Taps) == 0
}

// note keeps the earliest time a key changed within one batch: the
// convergence figure is measured from the first change a push answers.
func note[K comparable](m map[K]time.Time, k K, seen time.Time) {
	if t, ok := m[k]; !ok || seen.Before(t) {
		m[k] = seen
	}
}

// converters turn Kubernetes objects into model values. They are mesh's
// functions in production; a field per function keeps the store testable
// against the real ones while making the dependency explicit.
type converters struct {
	service func(*corev1.Service, *corev1.Namespace) *mesh.Service
	// serviceWarnings and namespaceErrors report bad annotations; the object
	// is still converted (the annotation is ignored).
	serviceWarnings func(*corev1.Service) field.ErrorList
	namespaceErrors func(*corev1.Namespace) field.ErrorList
	endpoints       func(*mesh.Service, []*discoveryv1.EndpointSlice, mesh.PodLookup) *mesh.ServiceEndpoints
	profile         func(*profiles.ServiceProfile, string) (*mesh.Profile, field.ErrorList)
	split           func(*profiles.TrafficSplit, func(mesh.ServiceKey) bool) (*mesh.Split, field.ErrorList)
	// proxy reports bad annotations too; its proxy, with those fields at
	// their defaults, is served all the same.
	proxy func(*corev1.Pod, *corev1.Namespace) (*mesh.Proxy, field.ErrorList)
}

// ConfigErrorSink hears about bad input once per distinct error: when an
// object's error appears or its message changes, and when it goes away
// (fixed or deleted). It is called with the store locked and must not block.
type ConfigErrorSink interface {
	ConfigErrorSet(e mesh.ConfigError, ref *corev1.ObjectReference)
	ConfigErrorCleared(obj mesh.ObjectRef)
}

// Store is the incremental model: informers feed it objects one at a time,
// it converts each into its model value at once and keeps the old pointer
// when the new value is deep-equal (a resync or a status-only update is a
// no-op and wakes nobody). Flush publishes a copy-on-write Snapshot plus the
// Changes since the last one.
//
// Conversion happens at event time, not at flush time, because that is where
// a no-op can be recognised and dropped; the few cross-object dependencies
// are followed right there:
//   - a Service needs its Namespace; its endpoints need the Service; splits
//     in its namespace need to know whether it exists;
//   - endpoints carry pod identity and whether the pod is meshed, so a Pod
//     change re-derives the endpoints of every service whose slices target
//     it;
//   - a Namespace change re-derives its services and proxies, and the
//     endpoints of services backed by its pods (meshed-ness can come from
//     the namespace).
type Store struct {
	domain string
	conv   converters
	sink   ConfigErrorSink
	now    func() time.Time
	// onChange runs (store locked) whenever a change becomes pending; the
	// controller kicks its debouncer with it. It must not block.
	onChange func()

	mu sync.Mutex

	// Inputs, as the informers last delivered them.
	namespaces  map[string]*corev1.Namespace
	services    map[mesh.ServiceKey]*corev1.Service
	slices      map[types.NamespacedName]*discoveryv1.EndpointSlice
	slicesOf    map[mesh.ServiceKey]map[string]*discoveryv1.EndpointSlice
	pods        map[types.NamespacedName]*corev1.Pod
	podServices map[types.NamespacedName]map[mesh.ServiceKey]int // refcount over slices
	profileObjs map[types.NamespacedName]*claimEntry[mesh.ProfileKey, *mesh.Profile]
	splitObjs   map[types.NamespacedName]*claimEntry[mesh.ServiceKey, *mesh.Split]
	// splitSrc keeps decoded splits: they are re-converted when a service
	// they name appears or disappears.
	splitSrc map[types.NamespacedName]*profiles.TrafficSplit

	// Working model values: what the next snapshot will hold.
	svcVals   map[mesh.ServiceKey]*mesh.Service
	epVals    map[mesh.ServiceKey]*mesh.ServiceEndpoints
	profVals  map[mesh.ProfileKey]*mesh.Profile
	splitVals map[mesh.ServiceKey]*mesh.Split
	proxies   map[string]*mesh.Proxy
	tapped    map[string]bool

	configErrs map[mesh.ObjectRef]configErrorState

	pending   *Changes
	published *Snapshot
	// changed counts model value replacements, so a mutation can tell
	// whether it changed anything.
	changed uint64
}

type configErrorState struct {
	err error
	ref *corev1.ObjectReference
}

// claimEntry is a profile or split object: several objects may claim the
// same model key (two TrafficSplits for one apex); mesh's rule picks the one
// that gives the value (ResolveSplitClaims, ResolveProfileClaims) and the
// others are reported as config errors.
type claimEntry[K comparable, V any] struct {
	claim mesh.Claim
	ref   *corev1.ObjectReference
	// valid is false when conversion failed; key and val are then zero.
	valid bool
	key   K
	val   V
}

// NewStore returns an empty store using mesh's converters.
func NewStore(clusterDomain string, sink ConfigErrorSink) *Store {
	return newStore(clusterDomain, meshConverters(), sink)
}

func newStore(clusterDomain string, conv converters, sink ConfigErrorSink) *Store {
	s := &Store{
		domain:      clusterDomain,
		conv:        conv,
		sink:        sink,
		now:         time.Now,
		onChange:    func() {},
		namespaces:  map[string]*corev1.Namespace{},
		services:    map[mesh.ServiceKey]*corev1.Service{},
		slices:      map[types.NamespacedName]*discoveryv1.EndpointSlice{},
		slicesOf:    map[mesh.ServiceKey]map[string]*discoveryv1.EndpointSlice{},
		pods:        map[types.NamespacedName]*corev1.Pod{},
		podServices: map[types.NamespacedName]map[mesh.ServiceKey]int{},
		profileObjs: map[types.NamespacedName]*claimEntry[mesh.ProfileKey, *mesh.Profile]{},
		splitObjs:   map[types.NamespacedName]*claimEntry[mesh.ServiceKey, *mesh.Split]{},
		splitSrc:    map[types.NamespacedName]*profiles.TrafficSplit{},
		svcVals:     map[mesh.ServiceKey]*mesh.Service{},
		epVals:      map[mesh.ServiceKey]*mesh.ServiceEndpoints{},
		profVals:    map[mesh.ProfileKey]*mesh.Profile{},
		splitVals:   map[mesh.ServiceKey]*mesh.Split{},
		proxies:     map[string]*mesh.Proxy{},
		tapped:      map[string]bool{},
		configErrs:  map[mesh.ObjectRef]configErrorState{},
		pending:     newChanges(),
	}
	s.published = &Snapshot{
		Model: &mesh.Model{
			ClusterDomain: clusterDomain,
			Services:      map[mesh.ServiceKey]*mesh.Service{},
			Endpoints:     map[mesh.ServiceKey]*mesh.ServiceEndpoints{},
			Profiles:      map[mesh.ProfileKey]*mesh.Profile{},
			Splits:        map[mesh.ServiceKey]*mesh.Split{},
		},
		Proxies: map[string]*mesh.Proxy{},
	}
	return s
}

// PendingEndpointsOnly reports whether everything waiting for the next
// flush is an endpoint change (the debouncer's fast lane).
func (s *Store) PendingEndpointsOnly() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending.endpointsOnly()
}

// SetOnChange installs the function called when a change becomes pending.
func (s *Store) SetOnChange(f func()) {
	s.mu.Lock()
	s.onChange = f
	s.mu.Unlock()
}

// Published is the last snapshot Flush published.
func (s *Store) Published() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published
}

// Flush publishes the working values as a new Snapshot and returns it with
// the previous one and what changed in between. ok is false (and nothing is
// published) when nothing changed.
func (s *Store) Flush() (prev, cur *Snapshot, changes *Changes, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending.Empty() {
		return s.published, s.published, newChanges(), false
	}
	ch := s.pending
	s.pending = newChanges()
	prev = s.published
	m := *prev.Model
	// Only maps that changed are copied; the rest are shared with the
	// previous snapshot (they are never written once published).
	if len(ch.Services) > 0 {
		m.Services = maps.Clone(s.svcVals)
	}
	if len(ch.Endpoints) > 0 {
		m.Endpoints = maps.Clone(s.epVals)
	}
	if len(ch.Profiles) > 0 {
		m.Profiles = maps.Clone(s.profVals)
	}
	if len(ch.Splits) > 0 {
		m.Splits = maps.Clone(s.splitVals)
	}
	if len(ch.Taps) > 0 {
		m.Tapped = maps.Clone(s.tapped)
	}
	proxies := prev.Proxies
	if len(ch.Proxies) > 0 {
		proxies = maps.Clone(s.proxies)
	}
	s.published = &Snapshot{Gen: prev.Gen + 1, Model: &m, Proxies: proxies}
	return prev, s.published, ch, true
}

// Proxy looks a node up in the working state (which may be ahead of the
// published snapshot). meshedPod says whether a pod of that name exists at
// all, so callers can tell "no such pod" from "pod not meshed".
func (s *Store) Proxy(pod, namespace string) (p *mesh.Proxy, podExists bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, podExists = s.pods[types.NamespacedName{Namespace: namespace, Name: pod}]
	return s.proxies[proxy.NodeID(pod, namespace)], podExists
}

// Pod returns the pod as last seen, or nil.
func (s *Store) Pod(namespace, name string) *corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods[types.NamespacedName{Namespace: namespace, Name: name}]
}

// Pods returns the pods of a namespace as last seen.
func (s *Store) Pods(namespace string) []*corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*corev1.Pod
	for nn, p := range s.pods {
		if nn.Namespace == namespace {
			out = append(out, p)
		}
	}
	return out
}

// ConfigErrors lists the objects currently skipped as invalid.
func (s *Store) ConfigErrors() []mesh.ConfigError {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]mesh.ConfigError, 0, len(s.configErrs))
	for obj, st := range s.configErrs {
		out = append(out, mesh.ConfigError{Object: obj, Err: st.err})
	}
	slices.SortFunc(out, func(a, b mesh.ConfigError) int {
		return cmp.Or(cmp.Compare(a.Object.Kind, b.Object.Kind),
			cmp.Compare(a.Object.Namespace, b.Object.Namespace),
			cmp.Compare(a.Object.Name, b.Object.Name))
	})
	return out
}

// ObjectReference returns a reference (with UID) to an object the store
// holds, for Events about it; nil when it holds none.
func (s *Store) ObjectReference(obj mesh.ObjectRef) *corev1.ObjectReference {
	s.mu.Lock()
	defer s.mu.Unlock()
	nn := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
	switch obj.Kind {
	case "ServiceProfile":
		if e := s.profileObjs[nn]; e != nil {
			return e.ref
		}
	case "TrafficSplit":
		if e := s.splitObjs[nn]; e != nil {
			return e.ref
		}
	case "Service":
		if svc := s.services[mesh.ServiceKey{Namespace: obj.Namespace, Name: obj.Name}]; svc != nil {
			return objectReference("v1", "Service", svc.Namespace, svc.Name, svc.UID)
		}
	case "Pod":
		if pod := s.pods[nn]; pod != nil {
			return objectReference("v1", "Pod", pod.Namespace, pod.Name, pod.UID)
		}
	case "Namespace":
		if ns := s.namespaces[obj.Name]; ns != nil {
			return objectReference("v1", "Namespace", "", ns.Name, ns.UID)
		}
	}
	return nil
}

// Counts says how many objects of each input kind the store holds.
func (s *Store) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]int{
		"Namespace":      len(s.namespaces),
		"Service":        len(s.services),
		"EndpointSlice":  len(s.slices),
		"Pod":            len(s.pods),
		"ServiceProfile": len(s.profileObjs),
		"TrafficSplit":   len(s.splitObjs),
		"Proxy":          len(s.proxies),
	}
}

// mutate runs f with the store locked, kicks the debouncer if f left a
// change pending, and reports whether f changed any model value (false:
// the event was a no-op and was dropped).
func (s *Store) mutate(f func(seen time.Time)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.changed
	f(s.now())
	if s.changed != before {
		s.onChange()
		return true
	}
	return false
}

// --- Namespaces ---

func (s *Store) SetNamespace(ns *corev1.Namespace) bool {
	return s.mutate(func(seen time.Time) {
		s.namespaces[ns.Name] = ns
		s.checkAnnotations(mesh.ObjectRef{Kind: "Namespace", Name: ns.Name},
			objectReference("v1", "Namespace", "", ns.Name, ns.UID), s.conv.namespaceErrors(ns))
		s.namespaceChanged(ns.Name, seen)
	})
}

func (s *Store) DeleteNamespace(name string) bool {
	return s.mutate(func(seen time.Time) {
		delete(s.namespaces, name)
		s.clearConfigError(mesh.ObjectRef{Kind: "Namespace", Name: name})
		s.namespaceChanged(name, seen)
	})
}

// namespaceChanged re-derives what reads namespace annotations. Namespaces
// change rarely, so walking every service and pod is fine.
func (s *Store) namespaceChanged(ns string, seen time.Time) {
	for key := range s.services {
		if key.Namespace == ns {
			s.deriveService(key, seen)
		}
	}
	// Endpoints read the namespace too (whether their pods are meshed):
	// each service backed by a pod here is re-derived once.
	backed := map[mesh.ServiceKey]bool{}
	for name := range s.pods {
		if name.Namespace == ns {
			s.deriveProxy(name, seen)
			for key := range s.podServices[name] {
				backed[key] = true
			}
		}
	}
	for key := range backed {
		s.deriveEndpoints(key, seen)
	}
}

// --- Services ---

func (s *Store) SetService(svc *corev1.Service) bool {
	return s.mutate(func(seen time.Time) {
		key := mesh.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
		s.services[key] = svc
		s.checkAnnotations(mesh.ObjectRef{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name},
			objectReference("v1", "Service", svc.Namespace, svc.Name, svc.UID), s.conv.serviceWarnings(svc))
		s.deriveService(key, seen)
	})
}

func (s *Store) DeleteService(namespace, name string) bool {
	return s.mutate(func(seen time.Time) {
		key := mesh.ServiceKey{Namespace: namespace, Name: name}
		delete(s.services, key)
		s.clearConfigError(mesh.ObjectRef{Kind: "Service", Namespace: namespace, Name: name})
		s.deriveService(key, seen)
	})
}

func (s *Store) deriveService(key mesh.ServiceKey, seen time.Time) {
	var nv *mesh.Service
	if raw := s.services[key]; raw != nil {
		nv = s.conv.service(raw, s.namespaces[key.Namespace])
	}
	old := s.svcVals[key]
	if !replace(s.svcVals, key, nv) {
		return
	}
	s.changed++
	note(s.pending.Services, key, seen)
	s.deriveEndpoints(key, seen)
	if (old == nil) != (nv == nil) {
		// Splits are only valid while their services exist.
		s.deriveSplitsIn(key.Namespace, seen)
	}
}

// replace stores nv under key unless it deep-equals the current value, in
// which case the current pointer is kept. It reports whether anything changed.
func replace[K comparable, V any](m map[K]*V, key K, nv *V) bool {
	old, had := m[key]
	switch {
	case nv == nil && !had:
		return false
	case nv == nil:
		delete(m, key)
		return true
	case had && reflect.DeepEqual(old, nv):
		return false
	}
	m[key] = nv
	return true
}

// --- EndpointSlices ---

func sliceService(es *discoveryv1.EndpointSlice) (mesh.ServiceKey, bool) {
	name := es.Labels[discoveryv1.LabelServiceName]
	return mesh.ServiceKey{Namespace: es.Namespace, Name: name}, name != ""
}

func (s *Store) SetEndpointSlice(es *discoveryv1.EndpointSlice) bool {
	return s.mutate(func(seen time.Time) {
		name := types.NamespacedName{Namespace: es.Namespace, Name: es.Name}
		old := s.slices[name]
		s.unindexSlice(old)
		s.slices[name] = es
		s.indexSlice(es)
		oldKey, hadOld := mesh.ServiceKey{}, false
		if old != nil {
			oldKey, hadOld = sliceService(old)
		}
		newKey, hasNew := sliceService(es)
		if hadOld && oldKey != newKey {
			s.deriveEndpoints(oldKey, seen)
		}
		if hasNew {
			s.deriveEndpoints(newKey, seen)
		}
	})
}

func (s *Store) DeleteEndpointSlice(namespace, name string) bool {
	return s.mutate(func(seen time.Time) {
		nn := types.NamespacedName{Namespace: namespace, Name: name}
		old := s.slices[nn]
		if old == nil {
			return
		}
		s.unindexSlice(old)
		delete(s.slices, nn)
		if key, ok := sliceService(old); ok {
			s.deriveEndpoints(key, seen)
		}
	})
}

func slicePods(es *discoveryv1.EndpointSlice, yield func(types.NamespacedName)) {
	for _, ep := range es.Endpoints {
		if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" && ref.Name != "" {
			ns := ref.Namespace
			if ns == "" {
				ns = es.Namespace
			}
			yield(types.NamespacedName{Namespace: ns, Name: ref.Name})
		}
	}
}

func (s *Store) indexSlice(es *discoveryv1.EndpointSlice) {
	key, ok := sliceService(es)
	if !ok {
		return
	}
	if s.slicesOf[key] == nil {
		s.slicesOf[key] = map[string]*discoveryv1.EndpointSlice{}
	}
	s.slicesOf[key][es.Name] = es
	slicePods(es, func(pod types.NamespacedName) {
		if s.podServices[pod] == nil {
			s.podServices[pod] = map[mesh.ServiceKey]int{}
		}
		s.podServices[pod][key]++
	})
}

func (s *Store) unindexSlice(es *discoveryv1.EndpointSlice) {
	if es == nil {
		return
	}
	key, ok := sliceService(es)
	if !ok {
		return
	}
	if m := s.slicesOf[key]; m != nil {
		delete(m, es.Name)
		if len(m) == 0 {
			delete(s.slicesOf, key)
		}
	}
	slicePods(es, func(pod types.NamespacedName) {
		m := s.podServices[pod]
		if m == nil {
			return
		}
		if m[key]--; m[key] <= 0 {
			delete(m, key)
		}
		if len(m) == 0 {
			delete(s.podServices, pod)
		}
	})
}

func (s *Store) deriveEndpoints(key mesh.ServiceKey, seen time.Time) {
	var nv *mesh.ServiceEndpoints
	if svc := s.svcVals[key]; svc != nil && len(s.slicesOf[key]) > 0 {
		// Sorted by name so the result does not depend on map order.
		byName := s.slicesOf[key]
		list := make([]*discoveryv1.EndpointSlice, 0, len(byName))
		for _, name := range slices.Sorted(maps.Keys(byName)) {
			list = append(list, byName[name])
		}
		nv = s.conv.endpoints(svc, list, s.podByName)
	}
	if replace(s.epVals, key, nv) {
		s.changed++
		note(s.pending.Endpoints, key, seen)
	}
}

func (s *Store) podByName(namespace, name string) (*corev1.Pod, *corev1.Namespace) {
	return s.pods[types.NamespacedName{Namespace: namespace, Name: name}], s.namespaces[namespace]
}

// --- Pods ---

func (s *Store) SetPod(pod *corev1.Pod) bool {
	return s.mutate(func(seen time.Time) {
		name := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
		s.pods[name] = pod
		s.podChanged(name, seen)
	})
}

func (s *Store) DeletePod(namespace, name string) bool {
	return s.mutate(func(seen time.Time) {
		nn := types.NamespacedName{Namespace: namespace, Name: name}
		if _, ok := s.pods[nn]; !ok {
			return
		}
		delete(s.pods, nn)
		s.podChanged(nn, seen)
	})
}

func (s *Store) podChanged(name types.NamespacedName, seen time.Time) {
	s.deriveProxy(name, seen)
	// Endpoint identity comes from the pod; deep-equal drops the common
	// case of a pod update that changes nothing endpoints carry.
	for key := range s.podServices[name] {
		s.deriveEndpoints(key, seen)
	}
}

func (s *Store) deriveProxy(name types.NamespacedName, seen time.Time) {
	nodeID := proxy.NodeID(name.Name, name.Namespace)
	obj := mesh.ObjectRef{Kind: "Pod", Namespace: name.Namespace, Name: name.Name}
	var nv *mesh.Proxy
	if pod := s.pods[name]; pod != nil && podMayRun(pod) {
		var errs field.ErrorList
		nv, errs = s.conv.proxy(pod, s.namespaces[name.Namespace])
		s.checkAnnotations(obj, objectReference("v1", "Pod", pod.Namespace, pod.Name, pod.UID), errs)
	} else {
		s.clearConfigError(obj)
	}
	if replace(s.proxies, nodeID, nv) {
		s.changed++
		note(s.pending.Proxies, nodeID, seen)
	}
}

// SetTapped puts the proxy of nodeID in the model's tap set (on) or takes
// it out; the proxy need not exist yet. It reports whether that changed
// anything.
func (s *Store) SetTapped(nodeID string, on bool) bool {
	return s.mutate(func(seen time.Time) {
		if s.tapped[nodeID] == on {
			return
		}
		if on {
			s.tapped[nodeID] = true
		} else {
			delete(s.tapped, nodeID)
		}
		s.changed++
		note(s.pending.Taps, nodeID, seen)
	})
}

// RetranslateTapped marks every tapped proxy changed, as if its tap had just
// started: something translation reads beside the model (the tap loggers'
// service) changed. It returns how many there are.
func (s *Store) RetranslateTapped() int {
	n := 0
	s.mutate(func(seen time.Time) {
		for id := range s.tapped {
			note(s.pending.Taps, id, seen)
			n++
		}
		if n > 0 {
			s.changed++
		}
	})
	return n
}

// podMayRun is false for pods that finished: their proxy is gone for good.
func podMayRun(pod *corev1.Pod) bool {
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// --- ServiceProfiles ---

// SetServiceProfile stores a decoded profile. Conversion errors are
// reported through the sink and the profile is left out of the model, so
// every other profile keeps being served.
func (s *Store) SetServiceProfile(sp *profiles.ServiceProfile) bool {
	return s.mutate(func(seen time.Time) {
		name := types.NamespacedName{Namespace: sp.Namespace, Name: sp.Name}
		e := &claimEntry[mesh.ProfileKey, *mesh.Profile]{
			claim: mesh.ClaimOf("ServiceProfile", sp),
			ref:   objectReference(profiles.ServiceProfileGroupVersion.String(), "ServiceProfile", sp.Namespace, sp.Name, sp.UID),
		}
		p, errs := s.conv.profile(sp, s.domain)
		if len(errs) > 0 || p == nil {
			s.setConfigError(e.claim.Object, e.ref, fieldErrors(errs, "profile converted to nothing"))
		} else {
			e.valid, e.key, e.val = true, mesh.ProfileKey{Namespace: sp.Namespace, Service: p.Service}, p
		}
		s.putProfile(name, e, seen)
	})
}

// SetServiceProfileUndecodable records a profile object that could not even
// be decoded: it is reported and treated as absent.
func (s *Store) SetServiceProfileUndecodable(namespace, name string, uid types.UID, err error) bool {
	return s.mutate(func(seen time.Time) {
		nn := types.NamespacedName{Namespace: namespace, Name: name}
		e := &claimEntry[mesh.ProfileKey, *mesh.Profile]{
			claim: mesh.Claim{Object: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: namespace, Name: name}},
			ref:   objectReference(profiles.ServiceProfileGroupVersion.String(), "ServiceProfile", namespace, name, uid),
		}
		s.setConfigError(e.claim.Object, e.ref, err)
		s.putProfile(nn, e, seen)
	})
}

func (s *Store) DeleteServiceProfile(namespace, name string) bool {
	return s.mutate(func(seen time.Time) {
		s.putProfile(types.NamespacedName{Namespace: namespace, Name: name}, nil, seen)
	})
}

func (s *Store) putProfile(name types.NamespacedName, e *claimEntry[mesh.ProfileKey, *mesh.Profile], seen time.Time) {
	old := s.profileObjs[name]
	if e == nil {
		delete(s.profileObjs, name)
		s.clearConfigError(mesh.ObjectRef{Kind: "ServiceProfile", Namespace: name.Namespace, Name: name.Name})
	} else {
		if old != nil && old.valid && e.valid && reflect.DeepEqual(old.val, e.val) {
			e.val = old.val
		}
		s.profileObjs[name] = e
	}
	if old != nil && old.valid {
		s.resolveProfile(old.key, seen)
	}
	if e != nil && e.valid && (old == nil || !old.valid || old.key != e.key) {
		s.resolveProfile(e.key, seen)
	}
}

func (s *Store) resolveProfile(key mesh.ProfileKey, seen time.Time) {
	var claims []*claimEntry[mesh.ProfileKey, *mesh.Profile]
	for _, e := range s.profileObjs {
		if e.valid && e.key == key {
			claims = append(claims, e)
		}
	}
	var nv *mesh.Profile
	if len(claims) > 0 {
		nv = resolveClaims(s, key, claims, mesh.ResolveProfileClaims).val
	}
	if setPtr(s.profVals, key, nv) {
		s.changed++
		note(s.pending.Profiles, key, seen)
	}
}

// --- TrafficSplits ---

// SetTrafficSplit stores a decoded split (either SMI version).
func (s *Store) SetTrafficSplit(ts *profiles.TrafficSplit) bool {
	return s.mutate(func(seen time.Time) {
		name := types.NamespacedName{Namespace: ts.Namespace, Name: ts.Name}
		s.splitSrc[name] = ts
		s.putSplit(name, s.convertSplit(ts), seen)
	})
}

// SetTrafficSplitUndecodable records a split object that could not be decoded.
func (s *Store) SetTrafficSplitUndecodable(apiVersion, namespace, name string, uid types.UID, err error) bool {
	return s.mutate(func(seen time.Time) {
		nn := types.NamespacedName{Namespace: namespace, Name: name}
		e := &claimEntry[mesh.ServiceKey, *mesh.Split]{
			claim: mesh.Claim{Object: mesh.ObjectRef{Kind: "TrafficSplit", Namespace: namespace, Name: name}},
			ref:   objectReference(apiVersion, "TrafficSplit", namespace, name, uid),
		}
		delete(s.splitSrc, nn)
		s.setConfigError(e.claim.Object, e.ref, err)
		s.putSplit(nn, e, seen)
	})
}

func (s *Store) DeleteTrafficSplit(namespace, name string) bool {
	return s.mutate(func(seen time.Time) {
		s.putSplit(types.NamespacedName{Namespace: namespace, Name: name}, nil, seen)
	})
}

func (s *Store) convertSplit(ts *profiles.TrafficSplit) *claimEntry[mesh.ServiceKey, *mesh.Split] {
	e := &claimEntry[mesh.ServiceKey, *mesh.Split]{
		claim: mesh.ClaimOf("TrafficSplit", ts),
		ref:   objectReference(ts.Version.String(), "TrafficSplit", ts.Namespace, ts.Name, ts.UID),
	}
	exists := func(k mesh.ServiceKey) bool { return s.svcVals[k] != nil }
	sp, errs := s.conv.split(ts, exists)
	if len(errs) > 0 || sp == nil {
		s.setConfigError(e.claim.Object, e.ref, fieldErrors(errs, "split converted to nothing"))
	} else {
		e.valid, e.key, e.val = true, sp.Apex, sp
	}
	return e
}

func (s *Store) deriveSplitsIn(namespace string, seen time.Time) {
	for name, ts := range s.splitSrc {
		if name.Namespace == namespace {
			s.putSplit(name, s.convertSplit(ts), seen)
		}
	}
}

func (s *Store) putSplit(name types.NamespacedName, e *claimEntry[mesh.ServiceKey, *mesh.Split], seen time.Time) {
	old := s.splitObjs[name]
	if e == nil {
		delete(s.splitObjs, name)
		delete(s.splitSrc, name)
		s.clearConfigError(mesh.ObjectRef{Kind: "TrafficSplit", Namespace: name.Namespace, Name: name.Name})
	} else {
		if old != nil && old.valid && e.valid && reflect.DeepEqual(old.val, e.val) {
			e.val = old.val
		}
		s.splitObjs[name] = e
	}
	if old != nil && old.valid {
		s.resolveSplit(old.key, seen)
	}
	if e != nil && e.valid && (old == nil || !old.valid || old.key != e.key) {
		s.resolveSplit(e.key, seen)
	}
}

func (s *Store) resolveSplit(apex mesh.ServiceKey, seen time.Time) {
	var claims []*claimEntry[mesh.ServiceKey, *mesh.Split]
	for _, e := range s.splitObjs {
		if e.valid && e.key == apex {
			claims = append(claims, e)
		}
	}
	var nv *mesh.Split
	if len(claims) > 0 {
		nv = resolveClaims(s, apex, claims, mesh.ResolveSplitClaims).val
	}
	if setPtr(s.splitVals, apex, nv) {
		s.changed++
		note(s.pending.Splits, apex, seen)
	}
}

// resolveClaims lets mesh's rule pick among the claims on one key, reports
// the losers with the errors it gives them and clears any the winner had.
func resolveClaims[K comparable, V any](s *Store, key K, claims []*claimEntry[K, V], rule func(K, []mesh.Claim) (int, []error)) *claimEntry[K, V] {
	cs := make([]mesh.Claim, len(claims))
	for i, c := range claims {
		cs[i] = c.claim
	}
	winner, errs := rule(key, cs)
	for i, c := range claims {
		if i == winner {
			s.clearConfigError(c.claim.Object)
		} else {
			s.setConfigError(c.claim.Object, c.ref, errs[i])
		}
	}
	return claims[winner]
}

// setPtr is replace for values already deduplicated by pointer.
func setPtr[K comparable, V any](m map[K]*V, key K, nv *V) bool {
	old, had := m[key]
	if nv == nil {
		if !had {
			return false
		}
		delete(m, key)
		return true
	}
	if had && old == nv {
		return false
	}
	m[key] = nv
	return true
}

// --- config errors ---

func (s *Store) setConfigError(obj mesh.ObjectRef, ref *corev1.ObjectReference, err error) {
	if old, ok := s.configErrs[obj]; ok && old.err.Error() == err.Error() {
		return
	}
	s.configErrs[obj] = configErrorState{err: err, ref: ref}
	if s.sink != nil {
		s.sink.ConfigErrorSet(mesh.ConfigError{Object: obj, Err: err}, ref)
	}
}

func (s *Store) clearConfigError(obj mesh.ObjectRef) {
	if _, ok := s.configErrs[obj]; !ok {
		return
	}
	delete(s.configErrs, obj)
	if s.sink != nil {
		s.sink.ConfigErrorCleared(obj)
	}
}

func (s *Store) checkAnnotations(obj mesh.ObjectRef, ref *corev1.ObjectReference, errs field.ErrorList) {
	if len(errs) > 0 {
		s.setConfigError(obj, ref, mesh.FieldErrors(errs))
	} else {
		s.clearConfigError(obj)
	}
}

func fieldErrors(errs field.ErrorList, ifEmpty string) error {
	if len(errs) == 0 {
		return errors.New(ifEmpty)
	}
	return mesh.FieldErrors(errs)
}

func objectReference(apiVersion, kind, namespace, name string, uid types.UID) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Namespace: namespace, Name: name, UID: uid}
}
