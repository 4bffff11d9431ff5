package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/weftmesh/weft/testenv"
	"github.com/weftmesh/weft/testenv/netns"
)

var env *testenv.Env

// podCIDR is this package's own, so that TestPodIPsServeTrafficFromANetworkNamespace can route
// it into a namespace without meeting another package's environment.
const podCIDR = "10.252.0.0/24"

func TestMain(m *testing.M) {
	code := testenv.Main(m, testenv.Options{PodCIDR: podCIDR}, &env)
	if code == 0 {
		// client-go keeps no goroutine of its own once idle connections are closed; what
		// testenv started (process reapers, the signal watcher) must be gone after Stop.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func TestDeploymentBecomesRunningPodsWithEndpointSlice(t *testing.T) {
	ctx := t.Context()
	const ns = "deploy-test"
	_, err := env.Apply(ctx, []byte(`
apiVersion: v1
kind: Namespace
metadata:
  name: deploy-test
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: deploy-test
spec:
  replicas: 3
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      containers:
      - name: echo
        image: example.invalid/echo:1
        ports:
        - {name: grpc, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: deploy-test
spec:
  selector: {app: echo}
  ports:
  - {name: grpc, port: 8080, targetPort: grpc, appProtocol: grpc}
`))
	if err != nil {
		t.Fatal(err)
	}

	podCIDR := netip.MustParsePrefix(env.PodCIDR)
	var podIPs []string
	err = env.WaitFor(ctx, 60*time.Second, "3 running echo pods with distinct IPs", func(ctx context.Context) (bool, error) {
		pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
		if err != nil {
			return false, err
		}
		podIPs = podIPs[:0]
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				podIPs = append(podIPs, p.Status.PodIP)
			}
		}
		return len(podIPs) == 3 && len(pods.Items) == 3, fmt.Errorf("%d pods, running with IP: %v", len(pods.Items), podIPs)
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(podIPs)
	if len(slices.Compact(slices.Clone(podIPs))) != 3 {
		t.Fatalf("pod IPs are not distinct: %v", podIPs)
	}
	for _, ip := range podIPs {
		if !podCIDR.Contains(netip.MustParseAddr(ip)) {
			t.Errorf("pod IP %s is outside the pod CIDR %s", ip, podCIDR)
		}
	}

	err = env.WaitFor(ctx, 60*time.Second, "an EndpointSlice for echo with the 3 pod IPs ready", func(ctx context.Context) (bool, error) {
		slices_, err := env.Clientset.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=echo"})
		if err != nil {
			return false, err
		}
		var ready []string
		for _, s := range slices_.Items {
			if len(s.Ports) != 1 || s.Ports[0].Port == nil || *s.Ports[0].Port != 8080 {
				return false, fmt.Errorf("slice %s ports %v, want one port 8080", s.Name, s.Ports)
			}
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready = append(ready, ep.Addresses...)
				}
			}
		}
		slices.Sort(ready)
		return slices.Equal(ready, podIPs), fmt.Errorf("ready endpoints %v, want %v", ready, podIPs)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCRDSchemaIsEnforced(t *testing.T) {
	ctx := t.Context()
	names, err := env.InstallCRDs(ctx, filepath.Join("testdata", "crds"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"widgets.testenv.weft.dev"}) {
		t.Fatalf("installed %v, want [widgets.testenv.weft.dev]", names)
	}

	tests := []struct {
		name      string
		spec      string
		wantField string // empty: accepted
	}{
		{name: "valid", spec: "{size: 3, color: red}"},
		{name: "size below minimum", spec: "{size: 0}", wantField: "spec.size"},
		{name: "size not an integer", spec: `{size: "big"}`, wantField: "spec.size"},
		{name: "color outside enum", spec: "{size: 2, color: purple}", wantField: "spec.color"},
		{name: "size missing", spec: "{color: red}", wantField: "spec.size"},
	}
	widgets := schema.GroupVersionResource{Group: "testenv.weft.dev", Version: "v1", Resource: "widgets"}
	for i, tt := range tests {
		manifest := fmt.Sprintf("apiVersion: testenv.weft.dev/v1\nkind: Widget\nmetadata: {name: w%d, namespace: default}\nspec: %s\n", i, tt.spec)
		objs, err := testenv.Decode([]byte(manifest))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(tt.name+"/create", func(t *testing.T) {
			obj := objs[0].DeepCopy()
			obj.SetName(obj.GetName() + "-create")
			_, err := env.Dynamic.Resource(widgets).Namespace("default").Create(ctx, obj, metav1.CreateOptions{})
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("valid widget rejected: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("invalid widget (%s): want 422 Invalid, got %v", tt.spec, err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("error does not name %s: %v", tt.wantField, err)
			}
		})
		t.Run(tt.name+"/apply", func(t *testing.T) {
			_, err := env.Apply(ctx, []byte(manifest))
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("valid widget rejected: %v", err)
				}
				return
			}
			// Schema violations come back as 422 Invalid. A value of the wrong type fails
			// earlier, while server-side apply builds the typed object, and kube-apiserver
			// 1.36 answers that with a 500 that still names the field.
			var status apierrors.APIStatus
			if !errors.As(err, &status) {
				t.Fatalf("invalid widget (%s): want a rejection by the apiserver, got %v", tt.spec, err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("error does not name %s: %v", tt.wantField, err)
			}
		})
	}
}

func TestApplyLearnsKindsFromCRDsInTheSameStream(t *testing.T) {
	ctx := t.Context()
	objs, err := env.ApplyFile(ctx, filepath.Join("testdata", "gadget-and-instance.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("applied %d objects, want 2", len(objs))
	}
	gvr := schema.GroupVersionResource{Group: "testenv.weft.dev", Version: "v1alpha1", Resource: "gadgets"}
	got, err := env.Dynamic.Resource(gvr).Get(ctx, "first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if note, _, _ := unstructured.NestedString(got.Object, "spec", "note"); note != "applied in the same stream as its CRD" {
		t.Errorf("spec.note = %q", note)
	}
}

func TestTokenRequestAndReview(t *testing.T) {
	ctx := t.Context()
	_, err := env.Apply(ctx, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: token-test}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: proxy, namespace: token-test}
`))
	if err != nil {
		t.Fatal(err)
	}
	token, err := env.CreateToken(ctx, "token-test", "proxy", 10*time.Minute, "weft-xds")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		audience string
		want     bool
	}{
		{"weft-xds", true},
		{"someone-else", false},
	}
	for _, tt := range tests {
		t.Run(tt.audience, func(t *testing.T) {
			st, err := env.ReviewToken(ctx, token, tt.audience)
			if err != nil {
				t.Fatal(err)
			}
			if st.Authenticated != tt.want {
				t.Fatalf("authenticated = %v for audience %s, want %v (error %q)", st.Authenticated, tt.audience, tt.want, st.Error)
			}
			if !tt.want {
				return
			}
			if st.User.Username != "system:serviceaccount:token-test:proxy" {
				t.Errorf("username = %q", st.User.Username)
			}
			if !slices.Equal(st.Audiences, []string{"weft-xds"}) {
				t.Errorf("audiences = %v", st.Audiences)
			}
		})
	}
}

func TestStopLeavesNoProcessOrDirectory(t *testing.T) {
	second, err := testenv.Start(t.Context(), testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Stop() })
	if second.Dir == env.Dir {
		t.Fatalf("second environment shares the first one's directory %s", env.Dir)
	}
	pids := second.Pids()
	if len(pids) != 5 {
		t.Fatalf("pids = %v, want 5 components", pids)
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("%s (pid %d) not running before Stop: %v", name, pid, err)
		}
	}

	if err := second.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("%s (pid %d) still exists after Stop (kill 0: %v)", name, pid, err)
		}
	}
	if _, err := os.Stat(second.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop (stat: %v)", second.Dir, err)
	}
	if procs := processesMentioning(t, second.Dir); len(procs) > 0 {
		t.Errorf("processes still refer to %s: %v", second.Dir, procs)
	}
	// The shared environment must not have been touched.
	if err := env.Healthy(); err != nil {
		t.Errorf("shared environment after stopping the second: %v", err)
	}
}

// processesMentioning lists processes whose command line contains s: anything a component
// spawned would carry the environment's directory in its flags.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), s) {
			found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}

// The way control-plane tests get real traffic to Kubernetes endpoints: kwok hands out pod IPs
// from a subnet that a network namespace owns, and test servers listen there.
func TestPodIPsServeTrafficFromANetworkNamespace(t *testing.T) {
	netns.Require(t)
	ctx := t.Context()
	ns, err := netns.New(ctx, netns.Config{Subnet: netip.MustParsePrefix(podCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("closing network namespace: %v", err)
		}
	})
	_, err = env.Apply(ctx, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: netns-test}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: greeter, namespace: netns-test}
spec:
  replicas: 2
  selector: {matchLabels: {app: greeter}}
  template:
    metadata: {labels: {app: greeter}}
    spec:
      containers:
      - {name: greeter, image: example.invalid/greeter:1, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: netns-test}
spec:
  selector: {app: greeter}
  ports: [{name: http, port: 80, targetPort: http}]
`))
	if err != nil {
		t.Fatal(err)
	}

	var endpoints []string
	err = env.WaitFor(ctx, 60*time.Second, "2 ready greeter endpoints", func(ctx context.Context) (bool, error) {
		list, err := env.Clientset.DiscoveryV1().EndpointSlices("netns-test").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=greeter"})
		if err != nil {
			return false, err
		}
		endpoints = endpoints[:0]
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					endpoints = append(endpoints, ep.Addresses...)
				}
			}
		}
		return len(endpoints) == 2, fmt.Errorf("ready endpoints %v", endpoints)
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, ep := range endpoints {
		addr := netip.MustParseAddr(ep)
		if err := ns.AddAddr(ctx, addr); err != nil {
			t.Fatal(err)
		}
		l, err := ns.Listen("tcp", netip.AddrPortFrom(addr, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s", addr)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, ep := range endpoints {
		resp, err := client.Get("http://" + net.JoinHostPort(ep, "8080"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "hello from " + ep; string(body) != want {
			t.Errorf("GET %s: %q, want %q", ep, body, want)
		}
	}
}
