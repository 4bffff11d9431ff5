package xds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy"
)

const node1 = "web-1.demo"

var protocols = []protocol{sotw, delta}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustSet(t testing.TB, s *Server, nodeID string, res map[string][]types.Resource, seen time.Time) {
	t.Helper()
	if err := s.SetNodeResources(context.Background(), nodeID, proxy.Envoy, res, seen); err != nil {
		t.Fatalf("SetNodeResources(%s): %v", nodeID, err)
	}
}

func mustSetEndpoints(t testing.TB, s *Server, seen time.Time, clas ...*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	m := make(map[string]*endpointv3.ClusterLoadAssignment, len(clas))
	for _, c := range clas {
		m[c.GetClusterName()] = c
	}
	if err := s.SetEndpoints(context.Background(), m, seen); err != nil {
		t.Fatalf("SetEndpoints: %v", err)
	}
}

// subscribeAll subscribes the way Envoy does for one service: LDS and CDS
// wildcard, then the named route and CLA, ACKing everything.
func subscribeAll(t testing.TB, c adsClient, svc string) map[string]response {
	t.Helper()
	got := map[string]response{}
	steps := []struct {
		typeURL string
		names   []string
	}{
		{resourcev3.ListenerType, nil},
		{resourcev3.ClusterType, nil},
		{resourcev3.RouteType, []string{svc + "-route"}},
		{resourcev3.EndpointType, []string{svc + "-cla"}},
	}
	for _, st := range steps {
		c.subscribe(st.typeURL, st.names...)
		r := nextOfType(t, c, st.typeURL)
		c.ack(r)
		got[st.typeURL] = r
	}
	return got
}

func TestNodeReceivesWhatWasSet(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			ts := startServer(t, Options{})
			res := nodeSet(t, "echo.test")
			mustSet(t, ts.Server, node1, res, time.Time{})
			mustSetEndpoints(t, ts.Server, time.Time{}, cla("echo.test-cla", "10.0.0.1", 8080), cla("other-cla", "10.0.0.2", 8080))
			want := ts.NodeVersions(node1)

			got := subscribeAll(t, openClient(t, p, dial(t, ts.addr), node1), "echo.test")

			wantNames := map[string][]string{
				resourcev3.ListenerType: {"echo.test:8080"},
				resourcev3.ClusterType:  {"echo.test-cluster"},
				resourcev3.RouteType:    {"echo.test-route"},
				// other-cla exists but was not subscribed to.
				resourcev3.EndpointType: {"echo.test-cla"},
			}
			for typeURL, names := range wantNames {
				if !slices.Equal(got[typeURL].names, names) {
					t.Errorf("%s: got resources %v, want %v", TypeLabel(typeURL), got[typeURL].names, names)
				}
			}
			for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType} {
				if got[typeURL].version != want[typeURL] {
					t.Errorf("%s: version %q, want the node's %q", TypeLabel(typeURL), got[typeURL].version, want[typeURL])
				}
				if p == delta {
					r := res[typeURL][0]
					e, err := encode(r)
					if err != nil {
						t.Fatal(err)
					}
					if v, h := got[typeURL].resourceVersions[cachev3.GetResourceName(r)], e.hash; v != h {
						t.Errorf("%s: resource version %q, want content hash %q", TypeLabel(typeURL), v, h)
					}
				}
			}
			// The bytes are the resources that were set.
			if !proto.Equal(unmarshalCLA(t, got[resourcev3.EndpointType].raw[0]), cla("echo.test-cla", "10.0.0.1", 8080)) {
				t.Errorf("eds: content differs from what was set")
			}

			eventually(t, "ACKs recorded", func() bool {
				ps, ok := ts.Proxy(node1)
				if !ok {
					return false
				}
				for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType} {
					st := ps.Types[TypeLabel(typeURL)]
					if st.VersionAcked != want[typeURL] || st.VersionSent != want[typeURL] || st.VersionSet != want[typeURL] {
						return false
					}
				}
				eds := ps.Types["eds"]
				return eds.VersionAcked != "" && eds.VersionAcked == eds.VersionSent
			})
			ps, _ := ts.Proxy(node1)
			if ps.Pod != "web-1" || ps.Namespace != "demo" || ps.Streams != 1 || ps.Kind != "envoy" {
				t.Errorf("proxy status = %+v", ps)
			}
			if g := testutil.ToFloat64(ts.metrics.connectedProxies); g != 1 {
				t.Errorf("connected proxies = %v, want 1", g)
			}
			if n := testutil.ToFloat64(ts.metrics.pushes.WithLabelValues("cds")); n != 1 {
				t.Errorf("cds pushes = %v, want 1", n)
			}
		})
	}
}

