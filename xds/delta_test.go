package xds

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The tests here stand in for Envoy's delta client (NewGrpcMuxImpl and
// DeltaSubscriptionState, source/extensions/config_subscription/grpc/,
// Envoy 1.40) on a real gRPC stream with Envoy's message types: they send
// what Envoy sends and check what serveDelta answers.

// clusters is a node set whose CDS holds the named EDS clusters, each
// with a connect timeout in seconds (a changed timeout is a changed
// resource).
func clusters(t testing.TB, timeouts map[string]int64) map[string][]types.Resource {
	res := nodeSet(t, "echo.test")
	res[resourcev3.ClusterType] = nil
	for name, secs := range timeouts {
		c := edsCluster(name, name+"-cla")
		c.ConnectTimeout = durationpb.New(time.Duration(secs) * time.Second)
		res[resourcev3.ClusterType] = append(res[resourcev3.ClusterType], c)
	}
	return res
}

func openDelta(t *testing.T, ts *testServer) *deltaClient {
	t.Helper()
	return openClient(t, delta, dial(t, ts.addr), node1).(*deltaClient)
}

// syncedCDS is a server whose node holds clusters a and b, and a delta
// client that subscribed to CDS by wildcard and ACKed the first response.
func syncedCDS(t *testing.T) (*testServer, *deltaClient, response) {
	t.Helper()
	ts := startServer(t, Options{})
	mustSet(t, ts.Server, node1, clusters(t, map[string]int64{"a": 1, "b": 1}), time.Time{})
	c := openDelta(t, ts)
	c.subscribe(resourcev3.ClusterType)
	first := c.next(t)
	if !slices.Equal(first.names, []string{"a", "b"}) || len(first.removed) != 0 {
		t.Fatalf("first response: %v removed %v, want [a b] and nothing removed", first.names, first.removed)
	}
	c.ack(first)
	return ts, c, first
}

// TestDeltaWildcardSendsWhatChanged: a wildcard CDS stream is sent the
// clusters that changed or are new, and told of those removed, against
// what it last held; system_version_info is the set's version.
func TestDeltaWildcardSendsWhatChanged(t *testing.T) {
	cases := []struct {
		name        string
		next        map[string]int64
		wantNames   []string
		wantRemoved []string
	}{
		{"one changed", map[string]int64{"a": 2, "b": 1}, []string{"a"}, nil},
		{"one added", map[string]int64{"a": 1, "b": 1, "c": 1}, []string{"c"}, nil},
		{"one removed", map[string]int64{"a": 1}, nil, []string{"b"}},
		{"changed, added and removed", map[string]int64{"a": 3, "c": 1}, []string{"a", "c"}, []string{"b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts, c, _ := syncedCDS(t)

			mustSet(t, ts.Server, node1, clusters(t, tc.next), time.Time{})
			r := c.next(t)
			if r.typeURL != resourcev3.ClusterType || !slices.Equal(r.names, tc.wantNames) || !slices.Equal(r.removed, tc.wantRemoved) {
				t.Fatalf("got %s %v removed %v, want cds %v removed %v", TypeLabel(r.typeURL), r.names, r.removed, tc.wantNames, tc.wantRemoved)
			}
			if want := ts.NodeVersions(node1)[resourcev3.ClusterType]; r.version != want {
				t.Errorf("system_version_info %q, want the set's version %q", r.version, want)
			}
			c.ack(r)
			// Setting the same content again sends nothing.
			mustSet(t, ts.Server, node1, clusters(t, tc.next), time.Time{})
			c.expectNone(t, 200*time.Millisecond)
		})
	}
}

