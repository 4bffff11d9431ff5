package check

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/proxy"
)

// withVHosts returns a push whose RDS route configuration "rc" has these virtual hosts.
func withVHosts(vhs ...*routev3.VirtualHost) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		n := baseNode()
		n.routes[0] = routeConfig("rc", vhs...)
		return n.res()
	}
}

// withRoute returns a push whose only route is r (in virtual host "*" of "rc").
func withRoute(r func() *routev3.Route) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		return withVHosts(vhost("vh", []string{"*"}, r()))()
	}
}

// withInline returns a push whose listener carries rc inline.
func withInline(rc func() *routev3.RouteConfiguration) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		n := baseNode()
		n.routes = nil
		n.listeners[0].FilterChains[0] = httpChain("http", hcmInline(rc()))
		return n.res()
	}
}

func withRetry(rp *routev3.RetryPolicy) func() *routev3.Route {
	return func() *routev3.Route {
		r := routeTo("c")
		r.GetRoute().RetryPolicy = rp
		return r
	}
}

func backOff(base, max time.Duration) *routev3.RetryPolicy_RetryBackOff {
	return &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(base), MaxInterval: durationpb.New(max)}
}

func regexRoute(re string) func() *routev3.Route {
	return func() *routev3.Route {
		r := routeTo("c")
		r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}
		return r
	}
}

func headerOpt(key string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: "v"}}
}

const inlineRoutePath = hcmPath + ".route_config.virtual_hosts[0].routes[0].route"

