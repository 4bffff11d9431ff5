package proxyconfig

import (
	"fmt"
	"io"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// responseClassesKey is translate.ResponseClassesMetadataKey (this package
// reads Envoy resources only, not translate).
const responseClassesKey = "weft.io/response-classes"

// ExplainOptions say what Explain cannot read from the resources.
type ExplainOptions struct {
	// GRPC: the port carries gRPC, where a non-OK grpc-status is a failure too.
	GRPC bool
}

// Explain writes what a sidecar does with a request to one service port,
// route by route in the order Envoy tries them: the match, the timeout,
// the retries, which responses count as failures and where the request
// goes; then the retry budget of every cluster it may go to. It reads the
// RouteConfiguration and clusters translate made, so it says what the
// proxy is served. Consecutive Envoy routes with one name are one profile
// route (translate expands any/not conditions into several).
func Explain(w io.Writer, rc *routev3.RouteConfiguration, clusters []*clusterv3.Cluster, opts ExplainOptions) {
	var destinations []string
	for _, vh := range rc.GetVirtualHosts() {
		routes := vh.GetRoutes()
		for n, i := 1, 0; i < len(routes); n++ {
			j := i + 1
			for j < len(routes) && routes[j].GetName() == routes[i].GetName() {
				j++
			}
			destinations = explainRoute(w, n, routes[i:j], vh, opts, destinations)
			i = j
		}
	}
	byName := map[string]*clusterv3.Cluster{}
	for _, c := range clusters {
		byName[c.GetName()] = c
	}
	fmt.Fprintln(w, "  retry budget (how many retries may be in flight, per destination cluster)")
	for _, name := range destinations {
		c, ok := byName[name]
		switch {
		case !ok:
			fmt.Fprintf(w, "    %s: not served to this proxy\n", name)
		case budgetOf(c) == nil:
			fmt.Fprintf(w, "    %s: no budget, at most %d retries at once\n", name, u32Or(defaultThresholds(c).GetMaxRetries(), defaultMaxRetries))
		default:
			fmt.Fprintf(w, "    %s: %s of active requests\n", name, retryBudget(budgetOf(c)))
		}
	}
}

// explainRoute writes one profile route (its Envoy routes) and returns
// destinations with the clusters it sends to added.
func explainRoute(w io.Writer, n int, routes []*routev3.Route, vh *routev3.VirtualHost, opts ExplainOptions, destinations []string) []string {
	first := routes[0]
	name := first.GetName()
	if name == "[DEFAULT]" {
		fmt.Fprintf(w, "  %d. [DEFAULT]: every request no route above matched\n", n)
	} else {
		fmt.Fprintf(w, "  %d. %q\n", n, name)
	}
	for i, r := range routes {
		label := "match"
		if i > 0 {
			label = "or"
		}
		fmt.Fprintf(w, "       %-9s %s\n", label, routeMatch(r.GetMatch()))
	}
	ra := first.GetRoute()
	if ra == nil {
		dest, _, _ := routeAction(first, vh)
		fmt.Fprintf(w, "       %-9s %s\n", "action", dest)
		return destinations
	}
	timeout := routeTimeout(ra)
	rp := ra.GetRetryPolicy()
	if rp == nil {
		rp = vh.GetRetryPolicy()
	}
	if rp != nil && ra.GetTimeout().AsDuration() > 0 {
		timeout += " for the whole request, retries included"
	}
	fmt.Fprintf(w, "       %-9s %s\n", "timeout", timeout)
	if rp == nil {
		fmt.Fprintf(w, "       %-9s %s\n", "retries", "none")
	} else {
		fmt.Fprintf(w, "       %-9s %s\n", "retries", retries(rp))
	}
	fmt.Fprintf(w, "       %-9s %s\n", "failures", failures(first.GetMetadata(), opts))
	fmt.Fprintf(w, "       %-9s %s\n", "to", clusterSpecifier(ra))
	for _, c := range routeClusters(ra) {
		if !slices.Contains(destinations, c) {
			destinations = append(destinations, c)
		}
	}
	return destinations
}

// failures says which responses count as failures: the route's response
// classes where they say so, else Linkerd's default (5xx; on gRPC also a
// grpc-status other than OK).
func failures(md *corev3.Metadata, opts ExplainOptions) string {
	classes := md.GetFilterMetadata()[responseClassesKey].GetFields()["classes"].GetListValue().GetValues()
	var failing []uint32
	for status := uint32(100); status <= 599; status++ {
		failure := status >= 500
		for _, c := range classes {
			f := c.GetStructValue().GetFields()
			if float64(status) >= f["min"].GetNumberValue() && float64(status) <= f["max"].GetNumberValue() {
				failure = f["isFailure"].GetBoolValue()
				break
			}
		}
		if failure {
			failing = append(failing, status)
		}
	}
	s := "none"
	if len(failing) > 0 {
		s = "HTTP " + ranges(failing)
	}
	if len(classes) == 0 {
		s += " (the default: no response classes)"
	} else {
		s += " (the route's response classes)"
	}
	if opts.GRPC {
		s += ", and a grpc-status other than OK"
	}
	return s
}

func routeClusters(ra *routev3.RouteAction) []string {
	if c := ra.GetCluster(); c != "" {
		return []string{c}
	}
	var out []string
	for _, cw := range ra.GetWeightedClusters().GetClusters() {
		out = append(out, cw.GetName())
	}
	return out
}

func defaultThresholds(c *clusterv3.Cluster) *clusterv3.CircuitBreakers_Thresholds {
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() == corev3.RoutingPriority_DEFAULT {
			return t
		}
	}
	return nil
}

func budgetOf(c *clusterv3.Cluster) *clusterv3.CircuitBreakers_Thresholds_RetryBudget {
	return defaultThresholds(c).GetRetryBudget()
}
