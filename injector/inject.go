package injector

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/mesh"
)

// Injector mutates pods for one Config. It is safe for concurrent use.
type Injector struct {
	cfg Config

	// The bootstrap depends only on cfg and the trust bundle, and rendering
	// it is most of an admission's cost: the last one is kept per bundle.
	bootMu     sync.Mutex
	bootBundle []byte
	bootYAML   []byte
}

// New checks cfg and returns an Injector for it.
func New(cfg Config) (*Injector, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Injector{cfg: cfg}, nil
}

func (c Config) trustBundle() []byte {
	if c.TrustBundleSource != nil {
		return c.TrustBundleSource()
	}
	return c.TrustBundlePEM
}

// Result is what Inject decided.
type Result struct {
	// Pod is the injected copy; nil when the pod was skipped.
	Pod *corev1.Pod
	// Skipped says why not, in the words `weft inject` reports.
	Skipped string
}

// Reasons a pod is not injected.
const (
	SkipHostNetwork     = "hostNetwork is enabled"
	SkipAlreadyInjected = "pod has a sidecar injected already"
	SkipDisabled        = "injection disabled by annotation"
	SkipNotEnabled      = "injection not enabled"
	SkipSystemNamespace = "kube-system namespace"
	SkipOptedOut        = "namespace opted out of admission webhooks"
	SkipProxyless       = "proxyless gRPC pod (weft.io/proxy: grpc)"
)

// Inject decides whether pod gets the sidecar and, if so, returns an
// injected copy; pod itself is not changed. ns is the pod's namespace (nil
// when unknown, as in `weft inject`). Warnings name each malformed annotation
// with its value and the default used instead, and each UDP port (UDP
// bypasses the proxy); they never stop the injection.
func (in *Injector) Inject(pod *corev1.Pod, ns *corev1.Namespace) (Result, []string) {
	if reason := in.skipReason(pod, ns); reason != "" {
		return Result{Skipped: reason}, nil
	}
	settings, errs := mesh.SidecarSettingsFromPod(pod, ns)
	var warnings []string
	for _, e := range errs {
		warnings = append(warnings, e.Error()+"; using the default")
	}
	resources, resWarnings := in.resources(settings)
	warnings = append(warnings, resWarnings...)
	warnings = append(warnings, udpWarnings(pod)...)

	out := pod.DeepCopy()
	image := in.cfg.ProxyImage
	if settings.Image != "" {
		image = settings.Image
		if imageRepoOf(image) == image {
			image += ":" + imageTagOf(in.cfg.ProxyImage)
		}
	}
	if settings.Version != "" {
		image = imageRepoOf(image) + ":" + settings.Version
	}
	logLevel := in.cfg.LogLevel
	if settings.LogLevel != "" {
		logLevel = settings.LogLevel
	}
	bundle := in.cfg.trustBundle()
	if in.cfg.ServerName != "" && len(bundle) == 0 {
		warnings = append(warnings, "the control plane has no trust bundle yet: this proxy cannot verify it and gets no config until the pod is recreated")
	}
	boot, err := in.envoyBootstrap(bundle)
	if err != nil {
		// The config was validated: this is a bug, and a pod without a
		// working proxy is worse than one without any.
		return Result{Skipped: fmt.Sprintf("bootstrap: %v", err)}, warnings
	}
	proxy := in.proxyContainer(image, logLevel, string(boot), resources)
	capture := in.captureContainer(settings)
	out.Spec.InitContainers = append([]corev1.Container{capture, proxy}, out.Spec.InitContainers...)
	out.Spec.Volumes = append(out.Spec.Volumes, in.tokenVolume())
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[mesh.AnnotationCreatedBy] = "weft/proxy-injector " + in.cfg.Version
	out.Annotations[mesh.AnnotationProxyVersionInjected] = imageTagOf(image)
	return Result{Pod: out}, warnings
}

func (in *Injector) skipReason(pod *corev1.Pod, ns *corev1.Namespace) string {
	namespace := pod.Namespace
	if ns != nil {
		namespace = ns.Name
	}
	switch {
	case namespace == metav1.NamespaceSystem:
		return SkipSystemNamespace
	case ns != nil && (ns.Labels[mesh.LabelAdmissionWebhooks] == mesh.AdmissionWebhooksDisabled ||
		ns.Labels[mesh.LinkerdLabelAdmissionWebhooks] == mesh.AdmissionWebhooksDisabled):
		return SkipOptedOut
	case Injected(pod):
		return SkipAlreadyInjected
	case pod.Spec.HostNetwork:
		return SkipHostNetwork
	case pod.Annotations[mesh.AnnotationProxyKind] == mesh.ProxyKindValueGRPC:
		return SkipProxyless
	}
	if v := podInjectValue(pod); v == mesh.InjectDisabled {
		return SkipDisabled
	}
	if !mesh.PodMeshed(pod, ns) {
		return SkipNotEnabled
	}
	return ""
}

func podInjectValue(pod *corev1.Pod) string {
	if v, ok := pod.Annotations[mesh.AnnotationInject]; ok {
		return v
	}
	return pod.Annotations[mesh.LinkerdAnnotationInject]
}

