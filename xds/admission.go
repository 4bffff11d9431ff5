package xds

import (
	"context"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc/status"
)

// syncingHold bounds how long a stream keeps its syncing slot when it
// never settles (a proxy that does not ACK, or that waits for a resource
// that does not exist): the slot bounds a reconnect storm, it must not
// starve the streams behind it.
const syncingHold = 10 * time.Second

// syncingPerCPU is the default bound on streams syncing at once, per CPU.
// A proxy's initial configuration at 2,000 services is about 4 MiB and
// 15 ms of CPU to send: with every proxy of a restarted control plane
// served at once, 1,000 of them had their first responses marshalled and
// queued together, so memory peaked with all of them in flight and the
// last proxy was served no sooner. A few dozen per CPU keep every CPU
// busy while the rest wait with their first request read and their node
// validated (the controller builds their configuration meanwhile).
const syncingPerCPU = 32

// syncing is the bound on streams receiving their initial configuration.
type syncing struct {
	slots chan struct{} // nil: unbounded
}

func newSyncing(limit int) syncing {
	if limit == 0 {
		limit = syncingPerCPU * runtime.GOMAXPROCS(0)
	}
	if limit < 0 {
		return syncing{}
	}
	return syncing{slots: make(chan struct{}, limit)}
}

// waitForSlot holds a stream, once its node is validated, until it may be
// served: until fewer than the bound are syncing, or until ctx ends. The
// slot is freed by h.freeSlot: when the stream has answered every response
// it was sent (see Server.settled), after syncingHold, or when the stream
// ends.
func (s *Server) waitForSlot(ctx context.Context, h *streamHandle) error {
	if s.syncing.slots == nil {
		return nil
	}
	select {
	case s.syncing.slots <- struct{}{}:
	default:
		s.metrics.waitingStreams.Inc()
		select {
		case s.syncing.slots <- struct{}{}:
			s.metrics.waitingStreams.Dec()
		case <-ctx.Done():
			s.metrics.waitingStreams.Dec()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	free := sync.OnceFunc(func() { <-s.syncing.slots })
	timer := time.AfterFunc(syncingHold, free)
	h.freeSlot = func() {
		timer.Stop()
		free()
	}
	return nil
}

// settledLocked reports whether st has answered (ACK or NACK) the latest
// response of every type it was sent: it holds its initial configuration,
// or has refused it, and needs nothing more from the control plane for
// now. The caller holds s.mu.
func settledLocked(st *streamState) bool {
	sent := false
	for _, t := range st.types {
		if t.lastNonce == "" {
			continue
		}
		if !t.answered {
			return false
		}
		sent = true
	}
	return sent
}
