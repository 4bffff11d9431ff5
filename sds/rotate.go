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

// LeafSource issues a workload leaf whose key the control plane makes in
// memory: the in-process CA (*CA), or cert-manager (CertificateRequests).
// Whatever signs it, the leaf carries exactly w's SPIFFE ID and chains to
// the CA's bundle.
type LeafSource interface {
	IssueLeaf(ctx context.Context, w Workload) (*Leaf, error)
}

// IssueLeaf is IssueKeyPair: the in-process CA signs at once.
func (ca *CA) IssueLeaf(_ context.Context, w Workload) (*Leaf, error) { return ca.IssueKeyPair(w) }

// Rotate keeps a leaf for w fresh until ctx ends: it issues one now (key
// made in memory), then again at the leaf's RenewAt, and at once when the
// issuer or bundle changes, and hands each to push. The SDS side calls it
// once per authenticated identity. A failed issuance is retried with
// backoff; the last pushed leaf stays in use meanwhile.
//
// Re-issuing on an issuer change does not wait: at thousands of issuances
// per second a mesh of ten thousand identities re-keys in seconds.
func (ca *CA) Rotate(ctx context.Context, w Workload, push func(*Leaf)) {
	ca.RotateFrom(ctx, ca, w, push)
}

// RotateFrom is Rotate with leaves from src (cert-manager, say); the timing,
// the retries and the re-issue on a change of the CA's issuer or bundle are
// the same.
func (ca *CA) RotateFrom(ctx context.Context, src LeafSource, w Workload, push func(*Leaf)) {
	changed, unsubscribe := ca.Subscribe()
	defer unsubscribe()
	backoff := retryMin
	for {
		var wait time.Duration
		leaf, err := src.IssueLeaf(ctx, w)
		if ctx.Err() != nil {
			return
		}
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
