package check

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/weftmesh/weft/proxy"
)

// Memoizing the local part of a check.
//
// translate hands the same resource pointers to every proxy that shares them (one cluster,
// route table or secret serves hundreds of sidecars), and the xDS server checks each node's
// set before pushing it. Everything that looks at one resource alone (ValidateAll, unpacking
// and walking Anys, regexes, PEM, structural rules) therefore gives the same answer for every
// node, so it runs once per resource pointer; only what relates resources to one another
// (references, duplicate names and addresses) runs on every call.
//
// A resource's local check is recorded as its problems in the order found, interleaved with
// deferred cross-resource checks: closures that look at the node's indexes when replayed.
// Replaying appends exactly the sequence the one-pass checker appended, so problems and
// their order do not depend on whether the memo was hit.
//
// INVARIANT: a resource must not be modified once it has been passed to Resources or
// Problems. translate builds new messages for every change and never mutates one it has
// returned; callers that build resources by hand must do the same (proto.Clone, then change
// the clone). A mutated resource keeps the result of its first check.
//
// The memo is keyed by weak pointers, so it keeps no resource alive, and an entry is removed
// by a cleanup once its resource is collected. Entries must not reference their resource
// (a value reachable from the key would keep it alive forever): deferred checks capture
// names and flags, never messages.

// localResult is what one resource's local check found.
type localResult struct {
	typeURL  string
	name     string
	problems []*Problem
	deferred []deferredCheck
}

// deferredCheck is a cross-resource check to run, when replaying, after the first at local
// problems, at path.
type deferredCheck struct {
	at   int
	path []pathSeg
	run  func(c *checker)
}

type memoKey struct {
	ptr     any // a weak.Pointer[T] for the resource's concrete type
	peer    proxy.Kind
	typeURL string
}

var (
	localMemo sync.Map // memoKey -> *localResult
	// memoDisabled turns the memo off (benchmarks of the uncached path, equivalence tests).
	memoDisabled atomic.Bool
	// memoHits and memoMisses count lookups of memoizable resources, for tests.
	memoHits, memoMisses atomic.Int64
)

// memoKeyFor returns r's key and a function registering the entry's removal once r is
// collected. Only the five xDS types weft serves are memoized; other types and nil
// resources are checked on every call.
func memoKeyFor(peer proxy.Kind, typeURL string, r types.Resource) (memoKey, func(memoKey), bool) {
	switch v := r.(type) {
	case *listenerv3.Listener:
		return keyOf(v, peer, typeURL)
	case *routev3.RouteConfiguration:
		return keyOf(v, peer, typeURL)
	case *clusterv3.Cluster:
		return keyOf(v, peer, typeURL)
	case *endpointv3.ClusterLoadAssignment:
		return keyOf(v, peer, typeURL)
	case *tlsv3.Secret:
		return keyOf(v, peer, typeURL)
	}
	return memoKey{}, nil, false
}

func keyOf[T any](p *T, peer proxy.Kind, typeURL string) (memoKey, func(memoKey), bool) {
	if p == nil {
		return memoKey{}, nil, false
	}
	register := func(k memoKey) {
		runtime.AddCleanup(p, func(k memoKey) { localMemo.Delete(k) }, k)
	}
	return memoKey{ptr: weak.Make(p), peer: peer, typeURL: typeURL}, register, true
}

// local returns r's local check result, from the memo when r was checked before.
func (c *checker) local(typeURL string, r types.Resource) *localResult {
	if memoDisabled.Load() {
		return c.record(typeURL, r)
	}
	key, register, ok := memoKeyFor(c.peer, typeURL, r)
	if !ok {
		return c.record(typeURL, r)
	}
	if v, hit := localMemo.Load(key); hit {
		memoHits.Add(1)
		return v.(*localResult)
	}
	memoMisses.Add(1)
	lr := c.record(typeURL, r)
	if v, loaded := localMemo.LoadOrStore(key, lr); loaded {
		// Another node's check got there first: both results are the same.
		return v.(*localResult)
	}
	register(key)
	return lr
}

// record runs r's local checks, collecting its problems and deferred checks.
func (c *checker) record(typeURL string, r types.Resource) *localResult {
	outer := c.problems
	c.problems, c.deferred = nil, nil
	c.checkLocal(typeURL, r)
	lr := &localResult{typeURL: c.typeURL, name: c.name, problems: c.problems, deferred: c.deferred}
	c.problems, c.deferred = outer, nil
	return lr
}

// cross defers a check that looks at other resources of the node: it runs at the current
// path, after the local problems found so far, every time the resource is replayed. run must
// capture no message of the resource (see the invariant above).
func (c *checker) cross(run func(c *checker)) {
	c.deferred = append(c.deferred, deferredCheck{at: len(c.problems), path: slices.Clone(c.path), run: run})
}

// replay appends lr's problems, copied so that callers may keep or change them, and runs its
// deferred checks in between, in the order the one-pass check found them.
func (c *checker) replay(lr *localResult) {
	c.typeURL, c.name = lr.typeURL, lr.name
	next := 0
	for _, d := range lr.deferred {
		c.appendCopies(lr.problems[next:d.at])
		next = d.at
		c.path = append(c.path[:0], d.path...)
		d.run(c)
	}
	c.appendCopies(lr.problems[next:])
	c.path = c.path[:0]
}

func (c *checker) appendCopies(probs []*Problem) {
	for _, p := range probs {
		cp := *p
		c.problems = append(c.problems, &cp)
	}
}
