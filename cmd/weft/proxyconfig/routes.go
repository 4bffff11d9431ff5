package proxyconfig

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Envoy's defaults where a route leaves a field unset.
const (
	defaultRouteTimeout = "15s"
	defaultNumRetries   = 1
)

func renderRoutes(w io.Writer, cfg *config, opts Options) {
	fmt.Fprintf(w, "ROUTES (%d)\n", len(cfg.routes))
	for _, p := range cfg.problems[resourcev3.RouteType] {
		fmt.Fprintln(w, p)
	}
	if len(cfg.routes) == 0 {
		fmt.Fprintln(w, "(none)")
		return
	}
	for i, r := range cfg.routes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		title := r.rc.GetName()
		if r.inlineIn != "" {
			title += " (inline in listener " + r.inlineIn + ")"
		}
		fmt.Fprintln(w, title)
		if len(r.rc.GetVirtualHosts()) == 0 {
			fmt.Fprintln(w, "  (no virtual hosts: every request gets 404)")
		}
		for _, vh := range r.rc.GetVirtualHosts() {
			renderVirtualHost(w, vh, opts)
		}
	}
}

func renderVirtualHost(w io.Writer, vh *routev3.VirtualHost, opts Options) {
	fmt.Fprintf(w, "  virtual host %s: %s\n", vh.GetName(), compactDomains(vh.GetDomains(), opts.domains()))
	if rp := vh.GetRetryPolicy(); rp != nil {
		fmt.Fprintf(w, "  retries for routes without their own: %s\n", retries(rp))
	}
	if len(vh.GetRoutes()) == 0 {
		fmt.Fprintln(w, "    (no routes: every request gets 404)")
		return
	}
	t := newTable(w, "    ", "ROUTE", "MATCH", "DESTINATION", "TIMEOUT", "RETRIES")
	for _, r := range vh.GetRoutes() {
		dest, timeout, retry := routeAction(r, vh)
		t.row(cmp.Or(r.GetName(), "-"), routeMatch(r.GetMatch()), dest, timeout, retry)
	}
	t.flush()
}

// routeMatch prints methods, then the path, then other conditions:
// "GET regex /books\.json", "!GET !HEAD prefix / !regex /admin/.*".
func routeMatch(m *routev3.RouteMatch) string {
	var methods, path, rest []string
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		path = append(path, "prefix "+p.Prefix)
	case *routev3.RouteMatch_Path:
		path = append(path, "path "+p.Path)
	case *routev3.RouteMatch_SafeRegex:
		path = append(path, "regex "+unwrapRegex(p.SafeRegex.GetRegex()))
	case *routev3.RouteMatch_PathSeparatedPrefix:
		path = append(path, "path prefix "+p.PathSeparatedPrefix)
	case *routev3.RouteMatch_ConnectMatcher_:
		path = append(path, "CONNECT")
	case *routev3.RouteMatch_PathMatchPolicy:
		path = append(path, "path "+shortFilterName(p.PathMatchPolicy.GetName()))
	}
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		path = append(path, "(any case)")
	}
	for _, h := range m.GetHeaders() {
		switch h.GetName() {
		case ":method":
			if v, ok := exactValue(h); ok {
				methods = append(methods, not(h.GetInvertMatch())+v)
				continue
			}
		case ":path":
			if s := h.GetStringMatch(); s.GetSafeRegex() != nil {
				path = append(path, not(h.GetInvertMatch())+"regex "+unwrapRegex(s.GetSafeRegex().GetRegex()))
				continue
			}
		}
		rest = append(rest, headerMatch(h))
	}
	for _, q := range m.GetQueryParameters() {
		s := "query " + q.GetName()
		switch v := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			s += stringMatch(v.StringMatch, false)
		case *routev3.QueryParameterMatcher_PresentMatch:
			if !v.PresentMatch {
				s = "!" + s
			}
		}
		rest = append(rest, s)
	}
	if m.GetGrpc() != nil {
		rest = append(rest, "grpc")
	}
	if m.GetRuntimeFraction() != nil {
		rest = append(rest, "runtime fraction")
	}
	if m.GetTlsContext() != nil {
		rest = append(rest, "tls context")
	}
	return strings.Join(append(append(methods, path...), rest...), " ")
}

