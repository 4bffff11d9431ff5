package xds

import (
	"sync"

	"google.golang.org/grpc/mem"
)

// largeBuffer is the size above which gRPC's buffers are kept by
// largeBuffers instead of gRPC's default pool. That pool's largest tier is
// 1 MiB; anything bigger goes to a sync.Pool of its own, where a full LDS,
// CDS or RDS response (1 to 2 MiB at 2,000 services) stays for two garbage
// collections after it was sent. With 1,000 proxies that was 300 MB of a
// 960 MB heap after every proxy had connected: a third of the resident
// memory was spent buffers of a connect storm that had ended.
const largeBuffer = 1 << 20

// largeBuffersKept bounds the large buffers kept for reuse. Allocating
// every large response afresh instead made a connect storm collect garbage
// more often; the syncing bound (MaxSyncingStreams) keeps the large
// responses in flight at once few, so a few kept buffers serve most of
// them.
const largeBuffersKept = 16

// largeBufferStep rounds large allocations up, so that a kept buffer fits
// responses of slightly different sizes.
const largeBufferStep = 256 << 10

// largeBuffers is gRPC's default buffer pool up to largeBuffer, and above
// it a free list of at most largeBuffersKept buffers.
type largeBuffers struct {
	small mem.BufferPool
	mu    sync.Mutex
	free  []*[]byte
}

var _ mem.BufferPool = (*largeBuffers)(nil)

func newLargeBuffers() *largeBuffers {
	return &largeBuffers{small: mem.DefaultBufferPool()}
}

func (p *largeBuffers) Get(length int) *[]byte {
	if length <= largeBuffer {
		return p.small.Get(length)
	}
	p.mu.Lock()
	for i, b := range p.free {
		if cap(*b) >= length {
			p.free = append(p.free[:i], p.free[i+1:]...)
			p.mu.Unlock()
			*b = (*b)[:length]
			return b
		}
	}
	p.mu.Unlock()
	b := make([]byte, length, (length+largeBufferStep-1)/largeBufferStep*largeBufferStep)
	return &b
}

func (p *largeBuffers) Put(b *[]byte) {
	if cap(*b) <= largeBuffer {
		p.small.Put(b)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < largeBuffersKept {
		p.free = append(p.free, b)
	}
}
