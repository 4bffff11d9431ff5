package translate

import (
	"errors"

	"github.com/weftmesh/weft/mesh"
)

// RouteProblem is why translate would not serve a route of a profile that
// passed profiles validation.
type RouteProblem struct {
	// Route is the index in spec.routes; the problem is in its condition.
	Route int
	// ProxylessOnly: only proxyless gRPC clients lose the profile's routes
	// (their condition needs a :path or :method test grpc-go cannot make);
	// otherwise translate skips the whole profile for every client.
	ProxylessOnly bool
	// Err says what is wrong, relative to the condition.
	Err error
}

// CheckProfile compiles each route of p the way translation does, for
// sidecars and for proxyless clients, and reports every route translation
// would refuse. It exists so that admission can refuse what validation
// alone lets through (a condition that expands into too many Envoy
// routes, a regex that outgrows Envoy's size limit once anchored for the
// :path header) instead of the control plane skipping it later.
func CheckProfile(p *mesh.Profile) []RouteProblem {
	var out []RouteProblem
	for i, r := range p.Routes {
		// One route at a time: compileProfile stops at the first error.
		compiled, err := compileProfile(&mesh.Profile{Routes: []mesh.Route{r}})
		switch {
		case err != nil:
			out = append(out, RouteProblem{Route: i, Err: relativeToCondition(err)})
		case compiled.proxylessErr != nil:
			out = append(out, RouteProblem{Route: i, ProxylessOnly: true, Err: relativeToCondition(compiled.proxylessErr)})
		}
	}
	return out
}

// relativeToCondition drops the "spec.routes[0].condition: " that
// compileProfile wraps its errors in (the index is that of the one-route
// profile CheckProfile made, not the caller's).
func relativeToCondition(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}
