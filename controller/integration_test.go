package controller

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds/adsclient"
)

var (
	profileGVR = schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}
	splitGVR   = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}
)

// waitUntil polls cond until it holds.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runningPods waits for n Running pods with IPs matching selector and
// returns them sorted by name.
func runningPods(t testing.TB, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	pods, err := env.RunningPods(t.Context(), 2*time.Minute, ns, selector, n)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

func podIPs(pods []corev1.Pod) []string {
	out := make([]string, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.Status.PodIP)
	}
	slices.Sort(out)
	return out
}

func routeByName(rc *routev3.RouteConfiguration, name string) *routev3.Route {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == name {
				return r
			}
		}
	}
	return nil
}

// weights of a route's weighted clusters, or its single cluster at 1.
func weights(r *routev3.Route) map[string]uint32 {
	out := map[string]uint32{}
	a := r.GetRoute()
	if c := a.GetCluster(); c != "" {
		out[c] = 1
	}
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		out[wc.GetName()] = wc.GetWeight().GetValue()
	}
	return out
}

const integrationApp = `
apiVersion: v1
kind: Namespace
metadata:
  name: ita
  annotations: {weft.io/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ita}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: example.invalid/web:1, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api-v1, namespace: ita}
spec:
  replicas: 2
  selector: {matchLabels: {app: api, version: v1}}
  template:
    metadata: {labels: {app: api, version: v1}}
    spec:
      containers:
      - {name: api, image: example.invalid/api:1, ports: [{name: http, containerPort: 9090}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api-v2, namespace: ita}
spec:
  replicas: 1
  selector: {matchLabels: {app: api, version: v2}}
  template:
    metadata: {labels: {app: api, version: v2}}
    spec:
      containers:
      - {name: api, image: example.invalid/api:2, ports: [{name: http, containerPort: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ita}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: ita}
spec:
  selector: {app: api}
  ports: [{name: http, port: 9090, targetPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: api-v1, namespace: ita}
spec:
  selector: {app: api, version: v1}
  ports: [{name: http, port: 9090, targetPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: api-v2, namespace: ita}
spec:
  selector: {app: api, version: v2}
  ports: [{name: http, port: 9090, targetPort: 9090}]
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: api.ita.svc.cluster.local, namespace: ita}
spec:
  routes:
  - name: get-user
    condition: {method: GET, pathRegex: '/users/[0-9]+'}
    isRetryable: true
    timeout: 2s
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: api-canary, namespace: ita}
spec:
  service: api
  backends:
  - {service: api-v1, weight: 90}
  - {service: api-v2, weight: 10}
`

