package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// nodeCache holds each node's listeners, routes, clusters and secrets and
// answers their watches, SotW and delta, behind go-control-plane's server
// (it is a cachev3.Cache). It answers as go-control-plane's SnapshotCache
// (non-ADS mode) does, with one difference that the profile asked for: the
// SnapshotCache wraps every resource of every response in a fresh entry and
// marshals it again, so 1,000 proxies with the same 500 clusters cost
// 500,000 marshals on connect; here a response carries the encodings built
// once per resource (see resourceHashes), and only the envelope is per
// proxy.
type nodeCache struct {
	mu    sync.Mutex
	nodes map[string]*nodeEntry
}

type nodeEntry struct {
	snap    *nodeSnapshot // nil until the first set
	watches map[*nodeWatch]struct{}
}

// nodeWatch is one open request of one stream; like edsWatch it keeps no
// resource names (the subscription has them).
type nodeWatch struct {
	typeURL string
	sub     cachev3.Subscription
	// version is the SotW request's version_info: a set of another version
	// answers the watch.
	version string
	req     *discoveryv3.DiscoveryRequest
	sotw    chan cachev3.Response
	dreq    *discoveryv3.DeltaDiscoveryRequest
	delta   chan cachev3.DeltaResponse
}

var _ cachev3.Cache = (*nodeCache)(nil)

func newNodeCache() *nodeCache { return &nodeCache{nodes: make(map[string]*nodeEntry)} }

func (c *nodeCache) entry(nodeID string) *nodeEntry {
	e := c.nodes[nodeID]
	if e == nil {
		e = &nodeEntry{watches: make(map[*nodeWatch]struct{})}
		c.nodes[nodeID] = e
	}
	return e
}

// set replaces a node's snapshot and answers its watches that now lack
// something.
func (c *nodeCache) set(nodeID string, snap *nodeSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(nodeID)
	e.snap = snap
	for w := range e.watches {
		if c.respond(w, snap, false) {
			delete(e.watches, w)
		}
	}
}

// clear forgets a node; its open watches are never answered (its streams
// are being ended).
func (c *nodeCache) clear(nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, nodeID)
}

func (c *nodeCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	if !isSnapshotType(req.GetTypeUrl()) {
		return nil, fmt.Errorf("node cache asked for %s", req.GetTypeUrl())
	}
	w := &nodeWatch{typeURL: req.GetTypeUrl(), sub: sub, version: req.GetVersionInfo(), sotw: out, req: withoutNames(req)}
	return c.open(req.GetNode().GetId(), w), nil
}

func (c *nodeCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if !isSnapshotType(req.GetTypeUrl()) {
		return nil, fmt.Errorf("node cache asked for %s", req.GetTypeUrl())
	}
	w := &nodeWatch{typeURL: req.GetTypeUrl(), sub: sub, delta: out, dreq: withoutDeltaNames(req)}
	return c.open(req.GetNode().GetId(), w), nil
}

func (c *nodeCache) open(nodeID string, w *nodeWatch) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(nodeID)
	if e.snap != nil && c.respond(w, e.snap, true) {
		return func() {}
	}
	e.watches[w] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(e.watches, w)
		c.mu.Unlock()
	}
}

func (c *nodeCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("the node cache serves no REST fetches")
}

