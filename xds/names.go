package xds

import (
	"hash/maphash"
	"iter"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"weak"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Every proxy of a view (same namespace and kind) subscribes to the same
// route and cluster names: at 2,000 services, 2,000 of each per stream. Kept
// as a map per stream, those sets were two thirds of the heap at 1,000
// delta proxies (219 of 332 MB). Here a subscription's names are an
// immutable nameSet interned by content, shared by every stream that
// subscribes to exactly those names. A delta request's subscribe and
// unsubscribe lists are applied as a difference of the stream's own
// (subNames), folded into a shared set once the request is applied.

// nameSet is an immutable set of resource names. Nothing may modify it once
// interned: every stream with the same names holds the same one.
type nameSet struct {
	// names maps each name to its position, 0 to len-1, by which a
	// request's list is compared with the set without a map of its own
	// (equalsList).
	names map[string]int32
	// sum is the set's order-independent hash: the sum of its names'.
	sum uint64
}

var nameSeed = maphash.MakeSeed()

func nameHash(name string) uint64 { return maphash.String(nameSeed, name) }

// newNameSet makes a set of names (n of them, at most). A request may list
// a name twice; it counts once, or positions would pass len-1 (equalsList
// indexes its bits by them) and the sum would differ from an equal set's.
func newNameSet(names iter.Seq[string], n int) *nameSet {
	s := &nameSet{names: make(map[string]int32, n)}
	for name := range names {
		if _, dup := s.names[name]; dup {
			continue
		}
		s.names[name] = int32(len(s.names))
		s.sum += nameHash(name)
	}
	return s
}

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

func (s *nameSet) all() iter.Seq[string] {
	return func(yield func(string) bool) {
		if s == nil {
			return
		}
		for name := range s.names {
			if !yield(name) {
				return
			}
		}
	}
}

// equalsList reports whether list, as long as s, holds exactly s's names:
// each once, which a bit per position checks.
func (s *nameSet) equalsList(list []string) bool {
	if len(list) != len(s.names) {
		return false
	}
	seen := make([]uint64, (len(list)+63)/64)
	for _, name := range list {
		i, ok := s.names[name]
		if !ok {
			return false
		}
		seen[i/64] |= 1 << (i % 64)
	}
	n := 0
	for _, w := range seen {
		n += bits.OnesCount64(w)
	}
	return n == len(list)
}

// namesMap is n names as go-control-plane's caches want them, a copy:
// Weft's streams share their names (nameSet) and read them through
// subscription.
func namesMap(names iter.Seq[string], n int) map[string]struct{} {
	m := make(map[string]struct{}, n)
	for name := range names {
		m[name] = struct{}{}
	}
	return m
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

// find returns the interned set with the given sum for which equal holds.
func (t *nameSets) find(sum uint64, equal func(*nameSet) bool) *nameSet {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.findLocked(sum, equal)
}

func (t *nameSets) findLocked(sum uint64, equal func(*nameSet) bool) *nameSet {
	for _, p := range t.bySum[sum] {
		if s := p.Value(); s != nil && equal(s) {
			return s
		}
	}
	return nil
}

// sameNames returns a test of whether a set holds exactly the n names has
// reports (a set's n names all reported are has's set).
func sameNames(n int, has func(string) bool) func(*nameSet) bool {
	return func(s *nameSet) bool {
		if len(s.names) != n {
			return false
		}
		for name := range s.names {
			if !has(name) {
				return false
			}
		}
		return true
	}
}

// intern returns the shared set with s's content: an interned one, or s.
func (t *nameSets) intern(s *nameSet) *nameSet {
	if s.len() == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if shared := t.findLocked(s.sum, sameNames(len(s.names), s.has)); shared != nil {
		return shared
	}
	t.bySum[s.sum] = append(t.bySum[s.sum], weak.Make(s))
	runtime.AddCleanup(s, t.forget, s.sum)
	return s
}

// internList returns the shared set of list's names. A list equal to an
// interned set (the common case: a stream of a view that already has one)
// costs no map.
func (t *nameSets) internList(list []string) *nameSet {
	if len(list) == 0 {
		return nil
	}
	var sum uint64
	for _, name := range list {
		sum += nameHash(name)
	}
	if s := t.find(sum, func(s *nameSet) bool { return s.equalsList(list) }); s != nil {
		return s
	}
	return t.intern(newNameSet(slices.Values(list), len(list)))
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
// alone holds. added holds only names base lacks and dropped only names
// base has, so the size is base's plus added less dropped.
type subNames struct {
	base           *nameSet
	added, dropped map[string]struct{}
	// sum is the current names' sum (see nameSet.sum).
	sum uint64
}

func newSubNames(names []string) subNames {
	base := sharedNames.internList(names)
	if base == nil {
		return subNames{}
	}
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
		for name := range s.base.all() {
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
	base := sharedNames.find(s.sum, sameNames(n, s.has))
	if base == nil {
		base = sharedNames.intern(newNameSet(s.all(), n))
	}
	*s = subNames{base: base, sum: base.sum}
}

// withoutWildcard is names but "*", which a subscription records as its
// wildcard flag.
func withoutWildcard(names []string) []string {
	if !slices.Contains(names, "*") {
		return names
	}
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "*" })
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