func TestRouteRules(t *testing.T) {
	longAlternation := "^(" +
		"adapter-one|billing-gateway|catalogue|delivery-tracker|enrolment|fulfilment|geolocation|housekeeping|inventory|journal-writer|kitchen-display|ledger|marketing)$"
	runRows(t, []row{
		{
			name: "duplicate domain across virtual hosts, compared lower-case",
			bad: withVHosts(vhost("a", []string{"Example.com"}, routeTo("c")),
				vhost("b", []string{"example.COM"}, routeTo("c"))),
			good: withVHosts(vhost("a", []string{"example.com"}, routeTo("c")),
				vhost("b", []string{"example.com:80"}, routeTo("c"))),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[1].domains[0]",
			msg:  "Only unique values for domains are permitted. Duplicate entry of domain example.com in route rc",
		},
		{
			name: "duplicate suffix wildcard",
			bad: withVHosts(vhost("a", []string{"*.example.com"}, routeTo("c")),
				vhost("b", []string{"*.EXAMPLE.com"}, routeTo("c"))),
			good: withVHosts(vhost("a", []string{"*.example.com"}, routeTo("c")),
				vhost("b", []string{"*example.com"}, routeTo("c"))),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[1].domains[0]",
			msg:  "Duplicate entry of domain *.example.com in route rc",
		},
		{
			name:    "two catch-all wildcards",
			bad:     withVHosts(vhost("a", []string{"*"}, routeTo("c")), vhost("b", []string{"x", "*"}, routeTo("c"))),
			good:    withVHosts(vhost("a", []string{"*"}, routeTo("c")), vhost("b", []string{"x", "x*"}, routeTo("c"))),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[1].domains[1]",
			msg:  "Only a single wildcard domain is permitted in route rc",
		},
		{
			name:    "duplicate virtual host names (Envoy accepts)",
			bad:     withVHosts(vhost("a", []string{"x"}, routeTo("c")), vhost("a", []string{"y"}, routeTo("c"))),
			good:    withVHosts(vhost("a", []string{"x"}, routeTo("c")), vhost("b", []string{"y"}, routeTo("c"))),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[1].name",
			msg:  `duplicate virtual host name "a"`, warning: true,
		},
		{
			name: "inline route names a cluster not delivered (validate_clusters defaults to true)",
			bad: withInline(func() *routev3.RouteConfiguration {
				return routeConfig("inline", vhost("vh", []string{"*"}, routeTo("missing")))
			}),
			good: withInline(func() *routev3.RouteConfiguration {
				return routeConfig("inline", vhost("vh", []string{"*"}, routeTo("c")))
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: inlineRoutePath + ".cluster",
			msg:  "route: unknown cluster 'missing'",
		},
		{
			name: "inline weighted cluster not delivered",
			bad: withInline(func() *routev3.RouteConfiguration {
				return routeConfig("inline", vhost("vh", []string{"*"}, weighted(weight("c", 1), weight("missing", 1))))
			}),
			good: withInline(func() *routev3.RouteConfiguration {
				return routeConfig("inline", vhost("vh", []string{"*"}, weighted(weight("c", 1))))
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: inlineRoutePath + ".weighted_clusters.clusters[1].name",
			msg:  "route: unknown weighted cluster 'missing'",
		},
		{
			name: "inline route with validate_clusters false only warns",
			bad: withInline(func() *routev3.RouteConfiguration {
				rc := routeConfig("inline", vhost("vh", []string{"*"}, routeTo("missing")))
				rc.ValidateClusters = wrapperspb.Bool(false)
				return rc
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: inlineRoutePath + ".cluster",
			msg:  `cluster "missing" is not in this push`, warning: true,
		},
		{
			name:    "RDS route names a cluster not delivered (503 at run time)",
			bad:     withRoute(func() *routev3.Route { return routeTo("missing") }),
			good:    withRoute(func() *routev3.Route { return routeTo("c") }),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.cluster",
			msg:  `cluster "missing" is not in this push`, warning: true,
		},
		{
			name: "request mirror to an unknown cluster in an inline route",
			bad: withInline(func() *routev3.RouteConfiguration {
				r := routeTo("c")
				r.GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
				return routeConfig("inline", vhost("vh", []string{"*"}, r))
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: inlineRoutePath + ".request_mirror_policies[0].cluster",
			msg:  "route: unknown shadow cluster 'shadow'",
		},
		{
			name: "adding a pseudo-header",
			bad: withRoute(func() *routev3.Route {
				r := routeTo("c")
				r.RequestHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-ok"), headerOpt(":path")}
				return r
			}),
			good: withRoute(func() *routev3.Route {
				r := routeTo("c")
				r.RequestHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-ok"), headerOpt("x-path")}
				return r
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].request_headers_to_add[1].header.key",
			msg:  ":-prefixed or host headers may not be modified",
		},
		{
			name: "adding host at route configuration level",
			bad: func() map[string][]types.Resource {
				n := baseNode()
				n.routes[0].ResponseHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("Host")}
				return n.res()
			},
			typeURL: resource.RouteType, resName: "rc",
			path: "response_headers_to_add[0].header.key",
			msg:  ":-prefixed or host headers may not be modified",
		},
		{
			name: "removing host",
			bad: withVHosts(&routev3.VirtualHost{Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{routeTo("c")},
				RequestHeadersToRemove: []string{"HOST"}}),
			good: withVHosts(&routev3.VirtualHost{Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{routeTo("c")},
				RequestHeadersToRemove: []string{"x-host"}}),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].request_headers_to_remove[0]",
			msg:  ":-prefixed or host headers may not be removed",
		},
		{
			name: "append together with append_action",
			bad: withRoute(func() *routev3.Route {
				r := routeTo("c")
				h := headerOpt("x-a")
				h.Append = wrapperspb.Bool(true)
				h.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
				r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{h}
				return r
			}),
			good: withRoute(func() *routev3.Route {
				r := routeTo("c")
				h := headerOpt("x-a")
				h.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
				r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{h}
				return r
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].response_headers_to_add[0]",
			msg:  "Both append and append_action are set and it's not allowed",
		},
		{
			name:    "regex that RE2 cannot compile",
			bad:     withRoute(regexRoute("/api/(v1")),
			good:    withRoute(regexRoute("/api/(v1)")),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].match.safe_regex.regex",
			msg:  "regex '/api/(v1' does not compile",
		},
		{
			name:    "regex over RE2's program size limit",
			bad:     withRoute(regexRoute(longAlternation)),
			good:    withRoute(regexRoute("^/api/(v1|v2)/.*")),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].match.safe_regex.regex",
			msg:  "RE2 program size of 151 > max program size of 100 set for the error level threshold",
		},
		{
			name: "regex in a header matcher",
			bad: withRoute(func() *routev3.Route {
				r := routeTo("c")
				r.Match.Headers = []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a**"}}},
				}}}
				return r
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].match.headers[0].string_match.safe_regex.regex",
			msg:  "regex 'a**' does not compile",
		},
		{
			name:    "weighted clusters summing to 0",
			bad:     withRoute(func() *routev3.Route { return weighted(weight("c", 0), weight("c", 0)) }),
			good:    withRoute(func() *routev3.Route { return weighted(weight("c", 0), weight("c", 1)) }),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.weighted_clusters",
			msg:  "Sum of weights in the weighted_cluster must be greater than 0.",
		},
		{
			name: "weighted clusters overflowing uint32",
			bad: withRoute(func() *routev3.Route {
				r := weighted(weight("c", 1<<31), weight("c", 1<<31))
				r.Name = "split"
				return r
			}),
			good:    withRoute(func() *routev3.Route { return weighted(weight("c", 1<<31), weight("c", 1<<31-1)) }),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.weighted_clusters",
			msg:  "The sum of weights of all weighted clusters of route split exceeds 4294967295",
		},
		{
			name: "weighted cluster with both name and cluster_header",
			bad: withRoute(func() *routev3.Route {
				w := weight("c", 1)
				w.ClusterHeader = "x-cluster"
				return weighted(w)
			}),
			good: withRoute(func() *routev3.Route {
				w := weight("", 1)
				w.ClusterHeader = "x-cluster"
				return weighted(w)
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[0]",
			msg:  "Only one of name or cluster_header can be specified",
		},
		{
			name:    "weighted cluster with neither name nor cluster_header",
			bad:     withRoute(func() *routev3.Route { return weighted(weight("c", 1), weight("", 1)) }),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[1]",
			msg:  "At least one of name or cluster_header need to be specified",
		},
		{
			name: "weighted cluster without weight",
			bad: withRoute(func() *routev3.Route {
				return weighted(weight("c", 1), &routev3.WeightedCluster_ClusterWeight{Name: "c"})
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[1].weight",
			msg:  "Field 'weight' is missing",
		},
		{
			name: "retry back-off max below base",
			bad: withRoute(withRetry(&routev3.RetryPolicy{RetryOn: "5xx",
				RetryBackOff: backOff(100*time.Millisecond, 50*time.Millisecond)})),
			good: withRoute(withRetry(&routev3.RetryPolicy{RetryOn: "5xx",
				RetryBackOff: backOff(100*time.Millisecond, 100*time.Millisecond)})),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.retry_policy.retry_back_off",
			msg:  "retry_policy.max_interval must greater than or equal to the base_interval",
		},
		{
			name: "retry back-off compared after rounding to milliseconds",
			bad: withRoute(withRetry(&routev3.RetryPolicy{RetryOn: "5xx",
				RetryBackOff: backOff(2*time.Millisecond, 1500*time.Microsecond)})),
			good: withRoute(withRetry(&routev3.RetryPolicy{RetryOn: "5xx",
				RetryBackOff: backOff(1500*time.Microsecond, time.Millisecond)})),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.retry_policy.retry_back_off",
			msg:  "retry_policy.max_interval must greater than or equal to the base_interval",
		},
		{
			name:    "unknown retry_on token (Envoy ignores it)",
			bad:     withRoute(withRetry(&routev3.RetryPolicy{RetryOn: "5xx, connect_failure"})),
			good:    withRoute(withRetry(&routev3.RetryPolicy{RetryOn: "5xx,connect-failure,unavailable,reset-before-request"})),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.retry_policy.retry_on",
			msg:  `unknown retry_on token "connect_failure"`, warning: true,
		},
		{
			name: "cluster specifier plugin that is not defined",
			bad: withRoute(func() *routev3.Route {
				r := routeTo("")
				r.GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterSpecifierPlugin{ClusterSpecifierPlugin: "rls"}
				return r
			}),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].route.cluster_specifier_plugin",
			msg:  "Unknown cluster specifier plugin name: rls is used in the route",
		},
	})
}

// TestReferencesNotCheckedIntoAbsentTypes: a check of some types only (no key for the
// others) cannot tell a missing resource from one sent elsewhere; an empty list can.
func TestReferencesNotCheckedIntoAbsentTypes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		res     func() map[string][]types.Resource
		absent  []string
		problem string
	}{
		{
			name: "clusters",
			res: withInline(func() *routev3.RouteConfiguration {
				return routeConfig("inline", vhost("vh", []string{"*"}, routeTo("missing")))
			}),
			absent:  []string{resource.ClusterType, resource.EndpointType},
			problem: "route: unknown cluster 'missing'",
		},
		{
			name: "route configurations",
			res: func() map[string][]types.Resource {
				n := baseNode()
				n.routes = nil
				return n.res()
			},
			absent:  []string{resource.RouteType},
			problem: `route configuration "rc" is not in this push`,
		},
		{
			name:    "secrets",
			res:     withServerTLS(mtls),
			absent:  []string{resource.SecretType},
			problem: `SDS secret "cert" is not in this push`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withEmpty := tc.res()
			if err := Resources(proxy.Envoy, withEmpty); err == nil || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("with an empty list: want %q, got %v", tc.problem, err)
			}
			without := tc.res()
			for _, k := range tc.absent {
				delete(without, k)
			}
			if err := Resources(proxy.Envoy, without); err != nil {
				t.Fatalf("with the type absent: got %v", err)
			}
		})
	}
}
