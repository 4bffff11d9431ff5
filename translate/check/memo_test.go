package check

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy"
)

// cloneSet deep-copies every resource, so that nothing in the copy is in the memo.
func cloneSet(res map[string][]types.Resource) map[string][]types.Resource {
	out := make(map[string][]types.Resource, len(res))
	for typeURL, list := range res {
		out[typeURL] = make([]types.Resource, len(list))
		for i, r := range list {
			if r == nil {
				continue
			}
			out[typeURL][i] = proto.Clone(r)
		}
	}
	return out
}

func countResources(res map[string][]types.Resource) int64 {
	var n int64
	for _, list := range res {
		for _, r := range list {
			if _, _, ok := memoKeyFor(proxy.Envoy, "", r); ok {
				n++
			}
		}
	}
	return n
}

// checkMemoEquivalence checks that the problems of a set do not depend on where the local
// results come from: computed without the memo, computed into it, served from it, or
// computed again for a deep copy.
func checkMemoEquivalence(t *testing.T, peer proxy.Kind, build func() map[string][]types.Resource) {
	t.Helper()
	memoDisabled.Store(true)
	want := fmt.Sprint(Problems(peer, build()))
	memoDisabled.Store(false)

	res := build()
	first := fmt.Sprint(Problems(peer, res))
	hits := memoHits.Load()
	misses := memoMisses.Load()
	second := fmt.Sprint(Problems(peer, res))
	if got := memoMisses.Load() - misses; got != 0 {
		t.Errorf("second check of the same set: %d memo misses, want 0", got)
	}
	if got, n := memoHits.Load()-hits, countResources(res); got != n {
		t.Errorf("second check of the same set: %d memo hits, want %d", got, n)
	}
	hits = memoHits.Load()
	clone := cloneSet(res)
	third := fmt.Sprint(Problems(peer, clone))
	if got := memoHits.Load() - hits; got != 0 {
		t.Errorf("check of a deep copy: %d memo hits, want 0", got)
	}
	for name, got := range map[string]string{"first": first, "second (memo)": second, "deep copy": third} {
		if got != want {
			t.Errorf("%s check differs from the unmemoized one:\n%s\nwant:\n%s", name, got, want)
		}
	}
	runtime.KeepAlive(clone)
}

// brokenLargeNode is a large node with a problem of every kind the memo has to get right:
// local ones (regex, structure), cross-resource ones (missing cluster, route configuration
// and secret, duplicate names, unused assignment) and both inside one resource.
func brokenLargeNode() map[string][]types.Resource {
	n := largeNode(30)
	rc := n.routes[0]
	rc.VirtualHosts[3].Routes[0].GetMatch().PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(("}}
	rc.VirtualHosts[4].Routes[1] = routeTo("missing-cluster")
	rc.VirtualHosts = append(rc.VirtualHosts, vhost("dup", []string{rc.VirtualHosts[0].Domains[0]}, routeTo("also-missing")))
	n.routes = append(n.routes, routeConfig("outbound"))
	n.listeners = append(n.listeners, listener("other", 15001, httpChain("x", hcmRDS("no-such-route"))))
	n.clusters = append(n.clusters, n.clusters[2], staticCluster("bad-static", clusterv3.Cluster_STATIC, lbEndpoint("not-an-ip", 80)))
	for i, ca := range []string{"no-such-ca", "cert", "ca-without-ca"} {
		ctx := mtls()
		ctx.GetCombinedValidationContext().ValidationContextSdsSecretConfig = sdsRef(ca)
		n.clusters[5+i].TransportSocket = transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: ctx})
	}
	n.secrets = append(n.secrets, caSecret("ca-without-ca", nil))
	n.endpoints = append(n.endpoints, cla("nobody-asks"))
	n.secrets = append(n.secrets, n.secrets[0])
	return n.res()
}

func TestMemoKeepsProblemsAndOrder(t *testing.T) {
	for _, peer := range []proxy.Kind{proxy.Envoy, proxy.GRPC} {
		t.Run(peer.String(), func(t *testing.T) {
			if len(Problems(peer, brokenLargeNode())) < 10 {
				t.Fatalf("the broken node should have many problems, got:\n%s", dump(Problems(peer, brokenLargeNode())))
			}
			checkMemoEquivalence(t, peer, brokenLargeNode)
		})
	}
}

// TestMemoCrossResourceChecksRunPerCall: a shared resource is checked against the set it is
// in now, not the set it was first seen in.
func TestMemoCrossResourceChecksRunPerCall(t *testing.T) {
	n := baseNode()
	with := n.res()
	without := n.res()
	without[resource.ClusterType] = []types.Resource{}
	without[resource.EndpointType] = []types.Resource{}
	rc := n.routes[0]
	if probs := Problems(proxy.Envoy, with); len(probs) != 0 {
		t.Fatalf("got:\n%s", dump(probs))
	}
	probs := Problems(proxy.Envoy, without)
	found := false
	for _, p := range probs {
		found = found || (p.Name == rc.GetName() && p.Path == "virtual_hosts[0].routes[0].route.cluster")
	}
	if !found {
		t.Fatalf("the shared route configuration's missing cluster is not reported:\n%s", dump(probs))
	}
	if probs := Problems(proxy.Envoy, with); len(probs) != 0 {
		t.Fatalf("after the check without clusters: got:\n%s", dump(probs))
	}
}

func TestMemoProblemsAreCopies(t *testing.T) {
	res := brokenLargeNode()
	first := Problems(proxy.Envoy, res)
	want := fmt.Sprint(first)
	for _, p := range first {
		p.Msg = "changed by the caller"
	}
	if got := fmt.Sprint(Problems(proxy.Envoy, res)); got != want {
		t.Fatalf("a caller's change reached the memo:\n%s", got)
	}
}

// TestMemoForgetsCollectedResources: the memo holds no resource alive and drops the
// entries of collected ones.
func TestMemoForgetsCollectedResources(t *testing.T) {
	res := largeNode(50).res()
	Problems(proxy.Envoy, res)
	// The keys hold weak pointers only: keeping them does not keep the resources.
	var keys []memoKey
	for typeURL, list := range res {
		for _, r := range list {
			if k, _, ok := memoKeyFor(proxy.Envoy, typeURL, r); ok {
				keys = append(keys, k)
			}
		}
	}
	live := func() int {
		n := 0
		for _, k := range keys {
			if _, ok := localMemo.Load(k); ok {
				n++
			}
		}
		return n
	}
	if n := live(); n != len(keys) {
		t.Fatalf("%d of %d resources are in the memo after a check", n, len(keys))
	}
	runtime.KeepAlive(res)
	res = nil
	deadline := time.Now().Add(10 * time.Second)
	for live() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the memo still holds %d of %d entries after their resources were dropped", live(), len(keys))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
