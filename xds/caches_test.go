package xds

import (
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestResponsesShareEncodings: two nodes served the same resources get the
// same marshalled bytes (the same Any), SotW and delta, per-node types and
// endpoints alike: a resource is marshalled once per content, not once per
// node and response.
func TestResponsesShareEncodings(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := nodeSet(t, "echo.test")
	const node2 = "web-2.demo"
	mustSet(t, s, node1, res, time.Time{})
	mustSet(t, s, node2, res, time.Time{})
	mustSetEndpoints(t, s, time.Time{}, cla("echo.test-cla", "10.0.0.1", 80))

	cases := []struct {
		typeURL string
		names   []string
		cache   cachev3.Cache
	}{
		{resourcev3.ListenerType, nil, s.snapshots},
		{resourcev3.ClusterType, nil, s.snapshots},
		{resourcev3.RouteType, []string{"echo.test-route"}, s.snapshots},
		{resourcev3.EndpointType, []string{"echo.test-cla"}, s.endpoints},
	}
	for _, tc := range cases {
		t.Run(TypeLabel(tc.typeURL), func(t *testing.T) {
			sotwAny := func(node string) *anypb.Any {
				ch := make(chan cachev3.Response, 1)
				req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: tc.typeURL, ResourceNames: tc.names}
				if _, err := tc.cache.CreateWatch(req, stream.NewSotwSubscription(tc.names, true), ch); err != nil {
					t.Fatal(err)
				}
				resp, err := (<-ch).GetDiscoveryResponse()
				if err != nil || len(resp.GetResources()) != 1 {
					t.Fatalf("sotw response for %s: %v, %d resources, want 1", node, err, len(resp.GetResources()))
				}
				return resp.GetResources()[0]
			}
			deltaAny := func(node string) *anypb.Any {
				ch := make(chan cachev3.DeltaResponse, 1)
				req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: tc.typeURL, ResourceNamesSubscribe: tc.names}
				if _, err := tc.cache.CreateDeltaWatch(req, stream.NewDeltaSubscription(tc.names, nil, nil, true), ch); err != nil {
					t.Fatal(err)
				}
				resp, err := (<-ch).GetDeltaDiscoveryResponse()
				if err != nil || len(resp.GetResources()) != 1 {
					t.Fatalf("delta response for %s: %v, %d resources, want 1", node, err, len(resp.GetResources()))
				}
				return resp.GetResources()[0].GetResource()
			}
			a, b, c := sotwAny(node1), sotwAny(node2), deltaAny(node2)
			if a != b || a != c {
				t.Errorf("the nodes' responses carry different encodings of one resource (%p, %p, %p)", a, b, c)
			}
			if a.GetTypeUrl() != tc.typeURL {
				t.Errorf("Any type %s, want %s", a.GetTypeUrl(), tc.typeURL)
			}
		})
	}
}

// fakeSotwStream plays go-control-plane's SotW server for one stream of one
// type against a cache: the subscription bookkeeping of each request, the
// returned map and version of each response.
type fakeSotwStream struct {
	t       *testing.T
	c       cachev3.Cache
	typeURL string
	node    *corev3.Node
	sub     *stream.Subscription
	ch      chan cachev3.Response
	cancel  func()
	version string // of the last response received
}

// request sends a request for names and returns what the cache answered
// at once (nil: a watch was left open).
func (s *fakeSotwStream) request(names ...string) []string {
	s.t.Helper()
	if s.sub == nil {
		// Legacy wildcard as the server configures it: on for LDS and CDS.
		sub := stream.NewSotwSubscription(names, s.typeURL == resourcev3.ListenerType || s.typeURL == resourcev3.ClusterType)
		s.sub = &sub
	} else {
		s.cancel()
		s.sub.SetResourceSubscription(names)
	}
	cancel, err := s.c.CreateWatch(&discoveryv3.DiscoveryRequest{Node: s.node, TypeUrl: s.typeURL, ResourceNames: names, VersionInfo: s.version}, *s.sub, s.ch)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cancel = cancel
	return s.received()
}