// TestDeltaInitialResourceVersions: a reconnecting client lists what it
// holds; it is sent only what differs, and told of what it holds that is
// gone. Wildcard and named subscriptions alike.
func TestDeltaInitialResourceVersions(t *testing.T) {
	ts := startServer(t, Options{})
	mustSet(t, ts.Server, node1, clusters(t, map[string]int64{"a": 1, "b": 1}), time.Time{})
	mustSetEndpoints(t, ts.Server, time.Time{}, cla("a-cla", "10.0.0.1", 80), cla("b-cla", "10.0.0.2", 80))

	// What a client that holds everything was sent.
	c := openDelta(t, ts)
	c.subscribe(resourcev3.ClusterType)
	cds := c.next(t)
	c.ack(cds)
	c.subscribe(resourcev3.EndpointType, "a-cla", "b-cla")
	eds := c.next(t)
	c.ack(eds)
	c.subscribe(resourcev3.RouteType, "echo.test-route")
	rds := c.next(t)
	c.ack(rds)
	c.close()
	with := func(held map[string]string, name, version string) map[string]string {
		out := maps.Clone(held)
		out[name] = version
		return out
	}

	cases := []struct {
		name    string
		typeURL string
		names   []string // subscribed; none: wildcard
		held    map[string]string
		// wantNone: no response at all (named types already held).
		wantNone    bool
		wantNames   []string
		wantRemoved []string
	}{
		{name: "wildcard, holding everything", typeURL: resourcev3.ClusterType, held: cds.resourceVersions},
		{name: "wildcard, one stale", typeURL: resourcev3.ClusterType,
			held: map[string]string{"a": "old", "b": cds.resourceVersions["b"]}, wantNames: []string{"a"}},
		{name: "wildcard, one missing, one gone", typeURL: resourcev3.ClusterType,
			held: map[string]string{"a": cds.resourceVersions["a"], "gone": "v"}, wantNames: []string{"b"}, wantRemoved: []string{"gone"}},
		{name: "named, holding everything", typeURL: resourcev3.EndpointType, names: []string{"a-cla", "b-cla"},
			held: eds.resourceVersions, wantNone: true},
		{name: "named, one stale", typeURL: resourcev3.EndpointType, names: []string{"a-cla", "b-cla"},
			held: map[string]string{"a-cla": eds.resourceVersions["a-cla"], "b-cla": "old"}, wantNames: []string{"b-cla"}},
		{name: "named, one gone", typeURL: resourcev3.EndpointType, names: []string{"a-cla", "b-cla", "gone-cla"},
			held: with(eds.resourceVersions, "gone-cla", "v"), wantRemoved: []string{"gone-cla"}},
		// Routes are per node (the node cache), endpoints shared.
		{name: "named routes, holding everything", typeURL: resourcev3.RouteType, names: []string{"echo.test-route"},
			held: rds.resourceVersions, wantNone: true},
		{name: "named routes, one stale", typeURL: resourcev3.RouteType, names: []string{"echo.test-route"},
			held: map[string]string{"echo.test-route": "old"}, wantNames: []string{"echo.test-route"}},
		{name: "named routes, one gone", typeURL: resourcev3.RouteType, names: []string{"echo.test-route", "gone-route"},
			held: with(rds.resourceVersions, "gone-route", "v"), wantRemoved: []string{"gone-route"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openDelta(t, ts)
			c.subscribeKnown(tc.typeURL, tc.held, tc.names...)
			if tc.wantNone {
				c.expectNone(t, 200*time.Millisecond)
				return
			}
			r := c.next(t)
			if r.typeURL != tc.typeURL || !slices.Equal(r.names, tc.wantNames) || !slices.Equal(r.removed, tc.wantRemoved) {
				t.Fatalf("got %s %v removed %v, want %s %v removed %v", TypeLabel(r.typeURL), r.names, r.removed,
					TypeLabel(tc.typeURL), tc.wantNames, tc.wantRemoved)
			}
		})
	}
}

