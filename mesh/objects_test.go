package mesh

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/profiles"
)

// Builders for the Kubernetes objects the tests feed in.

func ptr[T any](v T) *T { return &v }

func namespace(name string, annotations map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
}

func service(ns, name string, annotations map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10"},
			Ports:      ports,
		},
	}
}

func svcPort(name string, port int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: target, Protocol: corev1.ProtocolTCP}
}

type sliceEndpoint struct {
	addr                        string
	ready, serving, terminating *bool
	zone, node, pod             string
}

func endpointSlice(ns, svc, name string, ports map[string]int32, eps ...sliceEndpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for pn, pnum := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(pn), Port: ptr(pnum), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{
			Addresses:  []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating},
		}
		if e.zone != "" {
			ep.Zone = ptr(e.zone)
		}
		if e.node != "" {
			ep.NodeName = ptr(e.node)
		}
		if e.pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func pod(ns, name, sa, ip string, annotations map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Ports: ports}},
		},
		Status: corev1.PodStatus{PodIP: ip},
	}
}

func containerPort(name string, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}
}

func serviceProfile(ns, name string, spec profiles.ServiceProfileSpec) *profiles.ServiceProfile {
	return &profiles.ServiceProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: "linkerd.io/v1alpha2", Kind: "ServiceProfile"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       spec,
	}
}

func trafficSplit(ns, name, apex string, backends ...profiles.SplitBackend) *profiles.TrafficSplit {
	return &profiles.TrafficSplit{
		Version:    profiles.TrafficSplitV1alpha2,
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Service:    apex,
		Backends:   backends,
	}
}

func quantity(s string) resource.Quantity { return resource.MustParse(s) }
