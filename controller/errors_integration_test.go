package controller

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds"
	"github.com/weftmesh/weft/xds/adsclient"
)

// metricValue finds one series in a registry: name plus a subset of labels.
func metricValue(reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

// events lists the events about one object with a reason.
func events(t testing.TB, ns, kind, name, reason string) []corev1.Event {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name, "reason": reason}.AsSelector().String()
	list, err := env.Clientset.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatalf("listing events: %v", err)
	}
	return list.Items
}

func waitEvents(t testing.TB, ns, kind, name, reason string) []corev1.Event {
	t.Helper()
	var out []corev1.Event
	waitUntil(t, 30*time.Second, reason+" event on "+kind+" "+ns+"/"+name, func() bool {
		out = events(t, ns, kind, name, reason)
		return len(out) > 0
	})
	return out
}

// dialPodProxy applies objects, waits for the one pod of namespace ns to
// run and connects an ADS client as that pod's proxy (closed at cleanup).
func dialPodProxy(t *testing.T, rc *runningController, objects, ns, pod string, opts ...adsclient.Option) *adsclient.Client {
	t.Helper()
	if _, err := env.Apply(t.Context(), []byte(objects)); err != nil {
		t.Fatalf("the apiserver refused the objects: %v", err)
	}
	runningPods(t, ns, "", 1)
	c, err := adsclient.Dial(t.Context(), rc.XDSAddr().String(), pod+"."+ns, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestIntegrationNackIsVisible: a proxy rejecting config shows up as a
// metric, a ConfigRejected Event on its pod and in the debug endpoint.
func TestIntegrationNackIsVisible(t *testing.T) {
	requireEnv(t)
	ctx := t.Context()
	rc := startController(t)
	const msg = "test proxy: listener outbound is not to my taste"
	c := dialPodProxy(t, rc, `
apiVersion: v1
kind: Namespace
metadata:
  name: nack
  annotations: {weft.io/inject: enabled}
---
apiVersion: v1
kind: Pod
metadata: {name: picky, namespace: nack}
spec:
  containers:
  - {name: app, image: example.invalid/app:1, ports: [{containerPort: 8080}]}
`, "nack", "picky", adsclient.WithNACK(func(resp *discoveryv3.DiscoveryResponse) string {
		if resp.GetTypeUrl() == resourcev3.ListenerType {
			return msg
		}
		return ""
	}))
	if _, err := waitADS(ctx, c, 30*time.Second, "a NACK sent", func(v adsclient.View) bool { return v.NACKs[resourcev3.ListenerType] > 0 }); err != nil {
		t.Fatal(err)
	}

	waitUntil(t, 10*time.Second, "weft_xds_nacks_total{type=lds}", func() bool {
		v, ok := metricValue(rc.reg, "weft_xds_nacks_total", map[string]string{"type": "lds"})
		return ok && v >= 1
	})
	evs := waitEvents(t, "nack", "Pod", "picky", ReasonConfigRejected)
	if !strings.Contains(evs[0].Message, msg) || !strings.Contains(evs[0].Message, resourcev3.ListenerType) || evs[0].Type != corev1.EventTypeWarning {
		t.Errorf("event: %s %q", evs[0].Type, evs[0].Message)
	}
	code, body, err := rc.adminGet("/debug/proxies/picky.nack")
	if err != nil || code != 200 {
		t.Fatalf("/debug/proxies/picky.nack: %d %v", code, err)
	}
	var st xds.ProxyStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("debug JSON: %v\n%s", err, body)
	}
	if ln := st.Types["lds"].LastNack; ln == nil || ln.Message != msg {
		t.Errorf("debug entry's last NACK: %+v", ln)
	}
}

// TestIntegrationBadInputIsContained: an invalid regex (which the CRD
// schema cannot reject) and a split naming a missing backend are skipped,
// reported against their objects, and everything else is still served.
func TestIntegrationBadInputIsContained(t *testing.T) {
	requireEnv(t)
	ensureCRDs(t)
	ctx := t.Context()
	rc := startController(t)
	// The CRD schema must let an invalid regex through.
	c := dialPodProxy(t, rc, `
apiVersion: v1
kind: Namespace
metadata:
  name: badin
  annotations: {weft.io/inject: enabled}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: badin}
spec:
  containers: [{name: app, image: example.invalid/app:1}]
---
apiVersion: v1
kind: Service
metadata: {name: good, namespace: badin}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: bad, namespace: badin}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: good.badin.svc.cluster.local, namespace: badin}
spec:
  routes:
  - name: list
    condition: {method: GET, pathRegex: '/items'}
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: bad.badin.svc.cluster.local, namespace: badin}
spec:
  routes:
  - name: broken
    condition: {method: GET, pathRegex: '/items/(unclosed'}
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: to-nowhere, namespace: badin}
spec:
  service: good
  backends:
  - {service: good, weight: 1}
  - {service: missing, weight: 1}
`, "badin", "client")

	goodRoute := translate.OutboundRouteName(mesh.ServiceKey{Namespace: "badin", Name: "good"}, 80, "cluster.local")
	badRoute := translate.OutboundRouteName(mesh.ServiceKey{Namespace: "badin", Name: "bad"}, 80, "cluster.local")
	v, err := waitADS(ctx, c, time.Minute, "good's profile route and bad's default route", func(v adsclient.View) bool {
		good, _ := v.Resources[resourcev3.RouteType][goodRoute].(*routev3.RouteConfiguration)
		bad, _ := v.Resources[resourcev3.RouteType][badRoute].(*routev3.RouteConfiguration)
		return routeByName(good, "list") != nil && routeByName(bad, translate.DefaultRouteName) != nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad := v.Resources[resourcev3.RouteType][badRoute].(*routev3.RouteConfiguration); routeByName(bad, "broken") != nil {
		t.Error("the invalid profile's route was served")
	}
	good := v.Resources[resourcev3.RouteType][goodRoute].(*routev3.RouteConfiguration)
	if w := weights(routeByName(good, translate.DefaultRouteName)); len(w) != 1 {
		t.Errorf("the invalid split was applied: %v", w)
	}

	for _, tc := range []struct{ kind, name, reason, field string }{
		{"ServiceProfile", "bad.badin.svc.cluster.local", ReasonInvalidProfile, "spec.routes[0].condition.pathRegex"},
		{"TrafficSplit", "to-nowhere", ReasonInvalidTrafficSplit, "spec.backends[1].service"},
	} {
		labels := map[string]string{"kind": tc.kind, "namespace": "badin", "name": tc.name}
		waitUntil(t, 10*time.Second, "weft_config_errors for "+tc.name, func() bool {
			v, ok := metricValue(rc.reg, "weft_config_errors", labels)
			return ok && v >= 1
		})
		evs := waitEvents(t, "badin", tc.kind, tc.name, tc.reason)
		if !strings.Contains(evs[0].Message, tc.field) {
			t.Errorf("%s event does not name the field %s: %q", tc.reason, tc.field, evs[0].Message)
		}
	}
	_, body, _ := rc.adminGet("/debug/config-errors")
	if !strings.Contains(body, "bad.badin.svc.cluster.local") || !strings.Contains(body, "to-nowhere") {
		t.Errorf("/debug/config-errors: %s", body)
	}

	// Recomputes do not repeat the report: one Event per distinct error.
	// A new service recomputes every proxy.
	if _, err := env.Apply(ctx, []byte(`
apiVersion: v1
kind: Service
metadata: {name: unrelated, namespace: badin}
spec:
  ports: [{name: http, port: 81}]
`)); err != nil {
		t.Fatal(err)
	}
	unrelated := translate.OutboundRouteName(mesh.ServiceKey{Namespace: "badin", Name: "unrelated"}, 81, "cluster.local")
	if _, err := waitADS(ctx, c, 30*time.Second, "the new service's route", func(v adsclient.View) bool {
		_, ok := v.Resources[resourcev3.RouteType][unrelated]
		return ok
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // events are written asynchronously
	evs := events(t, "badin", "ServiceProfile", "bad.badin.svc.cluster.local", ReasonInvalidProfile)
	if len(evs) != 1 || evs[0].Count > 1 {
		t.Errorf("the invalid profile was reported more than once: %+v", evs)
	}

	// Fixed: the series goes away and the route is served.
	_, err = env.Apply(ctx, []byte(`
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: bad.badin.svc.cluster.local, namespace: badin}
spec:
  routes:
  - name: broken
    condition: {method: GET, pathRegex: '/items/(closed)'}
`))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the config error cleared", func() bool {
		_, ok := metricValue(rc.reg, "weft_config_errors", map[string]string{"kind": "ServiceProfile", "name": "bad.badin.svc.cluster.local"})
		return !ok
	})
	if _, err := waitADS(ctx, c, 30*time.Second, "the fixed route", func(v adsclient.View) bool {
		bad, _ := v.Resources[resourcev3.RouteType][badRoute].(*routev3.RouteConfiguration)
		return routeByName(bad, "broken") != nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationMalformedPodAnnotationIsContained: a pod whose annotation
// does not parse still gets its listeners and clusters, with that field at
// its default (the injector's rule: a malformed skip-inbound-ports skips
// nothing, and the namespace's list is not inherited instead), and the
// annotation is reported on the pod: Event, metric.
func TestIntegrationMalformedPodAnnotationIsContained(t *testing.T) {
	requireEnv(t)
	ctx := t.Context()
	rc := startController(t)
	c := dialPodProxy(t, rc, `
apiVersion: v1
kind: Namespace
metadata:
  name: badann
  annotations: {weft.io/inject: enabled, config.weft.io/skip-inbound-ports: "9100"}
---
apiVersion: v1
kind: Pod
metadata:
  name: odd
  namespace: badann
  annotations: {config.weft.io/skip-inbound-ports: abc}
spec:
  containers:
  - {name: app, image: example.invalid/app:1, ports: [{containerPort: 8080}, {containerPort: 9100}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: badann}
spec:
  ports: [{name: http, port: 80}]
`, "badann", "odd")
	web := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "badann", Name: "web"}, 80, "cluster.local")
	wantClusters := []string{web, translate.InboundClusterName(8080), translate.InboundClusterName(9100)}
	v, err := waitADS(ctx, c, time.Minute, "listeners, web's cluster and both inbound ports' clusters", func(v adsclient.View) bool {
		if v.Err != nil {
			return true
		}
		for _, name := range []string{translate.OutboundListenerName, translate.InboundListenerName} {
			if _, ok := v.Resources[resourcev3.ListenerType][name]; !ok {
				return false
			}
		}
		for _, name := range wantClusters {
			if _, ok := v.Resources[resourcev3.ClusterType][name]; !ok {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if v.Err != nil {
		t.Fatalf("the pod's proxy was refused: %v", v.Err)
	}

	const field = "metadata.annotations[config.weft.io/skip-inbound-ports]"
	evs := waitEvents(t, "badann", "Pod", "odd", ReasonInvalidProxyConfig)
	if !strings.Contains(evs[0].Message, field) || !strings.Contains(evs[0].Message, `"abc"`) || evs[0].Type != corev1.EventTypeWarning {
		t.Errorf("event: %s %q, want a warning naming %s and its value", evs[0].Type, evs[0].Message, field)
	}
	waitUntil(t, 10*time.Second, "weft_config_errors for the pod", func() bool {
		v, ok := metricValue(rc.reg, "weft_config_errors", map[string]string{"kind": "Pod", "namespace": "badann", "name": "odd"})
		return ok && v == 1
	})
}