func unmarshalCLA(t testing.TB, b []byte) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	var c endpointv3.ClusterLoadAssignment
	if err := proto.Unmarshal(b, &c); err != nil {
		t.Fatalf("unmarshalling CLA: %v", err)
	}
	return &c
}

func TestNackIsCountedReportedAndShown(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			reported := make(chan Nack, 4)
			ts := startServer(t, Options{NackReporter: func(n Nack) { reported <- n }})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			cdsVersion := ts.NodeVersions(node1)[resourcev3.ClusterType]

			c := openClient(t, p, dial(t, ts.addr), node1)
			c.subscribe(resourcev3.ClusterType)
			r := c.next(t)
			c.nack(r, "cluster echo.test-cluster: unexpected lbPolicy")

			var n Nack
			select {
			case n = <-reported:
			case <-time.After(waitTimeout):
				t.Fatal("NackReporter not called")
			}
			if n.Node.ID != node1 || n.Node.Pod != "web-1" || n.TypeURL != resourcev3.ClusterType ||
				n.Version != cdsVersion || n.Nonce != r.nonce ||
				n.Detail.GetMessage() != "cluster echo.test-cluster: unexpected lbPolicy" {
				t.Errorf("reported %+v (version want %s)", n, cdsVersion)
			}
			if v := testutil.ToFloat64(ts.metrics.nacks.WithLabelValues("cds")); v != 1 {
				t.Errorf("weft_xds_nacks_total{type=cds} = %v, want 1", v)
			}
			if v := testutil.ToFloat64(ts.metrics.proxyNacks.WithLabelValues(node1, "cds")); v != 1 {
				t.Errorf("weft_xds_proxy_nacks_total{proxy=%s,type=cds} = %v, want 1", node1, v)
			}

			h := ts.DebugHandler()
			var ps ProxyStatus
			getJSON(t, h, "/debug/proxies/"+node1, http.StatusOK, &ps)
			cds := ps.Types["cds"]
			if cds.LastNack == nil || cds.LastNack.Message != "cluster echo.test-cluster: unexpected lbPolicy" ||
				cds.LastNack.Version != cdsVersion || cds.LastNack.Code != "InvalidArgument" || cds.Nacks != 1 {
				t.Errorf("debug cds = %+v, last nack %+v", cds, cds.LastNack)
			}
			if cds.VersionSent != cdsVersion || cds.VersionAcked == cdsVersion {
				t.Errorf("debug cds sent %q acked %q: want sent %q and not acked", cds.VersionSent, cds.VersionAcked, cdsVersion)
			}
			var all []ProxyStatus
			getJSON(t, h, "/debug/proxies", http.StatusOK, &all)
			if len(all) != 1 || all[0].Node != node1 {
				t.Errorf("debug list = %+v", all)
			}

			// The per-proxy series goes when the proxy does.
			c.close()
			eventually(t, "proxy forgotten", func() bool {
				_, ok := ts.Proxy(node1)
				return !ok && testutil.CollectAndCount(ts.metrics.proxyNacks) == 0
			})
			if v := testutil.ToFloat64(ts.metrics.nacks.WithLabelValues("cds")); v != 1 {
				t.Errorf("weft_xds_nacks_total{type=cds} after disconnect = %v, want 1", v)
			}
			if g := testutil.ToFloat64(ts.metrics.connectedProxies); g != 0 {
				t.Errorf("connected proxies = %v, want 0", g)
			}
			getJSON(t, h, "/debug/proxies/"+node1, http.StatusNotFound, &map[string]string{})
		})
	}
}

func getJSON(t testing.TB, h http.Handler, path string, wantCode int, into any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != wantCode {
		t.Fatalf("GET %s: %d %s, want %d", path, rec.Code, rec.Body.String(), wantCode)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
		t.Fatalf("GET %s: decoding %s: %v", path, rec.Body.String(), err)
	}
}

