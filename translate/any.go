package translate

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// mustAny packs m deterministically: the same config must give the same
// bytes, or resource hashes flap and Envoy reapplies unchanged config.
// Packing a well-formed message built in this package cannot fail; a failure
// is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("translate: packing %T: %v", m, err))
	}
	return a
}