// received returns the names of the response waiting, if any.
func (s *fakeSotwStream) received() []string {
	select {
	case r := <-s.ch:
		s.sub.SetReturnedResources(r.GetReturnedResources())
		s.version = r.GetResponseVersion()
		out := []string{}
		for _, e := range r.(*sotwResponse).resources {
			out = append(out, e.name)
		}
		return out
	default:
		return nil
	}
}

// dropQueued does what the SotW server does with a queued response of the
// type a new request arrives for: drops it unsent.
func (s *fakeSotwStream) dropQueued() {
	select {
	case <-s.ch:
	default:
		s.t.Fatal("no response queued to drop")
	}
}

// TestEndpointCacheAnswersWhatChangedSinceTheStreamWasCurrent: an ACK is
// checked only against the names changed since its stream was last up to
// date; this pins down that nothing is missed that way: a change between
// a response and its ACK, a change log that overflowed, a new name.
func TestEndpointCacheAnswersWhatChangedSinceTheStreamWasCurrent(t *testing.T) {
	c := newEndpointCache()
	h := newResourceHashes()
	set := func(clas ...*endpointv3.ClusterLoadAssignment) {
		var es []*encoded
		for _, cl := range clas {
			e, err := h.encode(cl)
			if err != nil {
				t.Fatal(err)
			}
			es = append(es, e)
		}
		c.update(es, nil)
	}
	set(cla("a", "10.0.0.1", 80), cla("b", "10.0.0.2", 80), cla("c", "10.0.0.3", 80))
	s := &fakeSotwStream{t: t, c: c, typeURL: resourcev3.EndpointType, node: &corev3.Node{Id: node1}, ch: make(chan cachev3.Response, 1)}

	steps := []struct {
		name string
		do   func() []string
		want []string
	}{
		{"first request", func() []string { return s.request("a", "b") }, []string{"a", "b"}},
		{"ACK, nothing new", func() []string { return s.request("a", "b") }, nil},
		{"change while the watch is open", func() []string { set(cla("a", "10.0.0.1", 81)); return s.received() }, []string{"a"}},
		{"change between response and ACK", func() []string { set(cla("b", "10.0.0.2", 81)); return s.received() }, nil},
		{"its ACK gets it", func() []string { return s.request("a", "b") }, []string{"b"}},
		{"ACK, nothing new again", func() []string { return s.request("a", "b") }, nil},
		{"more changes than the log keeps, while no watch is open", func() []string {
			s.cancel()
			set(cla("a", "10.0.0.1", 82))
			for i := range changesKept + 1 {
				set(cla("c", "10.0.0.3", uint32(1000+i)))
			}
			return s.received()
		}, nil},
		{"the next request still gets it", func() []string { return s.request("a", "b") }, []string{"a"}},
		{"a newly subscribed name", func() []string { return s.request("a", "b", "c") }, []string{"c"}},
		{"a name dropped: nothing to send", func() []string { return s.request("a", "c") }, nil},
		{"a change to a dropped name", func() []string { set(cla("b", "10.0.0.2", 83)); return s.received() }, nil},
		{"a change to a kept name", func() []string { set(cla("c", "10.0.0.3", 84)); return s.received() }, []string{"c"}},
		{"ACK", func() []string { return s.request("a", "c") }, nil},
		{"a change whose response the server drops for a new request", func() []string {
			set(cla("a", "10.0.0.1", 85))
			s.dropQueued()
			return nil
		}, nil},
		{"that request gets the change again", func() []string { return s.request("a", "c") }, []string{"a"}},
	}
	for _, st := range steps {
		if got := st.do(); !slices.Equal(got, st.want) {
			t.Errorf("%s: got %v, want %v", st.name, got, st.want)
		}
	}
}

