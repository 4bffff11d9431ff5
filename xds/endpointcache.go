package xds

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// endpointCache holds the ClusterLoadAssignments every node shares and
// answers EDS watches, SotW and delta, behind go-control-plane's server
// (it is a cachev3.Cache). It replaces go-control-plane's LinearCache, whose
// work grows with what each proxy subscribes to: every change re-walked the
// whole subscription of every watch on the changed name, and every ACK
// re-indexed the watch under each of its names. Here a change looks at each
// open watch only for the names that changed, and an ACK walks the
// subscription once, with no index to maintain.
//
// Versions are content hashes: a resource's version (delta's, and the one
// recorded as returned in SotW) is the SHA-256 of its bytes, and a
// response's version is a hash of the (name, version) pairs it carries, so
// a restarted control plane offers the same versions for the same
// endpoints. A CLA is marshalled once per content, and every response
// carrying it shares the bytes.
type endpointCache struct {
	mu        sync.Mutex
	resources map[string]*encoded
	watches   map[*edsWatch]struct{}

	// gen counts updates; changes holds the names the last few updates
	// touched, oldest first. With current, they let an ACK check only what
	// changed since its stream was last known up to date, instead of every
	// name it subscribes to (with 2,000 CLAs per proxy that walk was 30% of
	// a change's CPU).
	gen     uint64
	changes []generation
	// current is, per stream, the generation at which everything the
	// stream subscribes to was last known sent at its current version. A
	// stream is keyed by its Node message, which the server reuses for
	// every request of a stream (Server.request makes sure of it), weakly,
	// so a closed stream's entry goes with its Node.
	current map[weak.Pointer[corev3.Node]]uint64
	// changedAt is, per name, the generation that last changed or removed
	// its resource: a delta stream synced at a generation (deltaSub.synced)
	// holds the current version of every name it subscribes to that has
	// not changed since, and needs no version map of its own. A removed
	// name stays while its removal is in the change log, so that a stream
	// synced before it is told; then it is forgotten (else every name ever
	// removed would stay), and forgotBefore records up to which generation
	// removals may have been forgotten.
	changedAt    map[string]uint64
	forgotBefore uint64

	// names maps each held CLA's name to the cache's copy of the string,
	// for xdsCodec to decode requests' names into without allocating. It
	// is replaced, never edited, when a name comes or goes, and read
	// without the lock.
	names atomic.Pointer[map[string]string]
}

// generation is one update: its number and the names it set or removed.
type generation struct {
	gen   uint64
	names []string
}

// changesKept bounds the update log. A stream whose last known generation
// is older than the log is checked in full, which is always correct.
const changesKept = 64

// edsWatch is one open request of one stream, waiting for a change. It
// keeps a copy of the request without its resource names (the
// subscription has them), so an open watch does not pin a 500-name list.
type edsWatch struct {
	sub cachev3.Subscription
	// stream identifies the watch's stream in endpointCache.current; zero
	// when the request carries no node.
	stream weak.Pointer[corev3.Node]
	req    *discoveryv3.DiscoveryRequest
	sotw   chan cachev3.Response
	dreq   *discoveryv3.DeltaDiscoveryRequest
	delta  chan cachev3.DeltaResponse
}

var _ cachev3.Cache = (*endpointCache)(nil)

func newEndpointCache() *endpointCache {
	return &endpointCache{
		resources: make(map[string]*encoded),
		watches:   make(map[*edsWatch]struct{}),
		current:   make(map[weak.Pointer[corev3.Node]]uint64),
		changedAt: make(map[string]uint64),
	}
}

func streamOf(node *corev3.Node) weak.Pointer[corev3.Node] {
	if node == nil {
		return weak.Pointer[corev3.Node]{}
	}
	return weak.Make(node)
}

// markCurrent records that stream holds everything it subscribes to as of
// generation gen. The caller holds c.mu.
func (c *endpointCache) markCurrent(stream weak.Pointer[corev3.Node], gen uint64) {
	if stream == (weak.Pointer[corev3.Node]{}) {
		return
	}
	last, ok := c.current[stream]
	if !ok {
		node := stream.Value()
		if node == nil {
			return
		}
		runtime.AddCleanup(node, func(k weak.Pointer[corev3.Node]) {
			c.mu.Lock()
			delete(c.current, k)
			c.mu.Unlock()
		}, stream)
	}
	c.current[stream] = max(last, gen)
}

