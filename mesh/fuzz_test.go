package mesh

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/weftmesh/weft/profiles"
)

// FuzzDecodeServiceProfile feeds arbitrary bytes through everything a
// ServiceProfile from the API goes through: strict decoding, validation and
// conversion into the model. None of it may panic, and the pieces must agree:
// ProfileFrom converts exactly what ValidateServiceProfile accepts.
func FuzzDecodeServiceProfile(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "profiles", "testdata", "good", "*.yaml"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"apiVersion":"linkerd.io/v1alpha2","kind":"ServiceProfile","metadata":{"name":"a.b.svc.cluster.local"},"spec":{"dstOverrides":[{"authority":"a.b.svc.cluster.local:1","weight":"1e3"}],"opaquePorts":{"0":{}}}}`))
	f.Add([]byte("apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: a.b.svc.cluster.local}\nspec:\n  routes:\n  - name: r\n    condition: {not: {not: {all: [{any: [{pathRegex: '\\p{L}+'}]}]}}}\n    responseClasses: [{condition: {status: {min: 600}}}]\n"))
	f.Add([]byte("spec: [1"))

	f.Fuzz(func(t *testing.T, data []byte) {
		sp, err := profiles.DecodeServiceProfile(data)
		if err != nil {
			if sp != nil {
				t.Fatalf("error %v returned with a profile", err)
			}
			return
		}
		if cp := sp.DeepCopy(); !reflect.DeepEqual(cp, sp) {
			t.Fatal("DeepCopy differs from the original")
		}
		verrs := profiles.ValidateServiceProfile(sp, "cluster.local")
		p, perrs := ProfileFrom(sp, "cluster.local")
		if len(verrs) != len(perrs) {
			t.Fatalf("ValidateServiceProfile gave %d errors, ProfileFrom %d", len(verrs), len(perrs))
		}
		for _, e := range perrs {
			if e.Field == "" {
				t.Fatalf("error without a field path: %v", e)
			}
		}
		if (p == nil) == (len(perrs) == 0) {
			t.Fatalf("ProfileFrom returned profile %v with errors %v", p != nil, perrs)
		}
		if p == nil {
			return
		}
		if p.Service.FQDN("cluster.local") != sp.Name {
			t.Fatalf("profile %q converted for service %v", sp.Name, p.Service)
		}
		if len(p.Routes) != len(sp.Spec.Routes) || len(p.DstOverrides) != len(sp.Spec.DstOverrides) {
			t.Fatal("routes or overrides lost in conversion")
		}
		var total uint64
		for _, d := range p.DstOverrides {
			total += uint64(d.Weight)
		}
		if len(p.DstOverrides) > 0 && (total == 0 || total > 1<<32-1) {
			t.Fatalf("accepted dstOverrides weights summing to %d", total)
		}
	})
}
