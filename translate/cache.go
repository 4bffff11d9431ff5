package translate

import (
	"fmt"
	"slices"
	"sync"

	"github.com/weftmesh/weft/mesh"
)

// The cache engine. Per-service products are keyed by their subject and
// the model values they read (serviceInputs): the model is immutable, so an
// unchanged pointer means an unchanged input. Views, listeners and
// assemblies are keyed by the model or by the entries they are built from.

// guard turns a panic into an error: one bad service must never take the
// control plane down.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return f()
}

// entryLocked returns cache[k], adding an empty entry if there is none.
// The entry computes its value once, outside the lock.
func entryLocked[K comparable, V any](cache map[K]*V, k K) *V {
	e := cache[k]
	if e == nil {
		e = new(V)
		cache[k] = e
	}
	return e
}

// --- compiled profiles ---

type profileEntry struct {
	once     sync.Once
	compiled *compiledProfile
	err      error
}

func (e *profileEntry) get(p *mesh.Profile) (*compiledProfile, error) {
	e.once.Do(func() {
		err := guard(func() error {
			var err error
			e.compiled, err = compileProfile(p)
			return err
		})
		if err != nil {
			e.compiled = nil
			e.err = mesh.ConfigError{Object: p.Source, Err: fmt.Errorf("profile skipped: %w", err)}
		}
	})
	return e.compiled, e.err
}

// --- per-service products ---

// serviceEntry is one per-service product built from deps.
type serviceEntry[V any] struct {
	deps serviceInputs
	once sync.Once
	val  V
	// prev is the entry this one replaced, kept while the previous model
	// may still ask for it.
	prev *serviceEntry[V]
}

// serviceCache holds the entries of one per-service product. A subject
// holds at most two entries: the current one and the one it replaced.
type serviceCache[V any] struct {
	// inputs are what the product reads: the declaration that keys it.
	inputs  Inputs
	entries map[serviceSubject]*serviceEntry[V]
}

func newServiceCache[V any](p Product, reads Reads) *serviceCache[V] {
	return &serviceCache[V]{inputs: reads[p], entries: map[serviceSubject]*serviceEntry[V]{}}
}

// lookupLocked returns the entry of subject k whose inputs read the same
// from m: the current one, or the one it replaced (which then becomes
// current again), or else a fresh one that replaces the current one.
func (c *serviceCache[V]) lookupLocked(m *mesh.Model, domain string, k serviceSubject) *serviceEntry[V] {
	return c.lookupRowLocked(m, readServiceRow(m, k), domain, k)
}

// lookupRowLocked is lookupLocked with the model's row for k's service
// already read (readServiceRow).
func (c *serviceCache[V]) lookupRowLocked(m *mesh.Model, r serviceRow, domain string, k serviceSubject) *serviceEntry[V] {
	d := readRowInputs(m, r, domain, k, c.inputs)
	e := c.entries[k]
	switch {
	case e == nil:
	case e.deps.equal(d):
		return e
	case e.prev != nil && e.prev.deps.equal(d):
		prev := e.prev
		e.prev, prev.prev = nil, e
		c.entries[k] = prev
		return prev
	default:
		e.prev = nil
	}
	n := &serviceEntry[V]{deps: d, prev: e}
	c.entries[k] = n
	return n
}

// sweepLocked drops the entries no live model would look up; a subject
// whose current entry is dead falls back to the one it replaced, if that
// lives. Liveness is the lookup's own test, so the two cannot disagree.
func (c *serviceCache[V]) sweepLocked(models []*mesh.Model, domain func(*mesh.Model) string) {
	live := func(k serviceSubject, e *serviceEntry[V]) bool {
		return slices.ContainsFunc(models, func(m *mesh.Model) bool {
			return readServiceInputs(m, domain(m), k, c.inputs).equal(e.deps)
		})
	}
	for k, e := range c.entries {
		if e.prev != nil && !live(k, e.prev) {
			e.prev = nil
		}
		if !live(k, e) {
			if e.prev == nil {
				delete(c.entries, k)
			} else {
				c.entries[k] = e.prev
			}
		}
	}
}

// --- eviction ---

// sweepEvery is how many new models pass between sweeps of the per-service
// caches.
const sweepEvery = 16

// sweepLocked drops cache entries neither the current nor the previous
// model has any use for, once per new model.
func (t *Translator) sweepLocked(m *mesh.Model) {
	if t.models[0] == m {
		return
	}
	if t.models[1] == m {
		// Back to the previous model: both are still live, nothing to drop.
		t.models[0], t.models[1] = m, t.models[0]
		return
	}
	t.models[0], t.models[1] = m, t.models[0]
	t.generation++
	// Views belong to one model: drop those of models no longer live.
	for k := range t.views {
		if k.model != t.models[0] && k.model != t.models[1] {
			delete(t.views, k)
		}
	}
	live := make(map[*viewEntry]bool, len(t.views))
	for _, v := range t.views {
		live[v] = true
	}
	for k := range t.outbound {
		if !live[k.view] {
			delete(t.outbound, k)
		}
	}
	for k := range t.assemblies {
		if !live[k.view] {
			delete(t.assemblies, k)
		}
	}
	for k, e := range t.inbound {
		if e.generation+1 < t.generation {
			delete(t.inbound, k)
		}
	}
	// Per-service entries of changed services are replaced when looked up;
	// what remains are entries of deleted services and profiles. Looking
	// for them costs a pass over every entry, so it is done every
	// sweepEvery models: a deleted service's resources outlive it by that
	// many models at most.
	if t.generation%sweepEvery != 0 {
		return
	}
	liveModels := t.models[:1]
	if t.models[1] != nil {
		liveModels = t.models[:]
	}
	for p := range t.profiles {
		if !slices.ContainsFunc(liveModels, func(m *mesh.Model) bool {
			return m.Profiles[mesh.ProfileKey{Namespace: p.Source.Namespace, Service: p.Service}] == p
		}) {
			delete(t.profiles, p)
		}
	}
	t.frontends.sweepLocked(liveModels, t.domain)
	t.clusters.sweepLocked(liveModels, t.domain)
	t.endpoints.sweepLocked(liveModels, t.domain)
}
