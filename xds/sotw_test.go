package xds

import (
	"net"
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

// TestSotwSubscriptionFollowsTheNames: serveSotw keeps a type's
// subscription when a request repeats the previous names, and rebuilds it
// when they differ, even in number only or in content only.
func TestSotwSubscriptionFollowsTheNames(t *testing.T) {
	cases := []struct {
		name string
		// next is the name list of the ACK of the first response.
		next []string
		// want are the CLAs the next response carries: the endpoint cache
		// sends, in SotW too, only what the proxy lacks (EDS is not a
		// full-state type).
		want []string
	}{
		{"same names: nothing new", []string{"a-cla", "b-cla"}, nil},
		{"same number, another name", []string{"a-cla", "c-cla"}, []string{"c-cla"}},
		{"one more name", []string{"a-cla", "b-cla", "c-cla"}, []string{"c-cla"}},
		{"one name fewer, then a change to it", []string{"a-cla"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Options{})
			mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
			mustSetEndpoints(t, ts.Server, time.Time{}, cla("a-cla", "10.0.0.1", 80), cla("b-cla", "10.0.0.2", 80), cla("c-cla", "10.0.0.3", 80))
			c := openClient(t, sotw, dial(t, ts.addr), node1).(*sotwClient)
			defer c.close()

			c.subscribe(resourcev3.EndpointType, "a-cla", "b-cla")
			first := c.next(t)
			c.names[resourcev3.EndpointType] = tc.next
			c.ack(first)
			if tc.want == nil {
				c.expectNone(t, 200*time.Millisecond)
			} else {
				got := c.next(t)
				if !slices.Equal(got.names, tc.want) {
					t.Fatalf("after the names became %v: response with %v, want %v", tc.next, got.names, tc.want)
				}
				c.ack(got)
			}
			// A change to b-cla reaches the proxy only if it still
			// subscribes to it.
			mustSetEndpoints(t, ts.Server, time.Time{}, cla("b-cla", "10.0.0.20", 80))
			if slices.Contains(tc.next, "b-cla") {
				if got := c.next(t); !slices.Contains(got.names, "b-cla") {
					t.Errorf("change of b-cla: response with %v, want b-cla in it", got.names)
				}
			} else {
				c.expectNone(t, 200*time.Millisecond)
			}
		})
	}
}

// TestSotwStaleNonceIsIgnored: a request answering an older response than
// the latest of its type changes nothing (Envoy's xDS protocol: "the
// management server should not send a response for a stale nonce"), but
// tracking still sees it; the request with the latest nonce is served.
func TestSotwStaleNonceIsIgnored(t *testing.T) {
	ts := startServer(t, Options{})
	mustSet(t, ts.Server, node1, nodeSet(t, "echo.test"), time.Time{})
	mustSetEndpoints(t, ts.Server, time.Time{}, cla("a-cla", "10.0.0.1", 80), cla("b-cla", "10.0.0.2", 80))
	c := openClient(t, sotw, dial(t, ts.addr), node1).(*sotwClient)
	defer c.close()

	c.subscribe(resourcev3.EndpointType, "a-cla")
	first := c.next(t)
	c.ack(first)
	mustSetEndpoints(t, ts.Server, time.Time{}, cla("a-cla", "10.0.0.10", 80))
	second := c.next(t)
	if second.nonce == first.nonce {
		t.Fatalf("two responses with nonce %q", first.nonce)
	}

	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a-cla", "b-cla"}, VersionInfo: first.version, ResponseNonce: first.nonce})
	c.expectNone(t, 200*time.Millisecond)

	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a-cla", "b-cla"}, VersionInfo: second.version, ResponseNonce: second.nonce})
	if got := c.next(t); !slices.Equal(got.names, []string{"b-cla"}) {
		t.Errorf("request with the latest nonce: response with %v, want the new b-cla", got.names)
	}
}

// TestSotwOnAServerOfTheCallers: Register on a gRPC server without
// xdsCodec serves SotW too (requests then arrive decoded in full).
func TestSotwOnAServerOfTheCallers(t *testing.T) {
	s, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	s.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(func() {
		s.Shutdown()
		gs.Stop()
	})
	mustSet(t, s, node1, nodeSet(t, "echo.test"), time.Time{})
	mustSetEndpoints(t, s, time.Time{}, cla("echo.test-cla", "10.0.0.1", 80))
	c := openClient(t, sotw, dial(t, lis.Addr().String()), node1)
	defer c.close()

	got := subscribeAll(t, c, "echo.test")
	if names := got[resourcev3.EndpointType].names; !slices.Equal(names, []string{"echo.test-cla"}) {
		t.Errorf("EDS: %v, want [echo.test-cla]", names)
	}
	mustSetEndpoints(t, s, time.Time{}, cla("echo.test-cla", "10.0.0.2", 80))
	if r := c.next(t); r.typeURL != resourcev3.EndpointType {
		t.Errorf("after an endpoint change: %s, want eds", TypeLabel(r.typeURL))
	}
}
