package controller

import (
	"time"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// The dependency index: which proxies must be recomputed when a model value
// changes. Recomputing a proxy whose output did not change is harmless (the
// xds server versions resources by content, so nothing is pushed) but costs
// CPU, so the rules below aim to be tight without ever missing a proxy:
//
//	change                         recompute                                   EDS
//	Service S (add/update/delete)  every proxy: any proxy can reach S, so      S's CLAs
//	                               every outbound config lists it (translate
//	                               rebuilds the shared per-namespace part once,
//	                               per-proxy output reuses it)
//	TrafficSplit on apex S         every proxy (every client's view of S)      -
//	ServiceProfile (A, S),         proxies in every namespace B without a      -
//	  A == S.Namespace (server's)  profile (B, S) of its own (those keep
//	                               theirs), plus the pods backing S (inbound)
//	ServiceProfile (A, S),         proxies in namespace A only                 -
//	  A != S.Namespace (client's)
//	Endpoints of S                 nobody, unless S is headless (its filter    S's CLAs
//	                               chains list endpoint IPs): then every proxy
//	Proxy P (pod add/update)       P only (its inbound side and identity)      -
//	Proxy P gone (pod deleted,     ClearNode(P)                                -
//	  finished or unmeshed)
//	Namespace / Pod identity       nothing directly: the store re-derives the
//	                               services, proxies and endpoints that read
//	                               them, and those changes follow the rows above
//
// Only connected proxies are recomputed; a proxy that connects later gets its
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

// planFor applies the index to one batch of changes. connected lists the
// node ids with an xDS stream (or about to have one).
func planFor(prev, cur *Snapshot, ch *Changes, connected []string) plan {
	p := plan{nodes: map[string]time.Time{}, eds: map[mesh.ServiceKey]time.Time{}}

	var all time.Time // earliest change that affects every proxy
	everyone := func(t time.Time) {
		if all.IsZero() || t.Before(all) {
			all = t
		}
	}
	nsTime := map[string]time.Time{}
	byNamespace := func(ns string, t time.Time) { note(nsTime, ns, t) }
	nodeTime := map[string]time.Time{}

	for key, t := range ch.Services {
		everyone(t)
		note(p.eds, key, t)
	}
	for _, t := range ch.Splits {
		everyone(t)
	}
	for key, t := range ch.Endpoints {
		note(p.eds, key, t)
		if headless(prev.Model, key) || headless(cur.Model, key) {
			everyone(t)
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
		if key.Namespace != key.Service.Namespace {
			byNamespace(key.Namespace, t)
			continue
		}
		for ns := range namespaces {
			if ns == key.Namespace {
				byNamespace(ns, t)
				continue
			}
			if _, own := cur.Model.Profiles[mesh.ProfileKey{Namespace: ns, Service: key.Service}]; !own {
				byNamespace(ns, t)
			}
		}
		// The server's own profile may shape its inbound side.
		for _, m := range []*mesh.Model{prev.Model, cur.Model} {
			forBackingPods(m, key.Service, func(id string) { note(nodeTime, id, t) })
		}
	}

	for id, t := range ch.Proxies {
		if cur.Proxies[id] == nil {
			if prev.Proxies[id] != nil {
				p.clear = append(p.clear, id)
			}
			continue
		}
		note(nodeTime, id, t)
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

func headless(m *mesh.Model, key mesh.ServiceKey) bool {
	svc := m.Services[key]
	return svc != nil && svc.Headless
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
