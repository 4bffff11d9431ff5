package controller

import (
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
)

// translatorAdapter fits translate.Translator to the pipeline: endpoints
// travel through the shared EDS cache (SetEndpoints), never in a node's
// snapshot, so they are dropped from the per-node set.
type translatorAdapter struct{ t *translate.Translator }

// Reads is what the wrapped translator reads: the pipeline's dependency
// index follows it (see newPipeline).
func (a translatorAdapter) Reads() translate.Reads { return a.t.Reads() }

func newDefaultTranslator(opts translate.Options) Translator {
	return translatorAdapter{translate.NewTranslator(opts)}
}

func (a translatorAdapter) ForProxy(m *mesh.Model, p *mesh.Proxy) (map[string][]types.Resource, []error) {
	res, errs := a.t.ForProxy(m, p)
	out := res.ByType()
	delete(out, resourcev3.EndpointType)
	return out, errs
}

func (a translatorAdapter) Endpoints(m *mesh.Model, svc mesh.ServiceKey) []*endpointv3.ClusterLoadAssignment {
	return a.t.Endpoints(m, svc)
}
