package sds

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestLeaderElectsOneAndHandsOver(t *testing.T) {
	requireEnv(t)
	ns := createNamespace(t)
	type replica struct {
		l      *Leader
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func(name string) *replica {
		l, err := NewLeader(LeaderConfig{Client: env.Clientset, Namespace: ns, Lease: "weft-identity", Identity: name,
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &replica{l: l, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(r.done); l.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	rs := []*replica{start("a"), start("b")}
	leaders := func() (n int, who *replica) {
		for _, r := range rs {
			if r.l.IsLeader() {
				n++
				who = r
			}
		}
		return n, who
	}
	var first *replica
	err := env.WaitFor(t.Context(), 20*time.Second, "one leader", func(context.Context) (bool, error) {
		n, who := leaders()
		if n > 1 {
			return false, fmt.Errorf("%d leaders at once", n)
		}
		first = who
		return n == 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Stay a while: still exactly one, the same one.
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		if n, who := leaders(); n != 1 || who != first {
			t.Fatalf("leadership moved or split without cause: %d leaders", n)
		}
	}
	first.cancel()
	<-first.done
	if first.l.IsLeader() {
		t.Error("a stopped replica still says it leads")
	}
	err = env.WaitFor(t.Context(), 20*time.Second, "the other replica to take over", func(context.Context) (bool, error) {
		n, who := leaders()
		return n == 1 && who != first, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
