package proxyconfig

import (
	"cmp"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// config is a node's resources sorted by name, with lookups the sections
// share (a TCP proxy to an ORIGINAL_DST cluster is a passthrough, an EDS
// cluster without a CLA has no endpoints).
type config struct {
	listeners []*listenerv3.Listener
	routes    []routeConfig
	clusters  []*clusterv3.Cluster
	clas      []*endpointv3.ClusterLoadAssignment
	secrets   []*tlsv3.Secret

	clusterByName map[string]*clusterv3.Cluster
	claByName     map[string]*endpointv3.ClusterLoadAssignment

	// problems are entries of a wrong type, per type URL.
	problems map[string][]string
}

// routeConfig is a RouteConfiguration from RDS or inline in a listener's
// HTTP connection manager.
type routeConfig struct {
	rc *routev3.RouteConfiguration
	// inlineIn is the listener holding it, empty for RDS.
	inlineIn string
}

func collect[T interface {
	*M
	types.Resource
}, M any](cfg *config, res map[string][]types.Resource, typeURL string) []T {
	var out []T
	for i, r := range res[typeURL] {
		v, ok := r.(T)
		if !ok || v == nil {
			cfg.problems[typeURL] = append(cfg.problems[typeURL], badResource(typeURL, i, r))
			continue
		}
		out = append(out, v)
	}
	return out
}

func index(res map[string][]types.Resource) *config {
	cfg := &config{
		clusterByName: map[string]*clusterv3.Cluster{},
		claByName:     map[string]*endpointv3.ClusterLoadAssignment{},
		problems:      map[string][]string{},
	}
	cfg.listeners = collect[*listenerv3.Listener](cfg, res, resourcev3.ListenerType)
	slices.SortStableFunc(cfg.listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.GetName(), b.GetName()) })

	for _, rc := range collect[*routev3.RouteConfiguration](cfg, res, resourcev3.RouteType) {
		cfg.routes = append(cfg.routes, routeConfig{rc: rc})
	}
	for _, l := range cfg.listeners {
		for _, rc := range inlineRouteConfigs(l) {
			cfg.routes = append(cfg.routes, routeConfig{rc: rc, inlineIn: l.GetName()})
		}
	}
	slices.SortStableFunc(cfg.routes, func(a, b routeConfig) int {
		return cmp.Or(cmp.Compare(a.rc.GetName(), b.rc.GetName()), cmp.Compare(a.inlineIn, b.inlineIn))
	})

	cfg.clusters = collect[*clusterv3.Cluster](cfg, res, resourcev3.ClusterType)
	slices.SortStableFunc(cfg.clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })
	for _, c := range cfg.clusters {
		cfg.clusterByName[c.GetName()] = c
	}

	cfg.clas = collect[*endpointv3.ClusterLoadAssignment](cfg, res, resourcev3.EndpointType)
	slices.SortStableFunc(cfg.clas, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
	for _, c := range cfg.clas {
		cfg.claByName[c.GetClusterName()] = c
	}

	cfg.secrets = collect[*tlsv3.Secret](cfg, res, resourcev3.SecretType)
	slices.SortStableFunc(cfg.secrets, func(a, b *tlsv3.Secret) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return cfg
}

// isPassthrough says whether a cluster forwards to the connection's
// original destination.
func (cfg *config) isPassthrough(cluster string) bool {
	return cfg.clusterByName[cluster].GetType() == clusterv3.Cluster_ORIGINAL_DST
}
