package injector

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/controller"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/testenv"
	"github.com/weftmesh/weft/xds/adsclient"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.MainUnlessShort(m, testenv.Options{}, &env))
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serveInjection runs the webhook the way cmd/cp does (Handler on
// InjectPath, namespaces from the apiserver, Events through a recorder)
// and registers it with the apiserver; it waits until the apiserver calls
// it, probing in probeNS.
func serveInjection(t *testing.T, in *Injector, probeNS string) {
	t.Helper()
	ctx := t.Context()
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: env.Clientset.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	h := &Handler{
		Injector: in,
		Namespace: func(ctx context.Context, name string) (*corev1.Namespace, error) {
			return env.Clientset.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		},
		Events: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "weft-injector"}),
		Log:    quietLogger(),
	}
	mux := http.NewServeMux()
	mux.Handle(InjectPath, h)
	wh := testenv.ServeWebhook(t, mux)
	url := wh.URL + InjectPath
	cfg := WebhookConfiguration("weft-inject-test", "weft-system", admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: wh.CABundle})
	if _, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	// The configuration reaches the apiserver's admission chain asynchronously.
	err := env.WaitFor(ctx, 30*time.Second, "the apiserver calling the injection webhook", func(ctx context.Context) (bool, error) {
		p, err := env.Clientset.CoreV1().Pods(probeNS).Create(ctx, plainPod("probe-", enabled), metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		_ = env.Clientset.CoreV1().Pods(probeNS).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		return Injected(p), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func plainPod(generateName string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: generateName, Annotations: annotations, Labels: map[string]string{"app": "plain"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}
}

const webhookNamespaces = `
apiVersion: v1
kind: Namespace
metadata:
  name: inj-on
  annotations: {weft.io/inject: enabled}
---
apiVersion: v1
kind: Namespace
metadata: {name: inj-plain}
`

const webhookApp = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: inj-on}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: example.invalid/web:1, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: inj-on}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: inj-plain}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: example.invalid/web:1}
`

// The webhook, called by the real apiserver: Deployment pods made by the
// controller-manager in an annotated namespace carry the sidecar, the capture
// init container, the token volume and a bootstrap; a plain namespace,
// kube-system and a disabled pod are left alone; an injected spec is not
// injected twice; bad annotations come back to the client as warnings and
// the pod is still created; and the control plane serves the injected pods
// under the node id their proxy will present.
func TestWebhookInjectsThroughTheAPIServer(t *testing.T) {
	testenv.RequireEnv(t, env)
	ctx := t.Context()
	if _, err := env.Apply(ctx, []byte(webhookNamespaces)); err != nil {
		t.Fatal(err)
	}
	in := testInjector(t)
	serveInjection(t, in, "inj-on")
	if _, err := env.Apply(ctx, []byte(webhookApp)); err != nil {
		t.Fatal(err)
	}

	t.Run("deployment pods are injected", func(t *testing.T) {
		pods := runningPods(t, "inj-on", "app=web", 2)
		for _, p := range pods {
			checkInjected(t, &p)
		}
	})

	t.Run("untouched", func(t *testing.T) {
		for _, c := range []struct {
			name, ns    string
			annotations map[string]string
		}{
			{"plain namespace", "inj-plain", nil},
			{"kube-system, annotated", "kube-system", enabled},
			{"disabled pod in an annotated namespace", "inj-on", map[string]string{mesh.AnnotationInject: mesh.InjectDisabled}},
		} {
			p, err := env.Clientset.CoreV1().Pods(c.ns).Create(ctx, plainPod("untouched-", c.annotations), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if len(p.Spec.InitContainers) != 0 || len(p.Spec.Volumes) > 1 || p.Annotations[mesh.AnnotationCreatedBy] != "" {
				t.Errorf("%s: pod was changed: init containers %d, volumes %v, annotations %v", c.name, len(p.Spec.InitContainers), p.Spec.Volumes, p.Annotations)
			}
		}
		dep := runningPods(t, "inj-plain", "app=web", 1)
		if Injected(&dep[0]) {
			t.Error("a Deployment pod in a plain namespace was injected")
		}
	})

	t.Run("not injected twice", func(t *testing.T) {
		res, _ := in.Inject(plainPod("", enabled), nil)
		again := plainPod("twice-", nil)
		again.Spec = res.Pod.Spec
		p, err := env.Clientset.CoreV1().Pods("inj-on").Create(ctx, again, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for _, c := range p.Spec.InitContainers {
			if c.Name == ProxyContainerName {
				count++
			}
		}
		if count != 1 || len(p.Spec.InitContainers) != 2 {
			t.Errorf("%d proxies and %d init containers after a second injection", count, len(p.Spec.InitContainers))
		}
	})

	t.Run("bad annotations warn and the pod is created", func(t *testing.T) {
		var mu sync.Mutex
		var warnings []string
		cfg := rest.CopyConfig(env.Config)
		cfg.WarningHandler = warningFunc(func(msg string) { mu.Lock(); warnings = append(warnings, msg); mu.Unlock() })
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]string{mesh.AnnotationSkipInboundPorts: "abc", mesh.AnnotationProxyCPURequest: "-1"}
		p, err := cs.CoreV1().Pods("inj-on").Create(ctx, plainPod("bad-", bad), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("a bad annotation blocked the pod: %v", err)
		}
		checkInjected(t, p)
		mu.Lock()
		got := strings.Join(warnings, "\n")
		mu.Unlock()
		for _, want := range []string{`config.weft.io/skip-inbound-ports]: Invalid value: "abc"`, `config.weft.io/proxy-cpu-request]: Invalid value: "-1"`} {
			if !strings.Contains(got, want) {
				t.Errorf("warnings the client saw:\n%s\nlack %q", got, want)
			}
		}
		err = env.WaitFor(ctx, 30*time.Second, "an InjectionWarning event", func(ctx context.Context) (bool, error) {
			evs, err := env.Clientset.CoreV1().Events("inj-on").List(ctx, metav1.ListOptions{FieldSelector: "reason=InjectionWarning"})
			if err != nil {
				return false, err
			}
			return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
				return strings.Contains(e.Message, "skip-inbound-ports") && strings.Contains(e.Message, p.GenerateName)
			}), nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("the control plane serves the injected pods", func(t *testing.T) {
		xl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := controller.New(controller.Config{
			RestConfig: env.Config, XDSListener: xl, Logger: quietLogger(),
			Debounce: 30 * time.Millisecond, DebounceMax: 300 * time.Millisecond, ShutdownGrace: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx) }()
		t.Cleanup(func() { cancel(); <-done })
		pods := runningPods(t, "inj-on", "app=web", 2)
		proxy := pods[0].Spec.InitContainers[1]
		nodeID := expandArg(proxy, "--service-node", &pods[0])
		if nodeID != pods[0].Name+".inj-on" {
			t.Fatalf("injected node id %q", nodeID)
		}
		// A stand-in for the injected Envoy (no Envoy binary here): xds/adsclient
		// speaks ADS with Envoy's v3 messages (the envoy API module v1.40.0 in
		// go.mod, Envoy 1.40) and subscribes as Envoy's GrpcMuxImpl does
		// (source/extensions/config_subscription/grpc), under the node id the
		// injected --service-node expands to, as Envoy sets node.id from it.
		ads, err := adsclient.Dial(ctx, xl.Addr().String(), nodeID)
		if err != nil {
			t.Fatal(err)
		}
		defer ads.Close()
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		view, err := ads.WaitFor(wctx, "listeners and the web cluster", func(v adsclient.View) bool {
			if !v.Synced || len(v.Resources[resourcev3.ListenerType]) == 0 {
				return false
			}
			for name := range v.Resources[resourcev3.ClusterType] {
				if strings.Contains(name, "web.inj-on") {
					return true
				}
			}
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s served %d listeners, %d clusters", nodeID, len(view.Resources[resourcev3.ListenerType]), len(view.Resources[resourcev3.ClusterType]))
	})
}

type warningFunc func(string)

func (f warningFunc) HandleWarningHeader(_ int, _ string, msg string) { f(msg) }

func checkInjected(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if len(p.Spec.InitContainers) < 2 || p.Spec.InitContainers[0].Name != CaptureContainerName || p.Spec.InitContainers[1].Name != ProxyContainerName {
		t.Fatalf("pod %s: init containers %v", p.Name, p.Spec.InitContainers)
	}
	proxy := p.Spec.InitContainers[1]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("pod %s: the proxy is not a native sidecar", p.Name)
	}
	if boot := argAfter(proxy.Args, "--config-yaml"); !strings.Contains(boot, "weft-cp.weft-system.svc:8086") {
		t.Errorf("pod %s: bootstrap %q", p.Name, boot)
	}
	if !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == TokenVolumeName && v.Projected != nil }) {
		t.Errorf("pod %s: no token volume in %v", p.Name, p.Spec.Volumes)
	}
	if p.Annotations[mesh.AnnotationProxyVersionInjected] == "" {
		t.Errorf("pod %s: annotations %v", p.Name, p.Annotations)
	}
}

// runningPods waits for n Running pods with IPs matching selector.
func runningPods(t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	pods, err := env.RunningPods(t.Context(), 2*time.Minute, ns, selector, n)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}