// TestDeltaSubscribeUnsubscribe: named subscriptions grow and shrink by
// request; an unsubscribed resource's changes are not sent, and
// subscribing to it again sends it again. EDS (the shared endpoint cache)
// and RDS (the node cache, where the stream holds a shared set) alike.
func TestDeltaSubscribeUnsubscribe(t *testing.T) {
	// change sets a's or b's resource to a new content, distinct each call.
	type change func(t *testing.T, ts *testServer, name string, n int)
	routes := map[string]string{"a": "a.test", "b": "b.test"}
	setRoutes := func(t *testing.T, ts *testServer) {
		res := nodeSet(t, "echo.test")
		// The listener's own route stays: the checker wants it.
		for name, domain := range routes {
			res[resourcev3.RouteType] = append(res[resourcev3.RouteType], routeConfig(name, domain, "c"))
		}
		mustSet(t, ts.Server, node1, res, time.Time{})
	}
	types := []struct {
		typeURL string
		setup   func(t *testing.T, ts *testServer)
		change  change
	}{
		{resourcev3.EndpointType,
			func(t *testing.T, ts *testServer) {
				mustSetEndpoints(t, ts.Server, time.Time{}, cla("a", "10.0.0.1", 80), cla("b", "10.0.0.2", 80))
			},
			func(t *testing.T, ts *testServer, name string, n int) {
				mustSetEndpoints(t, ts.Server, time.Time{}, cla(name, "10.0.0.9", uint32(90+n)))
			}},
		{resourcev3.RouteType,
			setRoutes,
			func(t *testing.T, ts *testServer, name string, n int) {
				routes[name] = fmt.Sprintf("%s%d.test", name, n)
				setRoutes(t, ts)
			}},
	}
	steps := []struct {
		name        string
		subscribe   []string
		unsubscribe []string
		// change, if set, is changed after the request.
		change    string
		wantNames []string
	}{
		{name: "subscribe a", subscribe: []string{"a"}, wantNames: []string{"a"}},
		{name: "subscribe b too: only b is sent", subscribe: []string{"b"}, wantNames: []string{"b"}},
		{name: "unsubscribe a, then a changes: nothing", unsubscribe: []string{"a"}, change: "a"},
		{name: "b changes: sent", change: "b", wantNames: []string{"b"}},
		{name: "subscribe a again: sent again", subscribe: []string{"a"}, wantNames: []string{"a"}},
		{name: "a changes: sent", change: "a", wantNames: []string{"a"}},
		{name: "a name that does not exist: nothing", subscribe: []string{"x"}},
	}
	for _, typ := range types {
		t.Run(TypeLabel(typ.typeURL), func(t *testing.T) {
			ts := startServer(t, Options{})
			typ.setup(t, ts)
			c := openDelta(t, ts)
			var last response
			for i, st := range steps {
				c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ.typeURL, ResourceNamesSubscribe: st.subscribe,
					ResourceNamesUnsubscribe: st.unsubscribe, ResponseNonce: last.nonce})
				if st.change != "" {
					// Let the request land before the change: a watch still
					// open from before it would answer the change by the old
					// subscription, as it may for Envoy too.
					time.Sleep(100 * time.Millisecond)
					typ.change(t, ts, st.change, i)
				}
				if st.wantNames == nil {
					c.expectNone(t, 200*time.Millisecond)
					continue
				}
				r := c.next(t)
				if r.typeURL != typ.typeURL || !slices.Equal(r.names, st.wantNames) {
					t.Fatalf("%s: got %s %v, want %v", st.name, TypeLabel(r.typeURL), r.names, st.wantNames)
				}
				c.ack(r)
				last = r
			}
		})
	}
}

