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
type debouncer struct {
	quiet, max time.Duration
	clock      clock.WithTicker
	kicks      chan struct{}
}

func newDebouncer(quiet, max time.Duration, clk clock.WithTicker) *debouncer {
	if max < quiet {
		max = quiet
	}
	return &debouncer{quiet: quiet, max: max, clock: clk, kicks: make(chan struct{}, 1)}
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
	deadline := d.clock.Now().Add(d.max)
	timer := d.clock.NewTimer(d.quiet)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C():
			return true
		case <-d.kicks:
			wait := min(d.quiet, deadline.Sub(d.clock.Now()))
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
