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
}

// edsWatch is one open request of one stream, waiting for a change. It
// keeps a copy of the request without its resource names (the
// subscription has them), so an open watch does not pin a 500-name list.
type edsWatch struct {
	sub   cachev3.Subscription
	req   *discoveryv3.DiscoveryRequest
	sotw  chan cachev3.Response
	dreq  *discoveryv3.DeltaDiscoveryRequest
	delta chan cachev3.DeltaResponse
}

var _ cachev3.Cache = (*endpointCache)(nil)

func newEndpointCache() *endpointCache {
	return &endpointCache{resources: make(map[string]*encoded), watches: make(map[*edsWatch]struct{})}
}

// update sets and removes resources and answers the open watches that now
// lack something.
func (c *endpointCache) update(set []*encoded, remove []string) {
	modified := make([]string, 0, len(set)+len(remove))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range set {
		c.resources[e.name] = e
		modified = append(modified, e.name)
	}
	for _, name := range remove {
		delete(c.resources, name)
		modified = append(modified, name)
	}
	for w := range c.watches {
		if c.respond(w, modified, false) {
			delete(c.watches, w)
		}
	}
}

func (c *endpointCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	if req.GetTypeUrl() != resourcev3.EndpointType {
		return nil, fmt.Errorf("endpoint cache asked for %s", req.GetTypeUrl())
	}
	w := &edsWatch{sub: sub, sotw: out, req: &discoveryv3.DiscoveryRequest{
		VersionInfo:   req.GetVersionInfo(),
		Node:          req.GetNode(),
		TypeUrl:       req.GetTypeUrl(),
		ResponseNonce: req.GetResponseNonce(),
	}}
	// A first request (no version) is always answered, even with nothing:
	// the client is waiting to initialize.
	return c.open(w, req.GetVersionInfo() == ""), nil
}

func (c *endpointCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if req.GetTypeUrl() != resourcev3.EndpointType {
		return nil, fmt.Errorf("endpoint cache asked for %s", req.GetTypeUrl())
	}
	w := &edsWatch{sub: sub, delta: out, dreq: &discoveryv3.DeltaDiscoveryRequest{
		Node:          req.GetNode(),
		TypeUrl:       req.GetTypeUrl(),
		ResponseNonce: req.GetResponseNonce(),
	}}
	// A wildcard subscription's first request expects an answer, empty or
	// not, to finish initializing.
	return c.open(w, sub.IsWildcard() && req.GetResponseNonce() == ""), nil
}

func (c *endpointCache) open(w *edsWatch, replyEvenIfEmpty bool) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.respond(w, nil, replyEvenIfEmpty) {
		return func() {}
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
// subscribes to) and reports whether it did. The caller holds c.mu. The
// watch's channel has room: the server keeps one watch per type and
// stream, and a watch is answered at most once.
func (c *endpointCache) respond(w *edsWatch, names []string, replyEvenIfEmpty bool) bool {
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

	// The returned map is updated in place rather than cloned (cloning 500
	// entries per proxy per change was a tenth of the CPU of a change). This
	// is safe although go-control-plane's caches do not do it: while a
	// watch is open its stream goroutine leaves the subscription alone (on a
	// new request it first cancels the watch, which takes c.mu, and only
	// then edits the subscription), and an answered watch is never touched
	// again.
	returned := w.sub.ReturnedResources()
	if returned == nil {
		returned = make(map[string]string, len(changed))
	}
	slices.SortFunc(changed, func(a, b *encoded) int { return strings.Compare(a.name, b.name) })
	named := make([]namedResource, 0, len(changed))
	for _, e := range changed {
		returned[e.name] = e.hash
		named = append(named, namedResource{name: e.name, hash: e.hash})
	}
	for _, name := range removed {
		delete(returned, name)
	}
	slices.Sort(removed)
	for _, name := range removed {
		named = append(named, namedResource{name: name})
	}
	version := typeVersion(named)

	if w.delta == nil {
		w.sotw <- &sotwResponse{req: w.req, version: version, resources: changed, returned: returned}
	} else {
		w.delta <- &deltaResponse{req: w.dreq, version: version, resources: changed, removed: removed, returned: returned}
	}
	return true
}

// lacking lists what sub's client does not hold at the current version
// among names (nil: everything sub covers), and what it holds that is gone.
func (c *endpointCache) lacking(sub cachev3.Subscription, names []string) (changed []*encoded, removed []string) {
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
		subscribed := sub.SubscribedResources()
		for _, name := range names {
			if _, ok := subscribed[name]; ok || sub.IsWildcard() {
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
		for name := range sub.SubscribedResources() {
			check(name)
		}
	}
	return changed, removed
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
