package xds

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"

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

// xdsCodec is gRPC's proto codec with two exceptions, both for what a
// proxy costs. Messages over largeBuffer are marshalled into largeBuffers
// (gRPC's codec takes every buffer from the process-wide default pool,
// which the server's own buffer pool option does not replace). And a
// DiscoveryRequest's resource_names are decoded into the endpoint cache's
// strings where it holds a CLA of that name: a SotW EDS ACK repeats every
// CLA the proxy subscribes to (2,000 at 2,000 services), and allocating
// them afresh on every ACK was 2 million strings per endpoint change at
// 1,000 proxies, and the collections that followed.
type xdsCodec struct {
	proto  encoding.CodecV2
	large  *largeBuffers
	intern func([]byte) (string, bool)
}

func newXDSCodec(intern func([]byte) (string, bool)) xdsCodec {
	return xdsCodec{proto: encoding.GetCodecV2(grpcproto.Name), large: newLargeBuffers(), intern: intern}
}

func (c xdsCodec) Marshal(v any) (mem.BufferSlice, error) {
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

func (c xdsCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch req := v.(type) {
	case *sotwRequest:
		return withBytes(data, func(b []byte) error { return req.split(b) })
	case *discoveryv3.DiscoveryRequest:
		return withBytes(data, func(b []byte) error { return decodeRequest(b, req, c.intern) })
	case *discoveryv3.DeltaDiscoveryRequest:
		return withBytes(data, func(b []byte) error { return decodeDeltaRequest(b, req) })
	default:
		return c.proto.Unmarshal(data, v)
	}
}

// withBytes calls decode with data in one piece. An ACK naming 2,000 CLAs
// is about 100 KiB, over several frames; gRPC's pool would give it a
// zeroed 1 MiB buffer (clearing it was a tenth of an endpoint change's
// CPU). decode keeps nothing of the bytes (strings are copied or interned),
// and every byte it reads is first copied in, so a reused buffer needs no
// clearing.
func withBytes(data mem.BufferSlice, decode func([]byte) error) error {
	if len(data) == 1 {
		return decode(data[0].ReadOnlyData())
	}
	n := data.Len()
	bp, _ := requestBuffers.Get().(*[]byte)
	if bp == nil || cap(*bp) < n {
		b := make([]byte, n)
		bp = &b
	}
	b := (*bp)[:n]
	data.CopyTo(b)
	err := decode(b)
	*bp = b
	requestBuffers.Put(bp)
	return err
}

// requestBuffers holds buffers requests are gathered into (*[]byte).
var requestBuffers sync.Pool

// resourceNamesField is DiscoveryRequest.resource_names.
const resourceNamesField = 3

// splitRequest decodes b into req as proto.Unmarshal would, except the
// resource_names fields, each of which it hands to name, with the field's
// bytes as on the wire (field) and the name's (value).
func splitRequest(b []byte, req *discoveryv3.DiscoveryRequest, name func(field, value []byte) error) error {
	rest, err := splitField(b, "DiscoveryRequest", resourceNamesField, name)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return fmt.Errorf("decoding DiscoveryRequest: %w", err)
	}
	return nil
}

// splitField hands each length-delimited field split of the message b (a
// kind) to fn, with the field's bytes as on the wire (field) and its
// value's, and returns the other fields, encoded.
func splitField(b []byte, kind string, split protowire.Number, fn func(field, value []byte) error) ([]byte, error) {
	// rest is the message without the split fields: the rest are few and
	// small (the node, on a stream's first request).
	rest := make([]byte, 0, 256)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("decoding %s: %w", kind, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, fmt.Errorf("decoding %s field %d: %w", kind, num, protowire.ParseError(m))
		}
		if num != split || typ != protowire.BytesType {
			rest = append(rest, b[:n+m]...)
		} else {
			v, _ := protowire.ConsumeBytes(b[n:])
			if err := fn(b[:n+m], v); err != nil {
				return nil, err
			}
		}
		b = b[n+m:]
	}
	return rest, nil
}

// decodeRequest decodes b into req as proto.Unmarshal would, with the
// resource names intern holds as its strings.
func decodeRequest(b []byte, req *discoveryv3.DiscoveryRequest, intern func([]byte) (string, bool)) error {
	var names []string
	err := splitRequest(b, req, func(_, v []byte) error {
		name, ok := intern(v)
		if !ok {
			if !utf8.Valid(v) {
				return fmt.Errorf("decoding DiscoveryRequest: resource_names[%d] is not valid UTF-8", len(names))
			}
			name = string(v)
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return err
	}
	req.ResourceNames = names
	return nil
}

// initialVersionsField is DeltaDiscoveryRequest.initial_resource_versions,
// and versionKey and versionValue its map entry's fields.
var initialVersionsField, versionKey, versionValue = func() (protowire.Number, protowire.Number, protowire.Number) {
	f := (&discoveryv3.DeltaDiscoveryRequest{}).ProtoReflect().Descriptor().Fields().ByName("initial_resource_versions")
	return f.Number(), f.MapKey().Number(), f.MapValue().Number()
}()

// decodeDeltaRequest decodes b into req as proto.Unmarshal would, but for
// initial_resource_versions: a reconnecting proxy lists a name and a
// version for every resource it holds (6,000 at 2,000 services), and
// protobuf's map decoding allocated two strings per entry and grew the map
// as it went, a fifth of a restart's CPU at 1,000 proxies. Here the
// entries' strings are slices of one string, and the map is sized once.
func decodeDeltaRequest(b []byte, req *discoveryv3.DeltaDiscoveryRequest) error {
	var entries [][]byte
	size := 0
	rest, err := splitField(b, "DeltaDiscoveryRequest", initialVersionsField, func(_, v []byte) error {
		entries = append(entries, v)
		size += len(v)
		return nil
	})
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return fmt.Errorf("decoding DeltaDiscoveryRequest: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	// One string holds every key and value (b is reused once decoded); a
	// Builder hands over its bytes without copying them again.
	var all strings.Builder
	all.Grow(size)
	type span struct{ key, value [2]int }
	spans := make([]span, len(entries))
	for i, e := range entries {
		for len(e) > 0 {
			num, typ, n := protowire.ConsumeTag(e)
			if n < 0 {
				return fmt.Errorf("decoding DeltaDiscoveryRequest: initial_resource_versions entry %d: %w", i, protowire.ParseError(n))
			}
			m := protowire.ConsumeFieldValue(num, typ, e[n:])
			if m < 0 {
				return fmt.Errorf("decoding DeltaDiscoveryRequest: initial_resource_versions entry %d: %w", i, protowire.ParseError(m))
			}
			if typ == protowire.BytesType && (num == versionKey || num == versionValue) {
				v, _ := protowire.ConsumeBytes(e[n:])
				if !utf8.Valid(v) {
					return fmt.Errorf("decoding DeltaDiscoveryRequest: initial_resource_versions entry %d is not valid UTF-8", i)
				}
				at := [2]int{all.Len(), all.Len() + len(v)}
				all.Write(v)
				if num == versionKey {
					spans[i].key = at
				} else {
					spans[i].value = at
				}
			}
			e = e[n+m:]
		}
	}
	s := all.String()
	versions := make(map[string]string, len(spans))
	for _, sp := range spans {
		versions[s[sp.key[0]:sp.key[1]]] = s[sp.value[0]:sp.value[1]]
	}
	req.InitialResourceVersions = versions
	return nil
}

func (c xdsCodec) Name() string { return c.proto.Name() }
