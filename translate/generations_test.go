package translate_test

import (
	"fmt"
	"testing"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
)

// TestTwoModelsDoNotEvictEachOther: a connecting proxy pushed from one snapshot while a
// flush uses the next must not make the two rebuild each other's views.
func TestTwoModelsDoNotEvictEachOther(t *testing.T) {
	m1 := modelBuilder{newModel()}
	for i := range 10 {
		m1.add(httpService("shop", fmt.Sprintf("svc%d", i), fmt.Sprintf("10.96.1.%d", i), 80), fmt.Sprintf("10.2.%d.1", i))
	}
	m2 := clone(m1.Model)
	m2.Endpoints[key("shop", "svc3")] = readyEndpoints(m2.Services[key("shop", "svc3")], "10.2.3.9")
	m3 := clone(m2)
	m3.Endpoints[key("shop", "svc4")] = readyEndpoints(m3.Services[key("shop", "svc4")], "10.2.4.9")

	tr := translate.NewTranslator(translate.Options{})
	first := map[*mesh.Model]*translate.Resources{}
	for _, m := range []*mesh.Model{m1.Model, m2} {
		first[m], _ = tr.ForProxy(m, sidecar("shop", "a"))
	}
	if got := translate.ViewBuilds(tr); got != 2 {
		t.Fatalf("%d views built for two models, want 2", got)
	}
	eps := map[*mesh.Model]any{}
	for _, m := range []*mesh.Model{m1.Model, m2} {
		eps[m] = tr.Endpoints(m, key("shop", "svc3"))[0]
	}
	for i := range 10 {
		for _, m := range []*mesh.Model{m1.Model, m2} {
			res, _ := tr.ForProxy(m, sidecar("shop", fmt.Sprintf("p%d", i)))
			if res.Listeners[1] != first[m].Listeners[1] || res.Routes[0] != first[m].Routes[0] {
				t.Fatalf("round %d: a proxy of a live model got rebuilt resources", i)
			}
			if got := tr.Endpoints(m, key("shop", "svc3"))[0]; got != eps[m] {
				t.Fatalf("round %d: Endpoints() rebuilt the assignment of a live model", i)
			}
		}
	}
	if got := translate.ViewBuilds(tr); got != 2 {
		t.Fatalf("%d views built alternating between two models, want 2", got)
	}
	if a, b := first[m1.Model].Endpoints, first[m2].Endpoints; a[3] == b[3] || a[4] != b[4] {
		t.Fatal("the models should differ in svc3's assignment only")
	}

	// A third model retires the first: its view is rebuilt when asked for again, the
	// second's is not.
	tr.ForProxy(m3, sidecar("shop", "a"))
	tr.ForProxy(m2, sidecar("shop", "a"))
	if got := translate.ViewBuilds(tr); got != 3 {
		t.Fatalf("%d views built after a third model, want 3", got)
	}
	tr.ForProxy(m1.Model, sidecar("shop", "a"))
	if got := translate.ViewBuilds(tr); got != 4 {
		t.Fatalf("%d views built after going back to a retired model, want 4", got)
	}
}
