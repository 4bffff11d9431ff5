package xds

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
)

// namesStream is one stream's subscription of a named type, driven as its
// protocol's client drives it.
type namesStream interface {
	subscribe(names ...string)
	unsubscribe(names ...string)
	// shared is the interned set the stream is on, nil if none.
	shared() *nameSet
	subscription
}

// deltaNames sends what Envoy's delta client sends: the names added and
// removed.
type deltaNames struct{ *deltaSub }

func (d deltaNames) subscribe(names ...string)   { d.update(names, nil) }
func (d deltaNames) unsubscribe(names ...string) { d.update(nil, names) }
func (d deltaNames) shared() *nameSet {
	if len(d.names.added) > 0 || len(d.names.dropped) > 0 {
		return nil
	}
	return d.names.base
}

// sotwNames sends what Envoy's SotW client sends: every name, each time.
type sotwNames struct {
	*sotwSub
	names []string
}

func (s *sotwNames) subscribe(names ...string) {
	s.names = append(s.names, names...)
	s.set(s.names)
}

func (s *sotwNames) unsubscribe(names ...string) {
	s.names = slices.DeleteFunc(s.names, func(n string) bool { return slices.Contains(names, n) })
	s.set(s.names)
}

func (s *sotwNames) shared() *nameSet { return s.sotwSub.names }

// TestSubscriptionsOfAViewShareTheirNames: two streams subscribing to the
// same names (in any order) hold one set; a subscription change on one
// leaves the other's names alone, and once both subscribe alike again they
// share again.
func TestSubscriptionsOfAViewShareTheirNames(t *testing.T) {
	protocols := []struct {
		name string
		open func(names []string) namesStream
	}{
		{"delta", func(names []string) namesStream { return deltaNames{newDeltaSub(names, nil, nil, false)} }},
		{"sotw", func(names []string) namesStream {
			return &sotwNames{sotwSub: newSotwSub(names, false), names: slices.Clone(names)}
		}},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			// Names unlikely to be interned by another test.
			base := []string{p.name + "-view-a", p.name + "-view-b", p.name + "-view-c"}
			reversed := slices.Clone(base)
			slices.Reverse(reversed)
			one, two := p.open(base), p.open(reversed)
			if one.shared() == nil || one.shared() != two.shared() {
				t.Fatalf("two streams subscribing to %v hold sets %p and %p, want one shared set", base, one.shared(), two.shared())
			}
			first := one.shared()

			extra := p.name + "-view-x"
			one.subscribe(extra)
			if !one.subscribes(extra) || two.subscribes(extra) {
				t.Fatalf("after one subscribed %s: one has it %v, two has it %v; want only one", extra, one.subscribes(extra), two.subscribes(extra))
			}
			if two.shared() != first || first.has(extra) {
				t.Fatalf("one's subscribe changed the set two holds")
			}
			if one.shared() == first {
				t.Fatalf("one is still on the set without %s", extra)
			}

			two.subscribe(extra)
			if one.shared() == nil || one.shared() != two.shared() {
				t.Errorf("both subscribe to %v plus %s but hold sets %p and %p", base, extra, one.shared(), two.shared())
			}

			one.unsubscribe(base[0])
			if one.subscribes(base[0]) || !two.subscribes(base[0]) {
				t.Errorf("after one unsubscribed %s: one has it %v, two has it %v; want only two", base[0], one.subscribes(base[0]), two.subscribes(base[0]))
			}
			if got, want := slices.Sorted(one.subscribed()), []string{base[1], base[2], extra}; !slices.Equal(got, want) {
				t.Errorf("one subscribes to %v, want %v", got, want)
			}
			if got, want := two.subscribedCount(), 4; got != want {
				t.Errorf("two subscribes to %d names, want %d", got, want)
			}
		})
	}
}

// TestSharedNamesAreCollected: a set no stream holds leaves the table.
func TestSharedNamesAreCollected(t *testing.T) {
	names := []string{"collected-a", "collected-b"}
	sum := func() uint64 {
		d := newDeltaSub(names, nil, nil, false)
		return d.names.sum
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		sharedNames.mu.Lock()
		_, held := sharedNames.bySum[sum]
		sharedNames.mu.Unlock()
		if !held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the set of %v is still in the table after its stream is gone", names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEndpointCacheForgetsOldRemovals: a removed name's changedAt entry
// goes once its removal leaves the change log, so the map does not grow
// with every name ever removed; a stream synced before the removal is
// still told of it, and a name removed and set again keeps its entry.
func TestEndpointCacheForgetsOldRemovals(t *testing.T) {
	cases := []struct {
		name string
		// after the stream synced with a, b and c held.
		updates     func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded)
		wantEntries []string
		wantNames   []string
		wantRemoved []string
	}{
		{"removal still in the log", func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded) {
			c.update(nil, []string{"c"})
		}, []string{"a", "b", "c"}, nil, []string{"c"}},
		{"removal past the log", func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded) {
			c.update(nil, []string{"c"})
			for i := range changesKept {
				c.update([]*encoded{enc(cla("b", "10.0.0.2", uint32(100+i)))}, nil)
			}
		}, []string{"a", "b"}, []string{"b"}, []string{"c"}},
		{"removed and set again past the log", func(c *endpointCache, enc func(*endpointv3.ClusterLoadAssignment) *encoded) {
			c.update(nil, []string{"c"})
			c.update([]*encoded{enc(cla("c", "10.0.0.3", 81))}, nil)
			for i := range changesKept {
				c.update([]*encoded{enc(cla("b", "10.0.0.2", uint32(100+i)))}, nil)
			}
		}, []string{"a", "b", "c"}, []string{"b", "c"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newSyncedEDS(t)
			tc.updates(st.cache, st.enc)
			if got := slices.Sorted(maps.Keys(st.cache.changedAt)); !slices.Equal(got, tc.wantEntries) {
				t.Errorf("changedAt holds %v, want %v", got, tc.wantEntries)
			}
			r := st.watch("1")
			if names := responseNames(r); !slices.Equal(names, tc.wantNames) || !slices.Equal(r.GetRemovedResources(), tc.wantRemoved) {
				t.Errorf("got %v removed %v, want %v removed %v", names, r.GetRemovedResources(), tc.wantNames, tc.wantRemoved)
			}
		})
	}
}

