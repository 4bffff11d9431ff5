package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// DefaultClusterDomain is used when neither Options nor the model name one.
const DefaultClusterDomain = "cluster.local"

// Resources is the Envoy configuration of one proxy. The order is
// deterministic: the proxy's own resources (inbound), then the services'
// ordered by namespace and name, each service's by port, then the
// passthrough cluster. (xDS does not care about order; sorting 6,000 names
// on every push would cost more than the rest of a warm translation.)
// Resources, and the slices themselves, are shared between proxies and
// between calls: treat them as read-only.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
}

// ByType returns the resources keyed by xDS type URL, every type present
// (possibly empty), ready for a go-control-plane snapshot.
func (r *Resources) ByType() map[string][]types.Resource {
	out := map[string][]types.Resource{
		resourcev3.ListenerType: make([]types.Resource, 0, len(r.Listeners)),
		resourcev3.RouteType:    make([]types.Resource, 0, len(r.Routes)),
		resourcev3.ClusterType:  make([]types.Resource, 0, len(r.Clusters)),
		resourcev3.EndpointType: make([]types.Resource, 0, len(r.Endpoints)),
		resourcev3.SecretType:   make([]types.Resource, 0, len(r.Secrets)),
	}
	for _, x := range r.Listeners {
		out[resourcev3.ListenerType] = append(out[resourcev3.ListenerType], x)
	}
	for _, x := range r.Routes {
		out[resourcev3.RouteType] = append(out[resourcev3.RouteType], x)
	}
	for _, x := range r.Clusters {
		out[resourcev3.ClusterType] = append(out[resourcev3.ClusterType], x)
	}
	for _, x := range r.Endpoints {
		out[resourcev3.EndpointType] = append(out[resourcev3.EndpointType], x)
	}
	for _, x := range r.Secrets {
		out[resourcev3.SecretType] = append(out[resourcev3.SecretType], x)
	}
	return out
}
