package mesh

import (
	"cmp"
	"fmt"
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
// see ServiceFrom), and an object given twice (the first is kept). When two
// TrafficSplits name the same apex, the one whose name sorts first is used
// and the other is reported. The result depends only on the set of objects,
// not on their order; errors are sorted by object.
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
	duplicate := func(kind string, obj metav1.Object) {
		report(kind, obj, field.ErrorList{field.Duplicate(field.NewPath("metadata", "name"), obj.GetName())})
	}

	namespaces := map[string]*corev1.Namespace{}
	for _, ns := range sortedObjects(objs.Namespaces) {
		if namespaces[ns.Name] != nil {
			duplicate("Namespace", ns)
			continue
		}
		namespaces[ns.Name] = ns
		if fe := ValidateNamespaceAnnotations(ns); len(fe) > 0 {
			report("Namespace", ns, fe)
		}
	}

	pods := map[ServiceKey]*corev1.Pod{} // a pod named like a service key: namespace/name
	for _, pod := range sortedObjects(objs.Pods) {
		k := ServiceKey{Namespace: pod.Namespace, Name: pod.Name}
		if pods[k] != nil {
			duplicate("Pod", pod)
			continue
		}
		pods[k] = pod
	}
	podByName := func(ns, name string) *corev1.Pod { return pods[ServiceKey{Namespace: ns, Name: name}] }

	seenServices := map[ServiceKey]bool{}
	for _, svc := range sortedObjects(objs.Services) {
		k := ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
		if seenServices[k] {
			duplicate("Service", svc)
			continue
		}
		seenServices[k] = true
		if fe := ValidateServiceAnnotations(svc); len(fe) > 0 {
			report("Service", svc, fe)
		}
		if s := ServiceFrom(svc, namespaces[svc.Namespace]); s != nil {
			m.Services[k] = s
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

	for _, sp := range sortedObjects(objs.ServiceProfiles) {
		p, fe := ProfileFrom(sp, clusterDomain)
		if len(fe) > 0 {
			report("ServiceProfile", sp, fe)
			continue
		}
		k := ProfileKey{Namespace: sp.Namespace, Service: p.Service}
		if m.Profiles[k] != nil {
			duplicate("ServiceProfile", sp)
			continue
		}
		m.Profiles[k] = p
	}

	exists := func(k ServiceKey) bool { return m.Services[k] != nil }
	for _, ts := range sortedObjects(objs.TrafficSplits) {
		s, fe := SplitFrom(ts, exists)
		if len(fe) > 0 {
			report("TrafficSplit", ts, fe)
			continue
		}
		if prev := m.Splits[s.Apex]; prev != nil {
			report("TrafficSplit", ts, field.ErrorList{field.Duplicate(field.NewPath("spec", "service"),
				fmt.Sprintf("%s (TrafficSplit %s already splits it)", ts.Service, prev.Source.Name))})
			continue
		}
		m.Splits[s.Apex] = s
	}

	slices.SortStableFunc(errs, func(a, b ConfigError) int {
		return cmp.Or(
			cmp.Compare(a.Object.Kind, b.Object.Kind),
			cmp.Compare(a.Object.Namespace, b.Object.Namespace),
			cmp.Compare(a.Object.Name, b.Object.Name),
		)
	})
	return m, errs
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
