package check

import (
	"math"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// knownRetryOn are the retry_on tokens Envoy parses (RetryStateImpl::parseRetryOn and
// parseRetryGrpcOn); any other token is silently ignored.
var knownRetryOn = map[string]bool{
	"5xx":                        true,
	"gateway-error":              true,
	"reset":                      true,
	"reset-before-request":       true,
	"connect-failure":            true,
	"envoy-ratelimited":          true,
	"retriable-4xx":              true,
	"refused-stream":             true,
	"retriable-status-codes":     true,
	"retriable-headers":          true,
	"http3-post-connect-failure": true,
	// gRPC status names (x-envoy-retry-grpc-on), accepted in the same field.
	"cancelled":          true,
	"deadline-exceeded":  true,
	"internal":           true,
	"resource-exhausted": true,
	"unavailable":        true,
}

// checkRouteConfig checks a RouteConfiguration. Inline ones (in an HCM) validate the clusters
// they name unless told otherwise; RDS ones do not unless told to.
func (c *checker) checkRouteConfig(rc *routev3.RouteConfiguration, inline bool) {
	validate := inline
	if v := rc.GetValidateClusters(); v != nil {
		validate = v.GetValue()
	}
	c.checkHeaderMutations(rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove(),
		rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove())
	c.checkPerFilterConfigs(rc.GetTypedPerFilterConfig())
	c.checkMirrors(rc.GetRequestMirrorPolicies(), validate)

	// Envoy's lookup tables (router/config_impl.cc): lower-cased exact domains, "*suffix"
	// and "prefix*" wildcards, and a single "*". Each must be unique across the whole
	// configuration; "x" and "x:80" are different keys.
	var exact, suffixes, prefixes map[string]bool
	wildcard := false
	vhNames := make(map[string]bool, len(rc.GetVirtualHosts()))
	for i, vh := range rc.GetVirtualHosts() {
		c.pushIndex("virtual_hosts", i)
		if vhNames[vh.GetName()] {
			c.warnAt("name", "duplicate virtual host name %q in route %s: Envoy accepts it, but their stats and logs mix",
				vh.GetName(), rc.GetName())
		}
		vhNames[vh.GetName()] = true
		for j, d := range vh.GetDomains() {
			domain := strings.ToLower(d)
			var table *map[string]bool
			var key string
			switch {
			case domain == "*":
				if wildcard {
					c.pushIndex("domains", j)
					c.errorf("Only a single wildcard domain is permitted in route %s", rc.GetName())
					c.pop()
				}
				wildcard = true
				continue
			case strings.HasPrefix(domain, "*"):
				table, key = &suffixes, domain[1:]
			case strings.HasSuffix(domain, "*"):
				table, key = &prefixes, domain[:len(domain)-1]
			default:
				table, key = &exact, domain
			}
			if *table == nil {
				*table = map[string]bool{}
			}
			if (*table)[key] {
				c.pushIndex("domains", j)
				c.errorf("Only unique values for domains are permitted. Duplicate entry of domain %s in route %s",
					domain, rc.GetName())
				c.pop()
			}
			(*table)[key] = true
		}
		c.checkHeaderMutations(vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove(),
			vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove())
		c.checkPerFilterConfigs(vh.GetTypedPerFilterConfig())
		if rp := vh.GetRetryPolicy(); rp != nil {
			c.push("retry_policy")
			c.checkRetryPolicy(rp)
			c.pop()
		}
		c.checkMirrors(vh.GetRequestMirrorPolicies(), validate)
		for j, r := range vh.GetRoutes() {
			c.pushIndex("routes", j)
			c.checkRoute(rc, r, validate)
			c.pop()
		}
		c.pop()
	}
}

func (c *checker) checkRoute(rc *routev3.RouteConfiguration, r *routev3.Route, validate bool) {
	c.checkHeaderMutations(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove(),
		r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove())
	c.checkPerFilterConfigs(r.GetTypedPerFilterConfig())
	ra := r.GetRoute()
	if ra == nil {
		return
	}
	c.push("route")
	defer c.pop()
	switch cs := ra.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		c.checkClusterRef("cluster", cs.Cluster, validate, "route: unknown cluster '%s'")
	case *routev3.RouteAction_WeightedClusters:
		c.push("weighted_clusters")
		c.checkWeightedClusters(cs.WeightedClusters, r.GetName(), validate)
		c.pop()
	case *routev3.RouteAction_ClusterSpecifierPlugin:
		found := slices.ContainsFunc(rc.GetClusterSpecifierPlugins(), func(p *routev3.ClusterSpecifierPlugin) bool {
			return p.GetExtension().GetName() == cs.ClusterSpecifierPlugin
		})
		if !found {
			c.errorAt("cluster_specifier_plugin", "Unknown cluster specifier plugin name: %s is used in the route",
				cs.ClusterSpecifierPlugin)
		}
	}
	if rp := ra.GetRetryPolicy(); rp != nil {
		c.push("retry_policy")
		c.checkRetryPolicy(rp)
		c.pop()
	}
	c.checkMirrors(ra.GetRequestMirrorPolicies(), validate)
}

