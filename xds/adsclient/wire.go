package adsclient

import (
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// wireCodec sends requests as ordinary protobuf and reads responses into a
// wireResponse: the message's bytes, kept in a pooled buffer, with the
// resources sliced out of it rather than decoded. A fleet stream receiving
// 2,000 clusters allocates one buffer, not 2,000 messages.
type wireCodec struct{}

// Name is "proto" so the server sees the ordinary content subtype.
func (wireCodec) Name() string { return "proto" }

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if raw, ok := v.(rawRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(raw)}, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("adsclient codec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*wireResponse)
	if !ok {
		return fmt.Errorf("adsclient codec: cannot unmarshal into %T", v)
	}
	r.size = data.Len()
	r.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
	if err := r.parse(r.buf.ReadOnlyData()); err != nil {
		r.free()
		return err
	}
	return nil
}

// wireResponse is a DiscoveryResponse or DeltaDiscoveryResponse read at the
// wire level. Its byte slices point into buf and live until free.
type wireResponse struct {
	delta     bool // set before receiving: which message this is
	buf       mem.Buffer
	size      int
	typeURL   string
	version   string
	nonce     string
	resources []wireResource
	removed   []string // delta only
}

type wireResource struct {
	value []byte // the Any's value: the encoded resource
	// version is the resource's version (delta only): what a reconnecting
	// proxy lists in initial_resource_versions.
	version []byte
}

func (r *wireResponse) free() {
	if r.buf != nil {
		r.buf.Free()
		r.buf = nil
	}
	r.resources = nil
}

// Field numbers come from the generated descriptors, not from literals.
var (
	sotwFields  = fieldsOf(&discoveryv3.DiscoveryResponse{})
	deltaFields = fieldsOf(&discoveryv3.DeltaDiscoveryResponse{})
	resFields   = fieldsOf(&discoveryv3.Resource{})
	anyFields   = fieldsOf(&anypb.Any{})
)

func fieldsOf(m proto.Message) map[string]protowire.Number {
	out := map[string]protowire.Number{}
	fs := m.ProtoReflect().Descriptor().Fields()
	for i := range fs.Len() {
		out[string(fs.Get(i).Name())] = fs.Get(i).Number()
	}
	return out
}

var errTruncated = errors.New("truncated protobuf")

// parse reads b as the response kind the stream set in r.delta.
func (r *wireResponse) parse(b []byte) error {
	if r.delta {
		return r.parseDelta(b)
	}
	return r.parseSotW(b)
}

// walk calls fn for each length-delimited field of b until fn returns false.
func walk(b []byte, fn func(protowire.Number, []byte) bool) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errTruncated
			}
			b = b[n:]
			if !fn(num, v) {
				return nil
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
	}
	return nil
}

func (r *wireResponse) parseSotW(b []byte) error {
	var inner error
	err := walk(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case sotwFields["version_info"]:
			r.version = string(v)
		case sotwFields["type_url"]:
			r.typeURL = string(v)
		case sotwFields["nonce"]:
			r.nonce = string(v)
		case sotwFields["resources"]:
			val, err := anyValue(v)
			if err != nil {
				inner = err
				return false
			}
			r.resources = append(r.resources, wireResource{value: val})
		}
		return true
	})
	return errors.Join(err, inner)
}

func (r *wireResponse) parseDelta(b []byte) error {
	var inner error
	err := walk(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case deltaFields["system_version_info"]:
			r.version = string(v)
		case deltaFields["type_url"]:
			r.typeURL = string(v)
		case deltaFields["nonce"]:
			r.nonce = string(v)
		case deltaFields["removed_resources"]:
			r.removed = append(r.removed, string(v))
		case deltaFields["resources"]:
			var res wireResource
			if err := walk(v, func(n protowire.Number, rv []byte) bool {
				switch n {
				case resFields["resource"]:
					res.value, inner = anyValue(rv)
					return inner == nil
				case resFields["version"]:
					res.version = rv
				}
				return true
			}); err != nil {
				inner = err
			}
			if inner != nil {
				return false
			}
			if res.value != nil {
				r.resources = append(r.resources, res)
			}
		}
		return true
	})
	return errors.Join(err, inner)
}

