package injector

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/mesh"
)

func testInjector(t testing.TB) *Injector {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ServerName = "weft-cp.weft-system.svc"
	cfg.TrustBundlePEM = []byte("-----BEGIN CERTIFICATE-----\nanchor\n-----END CERTIFICATE-----\n")
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func testPod(ns string, annotations map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: ns, Annotations: annotations},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "example.invalid/migrate:1"}},
			Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func namespace(name string, annotations, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, Labels: labels}}
}

var enabled = map[string]string{mesh.AnnotationInject: mesh.InjectEnabled}

func TestInjectDecides(t *testing.T) {
	in := testInjector(t)
	injected, _ := in.Inject(testPod("app", enabled), nil)
	tests := []struct {
		name string
		pod  *corev1.Pod
		ns   *corev1.Namespace
		want string // skip reason; "" injects
	}{
		{"pod enabled", testPod("app", enabled), namespace("app", nil, nil), ""},
		{"namespace enabled", testPod("app", nil), namespace("app", enabled, nil), ""},
		{"linkerd's annotation on the namespace", testPod("app", nil), namespace("app", map[string]string{mesh.LinkerdAnnotationInject: "enabled"}, nil), ""},
		{"pod disabled wins over the namespace", testPod("app", map[string]string{mesh.AnnotationInject: "disabled"}), namespace("app", enabled, nil), SkipDisabled},
		{"linkerd's disabled on the pod", testPod("app", map[string]string{mesh.LinkerdAnnotationInject: "disabled"}), namespace("app", enabled, nil), SkipDisabled},
		{"nothing enabled", testPod("app", nil), namespace("app", nil, nil), SkipNotEnabled},
		{"kube-system", testPod("kube-system", enabled), namespace("kube-system", enabled, nil), SkipSystemNamespace},
		{"namespace opted out", testPod("app", enabled), namespace("app", enabled, map[string]string{mesh.LabelAdmissionWebhooks: "disabled"}), SkipOptedOut},
		{"namespace opted out the linkerd way", testPod("app", enabled), namespace("app", nil, map[string]string{mesh.LinkerdLabelAdmissionWebhooks: "disabled"}), SkipOptedOut},
		{"hostNetwork", testPod("app", enabled, func(p *corev1.Pod) { p.Spec.HostNetwork = true }), nil, SkipHostNetwork},
		{"proxyless grpc", testPod("app", map[string]string{mesh.AnnotationInject: "enabled", mesh.AnnotationProxyKind: "grpc"}), nil, SkipProxyless},
		{"already injected", injected.Pod, nil, SkipAlreadyInjected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			res, _ := in.Inject(tt.pod, tt.ns)
			if res.Skipped != tt.want {
				t.Fatalf("skipped %q, want %q", res.Skipped, tt.want)
			}
			if (res.Pod != nil) != (tt.want == "") {
				t.Fatalf("pod %v with skip reason %q", res.Pod != nil, res.Skipped)
			}
			if !equality.Semantic.DeepEqual(before, tt.pod) {
				t.Fatal("Inject changed its argument")
			}
		})
	}
}

