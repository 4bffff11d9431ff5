package mesh

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/proxy"
)

// ProxyFromPod describes the data-plane node of a pod.
//
// The pod annotation weft.io/proxy: grpc makes it a proxyless grpc-go node
// (no sidecar; see AnnotationProxyKind). Inbound ports are the TCP container
// ports of all containers (and of restartable init containers, which are
// sidecars that may serve), minus the skip-inbound list and the proxy's own
// ports. Port lists come from the pod's annotations, else the namespace's
// (ns may be nil).
//
// A malformed annotation never costs the pod its config, the injector's
// rule (SidecarSettingsFromPod): the field it sets keeps its default and
// errs names the annotation (prefixed with the namespace when inherited).
// The proxy is always returned. A pod's malformed value falls back to the
// default, not to its namespace's value: the pod meant to override that
// value, and the default is what the injector wrote into the pod's capture
// rules, so what the proxy serves matches what is redirected to it. The mTLS
// mode is the exception: a malformed one reads as strict (podMTLSMode).
func ProxyFromPod(pod *corev1.Pod, ns *corev1.Namespace) (*Proxy, field.ErrorList) {
	var errs field.ErrorList
	kind := proxy.Envoy
	switch v, ok := pod.Annotations[AnnotationProxyKind]; {
	case !ok || v == ProxyKindValueSidecar:
	case v == ProxyKindValueGRPC:
		kind = proxy.GRPC
	default:
		// The injector gives such a pod a sidecar (it skips only "grpc").
		errs = append(errs, field.NotSupported(annotationsPath.Key(AnnotationProxyKind), v, []string{ProxyKindValueGRPC, ProxyKindValueSidecar}))
	}
	opaque, skipIn, skipOut, listErrs := podPortLists(pod, ns)
	errs = append(errs, listErrs...)
	mode, modeErr := podMTLSMode(pod, ns)
	if modeErr != nil {
		errs = append(errs, modeErr)
	}

	p := &Proxy{
		Kind:      kind,
		Pod:       pod.Name,
		Namespace: pod.Namespace,
		IP:        pod.Status.PodIP,
		Identity:  podIdentity(pod),
		MTLSMode:  mode,
	}
	if skipIn != nil {
		p.SkipInboundPorts = skipIn.Ports()
	}
	if skipOut != nil {
		p.SkipOutboundPorts = skipOut.Ports()
	}

	seen := map[uint32]bool{}
	addPorts := func(c corev1.Container) {
		for _, cp := range c.Ports {
			if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
				continue
			}
			if cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				continue
			}
			port := uint32(cp.ContainerPort)
			if seen[port] || isProxyPort(port) || (skipIn != nil && skipIn.Contains(port)) {
				continue
			}
			seen[port] = true
			p.InboundPorts = append(p.InboundPorts, ProxyPort{
				Name:     cp.Name,
				Port:     port,
				Protocol: portProtocol(opaque, cp.Name, "", port),
			})
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addPorts(c)
		}
	}
	for _, c := range pod.Spec.Containers {
		addPorts(c)
	}
	slices.SortFunc(p.InboundPorts, func(a, b ProxyPort) int { return cmp.Compare(a.Port, b.Port) })

	if opaque == nil {
		p.OpaquePorts = slices.Clone(DefaultOpaquePorts)
	} else {
		// Names resolve against the pod's own container ports.
		set := *opaque
		for _, containers := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, c := range containers {
				for _, cp := range c.Ports {
					if cp.Name != "" && slices.Contains(set.Names, cp.Name) && cp.ContainerPort > 0 && cp.ContainerPort <= 65535 {
						set.Ranges = append(set.Ranges, PortRange{First: uint32(cp.ContainerPort), Last: uint32(cp.ContainerPort)})
					}
				}
			}
		}
		p.OpaquePorts = set.Ports()
	}
	return p, errs
}

func isProxyPort(port uint32) bool {
	return port == ProxyInboundPort || port == ProxyOutboundPort || port == ProxyAdminPort || port == ProxyHealthPort
}

// podPortLists parses the port lists ProxyFromPod reads, each the pod's,
// else (when the pod has none) the namespace's, else nil. A malformed list
// is an error; one inherited from the namespace says so in its field.
func podPortLists(pod *corev1.Pod, ns *corev1.Namespace) (opaque, skipIn, skipOut *PortSet, errs field.ErrorList) {
	list := func(allowNames bool, names ...string) *PortSet {
		set, err := podOrNamespace(pod, ns, func(annotations map[string]string) (*PortSet, bool, *field.Error) {
			set, err := portListAnnotation(annotations, allowNames, names...)
			return set, set != nil || err != nil, err
		})
		if err != nil {
			errs = append(errs, err)
		}
		return set
	}
	opaque = list(true, AnnotationOpaquePorts, LinkerdAnnotationOpaquePorts)
	skipIn = list(false, AnnotationSkipInboundPorts, LinkerdAnnotationSkipInboundPorts)
	skipOut = list(false, AnnotationSkipOutboundPorts, LinkerdAnnotationSkipOutboundPorts)
	return opaque, skipIn, skipOut, errs
}

