package xds

import (
	"bytes"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestLargeBuffersKeptAreBounded: gRPC's default pool keeps every large
// buffer put back (until two collections pass); largeBuffers keeps at most
// largeBuffersKept of them, and reuses those. Reuse is seen as the same
// backing array coming back from Get.
func TestLargeBuffersKeptAreBounded(t *testing.T) {
	cases := []struct {
		name   string
		length int
	}{
		{"2 MiB", 2 << 20},
		{"just over 1 MiB", largeBuffer + 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := newLargeBuffers()
			const put = largeBuffersKept + 4
			given := map[*byte]bool{}
			var bufs []*[]byte
			for range put {
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
			for range put {
				if b := pool.Get(tc.length); given[&(*b)[0]] {
					reused++
				}
			}
			if reused != largeBuffersKept {
				t.Errorf("%d of %d buffers of %d bytes reused, want %d", reused, put, tc.length, largeBuffersKept)
			}
		})
	}
}

// TestResponseCodec: messages round-trip through the codec at every size,
// and one over largeBuffer is marshalled into largeBuffers (which keeps its
// buffer once the message is freed), a smaller one into gRPC's pool.
func TestResponseCodec(t *testing.T) {
	cases := []struct {
		name      string
		bytes     int
		wantLarge bool
	}{
		{"small", 1 << 10, false},
		{"at the limit's tier", largeBuffer / 2, false},
		{"large", 2 * largeBuffer, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newResponseCodec()
			msg := &discoveryv3.DiscoveryResponse{
				VersionInfo: "v1",
				TypeUrl:     resourcev3.ClusterType,
				Resources:   []*anypb.Any{{TypeUrl: resourcev3.ClusterType, Value: bytes.Repeat([]byte{7}, tc.bytes)}},
			}
			data, err := c.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			var back discoveryv3.DiscoveryResponse
			if err := c.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&back, msg) {
				t.Fatalf("round trip changed the message")
			}
			if len(data) != 1 {
				t.Fatalf("%d buffers, want 1", len(data))
			}
			own := &data[0].ReadOnlyData()[0]
			data.Free()
			kept := len(c.large.free) == 1 && &(*c.large.free[0])[0] == own
			if kept != tc.wantLarge || len(c.large.free) > 1 {
				t.Errorf("after Free, largeBuffers keeps %d buffers (the message's: %v), want the message's: %v", len(c.large.free), kept, tc.wantLarge)
			}
		})
	}
}