// TestIntegrationProfileSplitScaling: Kubernetes objects in a real
// apiserver become the config an ADS client receives; scaling moves only
// endpoints; deleting the profile restores the default routes.
func TestIntegrationProfileSplitScaling(t *testing.T) {
	requireEnv(t)
	ensureCRDs(t)
	ctx := t.Context()
	rc := startController(t)
	if _, err := env.Apply(ctx, []byte(integrationApp)); err != nil {
		t.Fatal(err)
	}
	web := runningPods(t, "ita", "app=web", 1)[0]
	v1 := runningPods(t, "ita", "app=api,version=v1", 2)

	apex := translate.OutboundRouteName(mesh.ServiceKey{Namespace: "ita", Name: "api"}, 9090, "cluster.local")
	v1Cluster := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "ita", Name: "api-v1"}, 9090, "cluster.local")
	v2Cluster := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "ita", Name: "api-v2"}, 9090, "cluster.local")

	c, err := adsclient.Dial(ctx, rc.XDSAddr().String(), web.Name+".ita")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	view, err := waitADS(ctx, c, time.Minute, "profile route, split and v1 endpoints", func(v adsclient.View) bool {
		rcfg, _ := v.Resources[resourcev3.RouteType][apex].(*routev3.RouteConfiguration)
		cla, _ := v.Resources[resourcev3.EndpointType][v1Cluster].(*endpointv3.ClusterLoadAssignment)
		return routeByName(rcfg, "get-user") != nil &&
			len(weights(routeByName(rcfg, translate.DefaultRouteName))) == 2 &&
			slices.Equal(claAddresses(cla), podIPs(v1)) && v.Synced
	})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := view.Resources[resourcev3.RouteType][apex].(*routev3.RouteConfiguration)
	route := routeByName(rcfg, "get-user")
	if got := route.GetRoute().GetTimeout().AsDuration(); got != 2*time.Second {
		t.Errorf("get-user timeout %v, want 2s", got)
	}
	if route.GetRoute().GetRetryPolicy() == nil {
		t.Error("get-user is retryable but has no retry policy")
	}
	if re := route.GetMatch().GetSafeRegex().GetRegex(); !strings.Contains(re, "/users/[0-9]+") {
		t.Errorf("get-user path regex %q", re)
	}
	want := map[string]uint32{v1Cluster: 90, v2Cluster: 10}
	for _, name := range []string{"get-user", translate.DefaultRouteName} {
		if got := weights(routeByName(rcfg, name)); !maps.Equal(got, want) {
			t.Errorf("route %s clusters %v, want %v", name, got, want)
		}
	}

	// The admin endpoints see the same.
	if code, body, err := rc.adminGet("/debug/proxies/" + web.Name + ".ita"); err != nil || code != 200 || !strings.Contains(body, `"lds"`) {
		t.Errorf("/debug/proxies/<node>: %d %v %.200s", code, err, body)
	}
	if code, _, err := rc.adminGet("/readyz"); err != nil || code != 200 {
		t.Errorf("/readyz: %d %v", code, err)
	}

	// Scale api-v1 to 3: the CLA follows; no other type moves.
	before := view.Versions
	_, err = env.Clientset.AppsV1().Deployments("ita").Patch(ctx, "api-v1", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v1 = runningPods(t, "ita", "app=api,version=v1", 3)
	view, err = waitADS(ctx, c, time.Minute, "three v1 endpoints", func(v adsclient.View) bool {
		cla, _ := v.Resources[resourcev3.EndpointType][v1Cluster].(*endpointv3.ClusterLoadAssignment)
		return slices.Equal(claAddresses(cla), podIPs(v1))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType} {
		if view.Versions[typ] != before[typ] {
			t.Errorf("%s version moved when scaling: %s -> %s", typ, before[typ], view.Versions[typ])
		}
	}

	// Delete the profile: the default routes come back, still split.
	if err := env.Dynamic.Resource(profileGVR).Namespace("ita").Delete(ctx, "api.ita.svc.cluster.local", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	view, err = waitADS(ctx, c, time.Minute, "profile routes gone", func(v adsclient.View) bool {
		rcfg, _ := v.Resources[resourcev3.RouteType][apex].(*routev3.RouteConfiguration)
		return rcfg != nil && routeByName(rcfg, "get-user") == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rcfg = view.Resources[resourcev3.RouteType][apex].(*routev3.RouteConfiguration)
	if got := weights(routeByName(rcfg, translate.DefaultRouteName)); !maps.Equal(got, want) {
		t.Errorf("default route after deleting the profile: %v, want %v", got, want)
	}

	// Delete the split: the apex routes to its own cluster.
	if err := env.Dynamic.Resource(splitGVR).Namespace("ita").Delete(ctx, "api-canary", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apexCluster := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "ita", Name: "api"}, 9090, "cluster.local")
	if _, err := waitADS(ctx, c, time.Minute, "split gone", func(v adsclient.View) bool {
		rcfg, _ := v.Resources[resourcev3.RouteType][apex].(*routev3.RouteConfiguration)
		return maps.Equal(weights(routeByName(rcfg, translate.DefaultRouteName)), map[string]uint32{apexCluster: 1})
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationCRDsComeAndGo: a control plane started while the CRDs are
// installed drops profiles when the CRD is deleted and picks the kind up
// again when it is re-installed, without a restart.
func TestIntegrationCRDsComeAndGo(t *testing.T) {
	requireEnv(t)
	ensureCRDs(t)
	ctx := t.Context()
	rc := startController(t)
	const manifests = `
apiVersion: v1
kind: Namespace
metadata: {name: crd-churn}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: crd-churn}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: svc.crd-churn.svc.cluster.local, namespace: crd-churn}
spec:
  routes:
  - name: all
    condition: {pathRegex: '/.*'}
`
	key := mesh.ProfileKey{Namespace: "crd-churn", Service: mesh.ServiceKey{Namespace: "crd-churn", Name: "svc"}}
	hasProfile := func() bool { return rc.Store().Published().Model.Profiles[key] != nil }
	if _, err := env.Apply(ctx, []byte(manifests)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the profile in the model", hasProfile)

	deleteCRDs(t)
	waitUntil(t, time.Minute, "the profile gone with its CRD", func() bool { return !hasProfile() })

	ensureCRDs(t)
	if _, err := env.Apply(ctx, []byte(manifests)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the profile back after the CRD came back", hasProfile)
}