// TestDeltaExplicitWildcard: "*" subscribes a stream that named resources
// to everything and unsubscribing "*" leaves only the names; a name
// unsubscribed while wildcard is sent again (the protocol says whether it
// still exists).
func TestDeltaExplicitWildcard(t *testing.T) {
	ts := startServer(t, Options{})
	mustSet(t, ts.Server, node1, clusters(t, map[string]int64{"a": 1, "b": 1}), time.Time{})
	c := openDelta(t, ts)

	steps := []struct {
		name        string
		subscribe   []string
		unsubscribe []string
		change      map[string]int64
		wantNames   []string
		wantRemoved []string
	}{
		{name: "named a", subscribe: []string{"a"}, wantNames: []string{"a"}},
		{name: "subscribe *: b too", subscribe: []string{"*"}, wantNames: []string{"b"}},
		{name: "unsubscribe a while wildcard: a again", unsubscribe: []string{"a"}, wantNames: []string{"a"}},
		{name: "unsubscribe *: a change to b is not sent", unsubscribe: []string{"*"}, change: map[string]int64{"a": 1, "b": 2}},
		{name: "subscribe a, then a is removed", subscribe: []string{"a"}, change: map[string]int64{"b": 2}, wantRemoved: []string{"a"}},
	}
	var last response
	for _, st := range steps {
		c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: st.subscribe,
			ResourceNamesUnsubscribe: st.unsubscribe, ResponseNonce: last.nonce})
		if st.change != nil {
			// Let the request land before the change (see
			// TestDeltaSubscribeUnsubscribe).
			time.Sleep(100 * time.Millisecond)
			mustSet(t, ts.Server, node1, clusters(t, st.change), time.Time{})
		}
		if st.wantNames == nil && st.wantRemoved == nil {
			c.expectNone(t, 200*time.Millisecond)
			continue
		}
		r := c.next(t)
		if !slices.Equal(r.names, st.wantNames) || !slices.Equal(r.removed, st.wantRemoved) {
			t.Fatalf("%s: got %v removed %v, want %v removed %v", st.name, r.names, r.removed, st.wantNames, st.wantRemoved)
		}
		c.ack(r)
		last = r
	}
}

// TestDeltaNackKeepsTheLastGoodState: after a NACK of its latest response,
// a wildcard stream is taken to hold what it last acknowledged: the
// refused set is not sent again, and the next set is sent as a change from
// the acknowledged one, carrying again what the refused response carried.
// A NACK of an older response (a stale nonce) changes nothing.
func TestDeltaNackKeepsTheLastGoodState(t *testing.T) {
	cases := []struct {
		name  string
		stale bool
		// wantNames is the response to the third set, {a: 2, b: 2}.
		wantNames []string
	}{
		{"nack of the latest response", false, []string{"a", "b"}},
		{"nack with a stale nonce", true, []string{"b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts, c, first := syncedCDS(t)

			mustSet(t, ts.Server, node1, clusters(t, map[string]int64{"a": 2, "b": 1}), time.Time{})
			refused := c.next(t)
			if !slices.Equal(refused.names, []string{"a"}) {
				t.Fatalf("second response: %v, want [a]", refused.names)
			}
			if tc.stale {
				refused.nonce = first.nonce
			}
			c.nack(refused, "a is bad")
			c.expectNone(t, 200*time.Millisecond)

			mustSet(t, ts.Server, node1, clusters(t, map[string]int64{"a": 2, "b": 2}), time.Time{})
			r := c.next(t)
			if !slices.Equal(r.names, tc.wantNames) {
				t.Fatalf("after the NACK, the next set sent %v, want %v", r.names, tc.wantNames)
			}
		})
	}
}

// TestDeltaWildcardHoldsTheSharedSet: what a wildcard stream keeps once
// sent a set is the node cache's own typeSet, shared by every node with
// that view, not a version map of its own.
func TestDeltaWildcardHoldsTheSharedSet(t *testing.T) {
	s, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	nodes := []string{"web-1.demo", "web-2.demo"}
	for _, n := range nodes {
		mustSet(t, s, n, clusters(t, map[string]int64{"a": 1, "b": 1}), time.Time{})
	}
	var held []*typeSet
	for _, n := range nodes {
		sub := newDeltaSub(nil, nil, nil, true)
		out := make(chan cachev3.DeltaResponse, 1)
		req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: n}, TypeUrl: resourcev3.ClusterType}
		if _, err := s.snapshots.CreateDeltaWatch(req, sub, out); err != nil {
			t.Fatal(err)
		}
		sub.sent(<-out)
		if sub.held == nil || sub.returned != nil {
			t.Fatalf("%s: held %p, returned %v: want the set and no map", n, sub.held, sub.returned)
		}
		held = append(held, sub.held)
	}
	if held[0] != held[1] {
		t.Errorf("two nodes with the same clusters hold different sets %p and %p", held[0], held[1])
	}
}

