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

	// conv is the assembly's lists converted for ByType, nil if none.
	conv *converted
}

// ByType returns the resources keyed by xDS type URL, every type present
// (possibly empty), ready for a go-control-plane snapshot. The map is the
// caller's; the lists of a proxy whose slices are its assembly's (see
// converted) are shared with every proxy of that assembly: read-only, and
// clipped, so an append copies.
func (r *Resources) ByType() map[string][]types.Resource {
	c := r.conv
	if c == nil {
		c = &converted{}
	}
	return map[string][]types.Resource{
		resourcev3.ListenerType: asResources(r.Listeners, c.listeners, c.anyListeners),
		resourcev3.RouteType:    asResources(r.Routes, c.routes, c.anyRoutes),
		resourcev3.ClusterType:  asResources(r.Clusters, c.clusters, c.anyClusters),
		resourcev3.EndpointType: asResources(r.Endpoints, c.endpoints, c.anyEndpoints),
		resourcev3.SecretType:   asResources(r.Secrets, nil, nil),
	}
}

// converted is an assembly's lists as types.Resource, converted once: at
// 2,000 services a sidecar's routes and clusters are 4,000 entries, and
// converting them on every push was a fifth of a profile edit's CPU at
// 1,000 proxies once the rest was shared. Each conversion is used only for
// the very slice it was made from (see asResources): a caller that swaps a
// list (a tapped proxy's listeners) gets it converted afresh.
type converted struct {
	listeners    []*listenerv3.Listener
	routes       []*routev3.RouteConfiguration
	clusters     []*clusterv3.Cluster
	endpoints    []*endpointv3.ClusterLoadAssignment
	anyListeners []types.Resource
	anyRoutes    []types.Resource
	anyClusters  []types.Resource
	anyEndpoints []types.Resource
}

func convert(listeners []*listenerv3.Listener, routes []*routev3.RouteConfiguration, clusters []*clusterv3.Cluster, endpoints []*endpointv3.ClusterLoadAssignment) *converted {
	return &converted{
		listeners: listeners, routes: routes, clusters: clusters, endpoints: endpoints,
		anyListeners: asResources(listeners, nil, nil),
		anyRoutes:    asResources(routes, nil, nil),
		anyClusters:  asResources(clusters, nil, nil),
		anyEndpoints: asResources(endpoints, nil, nil),
	}
}

// asResources returns xs as types.Resource: conv when xs is the very slice
// conv was converted from (same array, same length), else a new list.
func asResources[T types.Resource](xs, from []T, conv []types.Resource) []types.Resource {
	if len(xs) == len(from) && len(xs) > 0 && &xs[0] == &from[0] {
		return conv
	}
	out := make([]types.Resource, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
