package controller

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/mesh"
)

// Injection annotations. The injector (later) writes the sidecar for the
// same names; until it exists the controller treats a pod as meshed by
// these alone. Linkerd's name is honoured too, like mesh does for its own
// annotations, so a namespace annotated for Linkerd is meshed under Weft.
const (
	AnnotationInject        = "weft.io/inject"
	LinkerdAnnotationInject = "linkerd.io/inject"
	InjectEnabled           = "enabled"
	InjectDisabled          = "disabled"
)

func injectValue(annotations map[string]string) (string, bool) {
	if v, ok := annotations[AnnotationInject]; ok {
		return v, true
	}
	v, ok := annotations[LinkerdAnnotationInject]
	return v, ok
}

// Meshed says whether a pod gets config from the control plane: a
// proxyless gRPC pod (weft.io/proxy: grpc) always does; otherwise the pod's
// inject annotation decides, else its namespace's.
func Meshed(pod *corev1.Pod, ns *corev1.Namespace) bool {
	if pod.Annotations[mesh.AnnotationProxyKind] == mesh.ProxyKindValueGRPC {
		return true
	}
	if v, ok := injectValue(pod.Annotations); ok {
		return v == InjectEnabled
	}
	if ns != nil {
		if v, ok := injectValue(ns.Annotations); ok {
			return v == InjectEnabled
		}
	}
	return false
}

func meshedProxyFromPod(pod *corev1.Pod, ns *corev1.Namespace) (*mesh.Proxy, error) {
	if !Meshed(pod, ns) {
		return nil, nil
	}
	return mesh.ProxyFromPod(pod, ns)
}

func meshConverters() converters {
	return converters{
		service:         mesh.ServiceFrom,
		serviceWarnings: mesh.ValidateServiceAnnotations,
		namespaceErrors: mesh.ValidateNamespaceAnnotations,
		endpoints:       mesh.EndpointsFrom,
		profile:         mesh.ProfileFrom,
		split:           mesh.SplitFrom,
		proxy:           meshedProxyFromPod,
	}
}
