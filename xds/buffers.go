package xds

import (
	"google.golang.org/grpc/mem"
)

// largeBuffer is the size above which gRPC's buffers are not pooled. The
// default pool's largest tier is 1 MiB; anything bigger goes to a
// sync.Pool of its own, where a full LDS, CDS or RDS response (1 to 2 MiB
// at 2,000 services) stays for two garbage collections after it was sent.
// With 1,000 proxies that was 300 MB of a 960 MB heap after every proxy
// had connected: a third of the resident memory was spent buffers waiting
// to be reused by a connect storm that had ended. Such responses are sent
// on connect and after mesh-wide changes, seconds apart, so allocating them
// afresh costs little and frees them at the next collection.
const largeBuffer = 1 << 20

// transientLargeBuffers is gRPC's default buffer pool for buffers up to
// largeBuffer, and plain allocation above it.
type transientLargeBuffers struct{ small mem.BufferPool }

var _ mem.BufferPool = transientLargeBuffers{}

func newTransientLargeBuffers() transientLargeBuffers {
	return transientLargeBuffers{small: mem.DefaultBufferPool()}
}

func (p transientLargeBuffers) Get(length int) *[]byte {
	if length > largeBuffer {
		b := make([]byte, length)
		return &b
	}
	return p.small.Get(length)
}

func (p transientLargeBuffers) Put(b *[]byte) {
	if cap(*b) > largeBuffer {
		return
	}
	p.small.Put(b)
}
