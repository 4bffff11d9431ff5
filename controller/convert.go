package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/mesh"
)

// The injection annotations are mesh's (mesh.PodMeshed decides): endpoints
// need the same answer to know which pods terminate mTLS. These names keep
// the controller's callers and tests reading as before.
const (
	AnnotationInject        = mesh.AnnotationInject
	LinkerdAnnotationInject = mesh.LinkerdAnnotationInject
	InjectEnabled           = mesh.InjectEnabled
	InjectDisabled          = mesh.InjectDisabled
)

func meshedProxyFromPod(pod *corev1.Pod, ns *corev1.Namespace) (*mesh.Proxy, field.ErrorList) {
	if !mesh.PodMeshed(pod, ns) {
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
