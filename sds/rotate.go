package sds

import (
	"context"
	"time"
)

// retryMin and retryMax bound the wait between failed issuances (no valid
// issuer yet, say): short enough to recover quickly once material arrives
// (which also wakes the loop), long enough not to spin.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// Rotate keeps a leaf for w fresh until ctx ends: it issues one now (key
// made in memory), then again at the leaf's RenewAt, and at once when the
// issuer or bundle changes, and hands each to push. The SDS side calls it
// once per authenticated identity. A failed issuance is retried with
// backoff; the last pushed leaf stays in use meanwhile.
//
// Re-issuing on an issuer change does not wait: at thousands of issuances
// per second a mesh of ten thousand identities re-keys in seconds.
func (ca *CA) Rotate(ctx context.Context, w Workload, push func(*Leaf)) {
	changed, unsubscribe := ca.Subscribe()
	defer unsubscribe()
	backoff := retryMin
	for {
		var wait time.Duration
		leaf, err := ca.IssueKeyPair(w)
		if err != nil {
			ca.log.Warn("identity: renewing a leaf failed; retrying", "workload", w.String(), "in", backoff, "err", err)
			wait = backoff
			backoff = min(2*backoff, retryMax)
		} else {
			push(leaf)
			backoff = retryMin
			wait = RenewIn(ca.now(), leaf)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-changed:
			t.Stop()
		}
	}
}