// respond answers w from snap if its client lacks something and reports
// whether it did. opening says w is new: a SotW request already at the
// snapshot's version is then still answered when it subscribes to a
// resource it was never sent. The caller holds c.mu.
func (c *nodeCache) respond(w *nodeWatch, snap *nodeSnapshot, opening bool) bool {
	set := snap.sets[w.typeURL]
	if set == nil {
		return false
	}
	if w.delta != nil {
		return c.respondDelta(w, set, opening)
	}
	if set.version == w.version && (!opening || !c.lacksAny(w.sub, set)) {
		return false
	}
	// SotW answers carry every subscribed resource at the set's version:
	// LDS and CDS must (full state), and RDS/SDS lose nothing by it.
	// A wildcard answer shares the set's sorted slice (responses only
	// read it).
	out := set.sorted
	if !w.sub.IsWildcard() {
		out = nil
		for name := range subscriptionOf(w.sub).subscribed() {
			if e := set.encoded[name]; e != nil {
				out = append(out, e)
			}
		}
		slices.SortFunc(out, func(a, b *encoded) int { return strings.Compare(a.name, b.name) })
	}
	var returned map[string]string
	if w.sub.IsWildcard() {
		// A wildcard stream was sent the whole set: one entry says so,
		// where a name per resource cost every proxy a 2,000-entry map
		// per type at 2,000 services (the server keeps it per stream).
		// Should the stream later name resources, the server prunes the
		// entry and the names are sent again.
		returned = map[string]string{wholeSet: set.version}
	} else {
		returned = make(map[string]string, len(out))
		for _, e := range out {
			returned[e.name] = set.version
		}
	}
	w.sotw <- &sotwResponse{req: w.req, version: set.version, resources: out, returned: returned}
	return true
}

// wholeSet is the returned-map key recording that a SotW wildcard stream
// was sent a whole set, at the version it maps to. No resource has an
// empty name (buildSnapshot refuses them).
const wholeSet = ""

// lacksAny reports whether sub covers a resource of set its client was
// never sent.
func (c *nodeCache) lacksAny(s cachev3.Subscription, set *typeSet) bool {
	sub := subscriptionOf(s)
	known := sub.ReturnedResources()
	if sub.IsWildcard() {
		if v, ok := known[wholeSet]; ok {
			return v != set.version
		}
		for name := range set.encoded {
			if _, ok := known[name]; !ok {
				return true
			}
		}
		return false
	}
	for name := range sub.subscribed() {
		if _, ok := known[name]; !ok && set.encoded[name] != nil {
			return true
		}
	}
	return false
}

// respondDelta sends what changed against what the client holds, as
// go-control-plane's SnapshotCache does: resources whose content hash
// differs, and removals of held resources that are gone. opening says the
// stream's own goroutine is opening w, so the subscription may be changed
// here.
func (c *nodeCache) respondDelta(w *nodeWatch, set *typeSet, opening bool) bool {
	d, ours := w.sub.(*deltaSub)
	if ours && d.held != nil {
		if d.wildcard {
			return c.respondHeld(w, d, set)
		}
		return c.respondNamedHeld(w, d, set)
	}
	known := w.sub.ReturnedResources()
	var changed []*encoded
	var removed []string
	var next map[string]string
	heldSubscribed := 0 // subscribed names the client holds
	if w.sub.IsWildcard() {
		if !ours {
			next = make(map[string]string, len(set.encoded))
		}
		for name, e := range set.encoded {
			if next != nil {
				next[name] = e.hash
			}
			if v, ok := known[name]; !ok || v != e.hash {
				changed = append(changed, e)
			}
		}
		for name := range known {
			if _, ok := set.encoded[name]; !ok {
				removed = append(removed, name)
			}
		}
	} else {
		if !ours {
			next = make(map[string]string, subscriptionOf(w.sub).subscribedCount())
		}
		for name := range subscriptionOf(w.sub).subscribed() {
			v, held := known[name]
			if held {
				heldSubscribed++
			}
			if e := set.encoded[name]; e != nil {
				if !held || v != e.hash {
					changed = append(changed, e)
				}
				if next != nil {
					next[name] = e.hash
				}
			} else if held {
				removed = append(removed, name)
			}
		}
	}
	first := w.sub.IsWildcard() && w.dreq.GetResponseNonce() == ""
	if len(changed) == 0 && len(removed) == 0 && !first {
		if ours && opening && !d.wildcard && heldSubscribed == len(known) {
			// A reconnecting client listed the current version of every
			// name it subscribes to that exists, and nothing else: it
			// holds set, as if sent it, and keeps a pointer where its
			// initial_resource_versions would have stayed a map of its
			// own (2,000 routes at 2,000 services, per proxy, until the
			// next change). Holding more (resources a wildcard brought),
			// it keeps the map, which says so.
			d.held, d.returned, d.pending, d.heldWhole = set, nil, nil, false
		}
		return false
	}
	slices.SortFunc(changed, func(a, b *encoded) int { return strings.Compare(a.name, b.name) })
	slices.Sort(removed)
	resp := &deltaResponse{req: w.dreq, version: set.version, resources: changed, removed: removed, returned: next}
	if ours {
		// Once sent, the stream holds set: all of it (wildcard) or the
		// version of each name it subscribes to (see respondHeld).
		resp.set = set
	}
	w.delta <- resp
	return true
}