// TestDeltaReconnectHoldsTheSharedSet: a named subscription whose
// initial_resource_versions are all current is sent nothing and keeps the
// node cache's set, not the map the client sent, unless the map says more
// (a version of a name not subscribed); a later change is sent against
// what it keeps, and alone.
func TestDeltaReconnectHoldsTheSharedSet(t *testing.T) {
	cases := []struct {
		name     string
		extra    map[string]string // initial versions besides the subscribed routes'
		wantHeld bool
	}{
		{"every subscribed route current", nil, true},
		{"a version of an unsubscribed route too", map[string]string{"unsubscribed-route": "v"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Options{Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			res := nodeSet(t, "echo.test")
			res[resourcev3.RouteType] = append(res[resourcev3.RouteType], routeConfig("other-route", "other:8080", "other-cluster"))
			mustSet(t, s, node1, res, time.Time{})
			versions := maps.Clone(tc.extra)
			if versions == nil {
				versions = map[string]string{}
			}
			for _, r := range res[resourcev3.RouteType] {
				h, err := s.hashes.hash(r)
				if err != nil {
					t.Fatal(err)
				}
				versions[cachev3.GetResourceName(r)] = h
			}

			sub := newDeltaSub([]string{"echo.test-route", "other-route"}, nil, versions, false)
			out := make(chan cachev3.DeltaResponse, 1)
			req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node1}, TypeUrl: resourcev3.RouteType}
			cancel, err := s.snapshots.CreateDeltaWatch(req, sub, out)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			select {
			case r := <-out:
				t.Fatalf("a response to a client holding every route: %v", r)
			default:
			}
			if held := sub.held != nil && sub.returned == nil; held != tc.wantHeld {
				t.Fatalf("held %p, returned %v: want the node's set instead of a map: %v", sub.held, sub.returned, tc.wantHeld)
			}
			changeOtherRoute(t, s, res, out)
		})
	}
}

// changeOtherRoute changes other-route in res and expects out to carry it
// alone.
func changeOtherRoute(t *testing.T, s *Server, res map[string][]types.Resource, out chan cachev3.DeltaResponse) {
	t.Helper()

	res[resourcev3.RouteType][1] = routeConfig("other-route", "other:8080", "changed-cluster")
	mustSet(t, s, node1, res, time.Time{})
	select {
	case r := <-out:
		got, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetResources()) != 1 || got.GetResources()[0].GetName() != "other-route" || len(got.GetRemovedResources()) != 0 {
			t.Errorf("after one route changed: %v removed %v, want other-route alone", got.GetResources(), got.GetRemovedResources())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no response after a route changed")
	}
}

