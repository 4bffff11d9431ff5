package sds

import (
	"bytes"
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// pushes records what Rotate hands over, and when.
type pushes struct {
	mu    sync.Mutex
	got   []*Leaf
	at    []time.Time
	ready chan struct{}
}

func (p *pushes) push(l *Leaf) {
	p.mu.Lock()
	p.got = append(p.got, l)
	p.at = append(p.at, time.Now())
	p.mu.Unlock()
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

// wait returns the n-th push (from 1), waiting up to d for it.
func (p *pushes) wait(t *testing.T, n int, d time.Duration) (*Leaf, time.Time) {
	t.Helper()
	deadline := time.After(d)
	for {
		p.mu.Lock()
		if len(p.got) >= n {
			l, at := p.got[n-1], p.at[n-1]
			p.mu.Unlock()
			return l, at
		}
		p.mu.Unlock()
		select {
		case <-p.ready:
		case <-deadline:
			t.Fatalf("push %d did not come within %s", n, d)
		}
	}
}

func TestRotateRenewsBeforeExpiryAndFollowsTheIssuer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	now := time.Now()
	tr := newTrust(t, now, 72*time.Hour, 48*time.Hour)
	ca := newTestCA(t, time.Now, 2*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p := &pushes{ready: make(chan struct{}, 1)}
	// Started before any material: it must wait, then issue as soon as
	// the material arrives (not after its backoff).
	go func() { defer close(done); ca.Rotate(ctx, Workload{"x", "a"}, p.push) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond)
	ca.SetMaterial(tr.material(t, now), nil)
	first, _ := p.wait(t, 1, 500*time.Millisecond)

	second, at := p.wait(t, 2, 3*time.Second)
	if !at.Before(first.NotAfter) {
		t.Errorf("renewed leaf pushed at %s, after the old one expired at %s", at, first.NotAfter)
	}
	if d := at.Sub(first.NotAfter.Add(-2 * time.Second)); d < time.Second {
		t.Errorf("renewed after %s of a 2s leaf, want about 65-75%% of it", d)
	}
	if bytes.Equal(first.CertChainPEM, second.CertChainPEM) || bytes.Equal(first.KeyPEM, second.KeyPEM) {
		t.Error("renewal reused the certificate or the key")
	}

	renewed, err := NewIssuer(td.Name(), tr.anchor, time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMaterial("Secret test/issuer", []*x509.Certificate{renewed.Cert}, renewed.Key, []*x509.Certificate{tr.anchor.Cert}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	n := len(p.got)
	p.mu.Unlock()
	ca.SetMaterial(m, nil)
	next, _ := p.wait(t, n+1, 500*time.Millisecond)
	cert := verifyLeaf(t, next.CertChainPEM, tr.anchor.Cert, time.Now())
	if !bytes.Equal(cert.AuthorityKeyId, renewed.Cert.SubjectKeyId) {
		t.Error("leaf pushed after the issuer change is not signed by the new issuer")
	}
}
