package mesh

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/profiles"
)

// benchObjects is a mesh of the size Istio quotes for one istiod: 1,000
// services with 2 pods each, one profile per service (4 routes) and a split
// for every tenth.
func benchObjects(services int) Objects {
	var objs Objects
	for n := 0; n < 10; n++ {
		objs.Namespaces = append(objs.Namespaces, namespace(fmt.Sprintf("ns-%d", n), nil))
	}
	for i := 0; i < services; i++ {
		ns, name := fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("svc-%d", i)
		objs.Services = append(objs.Services, service(ns, name, nil,
			svcPort("http", 80, intstr.FromInt32(8080)), svcPort("grpc", 9090, intstr.FromInt32(9090))))
		var eps []sliceEndpoint
		for p := 0; p < 2; p++ {
			podName := fmt.Sprintf("%s-%d", name, p)
			ip := fmt.Sprintf("10.%d.%d.%d", i/250, i%250, p+1)
			objs.Pods = append(objs.Pods, pod(ns, podName, name, ip, nil, containerPort("http", 8080), containerPort("grpc", 9090)))
			eps = append(eps, sliceEndpoint{addr: ip, pod: podName, zone: "z1", node: "n1"})
		}
		objs.EndpointSlices = append(objs.EndpointSlices,
			endpointSlice(ns, name, name+"-abc", map[string]int32{"http": 8080, "grpc": 9090}, eps...))
		objs.ServiceProfiles = append(objs.ServiceProfiles, serviceProfile(ns, name+"."+ns+".svc.cluster.local", profiles.ServiceProfileSpec{
			Routes: []*profiles.RouteSpec{
				{Name: "GET /books", Condition: &profiles.RequestMatch{Method: "GET", PathRegex: `/books`}},
				{Name: "GET /books/{id}", Condition: &profiles.RequestMatch{Method: "GET", PathRegex: `/books/[^/]*`}, IsRetryable: true, Timeout: "100ms"},
				{Name: "POST /books", Condition: &profiles.RequestMatch{Method: "POST", PathRegex: `/books`}},
				{Name: "DELETE /books/{id}", Condition: &profiles.RequestMatch{Method: "DELETE", PathRegex: `/books/[^/]*`},
					ResponseClasses: []*profiles.ResponseClass{{Condition: &profiles.ResponseMatch{Status: &profiles.Range{Min: 500}}, IsFailure: true}}},
			},
			RetryBudget: &profiles.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: "10s"},
		}))
		if i%10 == 0 && i+10 < services {
			objs.TrafficSplits = append(objs.TrafficSplits, trafficSplit(ns, name+"-split", name,
				profiles.SplitBackend{Service: name, Weight: 900}, profiles.SplitBackend{Service: fmt.Sprintf("svc-%d", i+10), Weight: 100}))
		}
	}
	return objs
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{100, 1000} {
		objs := benchObjects(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m, errs := Build("cluster.local", objs)
				if len(errs) > 0 || len(m.Services) != n {
					b.Fatalf("%d services, errors %v", len(m.Services), errs)
				}
			}
		})
	}
}

// BenchmarkIncremental is what the control plane pays per object event.
func BenchmarkIncremental(b *testing.B) {
	objs := benchObjects(10)
	svc, slice := objs.Services[0], objs.EndpointSlices[0]
	pods := map[string]*corev1.Pod{}
	for _, p := range objs.Pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	podByName := func(ns, name string) (*corev1.Pod, *corev1.Namespace) { return pods[ns+"/"+name], nil }
	b.Run("ServiceFrom", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ServiceFrom(svc, objs.Namespaces[0])
		}
	})
	b.Run("EndpointsFrom", func(b *testing.B) {
		s := ServiceFrom(svc, nil)
		b.ReportAllocs()
		for b.Loop() {
			EndpointsFrom(s, []*discoveryv1.EndpointSlice{slice}, podByName)
		}
	})
	b.Run("ProfileFrom", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, errs := ProfileFrom(objs.ServiceProfiles[0], "cluster.local"); len(errs) > 0 {
				b.Fatal(errs)
			}
		}
	})
	b.Run("ProxyFromPod", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ProxyFromPod(objs.Pods[0], objs.Namespaces[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