func TestRefusedSetKeepsLastGood(t *testing.T) {
	forbidding := func(_ NodeInfo, res map[string][]types.Resource) error {
		for _, r := range res[resourcev3.ClusterType] {
			if cachev3.GetResourceName(r) == "forbidden" {
				return errors.New("clusters[0]: forbidden cluster")
			}
		}
		return nil
	}
	with := func(t testing.TB, typeURL string, extra ...types.Resource) map[string][]types.Resource {
		res := nodeSet(t, "echo.test")
		res[typeURL] = append(res[typeURL], extra...)
		return res
	}
	cases := []struct {
		name    string
		res     func(t testing.TB) map[string][]types.Resource
		wantErr string
	}{
		{"checker refuses", func(t testing.TB) map[string][]types.Resource {
			return with(t, resourcev3.ClusterType, edsCluster("forbidden", "x"))
		}, "forbidden cluster"},
		{"endpoints are not per node", func(t testing.TB) map[string][]types.Resource {
			return with(t, resourcev3.EndpointType, cla("x", "10.0.0.1", 80))
		}, "SetEndpoints"},
		{"unknown type", func(t testing.TB) map[string][]types.Resource {
			return with(t, resourcev3.RuntimeType)
		}, "not served per node"},
		{"duplicate name", func(t testing.TB) map[string][]types.Resource {
			return with(t, resourcev3.ClusterType, edsCluster("echo.test-cluster", "y"))
		}, `resources[1]: duplicate name "echo.test-cluster"`},
		{"nil resource", func(t testing.TB) map[string][]types.Resource {
			return with(t, resourcev3.ClusterType, (*clusterv3.Cluster)(nil))
		}, "resources[1]: nil resource"},
		{"wrong type under a key", func(t testing.TB) map[string][]types.Resource {
			return with(t, resourcev3.ClusterType, &listenerv3.Listener{Name: "l"})
		}, "is a envoy.config.listener.v3.Listener"},
		{"empty name", func(t testing.TB) map[string][]types.Resource {
			return with(t, resourcev3.SecretType, &tlsv3.Secret{})
		}, "empty name"},
	}

	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			ts := startServer(t, Options{Checker: forbidding})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			good := ts.NodeVersions(node1)
			c := openClient(t, p, dial(t, ts.addr), node1)
			c.subscribe(resourcev3.ClusterType)
			c.ack(c.next(t))

			for i, tc := range cases {
				err := ts.SetNodeResources(context.Background(), node1, proxy.Envoy, tc.res(t), time.Time{})
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), node1) {
					t.Errorf("%s: error %v, want one naming %s and containing %q", tc.name, err, node1, tc.wantErr)
				}
				if got := ts.NodeVersions(node1); fmt.Sprint(got) != fmt.Sprint(good) {
					t.Errorf("%s: versions changed to %v", tc.name, got)
				}
				if v := testutil.ToFloat64(ts.metrics.rejectedSnapshots.WithLabelValues(node1)); v != float64(i+1) {
					t.Errorf("%s: rejected snapshots = %v, want %d", tc.name, v, i+1)
				}
			}

			// The next push is the next good set: nothing refused went out.
			next := nodeSet(t, "echo.test")
			next[resourcev3.ClusterType] = []types.Resource{edsCluster("allowed", "z")}
			mustSet(t, ts.Server, node1, next, time.Time{})
			r := c.next(t)
			if r.typeURL != resourcev3.ClusterType || !slices.Equal(r.names, []string{"allowed"}) {
				t.Errorf("next push: %s %v, want cds [allowed]", TypeLabel(r.typeURL), r.names)
			}
		})
	}
}

func TestVersionsAreContentHashes(t *testing.T) {
	versionsOf := func(t *testing.T, res map[string][]types.Resource) map[string]string {
		s, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		mustSet(t, s, node1, res, time.Time{})
		return s.NodeVersions(node1)
	}
	base := versionsOf(t, nodeSet(t, "echo.test"))
	cases := []struct {
		name string
		res  func() map[string][]types.Resource
		// changed lists the types whose version must differ from base.
		changed []string
	}{
		{"same content, other pointers, other server", func() map[string][]types.Resource {
			return nodeSet(t, "echo.test")
		}, nil},
		{"order of resources does not matter", func() map[string][]types.Resource {
			a, b := nodeSet(t, "echo.test"), nodeSet(t, "echo.test")
			a[resourcev3.ClusterType] = append(a[resourcev3.ClusterType], edsCluster("b", "b"))
			b[resourcev3.ClusterType] = append([]types.Resource{edsCluster("b", "b")}, b[resourcev3.ClusterType]...)
			if fmt.Sprint(versionsOf(t, a)) != fmt.Sprint(versionsOf(t, b)) {
				t.Errorf("order changed the versions")
			}
			return a
		}, []string{resourcev3.ClusterType}},
		{"one field changes one type", func() map[string][]types.Resource {
			res := nodeSet(t, "echo.test")
			c := edsCluster("echo.test-cluster", "echo.test-cla")
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			res[resourcev3.ClusterType] = []types.Resource{c}
			return res
		}, []string{resourcev3.ClusterType}},
		{"empty types still have a version", func() map[string][]types.Resource {
			return map[string][]types.Resource{}
		}, []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := versionsOf(t, tc.res())
			for _, typeURL := range snapshotTypes {
				if got[typeURL] == "" {
					t.Errorf("%s: empty version", TypeLabel(typeURL))
				}
				differs := got[typeURL] != base[typeURL]
				if want := slices.Contains(tc.changed, typeURL); differs != want {
					t.Errorf("%s: version %s vs base %s: changed=%v, want %v", TypeLabel(typeURL), got[typeURL], base[typeURL], differs, want)
				}
			}
		})
	}
}

