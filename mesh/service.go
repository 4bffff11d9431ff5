package mesh

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var annotationsPath = field.NewPath("metadata", "annotations")

// portListAnnotation reads one port-list annotation (Weft's name, else
// Linkerd's). It returns nil when the object has neither, and an error at the
// annotation's path when the value does not parse.
func portListAnnotation(annotations map[string]string, allowNames bool, names ...string) (*PortSet, *field.Error) {
	value, name, ok := annotationWithFallback(annotations, names...)
	if !ok {
		return nil, nil
	}
	set, err := ParsePortSet(value, allowNames)
	if err != nil {
		return nil, field.Invalid(annotationsPath.Key(name), value, err.Error())
	}
	return &set, nil
}

// opaquePortsFor returns the opaque list of an object, else of its namespace,
// else nil (the defaults apply). A malformed list on the object is reported
// and skipped so the namespace's list or the defaults still apply: a typo
// must not turn a database port into HTTP silently, nor break the object.
func opaquePortsFor(annotations map[string]string, ns *corev1.Namespace, allowNames bool) (*PortSet, field.ErrorList) {
	var errs field.ErrorList
	set, err := portListAnnotation(annotations, allowNames, AnnotationOpaquePorts, LinkerdAnnotationOpaquePorts)
	if err != nil {
		errs = append(errs, err)
	}
	if set != nil {
		return set, errs
	}
	if ns != nil {
		// Namespace errors are reported against the Namespace itself (see
		// ValidateNamespaceAnnotations), not against every object in it.
		if nsSet, nsErr := portListAnnotation(ns.Annotations, allowNames, AnnotationOpaquePorts, LinkerdAnnotationOpaquePorts); nsErr == nil {
			return nsSet, errs
		}
	}
	return nil, errs
}

// ValidateNamespaceAnnotations checks the Weft/Linkerd annotations a
// Namespace may carry for its workloads.
func ValidateNamespaceAnnotations(ns *corev1.Namespace) field.ErrorList {
	var errs field.ErrorList
	if _, err := portListAnnotation(ns.Annotations, true, AnnotationOpaquePorts, LinkerdAnnotationOpaquePorts); err != nil {
		errs = append(errs, err)
	}
	for _, names := range [][]string{
		{AnnotationSkipInboundPorts, LinkerdAnnotationSkipInboundPorts},
		{AnnotationSkipOutboundPorts, LinkerdAnnotationSkipOutboundPorts},
	} {
		if _, err := portListAnnotation(ns.Annotations, false, names...); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := mtlsModeAnnotation(ns.Annotations); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// ValidateServiceAnnotations checks the annotations ServiceFrom reads. A
// Service with a bad annotation is still converted (the annotation is
// ignored); this is how the problem gets reported.
func ValidateServiceAnnotations(svc *corev1.Service) field.ErrorList {
	_, errs := opaquePortsFor(svc.Annotations, nil, true)
	return errs
}

// ServiceFrom converts a Service. ns may be nil when the Namespace is not
// known (its annotations then do not apply).
//
// ExternalName services return nil: they have no addresses the mesh can
// route to. Only TCP ports are kept (the mesh does not proxy UDP or SCTP).
// A malformed opaque-ports annotation is ignored here and reported by
// ValidateServiceAnnotations.
func ServiceFrom(svc *corev1.Service, ns *corev1.Namespace) *Service {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	opaque, _ := opaquePortsFor(svc.Annotations, ns, true)

	out := &Service{
		Key:      ServiceKey{Namespace: svc.Namespace, Name: svc.Name},
		Headless: svc.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	if !out.Headless {
		switch {
		case len(svc.Spec.ClusterIPs) > 0:
			out.ClusterIPs = append([]string(nil), svc.Spec.ClusterIPs...)
		case svc.Spec.ClusterIP != "":
			out.ClusterIPs = []string{svc.Spec.ClusterIP}
		}
	}
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Port < 1 || p.Port > 65535 {
			continue
		}
		var target uint32
		if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal > 0 && p.TargetPort.IntVal <= 65535 {
			target = uint32(p.TargetPort.IntVal)
		} else if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == 0 {
			// An unset targetPort defaults to the port (the API server fills
			// it in; objects built by hand may not have it).
			target = uint32(p.Port)
		}
		appProtocol := ""
		if p.AppProtocol != nil {
			appProtocol = *p.AppProtocol
		}
		out.Ports = append(out.Ports, ServicePort{
			Name:       p.Name,
			Port:       uint32(p.Port),
			Protocol:   portProtocol(opaque, p.Name, appProtocol, uint32(p.Port), target),
			TargetPort: target,
		})
	}
	return out
}
