package proxyconfig

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt from translate's golden resources and delete stale ones")

// translateTestdata holds translate's golden output:
// <case>.{listeners,routes,clusters,endpoints[,secrets]}.yaml, each a YAML
// list of protojson resources with Envoy's field names.
const translateTestdata = "../../../translate/testdata"

var fileTypes = map[string]string{
	"listeners": resourcev3.ListenerType,
	"routes":    resourcev3.RouteType,
	"clusters":  resourcev3.ClusterType,
	"endpoints": resourcev3.EndpointType,
	"secrets":   resourcev3.SecretType,
}

// loadResources reads <dir>/<name>.<kind>.yaml for every kind present.
func loadResources(t testing.TB, dir, name string) map[string][]types.Resource {
	t.Helper()
	res := map[string][]types.Resource{}
	for kind, typeURL := range fileTypes {
		path := filepath.Join(dir, name+"."+kind+".yaml")
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var items []json.RawMessage
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := json.Unmarshal(js, &items); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
		if err != nil {
			t.Fatalf("%s: %v", typeURL, err)
		}
		for i, item := range items {
			m := mt.New().Interface()
			if err := protojson.Unmarshal(item, m); err != nil {
				t.Fatalf("%s: item %d: %v", path, i, err)
			}
			res[typeURL] = append(res[typeURL], m)
		}
	}
	return res
}

// goldenCases are the translate cases that have output (a listeners file).
func goldenCases(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(translateTestdata, "*.listeners.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".listeners.yaml"))
	}
	return out
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestGolden(t *testing.T) {
	cases := goldenCases(t)
	if len(cases) == 0 {
		t.Fatalf("no golden resources in %s", translateTestdata)
	}
	want := map[string]bool{}
	for _, name := range cases {
		want[name+".txt"] = true
		t.Run(name, func(t *testing.T) {
			res := loadResources(t, translateTestdata, name)
			var out bytes.Buffer
			if err := Render(&out, res, Options{}); err != nil {
				t.Fatalf("Render: %v", err)
			}
			// Deterministic: the same resources, in another order, print the
			// same.
			reversed := map[string][]types.Resource{}
			for k, v := range res {
				for i := len(v) - 1; i >= 0; i-- {
					reversed[k] = append(reversed[k], v[i])
				}
			}
			var again bytes.Buffer
			if err := Render(&again, reversed, Options{}); err != nil {
				t.Fatalf("Render: %v", err)
			}
			if !bytes.Equal(out.Bytes(), again.Bytes()) {
				t.Errorf("output depends on resource order:\n%s\n---\n%s", out.Bytes(), again.Bytes())
			}
			checkGolden(t, filepath.Join("testdata", name+".txt"), out.Bytes())
		})
	}
	// Hand-built cases (render_test.go) have golden files too.
	for _, name := range handBuiltGoldens {
		want[name+".txt"] = true
	}
	if *update {
		stale, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
		for _, f := range stale {
			if !want[filepath.Base(f)] {
				if err := os.Remove(f); err != nil {
					t.Error(err)
				}
			}
		}
	}
}