// TestNodeCacheWildcardStreams: a SotW wildcard stream (LDS, CDS) is
// recorded as holding the whole set with one returned entry, not one per
// resource, and is still answered right when it reconnects or starts
// naming resources.
func TestNodeCacheWildcardStreams(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	clusters := func(names ...string) map[string][]types.Resource {
		res := map[string][]types.Resource{}
		for _, n := range names {
			res[resourcev3.ClusterType] = append(res[resourcev3.ClusterType], edsCluster(n, n+"-cla"))
		}
		return res
	}
	mustSet(t, s, node1, clusters("a", "b"), time.Time{})
	open := func() *fakeSotwStream {
		return &fakeSotwStream{t: t, c: s.snapshots, typeURL: resourcev3.ClusterType, node: &corev3.Node{Id: node1}, ch: make(chan cachev3.Response, 1)}
	}
	st := open()
	var again *fakeSotwStream
	steps := []struct {
		name string
		do   func() []string
		want []string
	}{
		{"first request", func() []string { return st.request() }, []string{"a", "b"}},
		{"one returned entry for the whole set", func() []string {
			if n := len(st.sub.ReturnedResources()); n != 1 {
				t.Errorf("%d returned entries, want 1", n)
			}
			return nil
		}, nil},
		{"ACK", func() []string { return st.request() }, nil},
		{"a change", func() []string { mustSet(t, s, node1, clusters("a", "b", "c"), time.Time{}); return st.received() }, []string{"a", "b", "c"}},
		{"its ACK", func() []string { return st.request() }, nil},
		{"a new stream at the current version is sent the set", func() []string {
			again = open()
			again.version = st.version
			return again.request()
		}, []string{"a", "b", "c"}},
		{"the stream names one cluster at the same version", func() []string { return st.request("a") }, []string{"a"}},
		{"its ACK", func() []string { return st.request("a") }, nil},
	}
	for _, step := range steps {
		if got := step.do(); !slices.Equal(got, step.want) {
			t.Errorf("%s: got %v, want %v", step.name, got, step.want)
		}
	}
}

// TestEndpointCacheDeltaACKs: delta ACKs get what changed while no watch
// was open, whether the stream's state is tracked (it holds only what it
// subscribes to) or not (its initial_resource_versions named more).
func TestEndpointCacheDeltaACKs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		initial map[string]string
	}{
		{"tracked", nil},
		{"initial versions of unsubscribed names", map[string]string{"x": "old"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newEndpointCache()
			h := newResourceHashes()
			set := func(cl *endpointv3.ClusterLoadAssignment) {
				e, err := h.encode(cl)
				if err != nil {
					t.Fatal(err)
				}
				c.update([]*encoded{e}, nil)
			}
			set(cla("a", "10.0.0.1", 80))
			set(cla("b", "10.0.0.2", 80))
			node := &corev3.Node{Id: node1}
			sub := stream.NewDeltaSubscription([]string{"a", "b"}, nil, tc.initial, false)
			ch := make(chan cachev3.DeltaResponse, 1)
			cancel := func() {}
			nonce := ""
			request := func() []string {
				cancel()
				var err error
				cancel, err = c.CreateDeltaWatch(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResponseNonce: nonce}, sub, ch)
				if err != nil {
					t.Fatal(err)
				}
				select {
				case r := <-ch:
					sub.SetReturnedResources(r.GetNextVersionMap())
					nonce += "n"
					var out []string
					for _, e := range r.(*deltaResponse).resources {
						out = append(out, e.name)
					}
					return out
				default:
					return nil
				}
			}
			steps := []struct {
				name string
				do   func() []string
				want []string
			}{
				{"first request", request, []string{"a", "b"}},
				{"ACK", request, nil},
				{"ACK after a change while no watch was open", func() []string {
					cancel()
					set(cla("b", "10.0.0.2", 81))
					return request()
				}, []string{"b"}},
				{"ACK after more changes than the log keeps", func() []string {
					cancel()
					set(cla("a", "10.0.0.1", 82))
					for i := range changesKept + 1 {
						set(cla("c", "10.0.0.3", uint32(1000+i)))
					}
					return request()
				}, []string{"a"}},
				{"ACK", request, nil},
			}
			for _, st := range steps {
				if got := st.do(); !slices.Equal(got, st.want) {
					t.Errorf("%s: got %v, want %v", st.name, got, st.want)
				}
			}
		})
	}
}