// TestReconnectAfterRestart pins down what a proxy sees when it reconnects
// to a new control-plane process holding the same configuration.
//
// Delta: the proxy lists what it holds (initial_resource_versions); the
// versions are content hashes, so nothing is re-sent (wildcard types get
// the empty response Envoy needs to finish initialising).
//
// SotW: go-control-plane v0.14.0 re-sends the resources even when the first
// request carries the current version, because a new stream has no record
// of what was returned and SotW requests cannot say it. The version is the
// same content hash, and Envoy compares per-resource hashes on LDS/CDS, so
// nothing is drained or rebuilt; it costs bandwidth, not churn.
func TestReconnectAfterRestart(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			first := startServer(t, Options{})
			mustSet(t, first.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			mustSetEndpoints(t, first.Server, time.Time{}, cla("echo.test-cla", "10.0.0.1", 80))
			c := openClient(t, p, dial(t, first.addr), node1)
			before := subscribeAll(t, c, "echo.test")
			c.close()
			first.stop()

			second := startServer(t, Options{})
			mustSet(t, second.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			// A history of its own (an unrelated CLA set first) must not
			// matter: a counter would differ here, a content hash does not.
			mustSetEndpoints(t, second.Server, time.Time{}, cla("unrelated-cla", "10.0.0.9", 80))
			mustSetEndpoints(t, second.Server, time.Time{}, cla("echo.test-cla", "10.0.0.1", 80))
			conn := dial(t, second.addr)
			switch p {
			case sotw:
				c := openClient(t, p, conn, node1).(*sotwClient)
				for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
					c.subscribeAt(typeURL, before[typeURL].version)
					r := c.next(t)
					if r.version != before[typeURL].version || !slices.Equal(r.names, before[typeURL].names) {
						t.Errorf("%s: re-sent %s %v, want the same version %s and resources %v",
							TypeLabel(typeURL), r.version, r.names, before[typeURL].version, before[typeURL].names)
					}
					c.ack(r)
				}
				// EDS versions are content hashes too: the new process
				// re-sends the CLA under the version the old one gave it.
				eds := before[resourcev3.EndpointType]
				c.subscribeAt(resourcev3.EndpointType, eds.version, "echo.test-cla")
				if r := c.next(t); r.version != eds.version || !slices.Equal(r.names, eds.names) {
					t.Errorf("eds: re-sent %s %v, want the same version %s and resources %v", r.version, r.names, eds.version, eds.names)
				}
			case delta:
				c := openClient(t, p, conn, node1).(*deltaClient)
				for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
					c.subscribeKnown(typeURL, before[typeURL].resourceVersions)
					r := c.next(t)
					if r.typeURL != typeURL || len(r.names) != 0 || len(r.removed) != 0 {
						t.Errorf("%s: got %v removed %v, want an empty response", TypeLabel(typeURL), r.names, r.removed)
					}
					c.ack(r)
				}
				// Named subscriptions already held get no response at all,
				// endpoints included.
				c.subscribeKnown(resourcev3.RouteType, before[resourcev3.RouteType].resourceVersions, "echo.test-route")
				c.subscribeKnown(resourcev3.EndpointType, before[resourcev3.EndpointType].resourceVersions, "echo.test-cla")
				c.expectNone(t, 300*time.Millisecond)
			}
		})
	}
}

