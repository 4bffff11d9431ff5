package translate_test

import (
	"testing"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/translate/check"
)

// checkResources fails the test on anything the proxy's peer would refuse,
// and on warnings (accepted, then failing at run time) too.
func checkResources(t testing.TB, p *mesh.Proxy, res *translate.Resources) {
	t.Helper()
	for _, prob := range check.Problems(p.Kind, res.ByType()) {
		if prob.Warning {
			t.Errorf("%s warning: %v", p.Kind, prob)
			continue
		}
		t.Errorf("%s would refuse: %v", p.Kind, prob)
	}
}

// TestGoldenPassesChecker: every golden output is accepted by the peer it is
// for (Envoy for sidecars, grpc-go for proxyless clients).
func TestGoldenPassesChecker(t *testing.T) {
	for _, c := range loadGoldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			p, res, _ := translateCase(t, c, c.objects)
			checkResources(t, p, res)
		})
	}
}
