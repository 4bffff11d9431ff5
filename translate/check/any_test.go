package check

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/proxy"
)

const hcmPath = "filter_chains[0].filters[0].typed_config"

func TestAnyRules(t *testing.T) {
	withHTTPFilters := func(filters ...*hcmv3.HttpFilter) func() map[string][]types.Resource {
		return func() map[string][]types.Resource {
			n := baseNode()
			n.listeners[0].FilterChains[0] = httpChain("http", hcmRDS("rc", filters...))
			return n.res()
		}
	}
	withVHConfig := func(name string, a *anypb.Any) func() map[string][]types.Resource {
		return func() map[string][]types.Resource {
			n := baseNode()
			n.routes[0].VirtualHosts[0].TypedPerFilterConfig = map[string]*anypb.Any{name: a}
			return n.res()
		}
	}
	runRows(t, []row{
		{
			name:    "unknown extension type",
			bad:     withHTTPFilters(httpFilter("envoy.filters.http.cors", &corsv3.Cors{}), routerFilter()),
			good:    withHTTPFilters(httpFilter("envoy.filters.http.fault", &faultv3.HTTPFault{}), routerFilter()),
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath + ".http_filters[0].typed_config",
			msg:  "Didn't find a registered implementation for 'envoy.filters.http.cors' with type URL: 'envoy.extensions.filters.http.cors.v3.Cors'",
		},
		{
			name: "inner message constraints (ValidateAll does not look inside Any)",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				h := hcmRDS("rc")
				h.StatPrefix = ""
				n.listeners[0].FilterChains[0] = httpChain("http", h)
				return n.res()
			},
			good:    func() map[string][]types.Resource { return baseNode().res() },
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath,
			msg:  "Proto constraint validation failed (invalid HttpConnectionManager.StatPrefix",
		},
		{
			name:    "constraints of an Any nested in an Any",
			bad:     withHTTPFilters(httpFilter("envoy.filters.http.fault", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{}}), routerFilter()),
			good:    withHTTPFilters(httpFilter("envoy.filters.http.fault", &faultv3.HTTPFault{}), routerFilter()),
			typeURL: resource.ListenerType, resName: "in",
			path: hcmPath + ".http_filters[0].typed_config",
			msg:  "Proto constraint validation failed (invalid HTTPFault.Abort",
		},
		{
			name: "top-level constraints",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				n.clusters = append(n.clusters, edsCluster(""))
				return n.res()
			},
			good:    func() map[string][]types.Resource { return baseNode().res() },
			typeURL: resource.ClusterType, resName: "",
			path: "",
			msg:  "Proto constraint validation failed (invalid Cluster.Name",
		},
		{
			name: "known type in the wrong registry",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				n.listeners[0].FilterChains[0].Filters[0] = netFilter("envoy.filters.http.router", &routerv3.Router{})
				return n.res()
			},
			good:    func() map[string][]types.Resource { return baseNode().res() },
			typeURL: resource.ListenerType, resName: "in",
			path: "filter_chains[0].filters[0].typed_config",
			msg:  "Didn't find a registered implementation for 'envoy.filters.http.router' with type URL: 'envoy.extensions.filters.http.router.v3.Router'",
		},
		{
			name:    "per-route config for a filter that has none",
			bad:     withVHConfig("envoy.filters.http.router", mustAny(&routerv3.Router{})),
			good:    withVHConfig("envoy.filters.http.fault", mustAny(&faultv3.HTTPFault{})),
			typeURL: resource.RouteType, resName: "rc",
			path: `virtual_hosts[0].typed_per_filter_config["envoy.filters.http.router"]`,
			msg:  "The filter envoy.filters.http.router doesn't support virtual host or route specific configurations",
		},
		{
			name:    "per-route config of the filter's own type instead of its per-route type",
			bad:     withVHConfig("envoy.filters.http.rbac", mustAny(&httprbacv3.RBAC{})),
			good:    withVHConfig("envoy.filters.http.rbac", mustAny(&httprbacv3.RBACPerRoute{})),
			typeURL: resource.RouteType, resName: "rc",
			path: `virtual_hosts[0].typed_per_filter_config["envoy.filters.http.rbac"]`,
			msg:  "Unable to unpack as envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
		},
		{
			name:    "FilterConfig wrapper without config",
			bad:     withVHConfig("envoy.filters.http.fault", mustAny(&routev3.FilterConfig{})),
			good:    withVHConfig("envoy.filters.http.fault", mustAny(&routev3.FilterConfig{Disabled: true})),
			typeURL: resource.RouteType, resName: "rc",
			path: `virtual_hosts[0].typed_per_filter_config["envoy.filters.http.fault"]`,
			msg:  "Empty route/virtual host per filter configuration for envoy.filters.http.fault filter",
		},
		{
			name: "FilterConfig wrapper around an unsupported per-route config",
			bad: withVHConfig("envoy.filters.http.router", mustAny(&routev3.FilterConfig{
				Config: mustAny(&routerv3.Router{}),
			})),
			good: withVHConfig("envoy.filters.http.router", mustAny(&routev3.FilterConfig{
				Config: mustAny(&routerv3.Router{}), IsOptional: true,
			})),
			typeURL: resource.RouteType, resName: "rc",
			path: `virtual_hosts[0].typed_per_filter_config["envoy.filters.http.router"].config`,
			msg:  "doesn't support virtual host or route specific configurations",
		},
	})
}

// TestSharedAnyReportsEveryOccurrence checks the unpack cache: identical bytes in two
// resources are walked once but reported at both places.
func TestSharedAnyReportsEveryOccurrence(t *testing.T) {
	n := baseNode()
	bad := httpFilter("envoy.filters.http.cors", &corsv3.Cors{})
	n.listeners[0].FilterChains[0] = httpChain("http", hcmRDS("rc", bad, routerFilter()))
	second := listener("in2", 81, httpChain("http", hcmRDS("rc", bad, routerFilter())))
	n.listeners = append(n.listeners, second)
	var where []string
	for _, p := range Problems(proxy.Envoy, n.res()) {
		where = append(where, p.Name+" "+p.Path)
	}
	want := []string{
		"in " + hcmPath + ".http_filters[0].typed_config",
		"in2 " + hcmPath + ".http_filters[0].typed_config",
	}
	if len(where) != len(want) || where[0] != want[0] || where[1] != want[1] {
		t.Fatalf("got %q, want %q", where, want)
	}
}