// Injected says whether the pod already carries Weft's proxy.
func Injected(pod *corev1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.InitContainers, isInjectedContainer) ||
		slices.ContainsFunc(pod.Spec.Containers, isInjectedContainer)
}

func isInjectedContainer(c corev1.Container) bool {
	return c.Name == ProxyContainerName || c.Name == CaptureContainerName
}

// Uninject removes what Inject added (containers, volume, the annotations
// recording it) and reports whether there was anything to remove.
func Uninject(pod *corev1.Pod) bool {
	changed := false
	del := func(cs []corev1.Container) []corev1.Container {
		out := slices.DeleteFunc(cs, isInjectedContainer)
		if len(out) != len(cs) {
			changed = true
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	pod.Spec.InitContainers = del(pod.Spec.InitContainers)
	pod.Spec.Containers = del(pod.Spec.Containers)
	n := len(pod.Spec.Volumes)
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == TokenVolumeName })
	changed = changed || len(pod.Spec.Volumes) != n
	if len(pod.Spec.Volumes) == 0 {
		pod.Spec.Volumes = nil
	}
	for _, k := range []string{mesh.AnnotationCreatedBy, mesh.AnnotationProxyVersionInjected} {
		if _, ok := pod.Annotations[k]; ok {
			delete(pod.Annotations, k)
			changed = true
		}
	}
	if len(pod.Annotations) == 0 {
		pod.Annotations = nil
	}
	return changed
}

func (in *Injector) proxyContainer(image, logLevel, bootstrap string, resources corev1.ResourceRequirements) corev1.Container {
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	return corev1.Container{
		Name:  ProxyContainerName,
		Image: image,
		Args: []string{
			"--config-yaml", bootstrap,
			// Envoy's --service-node overrides node.id: the control plane's
			// node id is <pod>.<namespace>.
			"--service-node", "$(" + envPodName + ").$(" + envPodNamespace + ")",
			"--service-cluster", "$(" + envPodNamespace + ")",
			"--log-level", logLevel,
			"--drain-time-s", strconv.FormatInt(in.cfg.DrainSeconds, 10),
			// One Envoy per container: nothing to hot-restart into, and the
			// shared memory it needs is not writable on a read-only root.
			"--disable-hot-restart",
		},
		Env: []corev1.EnvVar{
			fieldEnv(envPodName, "metadata.name"),
			fieldEnv(envPodNamespace, "metadata.namespace"),
		},
		Ports: []corev1.ContainerPort{
			{Name: "weft-inbound", ContainerPort: int32(mesh.ProxyInboundPort), Protocol: corev1.ProtocolTCP},
			{Name: "weft-health", ContainerPort: int32(mesh.ProxyHealthPort), Protocol: corev1.ProtocolTCP},
		},
		Resources: resources,
		// The bootstrap serves /ready alone on the health port; the admin
		// interface stays on 127.0.0.1.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     proxyReady(),
			PeriodSeconds:    2,
			FailureThreshold: 3,
		},
		// Kubelet starts the next container once a native sidecar has
		// started, and "started" is the startup probe's success (without one,
		// the moment the process runs): probing /ready here makes the app
		// start only after Envoy has its configuration. Two minutes, then
		// kubelet restarts the proxy.
		StartupProbe: &corev1.Probe{
			ProbeHandler:     proxyReady(),
			PeriodSeconds:    1,
			FailureThreshold: 120,
		},
		// Native sidecar: starts before the app containers, stops after them,
		// and does not keep a Job alive.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Lifecycle: &corev1.Lifecycle{
			PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: in.cfg.DrainSeconds}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: TokenVolumeName, MountPath: TokenDir, ReadOnly: true}},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(mesh.ProxyUID),
			RunAsGroup:               ptr.To(mesh.ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func (in *Injector) captureContainer(s mesh.SidecarSettings) corev1.Container {
	args := []string{
		"--inbound-port", strconv.FormatUint(uint64(mesh.ProxyInboundPort), 10),
		"--outbound-port", strconv.FormatUint(uint64(mesh.ProxyOutboundPort), 10),
		"--proxy-uid", strconv.FormatInt(mesh.ProxyUID, 10),
	}
	if s.SkipInboundPorts != nil && len(s.SkipInboundPorts.Ranges) > 0 {
		args = append(args, "--skip-inbound-ports", s.SkipInboundPorts.String())
	}
	if s.SkipOutboundPorts != nil && len(s.SkipOutboundPorts.Ranges) > 0 {
		args = append(args, "--skip-outbound-ports", s.SkipOutboundPorts.String())
	}
	if len(s.SkipSubnets) > 0 {
		subnets := make([]string, len(s.SkipSubnets))
		for i, p := range s.SkipSubnets {
			subnets[i] = p.String()
		}
		args = append(args, "--skip-subnets", strings.Join(subnets, ","))
	}
	return corev1.Container{
		Name:    CaptureContainerName,
		Image:   in.cfg.CaptureImage,
		Command: []string{"/capture"},
		Args:    args,
		// iptables needs root in the pod's network namespace and these two
		// capabilities; nothing else.
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(int64(0)),
			RunAsNonRoot:             ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func (in *Injector) tokenVolume() corev1.Volume {
	return corev1.Volume{
		Name: TokenVolumeName,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience:          in.cfg.TokenAudience,
				ExpirationSeconds: ptr.To(in.cfg.TokenExpirySeconds),
				Path:              "token",
			}}},
		}},
	}
}