// trackable reports whether a stream checked in full may be marked up to
// date: not a delta stream holding names it does not subscribe to (a
// client's initial_resource_versions may list any), which the size test
// of changedSince would miscount.
func trackable(w *edsWatch) bool {
	if w.delta == nil {
		return true
	}
	sub := subscriptionOf(w.sub)
	for name := range sub.ReturnedResources() {
		if !sub.subscribes(name) {
			return false
		}
	}
	return true
}

// changedSince returns the names of w's subscription that may have changed
// since its stream was last up to date, and false when that is unknown and
// the whole subscription must be checked. The caller holds c.mu.
func (c *endpointCache) changedSince(w *edsWatch) ([]string, bool) {
	last, ok := c.current[w.stream]
	if !ok || w.sub.IsWildcard() {
		return nil, false
	}
	// The returned map holds only subscribed names (SotW: the server
	// prunes it on every request; delta: it holds none other when the
	// stream is marked, see trackable, and unsubscribing deletes from
	// both), so equal sizes mean the stream was sent every name it now
	// subscribes to; a new name makes them differ.
	if len(w.sub.ReturnedResources()) != subscriptionOf(w.sub).subscribedCount() {
		return nil, false
	}
	if last == c.gen {
		return []string{}, true
	}
	if len(c.changes) == 0 || c.changes[0].gen > last+1 {
		return nil, false
	}
	names := []string{}
	for _, g := range c.changes {
		if g.gen > last {
			names = append(names, g.names...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), true
}

// update sets and removes resources and answers the open watches that now
// lack something.
func (c *endpointCache) update(set []*encoded, remove []string) {
	modified := make([]string, 0, len(set)+len(remove))
	c.mu.Lock()
	defer c.mu.Unlock()
	namesChanged := false
	gen := c.gen + 1
	for _, e := range set {
		prev, held := c.resources[e.name]
		if !held {
			namesChanged = true
		}
		if !held || prev.hash != e.hash {
			c.changedAt[e.name] = gen
		}
		c.resources[e.name] = e
		modified = append(modified, e.name)
	}
	for _, name := range remove {
		if _, held := c.resources[name]; held {
			namesChanged = true
			c.changedAt[name] = gen
		}
		delete(c.resources, name)
		modified = append(modified, name)
	}
	if namesChanged {
		names := make(map[string]string, len(c.resources))
		for name, e := range c.resources {
			names[name] = e.name
		}
		c.names.Store(&names)
	}
	c.gen++
	if len(c.changes) == changesKept {
		c.forgetRemovals(c.changes[0])
		c.changes = slices.Delete(c.changes, 0, 1)
	}
	c.changes = append(c.changes, generation{gen: c.gen, names: modified})
	for w := range c.watches {
		if d, ok := w.sub.(*deltaSub); ok && d.synced {
			if c.respondSynced(w, d, false) {
				delete(c.watches, w)
			}
			continue
		}
		// Up to date before this update means up to date after it once
		// its changed names are answered.
		last, known := c.current[w.stream]
		wasCurrent := known && last == c.gen-1
		if c.respond(w, modified, false, wasCurrent) {
			delete(c.watches, w)
		} else if wasCurrent {
			c.markCurrent(w.stream, c.gen)
		}
	}
}

func (c *endpointCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	if req.GetTypeUrl() != resourcev3.EndpointType {
		return nil, fmt.Errorf("endpoint cache asked for %s", req.GetTypeUrl())
	}
	w := &edsWatch{sub: sub, stream: streamOf(req.GetNode()), sotw: out, req: withoutNames(req)}
	// A first request (no version) is always answered, even with nothing:
	// the client is waiting to initialize.
	return c.open(w, req.GetVersionInfo() == ""), nil
}

func (c *endpointCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if req.GetTypeUrl() != resourcev3.EndpointType {
		return nil, fmt.Errorf("endpoint cache asked for %s", req.GetTypeUrl())
	}
	w := &edsWatch{sub: sub, stream: streamOf(req.GetNode()), delta: out, dreq: withoutDeltaNames(req)}
	// A wildcard subscription's first request expects an answer, empty or
	// not, to finish initializing.
	replyEvenIfEmpty := sub.IsWildcard() && req.GetResponseNonce() == ""
	if d, ok := sub.(*deltaSub); ok && !d.wildcard {
		return c.openSynced(w, d, replyEvenIfEmpty), nil
	}
	return c.open(w, replyEvenIfEmpty), nil
}

// openSynced is open for a named subscription of Weft's delta loop, which
// keeps no version map once synced (deltaSub.synced): what it holds is
// the version of each subscribed name as of its generation.
func (c *endpointCache) openSynced(w *edsWatch, d *deltaSub, replyEvenIfEmpty bool) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !d.synced {
		// A first request, maybe listing what the client holds
		// (initial_resource_versions): checked against the map once, and
		// answered as a synced response.
		changed, removed := c.lacking(d, nil)
		if len(changed) > 0 || len(removed) > 0 || replyEvenIfEmpty {
			c.sendSynced(w, changed, removed)
			return func() {}
		}
		d.synced, d.syncedGen, d.returned, d.pending = true, c.gen, nil, nil
	} else if c.respondSynced(w, d, replyEvenIfEmpty) {
		return func() {}
	}
	c.watches[w] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.watches, w)
		c.mu.Unlock()
	}
}

