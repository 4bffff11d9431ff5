package controller

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// debouncer turns bursts of changes into one flush: it waits for quiet
// (no kick for `quiet`) but never longer than `max` after the first kick of
// a burst, so a steady trickle of changes still gets pushed. Kicks that
// arrive while the flush runs start the next burst.
//
// A burst whose changes are all endpoint changes takes a fast lane with
// its own, shorter, quiet time and cap (see fastLane): an endpoint change
// is what a rollout or a failing pod produces, its push is one
// ClusterLoadAssignment per subscribed proxy, and holding it 100 ms was
// most of its convergence time. A burst that mixes in anything else is
// held as long as any burst.
type debouncer struct {
	quiet, max time.Duration
	clock      clock.WithTicker
	kicks      chan struct{}

	// fastQuiet and fastMax apply while fast() reports that everything
	// pending is an endpoint change; fast is nil without a fast lane.
	fastQuiet, fastMax time.Duration
	fast               func() bool
}

func newDebouncer(quiet, max time.Duration, clk clock.WithTicker) *debouncer {
	if max < quiet {
		max = quiet
	}
	return &debouncer{quiet: quiet, max: max, clock: clk, kicks: make(chan struct{}, 1)}
}

// fastLane makes bursts for which endpointsOnly holds end after quiet
// (capped at max) instead of the debouncer's own times. endpointsOnly is
// asked on the debouncer's goroutine, never from Kick.
func (d *debouncer) fastLane(quiet, capped time.Duration, endpointsOnly func() bool) {
	d.fastQuiet, d.fastMax, d.fast = quiet, max(capped, quiet), endpointsOnly
}

// window is the quiet time and cap of the burst as it stands.
func (d *debouncer) window() (quiet, capped time.Duration) {
	if d.fast != nil && d.fast() {
		return d.fastQuiet, d.fastMax
	}
	return d.quiet, d.max
}

// Kick says something changed. It never blocks.
func (d *debouncer) Kick() {
	select {
	case d.kicks <- struct{}{}:
	default:
	}
}

// Run calls flush after each burst until ctx ends. flush runs on Run's
// goroutine, so flushes never overlap.
func (d *debouncer) Run(ctx context.Context, flush func(context.Context)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kicks:
		}
		if !d.settle(ctx) {
			return
		}
		flush(ctx)
	}
}

// settle waits out one burst; false means ctx ended.
func (d *debouncer) settle(ctx context.Context) bool {
	start := d.clock.Now()
	quiet, capped := d.window()
	timer := d.clock.NewTimer(quiet)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C():
			return true
		case <-d.kicks:
			// A kick may move the burst out of the fast lane (never back:
			// changes only accumulate until the flush), and with it its cap.
			quiet, capped = d.window()
			wait := min(quiet, start.Add(capped).Sub(d.clock.Now()))
			if wait <= 0 {
				return true
			}
			if !timer.Stop() {
				// Drain a fire that raced with the kick.
				select {
				case <-timer.C():
				default:
				}
			}
			timer.Reset(wait)
		}
	}
}