// canonical is endpointCache.canonical for one node's resources of a type.
func (c *nodeCache) canonical(nodeID, typeURL string, names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.nodes[nodeID]
	if e == nil || e.snap == nil || e.snap.sets[typeURL] == nil {
		return
	}
	set := e.snap.sets[typeURL]
	for i, n := range names {
		if r := set.encoded[n]; r != nil {
			names[i] = r.name
		}
	}
}

// respondHeld is respondDelta for a wildcard stream of Weft's delta loop
// that holds a whole set (d.held): what changed is the difference of two
// immutable sets (computed once per pair, see diffFrom), and what the
// stream holds next is set itself, so no per-stream version map is built.
// A set the client refused is not sent again (see deltaSub.answered).
func (c *nodeCache) respondHeld(w *nodeWatch, d *deltaSub, set *typeSet) bool {
	if set == d.held || set == d.refused {
		// Equal sets are shared (typeSets), so pointer equality is the
		// common case; a first request still needs its empty answer.
		if w.dreq.GetResponseNonce() != "" || set == d.refused {
			return false
		}
	}
	var changed []*encoded
	var removed []string
	if set != d.held {
		diff := set.diffFrom(d.held)
		changed, removed = diff.changed, diff.removed
	}
	first := w.dreq.GetResponseNonce() == ""
	if len(changed) == 0 && len(removed) == 0 && !first {
		return false
	}
	w.delta <- &deltaResponse{req: w.dreq, version: set.version, resources: changed, removed: removed, set: set}
	return true
}

// respondNamedHeld is respondHeld for a named subscription (RDS): the
// client holds held's version of each subscribed name, but those
// subscribed since it was sent (pending). What it lacks is therefore the
// subscribed part of the diff from held to set (shared by the streams of a
// view, see diffFrom) plus what set has of the pending names: a profile
// edit costs each stream a look at the one route that changed, not at the
// 2,000 it subscribes to.
func (c *nodeCache) respondNamedHeld(w *nodeWatch, d *deltaSub, set *typeSet) bool {
	var changed []*encoded
	var removed []string
	wants := func(name string) bool {
		_, pending := d.pending[name]
		return !pending && d.names.has(name)
	}
	diff := &setDiff{}
	if set != d.held {
		diff = set.diffFrom(d.held)
	}
	if len(diff.changed)+len(diff.removed)+len(d.pending) > d.names.len() {
		// A subscription smaller than the diff: walking it is cheaper.
		for name := range d.names.all() {
			e, h := set.encoded[name], d.holds(name)
			switch {
			case e != nil && (h == nil || h.hash != e.hash):
				changed = append(changed, e)
			case e == nil && h != nil:
				removed = append(removed, name)
			}
		}
	} else {
		for _, e := range diff.changed {
			if wants(e.name) {
				changed = append(changed, e)
			}
		}
		for _, name := range diff.removed {
			if wants(name) {
				removed = append(removed, name)
			}
		}
		for name := range d.pending {
			if d.names.has(name) && set.encoded[name] != nil {
				changed = append(changed, set.encoded[name])
			}
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		return false
	}
	slices.SortFunc(changed, func(a, b *encoded) int { return strings.Compare(a.name, b.name) })
	slices.Sort(removed)
	w.delta <- &deltaResponse{req: w.dreq, version: set.version, resources: changed, removed: removed, set: set}
	return true
}