// podMTLSMode is the pod's mTLS mode annotation, else its namespace's, else
// permissive. A malformed value, the pod's or the inherited namespace's,
// reads as strict with an error naming the field (prefixed with the
// namespace when it is the namespace's): unlike the other annotations its
// default is the weaker reading, and a misspelt "strict" must not accept
// plaintext. The cost of the other reading, a misspelt "permissive"
// refusing plaintext clients, is loud and reported; a downgrade is silent.
func podMTLSMode(pod *corev1.Pod, ns *corev1.Namespace) (MTLSMode, *field.Error) {
	return podOrNamespace(pod, ns, func(annotations map[string]string) (MTLSMode, bool, *field.Error) {
		_, found := annotations[AnnotationMTLSMode]
		mode, err := mtlsModeAnnotation(annotations)
		return mode, found, err
	})
}

// podOrNamespace is the rule every pod annotation a namespace may also
// carry follows: the pod's value when the pod has the annotation, else the
// namespace's, whose error names the namespace so that the pod's error
// points at the right object. A malformed pod value is not a reason to
// inherit: parse's fallback for it stands (see ProxyFromPod). parse reports
// whether the annotations hold the value at all; without a namespace (nil)
// the pod's answer stands.
func podOrNamespace[T any](pod *corev1.Pod, ns *corev1.Namespace, parse func(annotations map[string]string) (v T, found bool, err *field.Error)) (T, *field.Error) {
	v, found, err := parse(pod.Annotations)
	if found || ns == nil {
		return v, err
	}
	v, _, err = parse(ns.Annotations)
	if err != nil {
		err.Field = "namespace " + ns.Name + " " + err.Field
	}
	return v, err
}

// mtlsModeAnnotation parses AnnotationMTLSMode; absent is permissive,
// malformed is strict (see podMTLSMode).
func mtlsModeAnnotation(annotations map[string]string) (MTLSMode, *field.Error) {
	v, ok := annotations[AnnotationMTLSMode]
	switch {
	case !ok || v == MTLSModeValuePermissive:
		return MTLSPermissive, nil
	case v == MTLSModeValueStrict:
		return MTLSStrict, nil
	}
	err := field.NotSupported(annotationsPath.Key(AnnotationMTLSMode), v, []string{MTLSModeValuePermissive, MTLSModeValueStrict})
	err.Detail += "; read as strict"
	return MTLSStrict, err
}

// PodMeshed says whether a pod gets config from the control plane: a
// proxyless gRPC pod (weft.io/proxy: grpc) always does; otherwise the pod's
// inject annotation decides, else its namespace's (ns may be nil). Linkerd's
// inject annotation is honoured too, so a namespace annotated for Linkerd
// is meshed under Weft.
func PodMeshed(pod *corev1.Pod, ns *corev1.Namespace) bool {
	if pod.Annotations[AnnotationProxyKind] == ProxyKindValueGRPC {
		return true
	}
	meshed, _ := podOrNamespace(pod, ns, func(annotations map[string]string) (bool, bool, *field.Error) {
		v, _, ok := annotationWithFallback(annotations, AnnotationInject, LinkerdAnnotationInject)
		return v == InjectEnabled, ok, nil
	})
	return meshed
}

// PodTerminatesMTLS says whether connections to the pod can be mTLS. A pod
// meshed with an Envoy sidecar: its inbound listener accepts mTLS on every
// port it serves. A proxyless gRPC pod: only when its mTLS mode is strict,
// since grpc-go's xDS server cannot tell TLS from plaintext on one port
// (gRFC A36 drops filter chains matching a transport protocol), so Weft
// gives a permissive one a plaintext listener and a strict one a TLS
// listener and nothing else. A malformed mode reads as strict here as in
// ProxyFromPod, so clients originate the mTLS its TLS listener requires.
func PodTerminatesMTLS(pod *corev1.Pod, ns *corev1.Namespace) bool {
	if !PodMeshed(pod, ns) {
		return false
	}
	if pod.Annotations[AnnotationProxyKind] != ProxyKindValueGRPC {
		return true
	}
	mode, _ := podMTLSMode(pod, ns)
	return mode == MTLSStrict
}