// respondSynced answers a synced subscription with what changed since its
// generation among the names it subscribes to, and the names subscribed
// since; if nothing did, the subscription is synced at the current
// generation and false returned. The caller holds c.mu.
func (c *endpointCache) respondSynced(w *edsWatch, d *deltaSub, replyEvenIfEmpty bool) bool {
	var changed []*encoded
	var removed []string
	check := func(name string) {
		e := c.resources[name]
		_, pending := d.pending[name]
		switch {
		case pending:
			if e != nil {
				changed = append(changed, e)
			}
		case e == nil && d.syncedGen < c.forgotBefore:
			// Absent, and the removal may be forgotten: told again, as
			// below.
			removed = append(removed, name)
		case c.changedAt[name] <= d.syncedGen:
			// Held at the current version, or absent then and now.
		case e != nil:
			changed = append(changed, e)
		default:
			// Removed since: maybe it came and went unseen, and the
			// client is told of a removal of what it lacks, which it
			// ignores.
			removed = append(removed, name)
		}
	}
	for name := range d.pending {
		check(name)
	}
	if names, ok := c.namesSince(d.syncedGen); ok {
		for _, name := range names {
			if d.names.has(name) {
				if _, p := d.pending[name]; !p {
					check(name)
				}
			}
		}
	} else {
		for name := range d.names.all() {
			if _, p := d.pending[name]; !p {
				check(name)
			}
		}
	}
	if len(changed) == 0 && len(removed) == 0 && !replyEvenIfEmpty {
		d.syncedGen, d.pending = c.gen, nil
		return false
	}
	c.sendSynced(w, changed, removed)
	return true
}

// sendSynced answers w; once sent, its subscription is synced at the
// current generation. The caller holds c.mu.
func (c *endpointCache) sendSynced(w *edsWatch, changed []*encoded, removed []string) {
	w.delta <- &deltaResponse{req: w.dreq, version: changeVersion(changed, removed), resources: changed, removed: removed, synced: true, gen: c.gen}
}

// changeVersion sorts changed and removed by name and returns the version
// of a response carrying them: a hash of the changed names and hashes, then
// the removed names.
func changeVersion(changed []*encoded, removed []string) string {
	slices.SortFunc(changed, func(a, b *encoded) int { return strings.Compare(a.name, b.name) })
	slices.Sort(removed)
	named := make([]namedResource, 0, len(changed)+len(removed))
	for _, e := range changed {
		named = append(named, namedResource{name: e.name, hash: e.hash})
	}
	for _, name := range removed {
		named = append(named, namedResource{name: name})
	}
	return typeVersion(named)
}

// forgetRemovals drops the changedAt entries of the names g removed that
// are still absent, as g leaves the change log. The caller holds c.mu.
func (c *endpointCache) forgetRemovals(g generation) {
	for _, name := range g.names {
		if _, held := c.resources[name]; !held && c.changedAt[name] == g.gen {
			delete(c.changedAt, name)
		}
	}
	c.forgotBefore = g.gen
}

// namesSince returns the names changed after generation gen, or false
// when the log no longer reaches back that far. The caller holds c.mu.
func (c *endpointCache) namesSince(gen uint64) ([]string, bool) {
	if gen == c.gen {
		return nil, true
	}
	if len(c.changes) == 0 || c.changes[0].gen > gen+1 {
		return nil, false
	}
	var names []string
	for _, g := range c.changes {
		if g.gen > gen {
			names = append(names, g.names...)
		}
	}
	return names, true
}

