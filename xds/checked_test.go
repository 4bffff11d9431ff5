package xds

import (
	"context"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy"
)

func cloneRoute(r *routev3.RouteConfiguration) types.Resource {
	return proto.Clone(r).(*routev3.RouteConfiguration)
}

// inlineListener is a proxyless client's listener whose route table is
// inline, so what it routes to is checked with it (validate_clusters is
// on for inline tables): cluster names a cluster the node must be sent.
func inlineListener(t testing.TB, name, cluster string) *listenerv3.Listener {
	return apiListenerOf(t, name, &hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{
			RouteConfig: routeConfig(name+"-inline", name, cluster),
		},
	})
}

// TestCheckerVerdictIsPerDistinctSet: the nodes of one view share their
// routes and clusters; the checker runs once per distinct set, yet a node
// whose own listener dangles (routes to a cluster it is not sent) is
// refused whatever its neighbours were accepted with, and again on every
// push.
func TestCheckerVerdictIsPerDistinctSet(t *testing.T) {
	s := newTestServer(t, Options{})
	shared := nodeSet(t, "web")
	routes, clusters := shared[resourcev3.RouteType], shared[resourcev3.ClusterType]
	good := inlineListener(t, "web:8080", "web-cluster")
	dangling := inlineListener(t, "web:8080", "gone-cluster")
	set := func(l *listenerv3.Listener) map[string][]types.Resource {
		return map[string][]types.Resource{
			resourcev3.ListenerType: {l},
			resourcev3.RouteType:    routes,
			resourcev3.ClusterType:  clusters,
		}
	}

	cases := []struct {
		name string
		node string
		kind proxy.Kind
		res  map[string][]types.Resource
		// wantErr is part of the refusal, empty for accepted.
		wantErr string
		// checks is how many times the checker has run after the push.
		checks int64
		// sameAs names a node whose snapshot this node must share.
		sameAs string
	}{
		{"first node of the view", "web-1.demo", proxy.GRPC, set(good), "", 1, ""},
		{"second node, same pointers", "web-2.demo", proxy.GRPC, set(good), "", 1, "web-1.demo"},
		{"own listener dangles", "web-3.demo", proxy.GRPC, set(dangling), "unknown cluster 'gone-cluster'", 2, ""},
		{"refusals are checked again", "web-3.demo", proxy.GRPC, set(dangling), "unknown cluster 'gone-cluster'", 3, ""},
		{"the same listener after a refusal", "web-4.demo", proxy.GRPC, set(dangling), "unknown cluster 'gone-cluster'", 4, ""},
		{"a node of another view", "web-5.demo", proxy.GRPC, nodeSet(t, "web"), "", 5, ""},
		{"equal content, other pointers", "web-6.demo", proxy.GRPC, nodeSet(t, "web"), "", 5, "web-5.demo"},
		{"good listener after the refusals", "web-3.demo", proxy.GRPC, set(good), "", 5, "web-1.demo"},
		{"other peer, same sets", "web-7.demo", proxy.Envoy, set(good), "", 6, ""},
	}
	for _, tc := range cases {
		err := s.SetNodeResources(context.Background(), tc.node, tc.kind, tc.res, time.Time{})
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.node)):
			t.Errorf("%s: error %v, want one naming %s and containing %q", tc.name, err, tc.node, tc.wantErr)
		}
		if got := s.checks.Load(); got != tc.checks {
			t.Errorf("%s: checker ran %d times, want %d", tc.name, got, tc.checks)
		}
		if tc.sameAs != "" {
			s.setMu.Lock()
			a, b := s.current[tc.node], s.current[tc.sameAs]
			s.setMu.Unlock()
			if a == nil || a != b {
				t.Errorf("%s: snapshot %p, want %s's %p", tc.name, a, tc.sameAs, b)
			}
		}
	}
	// A refused node keeps its last good set; one never accepted has none.
	if v := s.NodeVersions("web-4.demo"); v != nil {
		t.Errorf("web-4.demo was never accepted, yet has versions %v", v)
	}
}

// TestTypeSetsFoundByInput: a type set is found again by the pointers it
// was built from, only by exactly those in that order, and never for a
// list that does not build (the shape errors are not skipped).
func TestTypeSetsFoundByInput(t *testing.T) {
	hashes, shared := newResourceHashes(), newTypeSets()
	a, b := routeConfig("a", "a", "a"), routeConfig("b", "b", "b")
	build := func(t *testing.T, rs ...types.Resource) (*typeSet, error) {
		t.Helper()
		snap, err := buildSnapshot(hashes, shared, map[string][]types.Resource{resourcev3.RouteType: rs})
		if err != nil {
			return nil, err
		}
		return snap.sets[resourcev3.RouteType], nil
	}
	first, err := build(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		rs   []types.Resource
		// same: the set must be first itself; byInput: found by input
		// before building; wantErr: part of the error.
		same, byInput bool
		wantErr       string
	}{
		{"same pointers", []types.Resource{a, b}, true, true, ""},
		{"other order, same content", []types.Resource{b, a}, true, false, ""},
		{"other order again: re-keyed", []types.Resource{b, a}, true, true, ""},
		{"equal content, new pointers", []types.Resource{cloneRoute(a), cloneRoute(b)}, true, false, ""},
		{"a resource changed", []types.Resource{a, routeConfig("b", "b", "c")}, false, false, ""},
		{"a duplicate", []types.Resource{a, b, a}, false, false, `duplicate name "a"`},
		{"a nil resource", []types.Resource{a, (*routev3.RouteConfiguration)(nil)}, false, false, "nil resource"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, ok := shared.inputKeyOf(resourcev3.RouteType, tc.rs)
			found := ok && shared.byItems(k, tc.rs) != nil
			if found != tc.byInput {
				t.Errorf("found by input before building: %v, want %v", found, tc.byInput)
			}
			got, err := build(t, tc.rs...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if shared.byItems(k, tc.rs) != nil {
					t.Error("a list that does not build was remembered")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == first) != tc.same {
				t.Errorf("set is the first one: %v, want %v (versions %s, %s)", got == first, tc.same, got.version, first.version)
			}
			if got != first && got.version == first.version {
				t.Errorf("a different set with the first one's version %s", got.version)
			}
		})
	}
}