// checkClusterRef: with validate_clusters Envoy rejects the route table (config_impl.cc);
// without, it loads it and answers 503 for the route until the cluster arrives. Nothing is
// checked when the push carries no clusters at all (the caller checks routes alone).
func (c *checker) checkClusterRef(field, name string, validate bool, envoyFormat string) {
	if name == "" {
		return
	}
	c.cross(func(c *checker) {
		if !c.clustersGiven || c.clusters[name] != nil {
			return
		}
		if validate {
			c.errorAt(field, envoyFormat, name)
			return
		}
		c.warnAt(field, "cluster %q is not in this push: requests routed to it get 503 until it exists", name)
	})
}

func (c *checker) checkWeightedClusters(wc *routev3.WeightedCluster, routeName string, validate bool) {
	var total uint64
	for k, cw := range wc.GetClusters() {
		c.pushIndex("clusters", k)
		// weighted_cluster_specifier.cc
		switch name, header := cw.GetName(), cw.GetClusterHeader(); {
		case name == "" && header == "":
			c.errorf("At least one of name or cluster_header need to be specified")
		case name != "" && header != "":
			c.errorf("Only one of name or cluster_header can be specified")
		}
		if cw.GetWeight() == nil {
			// PROTOBUF_GET_WRAPPED_REQUIRED(cluster, weight)
			c.errorAt("weight", "Field 'weight' is missing")
		}
		total += uint64(cw.GetWeight().GetValue())
		c.checkClusterRef("name", cw.GetName(), validate, "route: unknown weighted cluster '%s'")
		c.checkHeaderMutations(cw.GetRequestHeadersToAdd(), cw.GetRequestHeadersToRemove(),
			cw.GetResponseHeadersToAdd(), cw.GetResponseHeadersToRemove())
		c.checkPerFilterConfigs(cw.GetTypedPerFilterConfig())
		c.pop()
	}
	switch {
	case total > math.MaxUint32:
		c.errorf("The sum of weights of all weighted clusters of route %s exceeds %d", routeName, uint64(math.MaxUint32))
	case total == 0:
		c.errorf("Sum of weights in the weighted_cluster must be greater than 0.")
	}
}

func (c *checker) checkMirrors(policies []*routev3.RouteAction_RequestMirrorPolicy, validate bool) {
	for i, p := range policies {
		c.pushIndex("request_mirror_policies", i)
		c.checkClusterRef("cluster", p.GetCluster(), validate, "route: unknown shadow cluster '%s'")
		c.pop()
	}
}

