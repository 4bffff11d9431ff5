package xds

import (
	"testing"

	"google.golang.org/grpc/mem"
)

// TestLargeBuffersAreNotPooled: a buffer over largeBuffer is not kept for
// reuse once gRPC puts it back (it is garbage at the next collection), and
// the buffers below keep gRPC's pooling. Reuse is observed as the same
// backing array coming back from Get right after Put on one goroutine, which
// a sync.Pool gives when no collection intervenes; the default pool is the
// control that shows the observation can see pooling at that size.
func TestLargeBuffersAreNotPooled(t *testing.T) {
	cases := []struct {
		name       string
		pool       mem.BufferPool
		length     int
		wantReused bool
	}{
		{"default pool keeps a 2 MiB buffer", mem.DefaultBufferPool(), 2 << 20, true},
		{"2 MiB is allocated afresh", newTransientLargeBuffers(), 2 << 20, false},
		{"just over the limit is allocated afresh", newTransientLargeBuffers(), largeBuffer + 1, false},
		{"16 KiB stays pooled", newTransientLargeBuffers(), 16 << 10, true},
		{"the largest pooled tier stays pooled", newTransientLargeBuffers(), largeBuffer, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reused := false
			// A collection between Put and Get empties a sync.Pool; a few
			// tries make the control case immune to an unlucky one.
			for range 5 {
				b := tc.pool.Get(tc.length)
				if len(*b) != tc.length {
					t.Fatalf("Get(%d) gave %d bytes", tc.length, len(*b))
				}
				first := &(*b)[0]
				tc.pool.Put(b)
				again := tc.pool.Get(tc.length)
				if &(*again)[0] == first {
					reused = true
				}
				tc.pool.Put(again)
				if reused {
					break
				}
			}
			if reused != tc.wantReused {
				t.Errorf("buffer of %d bytes reused: %v, want %v", tc.length, reused, tc.wantReused)
			}
		})
	}
}