// resources applies the annotations to the configured resources. A request
// above its limit would make the apiserver refuse the pod, so the request
// is dropped then (Kubernetes then requests the limit) with a warning.
func (in *Injector) resources(s mesh.SidecarSettings) (corev1.ResourceRequirements, []string) {
	r := *in.cfg.Resources.DeepCopy()
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	if r.Limits == nil {
		r.Limits = corev1.ResourceList{}
	}
	if s.CPURequest != nil {
		r.Requests[corev1.ResourceCPU] = *s.CPURequest
	}
	if s.CPULimit != nil {
		r.Limits[corev1.ResourceCPU] = *s.CPULimit
	}
	if s.MemoryRequest != nil {
		r.Requests[corev1.ResourceMemory] = *s.MemoryRequest
	}
	if s.MemoryLimit != nil {
		r.Limits[corev1.ResourceMemory] = *s.MemoryLimit
	}
	var warnings []string
	for _, c := range []struct {
		name                 corev1.ResourceName
		requestAnn, limitAnn string
	}{
		{corev1.ResourceCPU, mesh.AnnotationProxyCPURequest, mesh.AnnotationProxyCPULimit},
		{corev1.ResourceMemory, mesh.AnnotationProxyMemoryRequest, mesh.AnnotationProxyMemoryLimit},
	} {
		req, hasReq := r.Requests[c.name]
		limit, hasLimit := r.Limits[c.name]
		if hasReq && hasLimit && req.Cmp(limit) > 0 {
			warnings = append(warnings, fmt.Sprintf("proxy %s request %s (%s or the default) is above its limit %s (%s or the default); requesting the limit",
				c.name, req.String(), c.requestAnn, limit.String(), c.limitAnn))
			name := c.name
			delete(r.Requests, name)
		}
	}
	if len(r.Requests) == 0 {
		r.Requests = nil
	}
	if len(r.Limits) == 0 {
		r.Limits = nil
	}
	return r, warnings
}

func udpWarnings(pod *corev1.Pod) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol == corev1.ProtocolUDP {
				out = append(out, fmt.Sprintf("container %q port %d is UDP: UDP traffic bypasses the proxy", c.Name, p.ContainerPort))
			}
		}
	}
	return out
}

// imageRepoOf and imageTagOf split "repo[:port]/name:tag"; an image without
// a tag has tag "latest", as the container runtime would pull.
func imageRepoOf(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}

func imageTagOf(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return "latest"
}

// envoyBootstrap renders the Envoy bootstrap for bundle, or returns the
// last rendering when the bundle is the same.
func (in *Injector) envoyBootstrap(bundle []byte) ([]byte, error) {
	in.bootMu.Lock()
	defer in.bootMu.Unlock()
	if in.bootYAML != nil && bytes.Equal(in.bootBundle, bundle) {
		return in.bootYAML, nil
	}
	boot, err := bootstrap.EnvoyYAML(in.cfg.bootstrapConfig(bundle))
	if err != nil {
		return nil, err
	}
	in.bootBundle, in.bootYAML = bytes.Clone(bundle), boot
	return boot, nil
}

// proxyReady is kubelet's GET of Envoy's /ready through the bootstrap's
// health listener; a new handler per probe, so no two probes share one.
func proxyReady() corev1.ProbeHandler {
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: bootstrap.ReadyPath, Port: intstr.FromInt32(int32(mesh.ProxyHealthPort)),
	}}
}

// bootstrapConfig is the bootstrap Config of the proxies c injects, with bundle.
func (c Config) bootstrapConfig(bundle []byte) bootstrap.Config {
	boot := bootstrap.Config{
		ClusterDomain:       c.ClusterDomain,
		ControlPlaneAddress: c.ControlPlaneAddress,
		ServerName:          c.ServerName,
		TrustBundlePEM:      bundle,
		AdminPort:           mesh.ProxyAdminPort,
	}
	if c.ServerName != "" {
		// The token is sent only inside TLS: a control plane without identity
		// (plaintext xDS) asks for none, and sending it in clear would leak it.
		boot.TokenPath = TokenPath
	}
	return boot
}

// ControlPlaneService is how the proxies c injects reach the control plane
// over gRPC (bootstrap.ControlPlaneService), with the trust bundle of now:
// what the control plane's other gRPC services, such as tap's access log
// service, tell those proxies to dial.
func (c Config) ControlPlaneService() (*corev3.GrpcService, error) {
	return bootstrap.ControlPlaneService(c.bootstrapConfig(c.trustBundle()))
}
