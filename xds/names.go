package xds

import (
	"hash/maphash"
	"iter"
	"runtime"
	"sync"
	"weak"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Every proxy of a view (same namespace and kind) subscribes to the same
// route and cluster names: at 2,000 services, 2,000 of each per stream. Kept
// as a map per stream, those sets were two thirds of the heap at 1,000
// delta proxies (211 of 317 MB). Here a subscription's names are an
// immutable nameSet interned by content, shared by every stream that
// subscribes to exactly those names, plus a small difference of the
// stream's own (subNames), folded into a shared set again when it matches
// one or grows.

// nameSet is an immutable set of resource names. Nothing may modify it once
// interned: every stream with the same names holds the same one.
type nameSet struct {
	names map[string]struct{}
	// sum is the set's order-independent hash: the sum of its names'.
	sum uint64
}

var nameSeed = maphash.MakeSeed()

func nameHash(name string) uint64 { return maphash.String(nameSeed, name) }

func (s *nameSet) has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.names[name]
	return ok
}

func (s *nameSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.names)
}

// nameSets interns nameSets by content, weakly: a set no stream holds any
// more is collected and drops out.
type nameSets struct {
	mu sync.Mutex
	// bySum holds the sets of each sum; more than one only on a collision.
	bySum map[uint64][]weak.Pointer[nameSet]
}

// sharedNames is the process's table: streams of different servers may
// share sets too, as they only read them.
var sharedNames = &nameSets{bySum: make(map[uint64][]weak.Pointer[nameSet])}

// find returns the interned set of n names with the given sum that holds
// only names has reports, which is then exactly has's set, or nil.
func (t *nameSets) find(sum uint64, n int, has func(string) bool) *nameSet {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.findLocked(sum, n, has)
}

func (t *nameSets) findLocked(sum uint64, n int, has func(string) bool) *nameSet {
next:
	for _, p := range t.bySum[sum] {
		s := p.Value()
		if s == nil || len(s.names) != n {
			continue
		}
		for name := range s.names {
			if !has(name) {
				continue next
			}
		}
		return s
	}
	return nil
}

// intern returns the shared set with names' content: an interned one, or
// names itself, which the caller must not modify from then on.
func (t *nameSets) intern(names map[string]struct{}) *nameSet {
	if len(names) == 0 {
		return nil
	}
	var sum uint64
	for name := range names {
		sum += nameHash(name)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.findLocked(sum, len(names), func(name string) bool { _, ok := names[name]; return ok }); s != nil {
		return s
	}
	s := &nameSet{names: names, sum: sum}
	t.bySum[sum] = append(t.bySum[sum], weak.Make(s))
	runtime.AddCleanup(s, t.forget, sum)
	return s
}

// forget drops the collected sets of sum.
func (t *nameSets) forget(sum uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.bySum[sum][:0]
	for _, p := range t.bySum[sum] {
		if p.Value() != nil {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		delete(t.bySum, sum)
	} else {
		t.bySum[sum] = live
	}
}

// subNames is one subscription's names: a shared set, and what the stream
// subscribed (added) or unsubscribed (dropped, from base) since, which it
// alone holds. added and dropped are disjoint from base's absence and
// presence respectively, so the size is base's plus added less dropped.
type subNames struct {
	base           *nameSet
	added, dropped map[string]struct{}
	// sum is the current names' sum (see nameSet.sum).
	sum uint64
}

func newSubNames(names []string) subNames {
	if len(names) == 0 {
		return subNames{}
	}
	m := make(map[string]struct{}, len(names))
	for _, name := range names {
		m[name] = struct{}{}
	}
	base := sharedNames.intern(m)
	return subNames{base: base, sum: base.sum}
}

func (s *subNames) has(name string) bool {
	if _, ok := s.added[name]; ok {
		return true
	}
	if _, ok := s.dropped[name]; ok {
		return false
	}
	return s.base.has(name)
}

func (s *subNames) len() int { return s.base.len() + len(s.added) - len(s.dropped) }

// all yields every name once.
func (s *subNames) all() iter.Seq[string] {
	return func(yield func(string) bool) {
		for name := range s.added {
			if !yield(name) {
				return
			}
		}
		if s.base == nil {
			return
		}
		for name := range s.base.names {
			if _, ok := s.dropped[name]; ok {
				continue
			}
			if !yield(name) {
				return
			}
		}
	}
}

// add subscribes name and reports whether it is new.
func (s *subNames) add(name string) bool {
	if s.has(name) {
		return false
	}
	if _, ok := s.dropped[name]; ok {
		delete(s.dropped, name)
	} else {
		if s.added == nil {
			s.added = make(map[string]struct{})
		}
		s.added[name] = struct{}{}
	}
	s.sum += nameHash(name)
	return true
}

// remove unsubscribes name and reports whether it was subscribed.
func (s *subNames) remove(name string) bool {
	if !s.has(name) {
		return false
	}
	if _, ok := s.added[name]; ok {
		delete(s.added, name)
	} else {
		if s.dropped == nil {
			s.dropped = make(map[string]struct{})
		}
		s.dropped[name] = struct{}{}
	}
	s.sum -= nameHash(name)
	return true
}

// settle moves the stream onto a shared set after a request changed its
// names: the interned set with the same names if there is one (the
// streams of a view, subscribing alike, find the one the first of them
// made), or a new one. A stream that subscribes one name per request so
// copies its set per request, as go-control-plane's SotW server does on
// every request.
func (s *subNames) settle() {
	if len(s.added) == 0 && len(s.dropped) == 0 {
		return
	}
	n := s.len()
	if n == 0 {
		*s = subNames{}
		return
	}
	if shared := sharedNames.find(s.sum, n, s.has); shared != nil {
		*s = subNames{base: shared, sum: shared.sum}
		return
	}
	m := make(map[string]struct{}, n)
	for name := range s.all() {
		m[name] = struct{}{}
	}
	base := sharedNames.intern(m)
	*s = subNames{base: base, sum: base.sum}
}

// subscription is what the caches read of a stream's subscription to a
// type: go-control-plane's cachev3.Subscription hands out its names as a
// map, which Weft's streams no longer keep per stream (subNames).
type subscription interface {
	IsWildcard() bool
	// ReturnedResources is what the client holds, name -> version.
	ReturnedResources() map[string]string
	subscribes(name string) bool
	subscribedCount() int
	subscribed() iter.Seq[string]
}

// subscriptionOf reads sub through subscription: Weft's own subscriptions
// directly, another (a test's go-control-plane subscription) through its
// map.
func subscriptionOf(sub cachev3.Subscription) subscription {
	if s, ok := sub.(subscription); ok {
		return s
	}
	return mapSubscription{sub}
}

type mapSubscription struct{ cachev3.Subscription }

func (m mapSubscription) subscribes(name string) bool {
	_, ok := m.SubscribedResources()[name]
	return ok
}

func (m mapSubscription) subscribedCount() int { return len(m.SubscribedResources()) }

func (m mapSubscription) subscribed() iter.Seq[string] {
	return func(yield func(string) bool) {
		for name := range m.SubscribedResources() {
			if !yield(name) {
				return
			}
		}
	}
}
