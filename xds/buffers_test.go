package xds

import (
	"testing"

	"google.golang.org/grpc/mem"
)

// TestLargeBuffersKeptAreBounded: gRPC's default pool keeps every large
// buffer put back (until two collections pass); largeBuffers keeps at most
// largeBuffersKept of them, and reuses those. Reuse is seen as the same
// backing array coming back from Get.
func TestLargeBuffersKeptAreBounded(t *testing.T) {
	cases := []struct {
		name   string
		pool   func() mem.BufferPool
		length int
		put    int
		// wantReusedAtMost and wantReusedAtLeast bound how many of the put
		// buffers the next put Gets return.
		wantReusedAtLeast, wantReusedAtMost int
	}{
		{"default pool keeps them all", func() mem.BufferPool { return mem.DefaultBufferPool() }, 2 << 20, largeBuffersKept + 4, largeBuffersKept + 1, largeBuffersKept + 4},
		{"2 MiB: kept up to the bound", func() mem.BufferPool { return newLargeBuffers() }, 2 << 20, largeBuffersKept + 4, largeBuffersKept, largeBuffersKept},
		{"just over 1 MiB: kept up to the bound", func() mem.BufferPool { return newLargeBuffers() }, largeBuffer + 1, largeBuffersKept + 4, largeBuffersKept, largeBuffersKept},
		{"16 KiB: gRPC's pooling", func() mem.BufferPool { return newLargeBuffers() }, 16 << 10, 2, 1, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := tc.pool()
			// A collection between Put and Get empties a sync.Pool; a few
			// tries make the sync.Pool cases immune to an unlucky one.
			best := 0
			for range 5 {
				given := map[*byte]bool{}
				var bufs []*[]byte
				for range tc.put {
					b := pool.Get(tc.length)
					if len(*b) != tc.length {
						t.Fatalf("Get(%d) gave %d bytes", tc.length, len(*b))
					}
					given[&(*b)[0]] = true
					bufs = append(bufs, b)
				}
				for _, b := range bufs {
					pool.Put(b)
				}
				reused := 0
				bufs = bufs[:0]
				for range tc.put {
					b := pool.Get(tc.length)
					if given[&(*b)[0]] {
						reused++
					}
					bufs = append(bufs, b)
				}
				for _, b := range bufs {
					pool.Put(b)
				}
				best = max(best, reused)
				if best >= tc.wantReusedAtLeast {
					break
				}
			}
			if best < tc.wantReusedAtLeast || best > tc.wantReusedAtMost {
				t.Errorf("%d of %d buffers of %d bytes reused, want %d to %d", best, tc.put, tc.length, tc.wantReusedAtLeast, tc.wantReusedAtMost)
			}
		})
	}
}
