package xds

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// largeBuffer is the size above which responses are marshalled into
// largeBuffers instead of gRPC's default pool. That pool's largest tier is
// 1 MiB; anything bigger goes to a sync.Pool of its own, where a full LDS,
// CDS or RDS response (1 to 2 MiB at 2,000 services) stays for two garbage
// collections after it was sent. With 1,000 proxies that was 300 MB of a
// 960 MB heap after every proxy had connected: a third of the resident
// memory was spent buffers of a connect storm that had ended.
const largeBuffer = 1 << 20

// largeBuffersKept bounds the large buffers kept for reuse. Keeping none
// would allocate every large response of a connect storm afresh; the
// syncing bound (MaxSyncingStreams) keeps the large responses in flight at
// once few, so a few kept buffers serve most of them.
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

// responseCodec is gRPC's proto codec, marshalling messages over
// largeBuffer into largeBuffers: gRPC's codec takes every buffer from the
// process-wide default pool, which the server's own buffer pool option
// does not replace.
type responseCodec struct {
	proto encoding.CodecV2
	large *largeBuffers
}

func newResponseCodec() responseCodec {
	return responseCodec{proto: encoding.GetCodecV2(grpcproto.Name), large: newLargeBuffers()}
}

func (c responseCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return c.proto.Marshal(v)
	}
	size := proto.Size(m)
	if size <= largeBuffer {
		return c.proto.Marshal(v)
	}
	buf := c.large.Get(size)
	// Size was just computed, and a response is not mutated while sent.
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.large.Put(buf)
		return nil, fmt.Errorf("marshalling %T: %w", v, err)
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, c.large)}, nil
}

func (c responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

func (c responseCodec) Name() string { return c.proto.Name() }
