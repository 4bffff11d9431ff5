package mesh

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/profiles"
)

// Objects are the Kubernetes objects a Model is built from.
type Objects struct {
	Services        []*corev1.Service
	EndpointSlices  []*discoveryv1.EndpointSlice
	Pods            []*corev1.Pod
	Namespaces      []*corev1.Namespace
	ServiceProfiles []*profiles.ServiceProfile
	TrafficSplits   []*profiles.TrafficSplit
}

// Build converts objects into a Model. Invalid profiles and splits are
// skipped, each reported as a ConfigError naming the object and field path;
// everything else is still built.
//
// Other problems are reported the same way without skipping anything: a
// malformed annotation on a Namespace or Service (the annotation is ignored,
// see ServiceFrom), and an object given twice (the first is kept). When
// several valid splits name one apex, the oldest (creationTimestamp, then
// namespace/name) is used and the others are reported: the rule of
// ResolveSplitClaims, which the control plane's store applies too. The
// result depends only on the set of objects, not on their order; errors
// are sorted by object.
func Build(clusterDomain string, objs Objects) (*Model, []ConfigError) {
	m := &Model{
		ClusterDomain: clusterDomain,
		Services:      map[ServiceKey]*Service{},
		Endpoints:     map[ServiceKey]*ServiceEndpoints{},
		Profiles:      map[ProfileKey]*Profile{},
		Splits:        map[ServiceKey]*Split{},
	}
	var errs []ConfigError
	report := func(kind string, obj metav1.Object, fe field.ErrorList) {
		errs = append(errs, configError(ObjectRef{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}, fe))
	}
	duplicate := func(kind string) func(metav1.Object) {
		return func(obj metav1.Object) {
			report(kind, obj, field.ErrorList{field.Duplicate(field.NewPath("metadata", "name"), obj.GetName())})
		}
	}

	namespaces := map[string]*corev1.Namespace{}
	for _, ns := range distinctObjects(objs.Namespaces, duplicate("Namespace")) {
		namespaces[ns.Name] = ns
		if fe := ValidateNamespaceAnnotations(ns); len(fe) > 0 {
			report("Namespace", ns, fe)
		}
	}

	pods := map[ServiceKey]*corev1.Pod{} // a pod named like a service key: namespace/name
	for _, pod := range distinctObjects(objs.Pods, duplicate("Pod")) {
		pods[ServiceKey{Namespace: pod.Namespace, Name: pod.Name}] = pod
	}
	podByName := func(ns, name string) (*corev1.Pod, *corev1.Namespace) {
		return pods[ServiceKey{Namespace: ns, Name: name}], namespaces[ns]
	}

	for _, svc := range distinctObjects(objs.Services, duplicate("Service")) {
		if fe := ValidateServiceAnnotations(svc); len(fe) > 0 {
			report("Service", svc, fe)
		}
		if s := ServiceFrom(svc, namespaces[svc.Namespace]); s != nil {
			m.Services[ServiceKey{Namespace: svc.Namespace, Name: svc.Name}] = s
		}
	}

	slicesByService := map[ServiceKey][]*discoveryv1.EndpointSlice{}
	for _, s := range objs.EndpointSlices {
		if s == nil {
			continue
		}
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := ServiceKey{Namespace: s.Namespace, Name: name}
		slicesByService[k] = append(slicesByService[k], s)
	}
	for k, group := range slicesByService {
		if svc := m.Services[k]; svc != nil {
			m.Endpoints[k] = EndpointsFrom(svc, group, podByName)
		}
	}

	profileClaims := claimsByKey[ProfileKey, *Profile]{}
	for _, sp := range distinctObjects(objs.ServiceProfiles, duplicate("ServiceProfile")) {
		p, fe := ProfileFrom(sp, clusterDomain)
		if len(fe) > 0 {
			report("ServiceProfile", sp, fe)
			continue
		}
		profileClaims.add(ProfileKey{Namespace: sp.Namespace, Service: p.Service}, ClaimOf("ServiceProfile", sp), p)
	}
	errs = profileClaims.resolve(m.Profiles, ResolveProfileClaims, errs)

	exists := func(k ServiceKey) bool { return m.Services[k] != nil }
	splitClaims := claimsByKey[ServiceKey, *Split]{}
	for _, ts := range distinctObjects(objs.TrafficSplits, duplicate("TrafficSplit")) {
		s, fe := SplitFrom(ts, exists)
		if len(fe) > 0 {
			report("TrafficSplit", ts, fe)
			continue
		}
		splitClaims.add(s.Apex, ClaimOf("TrafficSplit", ts), s)
	}
	errs = splitClaims.resolve(m.Splits, ResolveSplitClaims, errs)

	slices.SortStableFunc(errs, func(a, b ConfigError) int {
		return cmp.Or(
			cmp.Compare(a.Object.Kind, b.Object.Kind),
			cmp.Compare(a.Object.Namespace, b.Object.Namespace),
			cmp.Compare(a.Object.Name, b.Object.Name),
		)
	})
	return m, errs
}

// claimsByKey collects the valid objects claiming each model key, with the
// value each would give.
type claimsByKey[K comparable, V any] map[K]*claimGroup[V]

type claimGroup[V any] struct {
	claims []Claim
	vals   []V
}

func (c claimsByKey[K, V]) add(k K, claim Claim, v V) {
	g := c[k]
	if g == nil {
		g = &claimGroup[V]{}
		c[k] = g
	}
	g.claims = append(g.claims, claim)
	g.vals = append(g.vals, v)
}

// resolve stores each key's winning value in into and appends the losers'
// errors to errs.
func (c claimsByKey[K, V]) resolve(into map[K]V, rule func(K, []Claim) (int, []error), errs []ConfigError) []ConfigError {
	for k, g := range c {
		winner, lost := rule(k, g.claims)
		into[k] = g.vals[winner]
		for i, err := range lost {
			if err != nil {
				errs = append(errs, ConfigError{Object: g.claims[i].Object, Err: err})
			}
		}
	}
	return errs
}

// distinctObjects is sortedObjects keeping the first object of each
// namespace/name: a cluster holds one, so another is a mistake in the
// input, passed to duplicate.
func distinctObjects[T any, P interface {
	*T
	metav1.Object
}](in []P, duplicate func(metav1.Object)) []P {
	sorted := sortedObjects(in)
	out := sorted[:0]
	for _, o := range sorted {
		if n := len(out); n > 0 && out[n-1].GetNamespace() == o.GetNamespace() && out[n-1].GetName() == o.GetName() {
			duplicate(o)
			continue
		}
		out = append(out, o)
	}
	return out
}

// sortedObjects drops nil entries and orders by namespace/name, so that
// "first wins" rules do not depend on informer order. Objects with the same
// namespace and name keep their input order.
func sortedObjects[T any, P interface {
	*T
	metav1.Object
}](in []P) []P {
	out := make([]P, 0, len(in))
	for _, o := range in {
		if o != nil {
			out = append(out, o)
		}
	}
	slices.SortStableFunc(out, func(a, b P) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	return out
}
