package controller

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/profiles"
)

// Builders for objects fed straight into the store, as informers would.

func testNamespace(name string, annotations map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("ns-" + name), Annotations: annotations}}
}

func testService(ns, name string, ports ...int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("svc-" + ns + "-" + name), ResourceVersion: "1"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}},
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: fmt.Sprintf("http-%d", p), Port: p, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(p),
		})
	}
	return svc
}

// testSlice lists pods (name -> IP) as ready endpoints of svc on port.
func testSlice(ns, name, svc string, port int32, pods map[string]string) *discoveryv1.EndpointSlice {
	portName := fmt.Sprintf("http-%d", port)
	proto := corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, ResourceVersion: "1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}
	for pod, ip := range pods {
		ready := true
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
		})
	}
	return es
}

func testPod(ns, name, ip, sa string, annotations map[string]string, ports ...int32) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("pod-" + ns + "-" + name), Annotations: annotations, ResourceVersion: "1"},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	for _, p := range ports {
		pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}
	return pod
}

var meshedNS = map[string]string{AnnotationInject: InjectEnabled}

// testProfile describes svc.svcNS from namespace ns with one route per path regex.
func testProfile(ns, svcNS, svc string, created time.Time, pathRegexes ...string) *profiles.ServiceProfile {
	sp := &profiles.ServiceProfile{
		TypeMeta: metav1.TypeMeta{APIVersion: profiles.ServiceProfileGroupVersion.String(), Kind: "ServiceProfile"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s.%s.svc.cluster.local", svc, svcNS),
			UID: types.UID("sp-" + ns + "-" + svc), CreationTimestamp: metav1.NewTime(created),
		},
	}
	for i, re := range pathRegexes {
		sp.Spec.Routes = append(sp.Spec.Routes, &profiles.RouteSpec{
			Name:      fmt.Sprintf("route-%d", i),
			Condition: &profiles.RequestMatch{PathRegex: re, Method: "GET"},
		})
	}
	return sp
}

func testSplit(ns, name, apex string, created time.Time, backends map[string]int64) *profiles.TrafficSplit {
	ts := &profiles.TrafficSplit{
		Version: profiles.TrafficSplitV1alpha2,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID("ts-" + ns + "-" + name), CreationTimestamp: metav1.NewTime(created),
		},
		Service: apex,
	}
	for svc, w := range backends {
		ts.Backends = append(ts.Backends, profiles.SplitBackend{Service: svc, Weight: w})
	}
	return ts
}
