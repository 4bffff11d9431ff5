package controller

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds/adsclient"
)

const apiCluster = "outbound|9090|api.app.svc.cluster.local"

func claAddresses(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	slices.Sort(out)
	return out
}

func routeNamesOf(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			out = append(out, r.GetName())
		}
	}
	return out
}

// TestPipelineServesAndUpdatesAProxy drives the pipeline end to end
// without Kubernetes: a proxy connecting before the first flush gets its
// config, an endpoint change moves only EDS, a profile moves RDS.
func TestPipelineServesAndUpdatesAProxy(t *testing.T) {
	h := newHarness(t, 20*time.Millisecond)
	feedBase(h.store) // not flushed yet: the proxy may connect first
	ctx := t.Context()

	c, err := adsclient.Dial(ctx, h.addr, "web-1.app")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := waitADS(ctx, c, 10*time.Second, "initial config", func(v adsclient.View) bool {
		_, ok := v.Resources[resourcev3.EndpointType][apiCluster]
		return ok && v.Synced
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{translate.OutboundListenerName, translate.InboundListenerName} {
		if _, ok := v.Resources[resourcev3.ListenerType][name]; !ok {
			t.Errorf("listener %q missing; have %v", name, keys(v.Resources[resourcev3.ListenerType]))
		}
	}
	if _, ok := v.Resources[resourcev3.ClusterType][apiCluster].(*clusterv3.Cluster); !ok {
		t.Errorf("cluster %q missing", apiCluster)
	}
	cla := v.Resources[resourcev3.EndpointType][apiCluster].(*endpointv3.ClusterLoadAssignment)
	if got := claAddresses(cla); !slices.Equal(got, []string{"10.1.0.1", "10.1.0.2"}) {
		t.Errorf("CLA addresses %v", got)
	}
	if _, ok := v.Resources[resourcev3.RouteType][apiCluster]; !ok {
		t.Errorf("route config %q missing", apiCluster)
	}

	// Scaling: EDS moves, nothing else does, and no proxy is recomputed.
	before := v.Versions
	recomputes := testutil.ToFloat64(h.metrics.recomputes)
	h.store.SetPod(testPod("app", "api-3", "10.1.0.4", "api", nil, 9090))
	h.store.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1", "api-2": "10.1.0.2", "api-3": "10.1.0.4"}))
	v, err = waitADS(ctx, c, 10*time.Second, "three endpoints", func(v adsclient.View) bool {
		cla, _ := v.Resources[resourcev3.EndpointType][apiCluster].(*endpointv3.ClusterLoadAssignment)
		return len(claAddresses(cla)) == 3
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType} {
		if v.Versions[typ] != before[typ] {
			t.Errorf("%s version moved on an endpoint change: %s -> %s", typ, before[typ], v.Versions[typ])
		}
	}
	if got := testutil.ToFloat64(h.metrics.recomputes); got != recomputes {
		t.Errorf("an endpoint change recomputed %v proxies", got-recomputes)
	}

	// A server-side profile: the route appears; deleting it restores the default.
	sp := testProfile("app", "app", "api", time.Unix(1, 0), "/users/[0-9]+")
	h.store.SetServiceProfile(sp)
	_, err = waitADS(ctx, c, 10*time.Second, "profile route", func(v adsclient.View) bool {
		rc, _ := v.Resources[resourcev3.RouteType][apiCluster].(*routev3.RouteConfiguration)
		return slices.Contains(routeNamesOf(rc), "route-0")
	})
	if err != nil {
		t.Fatal(err)
	}
	h.store.DeleteServiceProfile("app", sp.Name)
	_, err = waitADS(ctx, c, 10*time.Second, "default routes", func(v adsclient.View) bool {
		rc, _ := v.Resources[resourcev3.RouteType][apiCluster].(*routev3.RouteConfiguration)
		names := routeNamesOf(rc)
		return rc != nil && !slices.Contains(names, "route-0")
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPipelineRefusesNodes(t *testing.T) {
	h := newHarness(t, 10*time.Millisecond)
	feedBase(h.store)
	h.store.SetPod(testPod("plain", "lonely", "10.3.0.1", "default", nil, 80))
	cases := []struct {
		node     string
		opts     []adsclient.Option
		code     codes.Code
		contains string
	}{
		{node: "nope.app", code: codes.NotFound, contains: "no pod nope in namespace app"},
		{node: "lonely.plain", code: codes.FailedPrecondition, contains: "not meshed"},
		{node: "web-1.app", opts: []adsclient.Option{adsclient.WithUserAgent("gRPC Go")}, code: codes.FailedPrecondition, contains: mesh.AnnotationProxyKind},
		{node: "no-dot", code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.node, func(t *testing.T) {
			c, err := adsclient.Dial(t.Context(), h.addr, tc.node, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			v, _ := waitADS(t.Context(), c, 10*time.Second, "refusal", func(v adsclient.View) bool { return v.Err != nil })
			st := status.Convert(v.Err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.contains) {
				t.Errorf("stream ended with %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.contains)
			}
		})
	}
}

// TestPipelineDeletedPodEndsItsStream: a proxy whose pod is gone loses its
// config and its stream.
func TestPipelineDeletedPodEndsItsStream(t *testing.T) {
	h := newHarness(t, 10*time.Millisecond)
	feedBase(h.store)
	c, err := adsclient.Dial(t.Context(), h.addr, "web-1.app")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := waitADS(t.Context(), c, 10*time.Second, "config", func(v adsclient.View) bool { return v.Synced }); err != nil {
		t.Fatal(err)
	}
	h.store.DeletePod("app", "web-1")
	v, _ := waitADS(t.Context(), c, 10*time.Second, "stream end", func(v adsclient.View) bool { return v.Err != nil })
	if st := status.Convert(v.Err); st.Code() != codes.Unavailable {
		t.Errorf("stream ended with %v, want Unavailable", v.Err)
	}
	// ClearNode ends the streams, then forgets the node's resources: the client can see its
	// stream end just before the resources are gone.
	waitUntil(t, 10*time.Second, "the deleted pod's resources to be forgotten", func() bool {
		return h.xds.NodeVersions("web-1.app") == nil
	})
}

// TestDisconnectedProxyIsNotRecomputed: a proxy whose streams all closed is dropped from
// the recomputed set although its pod still exists, and is back when it reconnects.
func TestDisconnectedProxyIsNotRecomputed(t *testing.T) {
	h := newHarness(t, 20*time.Millisecond)
	feedBase(h.store)
	ctx := t.Context()
	const node = "web-1.app"
	connected := func() bool {
		h.pipe.mu.Lock()
		defer h.pipe.mu.Unlock()
		_, ok := h.pipe.connected[node]
		return ok
	}
	// flushAfter makes a change every proxy depends on and waits for its flush.
	profile := 0
	flushAfter := func() {
		t.Helper()
		flushes := testutil.ToFloat64(h.metrics.flushes)
		profile++
		h.store.SetServiceProfile(testProfile("app", "app", "api", time.Unix(int64(profile), 0), fmt.Sprintf("/v%d/[0-9]+", profile)))
		waitUntil(t, 10*time.Second, "a flush", func() bool { return testutil.ToFloat64(h.metrics.flushes) > flushes })
	}

	c, err := adsclient.Dial(ctx, h.addr, node)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waitADS(ctx, c, 10*time.Second, "initial config", func(v adsclient.View) bool { return v.Synced }); err != nil {
		t.Fatal(err)
	}
	recomputes := testutil.ToFloat64(h.metrics.recomputes)
	flushAfter()
	if got := testutil.ToFloat64(h.metrics.recomputes) - recomputes; got != 1 {
		t.Fatalf("a connected proxy: %v recomputes on a profile change, want 1", got)
	}

	c.Close()
	waitUntil(t, 10*time.Second, "the proxy dropped from the connected set", func() bool { return !connected() })
	if _, exists := h.store.Proxy("web-1", "app"); !exists {
		t.Fatal("the pod should still exist")
	}
	recomputes = testutil.ToFloat64(h.metrics.recomputes)
	flushAfter()
	if got := testutil.ToFloat64(h.metrics.recomputes) - recomputes; got != 0 {
		t.Fatalf("a disconnected proxy: %v recomputes on a profile change, want 0", got)
	}

	c, err = adsclient.Dial(ctx, h.addr, node)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	route := fmt.Sprintf("/v%d/[0-9]+", profile)
	if _, err := waitADS(ctx, c, 10*time.Second, "config after reconnecting", func(v adsclient.View) bool {
		rc, _ := v.Resources[resourcev3.RouteType][apiCluster].(*routev3.RouteConfiguration)
		return v.Synced && strings.Contains(fmt.Sprint(rc), route)
	}); err != nil {
		t.Fatal(err)
	}
	if !connected() {
		t.Fatal("a reconnected proxy is not in the connected set")
	}
	recomputes = testutil.ToFloat64(h.metrics.recomputes)
	flushAfter()
	if got := testutil.ToFloat64(h.metrics.recomputes) - recomputes; got != 1 {
		t.Fatalf("a reconnected proxy: %v recomputes on a profile change, want 1", got)
	}
}
