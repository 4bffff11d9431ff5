package xds

import (
	"slices"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestRespondNamedHeld: a named RDS subscription holding a set is sent
// what it lacks of the next one, whether that is found from the two sets'
// diff or by walking the subscription (the smaller of the two): changed
// and new subscribed names, names subscribed since the held set was sent,
// and removals of subscribed names it holds; nothing it does not
// subscribe to.
func TestRespondNamedHeld(t *testing.T) {
	setOf := typeSetBuilder(resourcev3.RouteType)
	r := func(name, cluster string) types.Resource { return routeConfig(name, name, cluster) }
	a, b, c, d, e := r("a", "x"), r("b", "x"), r("c", "x"), r("d", "x"), r("e", "x")
	many := []types.Resource{a, b, c, d, e}
	cases := []struct {
		name                string
		held, next          []types.Resource
		subscribed, pending []string
		wantSent, wantGone  []string
	}{
		{"one route edited", many, []types.Resource{a, r("b", "y"), c, d, e}, []string{"a", "b", "c", "d", "e"}, nil, []string{"b"}, nil},
		{"an edit it does not subscribe to", many, []types.Resource{a, r("b", "y"), c, d, e}, []string{"a", "c", "d", "e"}, nil, nil, nil},
		{"same set, a name subscribed since", many, many, []string{"a", "b", "c", "d", "e"}, []string{"c"}, []string{"c"}, nil},
		{"pending and edited", many, []types.Resource{a, b, r("c", "y"), d, e}, []string{"a", "b", "c", "d", "e"}, []string{"c"}, []string{"c"}, nil},
		{"pending, absent from both", many, many, []string{"a", "b", "c", "d", "e", "z"}, []string{"z"}, nil, nil},
		{"a subscribed route removed", many, []types.Resource{a, b, c, d}, []string{"a", "b", "c", "d", "e"}, nil, nil, []string{"e"}},
		{"an unsubscribed route removed", many, []types.Resource{a, b, c, d}, []string{"a", "b", "c", "d"}, nil, nil, nil},
		{"a pending route removed: it was never held", many, []types.Resource{a, b, c, d}, []string{"a", "b", "c", "d", "e"}, []string{"e"}, nil, nil},
		{"a subscribed route added", []types.Resource{a, b, c, d}, many, []string{"a", "b", "c", "d", "e"}, nil, []string{"e"}, nil},
		{"everything changed, small subscription", many, []types.Resource{r("a", "y"), r("b", "y"), r("c", "y"), r("d", "y")}, []string{"a", "e"}, nil, []string{"a"}, []string{"e"}},
		{"nothing lacking", many, many, []string{"a", "b"}, nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			held, next := setOf(t, tc.held...), setOf(t, tc.next...)
			sub := &deltaSub{names: newSubNames(tc.subscribed), held: held}
			if len(tc.pending) > 0 {
				sub.pending = map[string]struct{}{}
				for _, n := range tc.pending {
					sub.pending[n] = struct{}{}
				}
			}
			out := make(chan cachev3.DeltaResponse, 1)
			w := &nodeWatch{typeURL: resourcev3.RouteType, sub: sub, delta: out, dreq: &discoveryv3.DeltaDiscoveryRequest{ResponseNonce: "1"}}
			sent := newNodeCache().respondNamedHeld(w, sub, next)
			if want := len(tc.wantSent)+len(tc.wantGone) > 0; sent != want {
				t.Fatalf("responded: %v, want %v", sent, want)
			}
			if !sent {
				return
			}
			resp := (<-out).(*deltaResponse)
			var names []string
			for _, e := range resp.resources {
				names = append(names, e.name)
			}
			if !slices.Equal(names, tc.wantSent) || !slices.Equal(resp.removed, tc.wantGone) {
				t.Errorf("sent %v removed %v, want sent %v removed %v", names, resp.removed, tc.wantSent, tc.wantGone)
			}
		})
	}
}