func (c *endpointCache) open(w *edsWatch, replyEvenIfEmpty bool) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Only what changed since the stream was last up to date can be
	// lacking (an ACK of the latest response: nothing); otherwise, check
	// everything it subscribes to.
	names, known := c.changedSince(w)
	if !known {
		names = nil
	}
	current := known || trackable(w)
	if c.respond(w, names, replyEvenIfEmpty, current) {
		return func() {}
	}
	if current {
		c.markCurrent(w.stream, c.gen)
	}
	c.watches[w] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.watches, w)
		c.mu.Unlock()
	}
}

func (c *endpointCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("the endpoint cache serves no REST fetches")
}

// respond sends w what its client lacks among names (nil: among all it
// subscribes to) and reports whether it did; current says that the
// stream, once it has this response, holds everything it subscribes to.
// The caller holds c.mu. The watch's channel has room: the server keeps
// one watch per type and stream, and a watch is answered at most once.
func (c *endpointCache) respond(w *edsWatch, names []string, replyEvenIfEmpty, current bool) bool {
	changed, removed := c.lacking(w.sub, names)
	if w.delta == nil {
		// SotW cannot say "removed" for EDS: the client keeps what it has
		// until it unsubscribes, so removals alone are not worth a response.
		if len(changed) == 0 && !replyEvenIfEmpty {
			return false
		}
	} else if len(changed) == 0 && len(removed) == 0 && !replyEvenIfEmpty {
		return false
	}

	version := changeVersion(changed, removed)

	// The returned map is updated in place rather than cloned (cloning 500
	// entries per proxy per change was a tenth of the CPU of a change), and
	// only when the server sends the response, on the stream's goroutine:
	// the SotW server drops a queued response of a type when a request of
	// that type arrives first, and what was dropped must not count as
	// sent. Between a watch's answer and the send the server leaves the
	// subscription alone (a new request would first drop or, in delta,
	// send what is queued), and the cache does not read it either: the
	// answered watch is gone.
	returned := w.sub.ReturnedResources()
	if returned == nil {
		returned = make(map[string]string, len(changed))
	}
	gen := c.gen
	sent := func() {
		for _, e := range changed {
			returned[e.name] = e.hash
		}
		for _, name := range removed {
			delete(returned, name)
		}
		if current {
			c.mu.Lock()
			c.markCurrent(w.stream, gen)
			c.mu.Unlock()
		}
	}
	if w.delta == nil {
		w.sotw <- &sotwResponse{req: w.req, version: version, resources: changed, returned: returned, sent: sent}
	} else {
		w.delta <- &deltaResponse{req: w.dreq, version: version, resources: changed, removed: removed, returned: returned, sent: sent}
	}
	return true
}

// lacking lists what sub's client does not hold at the current version
// among names (nil: everything sub covers), and what it holds that is gone.
func (c *endpointCache) lacking(s cachev3.Subscription, names []string) (changed []*encoded, removed []string) {
	sub := subscriptionOf(s)
	known := sub.ReturnedResources()
	check := func(name string) {
		e, exists := c.resources[name]
		version, held := known[name]
		switch {
		case !exists && held:
			removed = append(removed, name)
		case exists && (!held || version != e.hash):
			changed = append(changed, e)
		}
	}
	switch {
	case names != nil:
		for _, name := range names {
			if sub.IsWildcard() || sub.subscribes(name) {
				check(name)
			}
		}
	case sub.IsWildcard():
		for name := range c.resources {
			check(name)
		}
		for name := range known {
			if _, ok := c.resources[name]; !ok {
				removed = append(removed, name)
			}
		}
	default:
		// Names held but no longer subscribed are dropped from the returned
		// map by the server itself when the subscription changes.
		for name := range sub.subscribed() {
			check(name)
		}
	}
	return changed, removed
}

// intern returns the cache's copy of the name b spells, if it holds such a
// resource.
func (c *endpointCache) intern(b []byte) (string, bool) {
	names := c.names.Load()
	if names == nil {
		return "", false
	}
	s, ok := (*names)[string(b)]
	return s, ok
}

// canonical replaces each name of a held resource with the cache's copy of
// the string (see Server.canonicalNames).
func (c *endpointCache) canonical(names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range names {
		if e := c.resources[n]; e != nil {
			names[i] = e.name
		}
	}
}
