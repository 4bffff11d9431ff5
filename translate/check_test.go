package translate_test

import (
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/translate/check"
)

// checkResources fails the test on anything the proxy's peer would refuse,
// and on warnings (accepted, then failing at run time) too.
func checkResources(t testing.TB, p *mesh.Proxy, res *translate.Resources) {
	t.Helper()
	byType := res.ByType()
	if len(res.Secrets) == 0 {
		// The secrets mTLS names are the SDS server's to send, not
		// translate's: without them in the push the checker checks what
		// the references say and leaves out whether they resolve.
		delete(byType, resourcev3.SecretType)
	}
	for _, prob := range check.Problems(p.Kind, byType) {
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