// BenchmarkSubscriptionNames prints the heap a named subscription of
// 2,000 names costs per stream, with 1,000 streams in 10 views (Weft's
// shared sets, for delta and SotW) and with go-control-plane's
// stream.Subscription (a map per stream), as the caches' streams held
// before:
//
//	go test -run '^$' -bench SubscriptionNames -benchtime=1x ./xds/
func BenchmarkSubscriptionNames(b *testing.B) {
	const streams, views, perView = 1000, 10, 2000
	viewNames := make([][]string, views)
	for v := range viewNames {
		for i := range perView {
			// Overlapping views, as namespaces seeing the mesh's services.
			viewNames[v] = append(viewNames[v], fmt.Sprintf("svc-%d.ns-%d", (i+v*50)%(perView+views*50), v%3))
		}
	}
	kinds := []struct {
		name string
		open func(names []string) any
	}{
		{"delta", func(names []string) any { return newDeltaSub(names, nil, nil, false) }},
		{"sotw", func(names []string) any { return newSotwSub(names, false) }},
		{"map-per-stream", func(names []string) any {
			s := stream.NewDeltaSubscription(names, nil, nil, false)
			return &s
		}},
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			for range b.N {
				held := make([]any, streams)
				_, before := settledMemory()
				for i := range held {
					held[i] = k.open(viewNames[i%views])
				}
				_, after := settledMemory()
				perStream := float64(int64(after)-int64(before)) / streams
				b.ReportMetric(perStream, "heap-B/stream")
				b.Logf("%s: %d streams of %d names in %d views: %.0f B of heap per stream", k.name, streams, perView, views, perStream)
				runtime.KeepAlive(held)
			}
		})
	}
}

// TestNameSetEqualsList: a request's list matches an interned set only if
// it names each of the set's names exactly once.
func TestNameSetEqualsList(t *testing.T) {
	set := newNameSet(slices.Values([]string{"a", "b", "c"}), 3)
	cases := []struct {
		list []string
		want bool
	}{
		{[]string{"c", "a", "b"}, true},
		{[]string{"a", "a", "b"}, false},
		{[]string{"a", "b"}, false},
		{[]string{"a", "b", "d"}, false},
		{[]string{"a", "b", "c", "c"}, false},
	}
	for _, tc := range cases {
		if got := set.equalsList(tc.list); got != tc.want {
			t.Errorf("equalsList(%v) = %v, want %v", tc.list, got, tc.want)
		}
	}
}

// TestNameSetOfARepeatingList: a list naming a name twice (bad input, or a
// client's slip) makes the same set as the list without the repeat, so it
// is shared with it and compared without reading past the set's bits.
func TestNameSetOfARepeatingList(t *testing.T) {
	var distinct []string
	for i := range 64 {
		distinct = append(distinct, fmt.Sprintf("route-%d", i))
	}
	cases := []struct {
		name string
		list []string
	}{
		{"repeat at the end", append(slices.Clone(distinct), distinct[0])},
		{"repeat in the middle", slices.Insert(slices.Clone(distinct), 10, distinct[3])},
		{"all twice", append(slices.Clone(distinct), distinct...)},
	}
	want := newNameSet(slices.Values(distinct), len(distinct))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := newNameSet(slices.Values(tc.list), len(tc.list))
			if set.len() != len(distinct) || set.sum != want.sum {
				t.Errorf("set of %d names with repeats: len %d, sum %x; want len %d, sum %x", len(tc.list), set.len(), set.sum, len(distinct), want.sum)
			}
			if !set.equalsList(distinct) {
				t.Errorf("set of the list with repeats does not equal the list without")
			}
			if a, b := sharedNames.internList(distinct), sharedNames.internList(tc.list); a != b {
				t.Errorf("internList with repeats = %p, without = %p; want one shared set", b, a)
			}
		})
	}
}
