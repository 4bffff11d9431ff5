package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

// runDebouncer runs d until the returned stop is called, counting flushes
// and failing on overlapping ones.
func runDebouncer(t *testing.T, d *debouncer) (flushes *atomic.Int32, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	flushes = &atomic.Int32{}
	var inFlush atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		d.Run(ctx, func(context.Context) {
			if inFlush.Swap(true) {
				t.Error("flushes overlap")
			}
			flushes.Add(1)
			time.Sleep(time.Millisecond)
			inFlush.Store(false)
		})
	})
	return flushes, func() { cancel(); wg.Wait() }
}

func TestDebounceBurstIsOneFlush(t *testing.T) {
	d := newDebouncer(50*time.Millisecond, time.Second, clock.RealClock{})
	flushes, stop := runDebouncer(t, d)
	defer stop()
	for range 100 {
		d.Kick()
	}
	deadline := time.Now().Add(5 * time.Second)
	for flushes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a second flush would come within the quiet time
	if got := flushes.Load(); got != 1 {
		t.Errorf("%d flushes for one burst, want 1", got)
	}
}

// TestDebounceCapsSteadyTrickle: changes arriving faster than the quiet
// time never let the burst end; the cap must still flush.
func TestDebounceCapsSteadyTrickle(t *testing.T) {
	d := newDebouncer(50*time.Millisecond, 200*time.Millisecond, clock.RealClock{})
	flushes, stop := runDebouncer(t, d)
	defer stop()
	end := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(end) {
		d.Kick()
		time.Sleep(10 * time.Millisecond)
	}
	// Without the cap there would be no flush at all until the trickle ends;
	// with it, about one per 200ms.
	if got := flushes.Load(); got < 2 {
		t.Errorf("%d flushes during a 1.2s trickle with a 200ms cap, want >= 2", got)
	}
}

func TestDebounceKickDuringFlushFlushesAgain(t *testing.T) {
	d := newDebouncer(20*time.Millisecond, time.Second, clock.RealClock{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, func(context.Context) {
			if n.Add(1) == 1 {
				d.Kick() // a change seen while flushing
			}
		})
	}()
	d.Kick()
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n.Load() < 2 {
		t.Error("a change that arrived during a flush was never flushed")
	}
	cancel()
	<-done
}

func TestDebounceStopsMidBurst(t *testing.T) {
	d := newDebouncer(time.Hour, time.Hour, clock.RealClock{})
	flushes, stop := runDebouncer(t, d)
	d.Kick()
	time.Sleep(20 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended mid-burst")
	}
	if flushes.Load() != 0 {
		t.Error("flushed on shutdown")
	}
}

// TestDebounceFastLane: a burst of nothing but endpoint changes ends after
// the fast lane's quiet time; one that is or becomes anything else waits
// the full quiet time.
func TestDebounceFastLane(t *testing.T) {
	const quiet, fastQuiet = 600 * time.Millisecond, 60 * time.Millisecond
	tests := []struct {
		name string
		// before and after are what the store reports before and after a
		// second kick, 10ms after the first (none when they are equal).
		before, after bool
		fast          bool
	}{
		{"endpoints only", true, true, true},
		{"something else", false, false, false},
		{"endpoints, then something else", true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDebouncer(quiet, 10*quiet, clock.RealClock{})
			var second atomic.Bool
			d.fastLane(fastQuiet, quiet, func() bool {
				if second.Load() {
					return tc.after
				}
				return tc.before
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			flushed := make(chan time.Time, 4)
			go d.Run(ctx, func(context.Context) { flushed <- time.Now() })

			start := time.Now()
			d.Kick()
			if tc.before != tc.after {
				// Kick again within the fast quiet time so the burst is
				// still open.
				time.Sleep(10 * time.Millisecond)
				second.Store(true)
				d.Kick()
			}
			var at time.Time
			select {
			case at = <-flushed:
			case <-time.After(5 * time.Second):
				t.Fatal("no flush")
			}
			took := at.Sub(start)
			if tc.fast && took >= quiet/2 {
				t.Errorf("endpoint-only burst flushed after %v, want about %v", took, fastQuiet)
			}
			if !tc.fast && took < quiet*3/4 {
				t.Errorf("burst with other changes flushed after %v, want at least about %v", took, quiet)
			}
		})
	}
}
