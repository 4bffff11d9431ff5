package xds

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

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
			c := newXDSCodec(func([]byte) (string, bool) { return "", false })
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

// TestXDSCodecDecodesRequestsAsProto: a DiscoveryRequest decodes as
// proto.Unmarshal decodes it, and its names of held CLAs are the cache's
// strings, not copies.
func TestXDSCodecDecodesRequestsAsProto(t *testing.T) {
	held := map[string]string{"a-cla": "a-cla", "b-cla": "b-cla"}
	c := newXDSCodec(func(b []byte) (string, bool) {
		s, ok := held[string(b)]
		return s, ok
	})
	unknownField := protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "from a newer Envoy")
	badName := protowire.AppendBytes(protowire.AppendTag(nil, resourceNamesField, protowire.BytesType), []byte{0xff, 0xfe})
	marshal := func(r *discoveryv3.DiscoveryRequest) []byte {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		wire    []byte
		wantErr bool
	}{
		{"first request", marshal(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node1, Cluster: "test"}, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a-cla", "b-cla"}}), false},
		{"ACK with held and unknown names", marshal(&discoveryv3.DiscoveryRequest{VersionInfo: "v1", ResponseNonce: "3", TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"b-cla", "not-held", "a-cla"}}), false},
		{"NACK", marshal(&discoveryv3.DiscoveryRequest{ResponseNonce: "4", TypeUrl: resourcev3.ClusterType, ErrorDetail: &rpcstatus.Status{Code: 3, Message: "bad"}}), false},
		{"no names", marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType}), false},
		{"unknown field kept", append(marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a-cla"}}), unknownField...), false},
		{"names after other fields", append(marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType}), marshal(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"a-cla"}})...), false},
		{"name not UTF-8", append(marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType}), badName...), true},
		{"truncated", marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a-cla"}})[:5], true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want discoveryv3.DiscoveryRequest
			wantErr := proto.Unmarshal(tc.wire, &want)
			if (wantErr != nil) != tc.wantErr {
				t.Fatalf("proto.Unmarshal: %v, want error %v", wantErr, tc.wantErr)
			}
			for _, data := range framings(tc.wire) {
				var got discoveryv3.DiscoveryRequest
				err := c.Unmarshal(data, &got)
				if (err != nil) != tc.wantErr {
					t.Fatalf("codec, %d pieces: %v, want error %v", len(data), err, tc.wantErr)
				}
				if err != nil {
					continue
				}
				if !proto.Equal(&got, &want) {
					t.Errorf("codec, %d pieces, decoded %v, proto.Unmarshal %v", len(data), &got, &want)
				}
				for _, name := range got.GetResourceNames() {
					if h, ok := held[name]; ok && unsafe.StringData(h) != unsafe.StringData(name) {
						t.Errorf("name %q is a copy, not the cache's string", name)
					}
				}

				// serveSotw's request: the names stay encoded until asked
				// for, and hash as namesHash hashes the decoded list.
				raw := newSotwRequest()
				if err := c.Unmarshal(data, raw); err != nil {
					t.Fatalf("codec into a sotwRequest: %v", err)
				}
				hash, count := raw.namesID()
				if len(raw.ResourceNames) != 0 || !raw.encoded {
					t.Errorf("sotwRequest: names decoded before asked for: %v", raw.ResourceNames)
				}
				names, err := raw.names(c.intern)
				if err != nil {
					t.Fatalf("sotwRequest names: %v", err)
				}
				if !proto.Equal(raw.DiscoveryRequest, &want) {
					t.Errorf("sotwRequest decoded %v, proto.Unmarshal %v", raw.DiscoveryRequest, &want)
				}
				if wantHash := namesHash(names); hash != wantHash || count != len(names) {
					t.Errorf("sotwRequest names hash %x (%d names), want %x (%d)", hash, count, wantHash, len(names))
				}
			}
		})
	}
}

// framings are wire as gRPC may hand it over: in one piece, or in
// several, one per frame read.
func framings(wire []byte) []mem.BufferSlice {
	var out []mem.BufferSlice
	for _, piece := range []int{len(wire) + 1, 7} {
		var data mem.BufferSlice
		for rest := wire; len(rest) > 0; {
			k := min(len(rest), piece)
			data = append(data, mem.SliceBuffer(bytes.Clone(rest[:k])))
			rest = rest[k:]
		}
		out = append(out, data)
	}
	return out
}