// TestDeltaEndpointsKeepNoVersionMap: a named EDS subscription, once sent
// its first response, keeps no version map (deltaSub.synced): what it
// lacks after changes made while it had no watch (a response in flight) is
// found from the endpoint cache's generations, whether the change log still
// reaches back (a few changes) or not (more than changesKept).
func TestDeltaEndpointsKeepNoVersionMap(t *testing.T) {
	cases := []struct {
		name string
		// updates run while the stream has no watch open.
		updates     func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded)
		wantNames   []string
		wantRemoved []string
	}{
		{"nothing changed", func(*endpointCache, func(*endpointv3.ClusterLoadAssignment) *encoded) {}, nil, nil},
		{"same content set again", func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded) {
			c.update([]*encoded{enc(cla("a", "10.0.0.1", 80))}, nil)
		}, nil, nil},
		{"one changed, one not subscribed changed", func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded) {
			c.update([]*encoded{enc(cla("b", "10.0.0.2", 81)), enc(cla("z", "10.0.0.9", 81))}, nil)
		}, []string{"b"}, nil},
		{"one removed", func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded) {
			c.update(nil, []string{"c"})
		}, nil, []string{"c"}},
		{"past the change log", func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded) {
			c.update([]*encoded{enc(cla("a", "10.0.0.1", 81))}, nil)
			for i := range changesKept + 1 {
				c.update([]*encoded{enc(cla("z", "10.0.0.9", uint32(100+i)))}, nil)
			}
		}, []string{"a"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newSyncedEDS(t)
			if !st.sub.synced || st.sub.returned != nil {
				t.Fatalf("after the first response: synced %v, returned %v; want synced and no map", st.sub.synced, st.sub.returned)
			}
			tc.updates(st.cache, st.enc)
			out := st.watch("1")
			if out == nil {
				if tc.wantNames != nil || tc.wantRemoved != nil {
					t.Fatalf("no response, want %v removed %v", tc.wantNames, tc.wantRemoved)
				}
				return
			}
			if names := responseNames(out); !slices.Equal(names, tc.wantNames) || !slices.Equal(out.GetRemovedResources(), tc.wantRemoved) {
				t.Fatalf("got %v removed %v, want %v removed %v", names, out.GetRemovedResources(), tc.wantNames, tc.wantRemoved)
			}
			if st.sub.returned != nil {
				t.Errorf("a version map came back: %v", st.sub.returned)
			}
		})
	}
}

// syncedEDS is an endpoint cache holding CLAs a, b and c, and a named
// delta EDS subscription to them that was sent its first response.
type syncedEDS struct {
	t     *testing.T
	cache *endpointCache
	sub   *deltaSub
	node  *corev3.Node
}

func newSyncedEDS(t *testing.T) *syncedEDS {
	t.Helper()
	st := &syncedEDS{t: t, cache: newEndpointCache(), sub: newDeltaSub([]string{"a", "b", "c"}, nil, nil, false), node: &corev3.Node{Id: node1}}
	st.cache.update([]*encoded{st.enc(cla("a", "10.0.0.1", 80)), st.enc(cla("b", "10.0.0.2", 80)), st.enc(cla("c", "10.0.0.3", 80))}, nil)
	if st.watch("") == nil {
		t.Fatal("no first response")
	}
	return st
}

// enc encodes m through the process's resource hashes, as SetEndpoints does.
func (st *syncedEDS) enc(m *endpointv3.ClusterLoadAssignment) *encoded {
	e, err := testHashes.encode(m)
	if err != nil {
		st.t.Fatal(err)
	}
	return e
}

// watch opens a watch answering nonce and returns its response, sent, or
// nil if the cache has nothing to send.
func (st *syncedEDS) watch(nonce string) *discoveryv3.DeltaDiscoveryResponse {
	st.t.Helper()
	out := make(chan cachev3.DeltaResponse, 1)
	req := &discoveryv3.DeltaDiscoveryRequest{Node: st.node, TypeUrl: resourcev3.EndpointType, ResponseNonce: nonce}
	cancel, err := st.cache.CreateDeltaWatch(req, st.sub, out)
	if err != nil {
		st.t.Fatal(err)
	}
	defer cancel()
	select {
	case r := <-out:
		st.sub.sent(r)
		resp, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			st.t.Fatal(err)
		}
		return resp
	default:
		return nil
	}
}

var testHashes = newResourceHashes()

func responseNames(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var names []string
	for _, res := range r.GetResources() {
		names = append(names, res.GetName())
	}
	return names
}