func (c *checker) checkRetryPolicy(rp *routev3.RetryPolicy) {
	for tok := range strings.SplitSeq(rp.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok != "" && !knownRetryOn[tok] {
			c.warnAt("retry_on", "unknown retry_on token %q: Envoy ignores it", tok)
		}
	}
	if bo := rp.GetRetryBackOff(); bo != nil && bo.GetMaxInterval() != nil {
		// Both are truncated to milliseconds and raised to at least 1 ms before comparing
		// (retry_policy_impl.cc).
		if envoyMillis(bo.GetMaxInterval()) < envoyMillis(bo.GetBaseInterval()) {
			c.errorAt("retry_back_off", "retry_policy.max_interval must greater than or equal to the base_interval")
		}
	}
}

func envoyMillis(d *durationpb.Duration) int64 {
	return max(d.AsDuration().Milliseconds(), 1)
}

// checkHeaderMutations applies HeaderParser::configure: pseudo-headers and host can be
// neither added nor removed.
func (c *checker) checkHeaderMutations(reqAdd []*corev3.HeaderValueOption, reqRemove []string,
	respAdd []*corev3.HeaderValueOption, respRemove []string) {
	c.checkHeadersToAdd("request_headers_to_add", reqAdd)
	c.checkHeadersToRemove("request_headers_to_remove", reqRemove)
	c.checkHeadersToAdd("response_headers_to_add", respAdd)
	c.checkHeadersToRemove("response_headers_to_remove", respRemove)
}

func (c *checker) checkHeadersToAdd(field string, opts []*corev3.HeaderValueOption) {
	for i, o := range opts {
		if !modifiableHeader(o.GetHeader().GetKey()) {
			c.pushIndex(field, i)
			c.errorAt("header.key", ":-prefixed or host headers may not be modified")
			c.pop()
		}
		if o.GetAppend() != nil && o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			c.pushIndex(field, i)
			c.errorf("Both append and append_action are set and it's not allowed")
			c.pop()
		}
	}
}

func (c *checker) checkHeadersToRemove(field string, names []string) {
	for i, n := range names {
		if !modifiableHeader(n) {
			c.pushIndex(field, i)
			c.errorf(":-prefixed or host headers may not be removed")
			c.pop()
		}
	}
}

// modifiableHeader is Http::HeaderUtility::isModifiableHeader / isRemovableHeader.
func modifiableHeader(name string) bool {
	return (name == "" || name[0] != ':') && !strings.EqualFold(name, "host")
}

func (c *checker) checkPerFilterConfigs(m map[string]*anypb.Any) {
	if len(m) == 0 {
		return
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c.pushKey("typed_per_filter_config", name)
		c.checkPerFilterConfig(name, m[name], false)
		c.pop()
	}
}

// checkPerFilterConfig applies router/per_filter_config.cc: the factory is found by the
// config's type, must be an HTTP filter, and must accept a route-level config of that type.
func (c *checker) checkPerFilterConfig(name string, a *anypb.Any, optional bool) {
	e, known := lookupExtension(a)
	if !known {
		return // reported by the generic walk
	}
	if anyTypeIs(a, &routev3.FilterConfig{}) {
		fc, ok := c.unpack(a).(*routev3.FilterConfig)
		if !ok || fc.GetDisabled() {
			return
		}
		if fc.GetConfig() == nil {
			c.errorf("Empty route/virtual host per filter configuration for %s filter", name)
			return
		}
		if fc.GetConfig().GetTypeUrl() == "" {
			return
		}
		c.push("config")
		c.checkPerFilterConfig(name, fc.GetConfig(), fc.GetIsOptional())
		c.pop()
		return
	}
	if optional {
		return
	}
	switch {
	case !e.is(kindHTTPFilter | kindPerRoute):
		c.errorf("Didn't find a registered implementation for '%s' with type URL: '%s'", name, typeName(a.GetTypeUrl()))
	case e.perRoute == "":
		c.errorf("The filter %s doesn't support virtual host or route specific configurations", name)
	case e.perRoute != typeName(a.GetTypeUrl()):
		c.errorf("Unable to unpack as %s: the per-route config of %s must be a %s", e.perRoute, e.factory, e.perRoute)
	}
}
