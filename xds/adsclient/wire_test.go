package adsclient

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestEncodeFirstDelta: the first request of a type on a new stream, as
// the fleet encodes it by hand, is the DeltaDiscoveryRequest Envoy sends
// (subscribed names, and the version of each held resource among them),
// in a buffer of exactly its size.
func TestEncodeFirstDelta(t *testing.T) {
	held := &resourceSet{byName: map[string]*entry{
		"a": {name: "a", version: "va"},
		"b": {name: "b", version: "vb"},
		// Received without a version (SotW): not listed.
		"c": {name: "c"},
	}}
	node := nodeFor("web-0.shop")
	nodeBytes, err := proto.Marshal(node)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		node    []byte
		names   []string // nil: wildcard
		want    *discoveryv3.DeltaDiscoveryRequest
		wantAll bool
	}{
		{"wildcard, first type of the stream", nodeBytes, nil, &discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType,
			InitialResourceVersions: map[string]string{"a": "va", "b": "vb"}}, true},
		{"named, all held", nil, []string{"a", "b"}, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType,
			ResourceNamesSubscribe: []string{"a", "b"}, InitialResourceVersions: map[string]string{"a": "va", "b": "vb"}}, true},
		{"named, one without a version, one not held", nil, []string{"a", "c", "d"}, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType,
			ResourceNamesSubscribe: []string{"a", "c", "d"}, InitialResourceVersions: map[string]string{"a": "va"}}, false},
		{"nothing held", nil, nil, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := held
			if tc.want.InitialResourceVersions == nil {
				set = emptySet
			}
			b, all := encodeFirstDelta(tc.node, resourcev3.ClusterType, tc.names, set)
			var got discoveryv3.DeltaDiscoveryRequest
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, tc.want) || all != tc.wantAll {
				t.Errorf("got %v (all held %v), want %v (%v)", &got, all, tc.want, tc.wantAll)
			}
			if len(b) != cap(b) {
				t.Errorf("%d bytes in a buffer of %d", len(b), cap(b))
			}
		})
	}
}