func TestInjectedPod(t *testing.T) {
	in := testInjector(t)
	res, warnings := in.Inject(testPod("app", enabled), nil)
	if res.Pod == nil || len(warnings) > 0 {
		t.Fatalf("skipped %q, warnings %v", res.Skipped, warnings)
	}
	p := res.Pod
	names := func(cs []corev1.Container) (out []string) {
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if got, want := names(p.Spec.InitContainers), []string{CaptureContainerName, ProxyContainerName, "migrate"}; !slices.Equal(got, want) {
		t.Fatalf("init containers %v, want %v (capture first, the proxy before the app's own)", got, want)
	}
	if got := names(p.Spec.Containers); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("containers %v", got)
	}
	capture, proxy := p.Spec.InitContainers[0], p.Spec.InitContainers[1]

	if proxy.Image != DefaultProxyImage || proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("proxy image %q restartPolicy %v", proxy.Image, proxy.RestartPolicy)
	}
	sc := proxy.SecurityContext
	if *sc.RunAsUser != mesh.ProxyUID || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("proxy security context %+v", sc)
	}
	if rp := proxy.ReadinessProbe; rp == nil || rp.HTTPGet.Path != "/ready" || rp.HTTPGet.Port.IntVal != int32(mesh.ProxyHealthPort) {
		t.Errorf("readiness probe %+v", rp)
	}
	if proxy.Lifecycle == nil || proxy.Lifecycle.PreStop == nil || proxy.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("no preStop drain: %+v", proxy.Lifecycle)
	}
	if nodeID := expandArg(proxy, "--service-node", p); nodeID != "web-1.app" {
		t.Errorf("node id %q, want web-1.app", nodeID)
	}
	if boot := argAfter(proxy.Args, "--config-yaml"); !strings.Contains(boot, "weft-cp.weft-system.svc:8086") {
		t.Errorf("bootstrap does not name the control plane:\n%s", boot)
	}
	if got := proxy.Resources.Requests.Cpu().String(); got != "100m" {
		t.Errorf("default cpu request %s", got)
	}

	csc := capture.SecurityContext
	if *csc.RunAsUser != 0 || !slices.Equal(csc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capture security context %+v", csc)
	}
	if got, want := strings.Join(capture.Args, " "), "--inbound-port 4143 --outbound-port 4140 --proxy-uid 2102"; got != want || capture.Command[0] != "/capture" {
		t.Errorf("capture %v %q, want %q", capture.Command, got, want)
	}

	vol := p.Spec.Volumes[len(p.Spec.Volumes)-1]
	if tok := vol.Projected.Sources[0].ServiceAccountToken; vol.Name != TokenVolumeName || tok.Audience != "weft" || *tok.ExpirationSeconds != 86400 {
		t.Errorf("token volume %+v", vol)
	}
	if p.Annotations[mesh.AnnotationProxyVersionInjected] != "v1.40.0" || p.Annotations[mesh.AnnotationCreatedBy] != "weft/proxy-injector dev" {
		t.Errorf("recording annotations %v", p.Annotations)
	}

	// Uninject gives back the pod Inject was given.
	back := p.DeepCopy()
	if !Uninject(back) {
		t.Fatal("Uninject found nothing to remove")
	}
	if want := testPod("app", enabled); !equality.Semantic.DeepEqual(back, want) {
		t.Errorf("uninjected pod differs from the original:\n%+v\n%+v", back.Spec, want.Spec)
	}
	if Uninject(back) {
		t.Error("a second Uninject removed something")
	}
}