// unwrapRegex shows a Linkerd pathRegex as written: translate anchors it as
// ^(?:re)$, or ^(?:re)(?:\?.*)?$ on :path headers (which carry the query).
func unwrapRegex(re string) string {
	for _, suffix := range []string{`)$`, `)(?:\?.*)?$`} {
		if strings.HasPrefix(re, "^(?:") && strings.HasSuffix(re, suffix) {
			inner := re[len("^(?:") : len(re)-len(suffix)]
			// ^(?:a)|(?:b)$ is not one group: leave it alone.
			if balanced(inner) {
				return inner
			}
		}
	}
	return re
}

// balanced reports whether a regex's parentheses (outside escapes and
// classes) never close more than they opened.
func balanced(re string) bool {
	depth, inClass := 0, false
	for i := 0; i < len(re); i++ {
		switch c := re[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

func not(inverted bool) string {
	if inverted {
		return "!"
	}
	return ""
}

func exactValue(h *routev3.HeaderMatcher) (string, bool) {
	if v, ok := h.GetHeaderMatchSpecifier().(*routev3.HeaderMatcher_ExactMatch); ok {
		return v.ExactMatch, true
	}
	if s := h.GetStringMatch(); s != nil && !s.GetIgnoreCase() {
		if v, ok := s.GetMatchPattern().(*matcherv3.StringMatcher_Exact); ok {
			return v.Exact, true
		}
	}
	return "", false
}

// headerMatch prints "hdr x-a=1", "hdr x-a!=1", "hdr x-a~re", "!hdr x-a".
func headerMatch(h *routev3.HeaderMatcher) string {
	name := "hdr " + h.GetName()
	inv := h.GetInvertMatch()
	switch v := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		return name + stringMatch(v.StringMatch, inv)
	case *routev3.HeaderMatcher_ExactMatch:
		return name + op("=", inv) + v.ExactMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		return name + op("^=", inv) + v.PrefixMatch
	case *routev3.HeaderMatcher_SuffixMatch:
		return name + op("$=", inv) + v.SuffixMatch
	case *routev3.HeaderMatcher_ContainsMatch:
		return name + op("*=", inv) + v.ContainsMatch
	case *routev3.HeaderMatcher_SafeRegexMatch:
		return name + op("~", inv) + v.SafeRegexMatch.GetRegex()
	case *routev3.HeaderMatcher_RangeMatch:
		return fmt.Sprintf("%s%s[%d,%d)", name, op(" in ", inv), v.RangeMatch.GetStart(), v.RangeMatch.GetEnd())
	case *routev3.HeaderMatcher_PresentMatch:
		if v.PresentMatch == inv {
			return "!" + name
		}
		return name
	}
	// No specifier: the header must be present.
	return not(inv) + name
}

func op(o string, inverted bool) string {
	if !inverted {
		return o
	}
	if strings.TrimSpace(o) == "in" {
		return " not in "
	}
	return "!" + o
}

func stringMatch(s *matcherv3.StringMatcher, inverted bool) string {
	ci := ""
	if s.GetIgnoreCase() {
		ci = " (any case)"
	}
	switch v := s.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return op("=", inverted) + v.Exact + ci
	case *matcherv3.StringMatcher_Prefix:
		return op("^=", inverted) + v.Prefix + ci
	case *matcherv3.StringMatcher_Suffix:
		return op("$=", inverted) + v.Suffix + ci
	case *matcherv3.StringMatcher_Contains:
		return op("*=", inverted) + v.Contains + ci
	case *matcherv3.StringMatcher_SafeRegex:
		return op("~", inverted) + v.SafeRegex.GetRegex()
	case *matcherv3.StringMatcher_Custom:
		return op(" custom ", inverted) + v.Custom.GetName()
	}
	return op(" matches ", inverted) + "?"
}

// routeAction returns a route's destination, timeout and retries.
func routeAction(r *routev3.Route, vh *routev3.VirtualHost) (dest, timeout, retry string) {
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		ra := a.Route
		retryPolicy := ra.GetRetryPolicy()
		if retryPolicy == nil {
			retryPolicy = vh.GetRetryPolicy()
		}
		return clusterSpecifier(ra), routeTimeout(ra), retries(retryPolicy)
	case *routev3.Route_Redirect:
		return redirect(a.Redirect), "-", "-"
	case *routev3.Route_DirectResponse:
		return "respond " + strconv.FormatUint(uint64(a.DirectResponse.GetStatus()), 10), "-", "-"
	case *routev3.Route_NonForwardingAction:
		return "(non-forwarding)", "-", "-"
	case *routev3.Route_FilterAction:
		return "(filter action)", "-", "-"
	}
	return "(no action)", "-", "-"
}

