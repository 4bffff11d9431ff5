package controller

import (
	"time"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
)

// The dependency index: which proxies must be recomputed when a model value
// changes. Recomputing a proxy whose output did not change is harmless (the
// xds server versions resources by content, so nothing is pushed) but costs
// CPU, so the rules aim to be tight without ever missing a proxy.
//
// The rules are not written here. translate declares which model inputs
// each of its cached products reads, features included, and whose output
// each product is part of (Translator.Reads, translate.Scope). The
// index only knows which inputs a change alters:
//
//	change                         alters                   of service / proxy
//	Service S (add/update/delete)  Service                  S
//	                               BackendServices          every apex whose split or
//	                                                        dstOverrides names S
//	TrafficSplit on apex S         Split                    S
//	Endpoints of S                 Endpoints                S
//	                               HeadlessEndpoints        S, if headless before or after
//	                               EndpointIdentities       S, if its peers (meshed or not,
//	                                                        identities) differ by value
//	ServiceProfile (A, S)          Profile                  S, as read by the clients in
//	                                                        the namespaces that read slot
//	                                                        (A, S) (mesh.Model.ProfileReadBy)
//	Proxy P (pod add/update)       Proxy                    P
//	Tap on P started or ended      Tap                      P
//	Proxy P gone (pod deleted,     ClearNode(P)
//	  finished or unmeshed)
//	Namespace / Pod identity       nothing directly: the store re-derives the
//	                               services, proxies and endpoints that read
//	                               them, and those changes follow the rows above
//
// and what each scope means:
//
//	ScopeViews   every connected proxy (for Profile, those in the namespaces
//	             reading the slot): per-service output is in every view
//	ScopeEDS     the service's load assignments (shared EDS cache)
//	ScopeProxy   the proxy; for a service's input, the pods backing it
//
// With the current declaration: a Service change recomputes everyone and
// its EDS; a split everyone; endpoints only their EDS unless the service
// is headless (its chains list endpoint addresses) or who backs it changed
// (its clusters' mTLS checks the backing identities); a profile in S's own
// namespace every namespace without a profile of its own, one in another
// namespace that namespace only; a proxy change that proxy only. Only
// connected proxies are recomputed; a proxy that connects later gets its
// config computed on connection.

// plan is the work of one flush.
type plan struct {
	// nodes are connected proxies to recompute, each with the time the
	// earliest change it answers was seen.
	nodes map[string]time.Time
	// clear are proxies that no longer exist.
	clear []string
	// eds are services whose load assignments must be recomputed (or
	// deleted, when the service is gone).
	eds map[mesh.ServiceKey]time.Time
}

// index holds, per input, the scopes of the products reading it.
type index struct {
	scope [translate.NumInputs]translate.Scope
}

func newIndex(r translate.Reads) index {
	var ix index
	for in := range translate.NumInputs {
		ix.scope[in] = r.Scope(in)
	}
	return ix
}

// defaultIndex follows what a translator with every feature on reads: the
// index of a pipeline whose translator does not say what it reads.
var defaultIndex = newIndex(translate.DeclaredReads())

// planFor applies the index to one batch of changes. connected lists the
// node ids with an xDS stream (or about to have one).
func planFor(prev, cur *Snapshot, ch *Changes, connected []string) plan {
	return defaultIndex.plan(prev, cur, ch, connected)
}