func TestInjectAnnotations(t *testing.T) {
	in := testInjector(t)
	tests := []struct {
		name         string
		annotations  map[string]string
		check        func(t *testing.T, proxy, capture corev1.Container)
		wantWarnings []string
	}{
		{
			name: "every setting",
			annotations: map[string]string{
				mesh.AnnotationSkipInboundPorts: "22, 8000-8010", mesh.AnnotationSkipOutboundPorts: "3306",
				mesh.AnnotationSkipSubnets: "10.0.0.0/8", mesh.AnnotationProxyCPURequest: "200m", mesh.AnnotationProxyCPULimit: "1",
				mesh.AnnotationProxyMemoryLimit: "128Mi", mesh.AnnotationProxyLogLevel: "debug",
				mesh.AnnotationProxyImage: "registry.example:5000/envoy", mesh.AnnotationProxyVersion: "v1.40.1",
			},
			check: func(t *testing.T, proxy, capture corev1.Container) {
				if got, want := strings.Join(capture.Args[6:], " "), "--skip-inbound-ports 22,8000-8010 --skip-outbound-ports 3306 --skip-subnets 10.0.0.0/8"; got != want {
					t.Errorf("capture args %q, want %q", got, want)
				}
				r := proxy.Resources
				if r.Requests.Cpu().Cmp(resource.MustParse("200m")) != 0 || r.Limits.Cpu().Cmp(resource.MustParse("1")) != 0 || r.Limits.Memory().Cmp(resource.MustParse("128Mi")) != 0 {
					t.Errorf("resources %v", r)
				}
				if proxy.Image != "registry.example:5000/envoy:v1.40.1" || argAfter(proxy.Args, "--log-level") != "debug" {
					t.Errorf("image %q log level %q", proxy.Image, argAfter(proxy.Args, "--log-level"))
				}
			},
		},
		{
			name: "malformed values: defaults and warnings naming them",
			annotations: map[string]string{
				mesh.AnnotationSkipInboundPorts: "abc", mesh.AnnotationProxyCPURequest: "-1", mesh.AnnotationProxyLogLevel: "loud",
			},
			check: func(t *testing.T, proxy, capture corev1.Container) {
				if len(capture.Args) != 6 {
					t.Errorf("capture args %v, want no skip list", capture.Args)
				}
				if proxy.Resources.Requests.Cpu().String() != "100m" || argAfter(proxy.Args, "--log-level") != "warning" {
					t.Errorf("defaults not used: %v %q", proxy.Resources, argAfter(proxy.Args, "--log-level"))
				}
			},
			wantWarnings: []string{
				`metadata.annotations[config.weft.io/skip-inbound-ports]: Invalid value: "abc"`,
				`metadata.annotations[config.weft.io/proxy-cpu-request]: Invalid value: "-1"`,
				`metadata.annotations[config.weft.io/proxy-log-level]: Invalid value: "loud"`,
			},
		},
		{
			name:        "a memory limit below the default request drops the request",
			annotations: map[string]string{mesh.AnnotationProxyMemoryLimit: "32Mi"},
			check: func(t *testing.T, proxy, _ corev1.Container) {
				if _, ok := proxy.Resources.Requests[corev1.ResourceMemory]; ok {
					t.Errorf("memory request kept above the limit: %v", proxy.Resources)
				}
			},
			wantWarnings: []string{"proxy memory request 64Mi (config.weft.io/proxy-memory-request or the default) is above its limit 32Mi"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ann := map[string]string{mesh.AnnotationInject: "enabled"}
			for k, v := range tt.annotations {
				ann[k] = v
			}
			res, warnings := in.Inject(testPod("app", ann, func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP})
			}), nil)
			if res.Pod == nil {
				t.Fatalf("a malformed annotation blocked injection: %s", res.Skipped)
			}
			wantWarnings := append(slices.Clone(tt.wantWarnings), `container "web" port 53 is UDP`)
			if len(warnings) != len(wantWarnings) {
				t.Fatalf("warnings %q, want %d", warnings, len(wantWarnings))
			}
			for i, w := range wantWarnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q does not contain %q", warnings[i], w)
				}
			}
			tt.check(t, res.Pod.Spec.InitContainers[1], res.Pod.Spec.InitContainers[0])
		})
	}
}

func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// expandArg is the value after flag in c's args with $(VAR) expanded from
// the downward-API env the way kubelet does, for the fields Inject uses.
func expandArg(c corev1.Container, flag string, pod *corev1.Pod) string {
	v := argAfter(c.Args, flag)
	for _, e := range c.Env {
		var value string
		switch {
		case e.ValueFrom == nil || e.ValueFrom.FieldRef == nil:
			value = e.Value
		case e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			value = pod.Name
		case e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			value = pod.Namespace
		}
		v = strings.ReplaceAll(v, "$("+e.Name+")", value)
	}
	return v
}

// The control plane sees an injected pod as it saw the original: the
// sidecar's own ports (a restartable init container's, which mesh counts)
// are not taken for the app's.
func TestInjectedPodMeshesLikeTheOriginal(t *testing.T) {
	in := testInjector(t)
	original := testPod("app", enabled)
	original.Status.PodIP = "10.0.0.7"
	res, _ := in.Inject(original, nil)
	want, err := mesh.ProxyFromPod(original, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := mesh.ProxyFromPod(res.Pod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("injected pod's proxy\n%+v\nwant the original's\n%+v", got, want)
	}
}