func clusterSpecifier(ra *routev3.RouteAction) string {
	switch c := ra.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		return c.Cluster
	case *routev3.RouteAction_WeightedClusters:
		var ws []weighted
		for _, cw := range c.WeightedClusters.GetClusters() {
			ws = append(ws, weighted{cw.GetName(), uint64(cw.GetWeight().GetValue())})
		}
		return splitString(ws, uint64(c.WeightedClusters.GetTotalWeight().GetValue()))
	case *routev3.RouteAction_ClusterHeader:
		return "cluster named by header " + c.ClusterHeader
	case *routev3.RouteAction_ClusterSpecifierPlugin, *routev3.RouteAction_InlineClusterSpecifierPlugin:
		return "cluster chosen by a plugin"
	}
	return "(no cluster)"
}

// routeTimeout is RouteAction.timeout (unset: Envoy's 15s, 0: none), and
// the max_stream_duration grpc-go reads instead when it is set.
func routeTimeout(ra *routev3.RouteAction) string {
	var s string
	switch t := ra.GetTimeout(); {
	case t == nil:
		s = defaultRouteTimeout + " (default)"
	case t.AsDuration() == 0:
		s = "none"
	default:
		s = duration(t)
	}
	if msd := ra.GetMaxStreamDuration().GetMaxStreamDuration(); msd != nil {
		if msd.AsDuration() == 0 {
			s += ", max stream none"
		} else {
			s += ", max stream " + duration(msd)
		}
	}
	return s
}

// retries prints "3x on 5xx,reset; status 429; per try 300ms".
func retries(rp *routev3.RetryPolicy) string {
	if rp == nil {
		return "-"
	}
	n := u32Or(rp.GetNumRetries(), defaultNumRetries)
	s := fmt.Sprintf("%dx on %s", n, cmp.Or(rp.GetRetryOn(), "(nothing)"))
	if codes := rp.GetRetriableStatusCodes(); len(codes) > 0 {
		s += "; status " + ranges(codes)
	}
	if pt := rp.GetPerTryTimeout(); pt != nil && pt.AsDuration() > 0 {
		s += "; per try " + duration(pt)
	}
	if bo := rp.GetRetryBackOff(); bo != nil {
		s += "; backoff " + duration(bo.GetBaseInterval())
	}
	return s
}

func redirect(r *routev3.RedirectAction) string {
	var parts []string
	if s := r.GetSchemeRedirect(); s != "" {
		parts = append(parts, s+"://")
	}
	if r.GetHttpsRedirect() {
		parts = append(parts, "https://")
	}
	parts = append(parts, r.GetHostRedirect())
	if p := r.GetPortRedirect(); p != 0 {
		parts = append(parts, ":"+strconv.FormatUint(uint64(p), 10))
	}
	parts = append(parts, r.GetPathRedirect(), r.GetPrefixRewrite())
	return "redirect " + cmp.Or(strings.Join(parts, ""), "(same URL)")
}