func TestEndpointChangeBumpsOnlyEDS(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			ts := startServer(t, Options{})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			mustSet(t, ts.Server, "web-2.demo", nodeSet(t, "other"), time.Time{})
			mustSetEndpoints(t, ts.Server, time.Time{}, cla("echo.test-cla", "10.0.0.1", 80), cla("other-cla", "10.0.0.2", 80))
			versions := ts.NodeVersions(node1)
			conn := dial(t, ts.addr)
			a := openClient(t, p, conn, node1)
			subscribeAll(t, a, "echo.test")
			b := openClient(t, p, conn, "web-2.demo")
			subscribeAll(t, b, "other")

			changed := cla("echo.test-cla", "10.0.0.1", 80, 81)
			mustSetEndpoints(t, ts.Server, time.Time{}, changed)
			r := a.next(t)
			if r.typeURL != resourcev3.EndpointType || !slices.Equal(r.names, []string{"echo.test-cla"}) ||
				!proto.Equal(unmarshalCLA(t, r.raw[0]), changed) {
				t.Fatalf("a got %s %v, want eds [echo.test-cla] with the new content", TypeLabel(r.typeURL), r.names)
			}
			a.ack(r)

			// Setting equal content again (a new pointer) is not a change.
			mustSetEndpoints(t, ts.Server, time.Time{}, cla("echo.test-cla", "10.0.0.1", 80, 81))
			// The next thing a hears is a cluster change: no other type and
			// no echo of the no-op moved in between.
			next := nodeSet(t, "echo.test")
			next[resourcev3.ClusterType] = append(next[resourcev3.ClusterType], edsCluster("extra", "extra-cla"))
			mustSet(t, ts.Server, node1, next, time.Time{})
			if r := a.next(t); r.typeURL != resourcev3.ClusterType {
				t.Errorf("a got %s %v, want the cds change", TypeLabel(r.typeURL), r.names)
			}
			now := ts.NodeVersions(node1)
			for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType} {
				if now[typeURL] != versions[typeURL] {
					t.Errorf("%s version moved", TypeLabel(typeURL))
				}
			}

			// b is not subscribed to echo.test-cla: its next response is
			// its own CLA's change.
			mustSetEndpoints(t, ts.Server, time.Time{}, cla("other-cla", "10.0.0.2", 80, 81))
			r = b.next(t)
			if r.typeURL != resourcev3.EndpointType || !slices.Equal(r.names, []string{"other-cla"}) {
				t.Errorf("b got %s %v, want eds [other-cla]", TypeLabel(r.typeURL), r.names)
			}
			b.ack(r)

			// A deleted CLA: delta says so; SotW cannot (EDS is not a
			// full-state type), so b hears nothing.
			ts.DeleteEndpoints("other-cla")
			if _, ok := ts.Endpoints()["other-cla"]; ok {
				t.Errorf("other-cla still in the cache")
			}
			if p == delta {
				if r := b.next(t); !slices.Equal(r.removed, []string{"other-cla"}) {
					t.Errorf("b got %v removed %v, want other-cla removed", r.names, r.removed)
				}
			}
		})
	}
}

