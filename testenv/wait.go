package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PollInterval is how often WaitFor re-checks a condition. Everything here is a local
// process on loopback, so a short interval costs little and keeps tests fast.
const PollInterval = 100 * time.Millisecond

// Condition reports whether what a test waits for holds. An error means "not yet, and here
// is why": waiting goes on and the last such error is quoted if time runs out. Wrap an
// error with Permanent to stop waiting at once.
type Condition func(ctx context.Context) (bool, error)

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks an error returned by a Condition as final: WaitFor returns it without
// waiting for the deadline.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// WaitFor polls cond until it holds, returns a Permanent error, ctx ends, or timeout
// passes. what names the awaited state for the error message ("3 running pods in
// emojivoto").
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond Condition) error {
	return waitFor(ctx, timeout, what, cond, nil)
}

// WaitFor is the package-level WaitFor that also gives up, with the end of its log, as soon
// as one of the environment's components has exited: a crashed apiserver otherwise looks
// like a slow one until the deadline.
func (e *Env) WaitFor(ctx context.Context, timeout time.Duration, what string, cond Condition) error {
	return waitFor(ctx, timeout, what, cond, e.Healthy)
}

func waitFor(ctx context.Context, timeout time.Duration, what string, cond Condition, healthy func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(PollInterval)
	defer ticker.Stop()
	var last error
	for {
		if healthy != nil {
			if err := healthy(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("waiting for %s: %w", what, perm.err)
		}
		// A condition that calls the apiserver sees ctx expire as its own error; keep the
		// previous, more telling one.
		if err != nil && ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			why := fmt.Sprintf("gave up after %s", timeout)
			if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				why = "interrupted"
			}
			if last != nil {
				return fmt.Errorf("waiting for %s: %s: %w (last: %w)", what, why, context.Cause(ctx), last)
			}
			return fmt.Errorf("waiting for %s: %s: %w", what, why, context.Cause(ctx))
		case <-ticker.C:
		}
	}
}