// TestXDSCodecDecodesDeltaRequestsAsProto: a DeltaDiscoveryRequest, the
// initial_resource_versions a reconnecting proxy lists included, decodes
// as proto.Unmarshal decodes it, whole or in frames.
func TestXDSCodecDecodesDeltaRequestsAsProto(t *testing.T) {
	c := newXDSCodec(func([]byte) (string, bool) { return "", false })
	marshal := func(r *discoveryv3.DeltaDiscoveryRequest) []byte {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entry := func(fields ...[]byte) []byte {
		var e []byte
		for _, f := range fields {
			e = append(e, f...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, initialVersionsField, protowire.BytesType), e)
	}
	str := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	base := marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	cases := []struct {
		name    string
		wire    []byte
		wantErr bool
	}{
		{"first request of a reconnect", marshal(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node1}, TypeUrl: resourcev3.EndpointType,
			ResourceNamesSubscribe: []string{"a-cla", "b-cla", "c-cla"}, InitialResourceVersions: map[string]string{"a-cla": "v1", "b-cla": "v2"}}), false},
		{"no versions", marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "7"}), false},
		{"an empty version and an empty name", marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType,
			InitialResourceVersions: map[string]string{"a": "", "": "v"}}), false},
		{"a name listed twice: the last wins", append(append(bytes.Clone(base), entry(str(versionKey, []byte("a")), str(versionValue, []byte("v1")))...),
			entry(str(versionKey, []byte("a")), str(versionValue, []byte("v2")))...), false},
		{"value before key, and an unknown field in the entry", append(bytes.Clone(base),
			entry(str(versionValue, []byte("v1")), str(9, []byte("x")), str(versionKey, []byte("a")))...), false},
		{"versions between other fields", append(append(entry(str(versionKey, []byte("a")), str(versionValue, []byte("v1"))), base...),
			marshal(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"a"}})...), false},
		{"a name not UTF-8", append(bytes.Clone(base), entry(str(versionKey, []byte{0xff}), str(versionValue, []byte("v1")))...), true},
		{"a truncated entry", append(bytes.Clone(base), protowire.AppendBytes(protowire.AppendTag(nil, initialVersionsField, protowire.BytesType), []byte{0x0a, 0x05, 'a'})...), true},
		{"truncated", marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, InitialResourceVersions: map[string]string{"a": "v"}})[:10], true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want discoveryv3.DeltaDiscoveryRequest
			wantErr := proto.Unmarshal(tc.wire, &want)
			if (wantErr != nil) != tc.wantErr {
				t.Fatalf("proto.Unmarshal: %v, want error %v", wantErr, tc.wantErr)
			}
			for _, data := range framings(tc.wire) {
				var got discoveryv3.DeltaDiscoveryRequest
				err := c.Unmarshal(data, &got)
				if (err != nil) != tc.wantErr {
					t.Fatalf("codec, %d pieces: %v, want error %v", len(data), err, tc.wantErr)
				}
				if err == nil && !proto.Equal(&got, &want) {
					t.Errorf("codec, %d pieces, decoded %v, proto.Unmarshal %v", len(data), &got, &want)
				}
			}
		})
	}
}

// TestEndpointCacheInternsHeldNames: the endpoint cache interns exactly
// the names of the CLAs it holds, through additions, content changes and
// removals.
func TestEndpointCacheInternsHeldNames(t *testing.T) {
	hashes := newResourceHashes()
	enc := func(c *endpointv3.ClusterLoadAssignment) *encoded {
		e, err := hashes.encode(c)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	c := newEndpointCache()
	steps := []struct {
		name   string
		set    []*encoded
		remove []string
		want   map[string]bool
	}{
		{"empty", nil, nil, map[string]bool{"a-cla": false}},
		{"two added", []*encoded{enc(cla("a-cla", "10.0.0.1", 80)), enc(cla("b-cla", "10.0.0.2", 80))}, nil, map[string]bool{"a-cla": true, "b-cla": true, "c-cla": false}},
		{"content changed", []*encoded{enc(cla("a-cla", "10.0.0.9", 80))}, nil, map[string]bool{"a-cla": true, "b-cla": true}},
		{"one removed", nil, []string{"a-cla"}, map[string]bool{"a-cla": false, "b-cla": true}},
	}
	for _, st := range steps {
		if st.set != nil || st.remove != nil {
			c.update(st.set, st.remove)
		}
		for name, want := range st.want {
			if got, ok := c.intern([]byte(name)); ok != want || (ok && got != name) {
				t.Errorf("%s: intern(%q) = %q, %v; want held: %v", st.name, name, got, ok, want)
			}
		}
	}
}

// BenchmarkDeltaRequestDecode: the first CDS request of a proxy
// reconnecting at 2,000 services (a name and a SHA-256 version per
// cluster), decoded by protobuf and by the server's codec.
func BenchmarkDeltaRequestDecode(b *testing.B) {
	versions := make(map[string]string, 2000)
	for i := range 2000 {
		versions[fmt.Sprintf("outbound|8080||svc-%d.bench-%d.svc.cluster.local", i, i%10)] = fmt.Sprintf("%064x", i)
	}
	wire, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, InitialResourceVersions: versions})
	if err != nil {
		b.Fatal(err)
	}
	c := newXDSCodec(func([]byte) (string, bool) { return "", false })
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req discoveryv3.DeltaDiscoveryRequest
			if err := proto.Unmarshal(wire, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		data := mem.BufferSlice{mem.SliceBuffer(wire)}
		for b.Loop() {
			var req discoveryv3.DeltaDiscoveryRequest
			if err := c.Unmarshal(data, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