func TestEndpointsRefusedPerCLA(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := cla("good", "10.0.0.1", 80)
	noLocality := cla("no-locality", "10.0.0.1", 80)
	noLocality.Endpoints[0].Locality = nil
	refusing := func(c *endpointv3.ClusterLoadAssignment) error {
		if c.GetEndpoints()[0].GetLocality() == nil {
			return errors.New("endpoints[0]: locality without ID")
		}
		return nil
	}
	s.epChecker = refusing
	err = s.SetEndpoints(context.Background(), map[string]*endpointv3.ClusterLoadAssignment{
		"good":        good,
		"no-locality": noLocality,
		"misnamed":    cla("other-name", "10.0.0.1", 80),
	}, time.Time{})
	for _, want := range []string{`endpoints "no-locality": endpoints[0]: locality without ID`, `endpoints "misnamed": cluster_name is "other-name"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	got := s.Endpoints()
	if len(got) != 1 || got["good"] != good {
		t.Errorf("cache holds %v, want only good", got)
	}
	if v := testutil.ToFloat64(s.metrics.rejectedEndpoints); v != 2 {
		t.Errorf("rejected endpoints = %v, want 2", v)
	}
}

// testAuthenticator trusts an "x-test-identity: pod/namespace" header.
func testAuthenticator(ctx context.Context) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("x-test-identity")
	if len(v) != 1 {
		return Identity{}, errors.New("no credentials")
	}
	pod, ns, ok := strings.Cut(v[0], "/")
	if !ok {
		return Identity{}, errors.New("bad credentials")
	}
	return Identity{Pod: pod, Namespace: ns}, nil
}

func TestRefusedStreams(t *testing.T) {
	knownPods := func(_ context.Context, node *corev3.Node) (NodeInfo, error) {
		info, err := ParsingNodeValidator(context.Background(), node)
		if err != nil {
			return info, err
		}
		switch info.Pod {
		case "web-1":
			return info, nil
		case "flaky":
			return info, errors.New("pod cache not synced")
		default:
			return info, &NodeNotFoundError{Pod: info.Pod, Namespace: info.Namespace}
		}
	}
	cases := []struct {
		name     string
		opts     Options
		nodeID   string
		md       []string
		wantCode codes.Code
		wantMsg  string
	}{
		{"unknown pod", Options{NodeValidator: knownPods}, "web-123.demo", nil, codes.NotFound, "no pod web-123 in namespace demo"},
		{"malformed node id", Options{}, "web", nil, codes.InvalidArgument, `node id "web" is not "<pod>.<namespace>"`},
		{"validator cannot tell", Options{NodeValidator: knownPods}, "flaky.demo", nil, codes.Unavailable, "pod cache not synced"},
		{"no credentials", Options{Authenticator: testAuthenticator}, node1, nil, codes.Unauthenticated, "no credentials"},
		{"credentials for another pod", Options{Authenticator: testAuthenticator}, node1, []string{"x-test-identity", "web-2/demo"},
			codes.PermissionDenied, "stream authenticated as pod web-2 may not act as node web-1.demo"},
		{"credentials for another namespace", Options{Authenticator: testAuthenticator}, node1, []string{"x-test-identity", "web-1/prod"},
			codes.PermissionDenied, "stream authenticated in namespace prod may not act as node web-1.demo"},
	}
	for _, p := range protocols {
		for _, tc := range cases {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) {
				ts := startServer(t, tc.opts)
				c := openClient(t, p, dial(t, ts.addr), tc.nodeID, tc.md...)
				c.subscribe(resourcev3.ListenerType)
				err := c.streamErr(t)
				st := status.Convert(err)
				if st.Code() != tc.wantCode || !strings.Contains(st.Message(), tc.wantMsg) {
					t.Errorf("stream ended with %v %q, want %v containing %q", st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
				}
				if v := testutil.ToFloat64(ts.metrics.refusedConnections.WithLabelValues(tc.wantCode.String())); v != 1 {
					t.Errorf("refused{code=%s} = %v, want 1", tc.wantCode, v)
				}
				if len(ts.Proxies()) != 0 {
					t.Errorf("refused proxy is listed: %+v", ts.Proxies())
				}
			})
		}
		t.Run(string(p)+"/matching credentials are served", func(t *testing.T) {
			ts := startServer(t, Options{Authenticator: testAuthenticator, NodeValidator: knownPods})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			c := openClient(t, p, dial(t, ts.addr), node1, "x-test-identity", "web-1/demo")
			c.subscribe(resourcev3.ListenerType)
			if r := c.next(t); !slices.Equal(r.names, []string{"echo.test:8080"}) {
				t.Errorf("got %v", r.names)
			}
		})
	}
}

func histogram(t testing.TB, reg *prometheus.Registry, name, typ string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return 0, 0
}

func TestConvergenceIsMeasured(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			ts := startServer(t, Options{})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Now())
			mustSetEndpoints(t, ts.Server, time.Now(), cla("echo.test-cla", "10.0.0.1", 80))
			c := openClient(t, p, dial(t, ts.addr), node1)
			subscribeAll(t, c, "echo.test")
			// Initial fetches are start-up, not convergence.
			if n, _ := histogram(t, ts.reg, "weft_xds_convergence_seconds", "cds"); n != 0 {
				t.Errorf("initial fetch measured: %d samples", n)
			}

			seen := time.Now()
			next := nodeSet(t, "echo.test")
			next[resourcev3.ClusterType] = append(next[resourcev3.ClusterType], edsCluster("extra", "extra-cla"))
			mustSet(t, ts.Server, node1, next, seen)
			c.ack(nextOfType(t, c, resourcev3.ClusterType))
			mustSetEndpoints(t, ts.Server, seen, cla("echo.test-cla", "10.0.0.1", 80, 81))
			c.ack(nextOfType(t, c, resourcev3.EndpointType))

			for _, typ := range []string{"cds", "eds"} {
				eventually(t, typ+" convergence sample", func() bool {
					n, _ := histogram(t, ts.reg, "weft_xds_convergence_seconds", typ)
					return n == 1
				})
				if _, sum := histogram(t, ts.reg, "weft_xds_convergence_seconds", typ); sum <= 0 || sum > time.Since(seen).Seconds() {
					t.Errorf("%s convergence %vs, want between 0 and %v", typ, sum, time.Since(seen))
				}
			}
			if n, _ := histogram(t, ts.reg, "weft_xds_convergence_seconds", "lds"); n != 0 {
				t.Errorf("lds did not change but has %d samples", n)
			}
		})
	}
}

func TestClearNodeEndsItsStreams(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			ts := startServer(t, Options{})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			ts.metrics.rejectedSnapshots.WithLabelValues(node1).Inc()
			conn := dial(t, ts.addr)
			c := openClient(t, p, conn, node1)
			other := openClient(t, p, conn, "web-2.demo")
			c.subscribe(resourcev3.ListenerType)
			c.ack(c.next(t))
			other.subscribe(resourcev3.ListenerType)
			eventually(t, "both connected", func() bool { return len(ts.Proxies()) == 2 })

			ts.ClearNode(node1)
			if st := status.Convert(c.streamErr(t)); st.Code() != codes.Unavailable {
				t.Errorf("stream ended with %v, want Unavailable", st)
			}
			if ts.NodeVersions(node1) != nil {
				t.Errorf("versions kept after ClearNode")
			}
			if testutil.CollectAndCount(ts.metrics.rejectedSnapshots) != 0 {
				t.Errorf("rejected-snapshot series kept after ClearNode")
			}
			eventually(t, "only web-2 left", func() bool {
				ps := ts.Proxies()
				return len(ps) == 1 && ps[0].Node == "web-2.demo"
			})
		})
	}
}

func TestShutdownEndsStreamsWithUnavailable(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			ts := startServer(t, Options{})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			c := openClient(t, p, dial(t, ts.addr), node1)
			c.subscribe(resourcev3.ListenerType)
			c.ack(c.next(t))
			done := make(chan struct{})
			go func() { ts.stop(); close(done) }()
			if st := status.Convert(c.streamErr(t)); st.Code() != codes.Unavailable {
				t.Errorf("stream ended with %v, want Unavailable", st)
			}
			select {
			case <-done:
			case <-time.After(waitTimeout):
				t.Fatal("Serve did not return")
			}
		})
	}
}

func TestSharedResourcesAreHashedOnce(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	shared := nodeSet(t, "echo.test")
	for i := range 100 {
		mustSet(t, s, fmt.Sprintf("web-%d.demo", i), shared, time.Time{})
	}
	if s.hashes.computed != 3 {
		t.Errorf("hashed %d times for 3 shared resources on 100 nodes", s.hashes.computed)
	}
	mustSet(t, s, "web-100.demo", nodeSet(t, "echo.test"), time.Time{})
	if s.hashes.computed != 6 {
		t.Errorf("new pointers: hashed %d times in all, want 6", s.hashes.computed)
	}
	// Equal content, even from other pointers, shares one set of maps.
	for _, typeURL := range snapshotTypes {
		if a, b := s.current["web-0.demo"].sets[typeURL], s.current["web-100.demo"].sets[typeURL]; a != b {
			t.Errorf("%s: nodes with equal content hold separate sets", TypeLabel(typeURL))
		}
	}
	other := nodeSet(t, "other")
	mustSet(t, s, "web-101.demo", other, time.Time{})
	if a, b := s.current["web-0.demo"].sets[resourcev3.ClusterType], s.current["web-101.demo"].sets[resourcev3.ClusterType]; a == b {
		t.Errorf("nodes with different clusters share a set")
	}
}

func TestHashCacheForgetsCollectedResources(t *testing.T) {
	h := newResourceHashes()
	func() {
		for i := range 50 {
			if _, err := h.hash(edsCluster(fmt.Sprint("c", i), "x")); err != nil {
				t.Fatal(err)
			}
		}
	}()
	eventually(t, "cache entries collected", func() bool {
		runtime.GC()
		return h.len() == 0
	})

	sets := newTypeSets()
	func() {
		for i := range 20 {
			if _, err := buildSnapshot(h, sets, nodeSet(t, fmt.Sprint("svc", i))); err != nil {
				t.Fatal(err)
			}
		}
	}()
	eventually(t, "shared sets collected", func() bool {
		runtime.GC()
		return sets.len() == 0
	})
}

func TestResourceName(t *testing.T) {
	cases := []struct {
		name string
		msg  proto.Message
	}{
		{"echo:8080", &listenerv3.Listener{Name: "echo:8080", StatPrefix: "x"}},
		{"c", edsCluster("c", "svc")},
		{"r", routeConfig("r", "d", "c")},
		{"cla", cla("cla", "10.0.0.1", 80)},
		{"s", &tlsv3.Secret{Name: "s"}},
		{"", &listenerv3.Listener{StatPrefix: "nameless"}},
	}
	for _, tc := range cases {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := ResourceName(b); got != tc.name {
			t.Errorf("ResourceName(%T) = %q, want %q", tc.msg, got, tc.name)
		}
	}
	if got := ResourceName(bytes.Repeat([]byte{0xff}, 4)); got != "" {
		t.Errorf("garbage gave %q", got)
	}
}

// TestDefaultCheckersPickThePeer: without Options.Checker the node kind
// decides which peer's rules apply, and endpoints are judged as grpc-go
// would, since every kind of node shares them.
func TestDefaultCheckersPickThePeer(t *testing.T) {
	maglev := func(t testing.TB) map[string][]types.Resource {
		res := nodeSet(t, "echo.test")
		c := edsCluster("echo.test-cluster", "echo.test-cla")
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		res[resourcev3.ClusterType] = []types.Resource{c}
		return res
	}
	cases := []struct {
		name    string
		kind    proxy.Kind
		wantErr bool
	}{
		// Envoy balances with Maglev; grpc-go's lb_policy enum stops at
		// ROUND_ROBIN, RING_HASH and LEAST_REQUEST.
		{"envoy accepts maglev", proxy.Envoy, false},
		{"grpc refuses maglev", proxy.GRPC, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Options{Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			err = s.SetNodeResources(context.Background(), node1, tc.kind, maglev(t), time.Time{})
			if (err != nil) != tc.wantErr {
				t.Errorf("SetNodeResources(%s) = %v, want error %v", tc.kind, err, tc.wantErr)
			}
			if tc.wantErr && (s.NodeVersions(node1) != nil || !strings.Contains(err.Error(), "echo.test-cluster")) {
				t.Errorf("refused set was stored, or the error %q does not name the cluster", err)
			}
		})
	}

	t.Run("endpoints without locality", func(t *testing.T) {
		s, err := New(Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		bad := cla("echo.test-cla", "10.0.0.1", 80)
		bad.Endpoints[0].Locality = nil
		if err := s.SetEndpoints(context.Background(), map[string]*endpointv3.ClusterLoadAssignment{"echo.test-cla": bad}, time.Time{}); err == nil ||
			!strings.Contains(err.Error(), "locality") {
			t.Errorf("SetEndpoints = %v, want a refusal about the locality", err)
		}
		if len(s.Endpoints()) != 0 {
			t.Errorf("refused CLA stored")
		}
	})
}

// TestStreamsLeaveNoGoroutines: with the server still running, streams that
// end (client gone, refused, cleared) leave nothing behind: no watch
// goroutine, no receive pump, no tracking state.
func TestStreamsLeaveNoGoroutines(t *testing.T) {
	ts := startServer(t, Options{NodeValidator: func(ctx context.Context, n *corev3.Node) (NodeInfo, error) {
		if strings.HasPrefix(n.GetId(), "ghost") {
			return NodeInfo{}, &NodeNotFoundError{Pod: "ghost", Namespace: "demo"}
		}
		return ParsingNodeValidator(ctx, n)
	}})
	mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
	mustSetEndpoints(t, ts.Server, time.Time{}, cla("echo.test-cla", "10.0.0.1", 80))
	// One served stream first, so the server's own goroutines (the accept
	// loop) are up before the baseline is taken.
	func() {
		conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := openClient(t, sotw, conn, node1)
		c.subscribe(resourcev3.ListenerType)
		c.next(t)
		c.close()
	}()
	eventually(t, "warm-up stream released", func() bool { return len(ts.Proxies()) == 0 })
	baseline := goleak.IgnoreCurrent()

	func() {
		conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := range 10 {
			p := protocols[i%2]
			c := openClient(t, p, conn, node1)
			subscribeAll(t, c, "echo.test")
			c.close()
			refused := openClient(t, p, conn, "ghost.demo")
			refused.subscribe(resourcev3.ListenerType)
			refused.streamErr(t)
			refused.close()
		}
		cleared := openClient(t, sotw, conn, "web-9.demo")
		cleared.subscribe(resourcev3.ListenerType)
		eventually(t, "web-9 connected", func() bool { _, ok := ts.Proxy("web-9.demo"); return ok })
		ts.ClearNode("web-9.demo")
		cleared.streamErr(t)
		cleared.close()
	}()

	eventually(t, "tracking state released", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.streams) == 0 && len(ts.nodes) == 0 && len(ts.handles) == 0
	})
	if g := testutil.ToFloat64(ts.metrics.openStreams); g != 0 {
		t.Errorf("open streams gauge = %v", g)
	}
	goleak.VerifyNone(t, baseline)
}
