package xds

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
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