// anyValue is the value field of an encoded Any.
func anyValue(b []byte) ([]byte, error) {
	var out []byte
	err := walk(b, func(num protowire.Number, v []byte) bool {
		if num == anyFields["value"] {
			out = v
			return false
		}
		return true
	})
	return out, err
}

// rawRequest is a request encoded by the fleet itself (see
// encodeFirstDelta), sent as is.
type rawRequest []byte

var (
	deltaReqFields = fieldsOf(&discoveryv3.DeltaDiscoveryRequest{})
	versionEntry   = (&discoveryv3.DeltaDiscoveryRequest{}).ProtoReflect().Descriptor().Fields().
			ByName("initial_resource_versions").Message().Fields()
	entryKey   = versionEntry.ByName("key").Number()
	entryValue = versionEntry.ByName("value").Number()
)

// encodeFirstDelta encodes the first DeltaDiscoveryRequest of a type on a
// new stream: node (if any), type, the names subscribed, and what the
// proxy holds of them as initial_resource_versions (every resource of
// held when names is nil: a wildcard type). It is encoded here rather
// than built as a message because a reconnecting proxy lists thousands of
// versions, and 10,000 of them reconnect at once: a map per request would
// be the load generator's largest cost. It reports whether the proxy holds
// a version of every name.
func encodeFirstDelta(node []byte, typeURL string, names []string, held *resourceSet) (rawRequest, bool) {
	// Sized first: grown by append, the buffer would be up to twice the
	// request, and a reconnect storm holds thousands of them at once.
	b := make([]byte, 0, firstDeltaSize(node, typeURL, names, held))
	if node != nil {
		b = protowire.AppendTag(b, deltaReqFields["node"], protowire.BytesType)
		b = protowire.AppendBytes(b, node)
	}
	b = protowire.AppendTag(b, deltaReqFields["type_url"], protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	version := func(e *entry) {
		size := protowire.SizeTag(entryKey) + protowire.SizeBytes(len(e.name)) +
			protowire.SizeTag(entryValue) + protowire.SizeBytes(len(e.version))
		b = protowire.AppendTag(b, deltaReqFields["initial_resource_versions"], protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, entryKey, protowire.BytesType)
		b = protowire.AppendString(b, e.name)
		b = protowire.AppendTag(b, entryValue, protowire.BytesType)
		b = protowire.AppendString(b, e.version)
	}
	if names == nil {
		for _, e := range held.byName {
			if e.version != "" {
				version(e)
			}
		}
		return b, true
	}
	all := true
	for _, n := range names {
		b = protowire.AppendTag(b, deltaReqFields["resource_names_subscribe"], protowire.BytesType)
		b = protowire.AppendString(b, n)
		// A name the proxy lacks (never received, or removed since) is
		// subscribed without a version, as Envoy does.
		if e := held.byName[n]; e != nil && e.version != "" {
			version(e)
		} else {
			all = false
		}
	}
	return b, all
}

// firstDeltaSize is the size of encodeFirstDelta's request.
func firstDeltaSize(node []byte, typeURL string, names []string, held *resourceSet) int {
	field := func(num protowire.Number, n int) int { return protowire.SizeTag(num) + protowire.SizeBytes(n) }
	size := field(deltaReqFields["type_url"], len(typeURL))
	if node != nil {
		size += field(deltaReqFields["node"], len(node))
	}
	version := func(e *entry) int {
		return field(deltaReqFields["initial_resource_versions"], field(entryKey, len(e.name))+field(entryValue, len(e.version)))
	}
	if names == nil {
		for _, e := range held.byName {
			if e.version != "" {
				size += version(e)
			}
		}
		return size
	}
	for _, n := range names {
		size += field(deltaReqFields["resource_names_subscribe"], len(n))
		if e := held.byName[n]; e != nil && e.version != "" {
			size += version(e)
		}
	}
	return size
}

// nodeFor is the node an Envoy sidecar sends on its first request.
func nodeFor(id string) *corev3.Node {
	return &corev3.Node{Id: id, Cluster: id, UserAgentName: "envoy"}
}