func (ix index) plan(prev, cur *Snapshot, ch *Changes, connected []string) plan {
	p := plan{nodes: map[string]time.Time{}, eds: map[mesh.ServiceKey]time.Time{}}
	models := []*mesh.Model{prev.Model, cur.Model}

	var all time.Time // earliest change that affects every proxy
	everyone := func(t time.Time) {
		if all.IsZero() || t.Before(all) {
			all = t
		}
	}
	nsTime := map[string]time.Time{}
	nodeTime := map[string]time.Time{}

	// serviceInput recomputes what reads input in of service key; views
	// marks the clients whose views read it.
	serviceInput := func(in translate.Input, key mesh.ServiceKey, t time.Time, views func(time.Time)) {
		s := ix.scope[in]
		if s&translate.ScopeViews != 0 {
			views(t)
		}
		if s&translate.ScopeEDS != 0 {
			note(p.eds, key, t)
		}
		if s&translate.ScopeProxy != 0 {
			for _, m := range models {
				forBackingPods(m, key, func(id string) { note(nodeTime, id, t) })
			}
		}
	}

	var apexes map[mesh.ServiceKey][]mesh.ServiceKey // by backend, built when needed
	for key, t := range ch.Services {
		serviceInput(translate.InputService, key, t, everyone)
		if ix.scope[translate.InputBackendServices] == 0 {
			continue
		}
		if apexes == nil {
			apexes = apexesByBackend(models)
		}
		for _, apex := range apexes[key] {
			serviceInput(translate.InputBackendServices, apex, t, everyone)
		}
	}
	for key, t := range ch.Splits {
		serviceInput(translate.InputSplit, key, t, everyone)
	}
	for key, t := range ch.Endpoints {
		serviceInput(translate.InputEndpoints, key, t, everyone)
		if headless(prev.Model, key) || headless(cur.Model, key) {
			serviceInput(translate.InputHeadlessEndpoints, key, t, everyone)
		}
		if !peers(prev.Model, key).Equal(peers(cur.Model, key)) {
			serviceInput(translate.InputEndpointIdentities, key, t, everyone)
		}
	}

	// Namespaces that exist as far as proxies are concerned: a namespace
	// without connected proxies needs no marking.
	namespaces := map[string]struct{}{}
	for _, id := range connected {
		if px := cur.Proxies[id]; px != nil {
			namespaces[px.Namespace] = struct{}{}
		}
	}
	for key, t := range ch.Profiles {
		readers := func(t time.Time) {
			for ns := range namespaces {
				if prev.Model.ProfileReadBy(ns, key) || cur.Model.ProfileReadBy(ns, key) {
					note(nsTime, ns, t)
				}
			}
		}
		serviceInput(translate.InputProfile, key.Service, t, readers)
	}

	for id, t := range ch.Proxies {
		if cur.Proxies[id] == nil {
			if prev.Proxies[id] != nil {
				p.clear = append(p.clear, id)
			}
			continue
		}
		if ix.scope[translate.InputProxy]&translate.ScopeProxy != 0 {
			note(nodeTime, id, t)
		}
	}

	if ix.scope[translate.InputTap]&translate.ScopeProxy != 0 {
		for id, t := range ch.Taps {
			note(nodeTime, id, t)
		}
	}

	for _, id := range connected {
		px := cur.Proxies[id]
		if px == nil {
			continue
		}
		var t time.Time
		take := func(c time.Time, ok bool) {
			if ok && !c.IsZero() && (t.IsZero() || c.Before(t)) {
				t = c
			}
		}
		take(all, !all.IsZero())
		c, ok := nsTime[px.Namespace]
		take(c, ok)
		c, ok = nodeTime[id]
		take(c, ok)
		if !t.IsZero() {
			p.nodes[id] = t
		}
	}
	return p
}

// peers is what translate reads as InputEndpointIdentities.
func peers(m *mesh.Model, key mesh.ServiceKey) mesh.Peers {
	if eps := m.Endpoints[key]; eps != nil {
		return eps.Peers
	}
	return mesh.Peers{}
}

func headless(m *mesh.Model, key mesh.ServiceKey) bool {
	svc := m.Services[key]
	return svc != nil && svc.Headless
}

// apexesByBackend lists, per service, the services whose split or profile
// dstOverrides name it as a backend in any of models.
func apexesByBackend(models []*mesh.Model) map[mesh.ServiceKey][]mesh.ServiceKey {
	out := map[mesh.ServiceKey][]mesh.ServiceKey{}
	add := func(apex mesh.ServiceKey, backends []mesh.WeightedBackend) {
		for _, b := range backends {
			out[b.Service] = append(out[b.Service], apex)
		}
	}
	for _, m := range models {
		for apex, s := range m.Splits {
			if s != nil {
				add(apex, s.Backends)
			}
		}
		for k, pr := range m.Profiles {
			if pr != nil {
				add(k.Service, pr.DstOverrides)
			}
		}
	}
	return out
}

func forBackingPods(m *mesh.Model, key mesh.ServiceKey, f func(nodeID string)) {
	eps := m.Endpoints[key]
	if eps == nil {
		return
	}
	for _, list := range eps.ByPort {
		for _, ep := range list {
			if ep.Pod != "" {
				f(proxy.NodeID(ep.Pod, key.Namespace))
			}
		}
	}
}
