package translate_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// toYAML renders resources as a YAML list: protojson with Envoy's field
// names, re-encoded with sorted keys (protojson's own whitespace is
// deliberately unstable).
func toYAML[T proto.Message](t testing.TB, msgs []T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if len(msgs) == 0 {
		return []byte("[]\n")
	}
	for _, m := range msgs {
		js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %T: %v", m, err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			t.Fatal(err)
		}
		y, err := yaml.Marshal([]any{v})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&buf, "%s", y)
	}
	return buf.Bytes()
}
