package mesh

// Annotations Weft reads on Pods, Services and Namespaces. They live in one
// place because the sidecar injector (package injector) and the control plane
// read the same names.
//
// Where Linkerd has an equivalent, its name is accepted too so that a
// workload annotated for Linkerd keeps its meaning under Weft; when both are
// set on one object, Weft's own name wins.
const (
	// AnnotationProxyKind selects the data plane of a pod. "grpc" means the pod
	// runs a proxyless grpc-go client/server that talks xDS itself: no Envoy
	// sidecar is injected and the control plane sends it grpc-go's subset of
	// xDS. Absent or "sidecar" means an Envoy sidecar.
	AnnotationProxyKind = "weft.io/proxy"
	// ProxyKindValueGRPC and ProxyKindValueSidecar are the accepted values of
	// AnnotationProxyKind.
	ProxyKindValueGRPC    = "grpc"
	ProxyKindValueSidecar = "sidecar"

	// AnnotationOpaquePorts lists ports that carry no protocol detection and no
	// HTTP handling: a comma-separated list of port numbers, ranges
	// ("4000-4100") and, on pods, container port names. On a Service it
	// applies to the service's ports (port or numeric targetPort); on a
	// Namespace to every Service and Pod in it that has none of its own.
	AnnotationOpaquePorts        = "config.weft.io/opaque-ports"
	LinkerdAnnotationOpaquePorts = "config.linkerd.io/opaque-ports"

	// AnnotationSkipInboundPorts lists inbound ports that bypass the proxy
	// (same list syntax as opaque ports).
	AnnotationSkipInboundPorts        = "config.weft.io/skip-inbound-ports"
	LinkerdAnnotationSkipInboundPorts = "config.linkerd.io/skip-inbound-ports"

	// AnnotationSkipOutboundPorts lists outbound destination ports that bypass
	// the proxy.
	AnnotationSkipOutboundPorts        = "config.weft.io/skip-outbound-ports"
	LinkerdAnnotationSkipOutboundPorts = "config.linkerd.io/skip-outbound-ports"

	// AnnotationInject meshes a pod (on the pod) or every pod of a namespace
	// (on the namespace) when "enabled"; the pod's own value wins. The
	// injector writes the sidecar for the same names.
	AnnotationInject        = "weft.io/inject"
	LinkerdAnnotationInject = "linkerd.io/inject"
	InjectEnabled           = "enabled"
	InjectDisabled          = "disabled"

	// AnnotationMTLSMode says what a meshed pod's inbound side accepts, on
	// the pod or (for every pod without its own) on the namespace:
	// "permissive", the default, accepts mTLS from meshed clients and
	// plaintext from the rest (Linkerd's only behaviour, so Linkerd has no
	// annotation to honour here); "strict" refuses plaintext.
	AnnotationMTLSMode      = "config.weft.io/mtls-mode"
	MTLSModeValuePermissive = "permissive"
	MTLSModeValueStrict     = "strict"

	// The sidecar's own settings, on the pod or (for every pod without its
	// own) on the namespace; read by SidecarSettingsFromPod. A malformed one
	// never blocks a pod: the injector uses the default and warns.

	// AnnotationSkipSubnets lists destination CIDRs whose outbound traffic
	// bypasses the proxy: "10.0.0.0/8,192.168.0.0/16".
	AnnotationSkipSubnets        = "config.weft.io/skip-subnets"
	LinkerdAnnotationSkipSubnets = "config.linkerd.io/skip-subnets"
	// Resources of the proxy container, Kubernetes quantities ("100m", "64Mi").
	AnnotationProxyCPURequest           = "config.weft.io/proxy-cpu-request"
	LinkerdAnnotationProxyCPURequest    = "config.linkerd.io/proxy-cpu-request"
	AnnotationProxyCPULimit             = "config.weft.io/proxy-cpu-limit"
	LinkerdAnnotationProxyCPULimit      = "config.linkerd.io/proxy-cpu-limit"
	AnnotationProxyMemoryRequest        = "config.weft.io/proxy-memory-request"
	LinkerdAnnotationProxyMemoryRequest = "config.linkerd.io/proxy-memory-request"
	AnnotationProxyMemoryLimit          = "config.weft.io/proxy-memory-limit"
	LinkerdAnnotationProxyMemoryLimit   = "config.linkerd.io/proxy-memory-limit"
	// AnnotationProxyLogLevel is Envoy's --log-level (trace, debug, info,
	// warning, error, critical, off). Linkerd's value is a filter such as
	// "warn,linkerd=info": its first bare level is taken.
	AnnotationProxyLogLevel        = "config.weft.io/proxy-log-level"
	LinkerdAnnotationProxyLogLevel = "config.linkerd.io/proxy-log-level"
	// AnnotationProxyImage and AnnotationProxyVersion replace the proxy
	// image's repository and tag. Linkerd's equivalents are deliberately not
	// read: they name linkerd2-proxy images, which are not Envoy.
	AnnotationProxyImage   = "config.weft.io/proxy-image"
	AnnotationProxyVersion = "config.weft.io/proxy-version"

	// Written by the injector on every pod it injects, so that what runs
	// can be told from the pod alone (Linkerd writes linkerd.io/created-by
	// and linkerd.io/proxy-version the same way).
	AnnotationCreatedBy            = "weft.io/created-by"
	AnnotationProxyVersionInjected = "weft.io/proxy-version"

	// LabelAdmissionWebhooks set to "disabled" on a namespace keeps the
	// injection webhook from being called for its pods at all (the
	// webhook's namespaceSelector); Linkerd's label works too.
	LabelAdmissionWebhooks        = "config.weft.io/admission-webhooks"
	LinkerdLabelAdmissionWebhooks = "config.linkerd.io/admission-webhooks"
	AdmissionWebhooksDisabled     = "disabled"
)

// annotationWithFallback returns the value of the first of names present on
// the object, and which name it was.
func annotationWithFallback(annotations map[string]string, names ...string) (value, name string, ok bool) {
	for _, n := range names {
		if v, found := annotations[n]; found {
			return v, n, true
		}
	}
	return "", "", false
}
