package adsclient

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// Watch waits for one change to reach the proxies it affects. It is set up
// before the change is made; each affected stream records the moment it
// sent the ACK of the first response whose named resource shows the
// change.
//
// A change shows as a marker string: a protobuf string field (an endpoint
// address, a route name) that appears in the resource (Present) or that
// disappears from it. The marker is matched with its length prefix, so
// "10.0.0.1" does not match "10.0.0.12". With no marker, the resource
// arriving at all is the change (a new cluster).
type Watch struct {
	typeURL string
	name    string
	marker  []byte
	present bool

	affected []bool // by stream index, fixed at creation
	acks     []atomic.Int64
	want     int
	left     atomic.Int64
	done     chan struct{}
}

// WatchSpec says what a change will look like to the proxies.
type WatchSpec struct {
	// TypeURL and Name identify the resource that carries the change.
	TypeURL, Name string
	// Marker is a string field value; empty: the resource's presence.
	Marker string
	// Present: the marker appears (true) or disappears (false).
	Present bool
}

// Watch registers a change about to be made. The affected proxies are
// decided now: for route configurations and load assignments, the streams
// that currently subscribe to Name (as Envoy would only hear of it then);
// for listeners and clusters, every synced stream.
func (f *Fleet) Watch(spec WatchSpec) *Watch {
	f.mu.Lock()
	streams := slices.Clone(f.streams)
	f.mu.Unlock()
	w := &Watch{typeURL: spec.TypeURL, name: spec.Name, present: spec.Present || spec.Marker == "",
		affected: make([]bool, len(streams)), acks: make([]atomic.Int64, len(streams)), done: make(chan struct{})}
	if spec.Marker != "" {
		w.marker = protowire.AppendString(nil, spec.Marker)
	}
	for i, s := range streams {
		switch spec.TypeURL {
		case resourcev3.RouteType, resourcev3.EndpointType:
			if p := s.subscribed[followIndex(spec.TypeURL)].Load(); p != nil {
				_, w.affected[i] = slices.BinarySearch(*p, spec.Name)
			}
		default:
			s.mu.Lock()
			w.affected[i] = s.synced
			s.mu.Unlock()
		}
		if w.affected[i] {
			w.want++
		}
	}
	w.left.Store(int64(w.want))
	if w.want == 0 {
		close(w.done)
	}
	for {
		old := f.watches.Load()
		var next []*Watch
		if old != nil {
			next = slices.Clone(*old)
		}
		next = append(next, w)
		if f.watches.CompareAndSwap(old, &next) {
			break
		}
	}
	return w
}

// Unwatch stops matching w; its results stay readable.
func (f *Fleet) Unwatch(w *Watch) {
	for {
		old := f.watches.Load()
		if old == nil {
			return
		}
		next := slices.DeleteFunc(slices.Clone(*old), func(x *Watch) bool { return x == w })
		if f.watches.CompareAndSwap(old, &next) {
			return
		}
	}
}

// Affected is how many proxies the change was decided to affect.
func (w *Watch) Affected() int { return w.want }

// Wait blocks until every affected proxy has ACKed the change, or ctx ends;
// either way it returns how many have.
func (w *Watch) Wait(ctx context.Context) (int, error) {
	select {
	case <-w.done:
		return w.want, nil
	case <-ctx.Done():
		n := w.want - int(w.left.Load())
		return n, fmt.Errorf("%d of %d proxies ACKed %s %s: %w", n, w.want, w.typeURL, w.name, ctx.Err())
	}
}

// ACKs returns, for each affected proxy that ACKed, when it did.
func (w *Watch) ACKs() []time.Time {
	var out []time.Time
	for i := range w.acks {
		if ns := w.acks[i].Load(); ns != 0 {
			out = append(out, time.Unix(0, ns))
		}
	}
	return out
}

func (w *Watch) waiting(i int) bool {
	return i < len(w.affected) && w.affected[i] && w.acks[i].Load() == 0
}

func (w *Watch) satisfiedBy(entries []*entry, resp *wireResponse) bool {
	for i, e := range entries {
		if e.name != w.name {
			continue
		}
		if w.marker == nil {
			return true
		}
		return bytes.Contains(resp.resources[i].value, w.marker) == w.present
	}
	return false
}

func (w *Watch) record(i int, at time.Time) {
	if w.acks[i].CompareAndSwap(0, at.UnixNano()) && w.left.Add(-1) == 0 {
		close(w.done)
	}
}
