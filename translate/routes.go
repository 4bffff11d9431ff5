package translate

import (
	"fmt"
	"math"
	"regexp/syntax"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
)

// Retries. Linkerd limits retries by budget only; Envoy also wants a per
// request cap. Three retries (four attempts) is generous enough that the
// budget (cluster circuit_breakers.retry_budget), not this number, is what
// normally stops retrying, and bounded for requests that keep failing.
const numRetries = 3

// Retry conditions on connection-level failures, safe for any retryable
// route: the request never reached the app or got no response.
var connectionRetryOn = []string{"reset", "connect-failure", "refused-stream"}

// grpcRetryOn are the gRPC status codes retried on gRPC ports and by
// proxyless clients (the codes grpc-go understands in retry_on).
var grpcRetryOn = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

// compiledRoute is a profile route made ready for Envoy: its condition
// expanded into route matches, independent of the port it is used on.
type compiledRoute struct {
	name      string
	matches   []*routev3.RouteMatch
	timeout   time.Duration
	retryable bool
	// failures are the statuses retried on HTTP ports.
	failures statusSet
	metadata *corev3.Metadata
}

// compiledProfile holds a profile's routes for both kinds of client.
type compiledProfile struct {
	sidecar []compiledRoute
	// proxyless is nil with proxylessErr set when grpc-go cannot express
	// the profile's conditions.
	proxyless    []compiledRoute
	proxylessErr error
}

// compileProfile checks and expands a profile's routes. An error means the
// profile cannot be applied at all; it names the field at fault.
func compileProfile(p *mesh.Profile) (*compiledProfile, error) {
	out := &compiledProfile{}
	for i, r := range p.Routes {
		field := fmt.Sprintf("spec.routes[%d]", i)
		if r.Name == "" || !utf8.ValidString(r.Name) {
			return nil, fmt.Errorf("%s.name: must be a non-empty UTF-8 string", field)
		}
		if err := checkMatchFields(r.Match, field+".condition", false); err != nil {
			return nil, err
		}
		if r.Timeout < 0 {
			return nil, fmt.Errorf("%s.timeout: must not be negative", field)
		}
		d, err := expandMatch(r.Match)
		if err != nil {
			return nil, fmt.Errorf("%s.condition: %w", field, err)
		}
		classes := classify(r.ResponseClasses)
		base := compiledRoute{
			name:      r.Name,
			timeout:   r.Timeout,
			retryable: r.IsRetryable,
			failures:  classes.failures(),
		}
		if ranges := classes.ranges(); len(ranges) > 0 {
			base.metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				ResponseClassesMetadataKey: responseClassesMetadata(ranges),
			}}
		}
		sc := base
		sc.matches, err = envoyMatches(d)
		if err == nil {
			// The proxyless form's regexes are a subset of these.
			err = checkEmittedRegexes(sc.matches)
		}
		if err != nil {
			// Parsing every regex twice up front is the slow part of a
			// cold start; the walk that names the exact field runs only
			// when something is wrong.
			if ferr := checkMatchFields(r.Match, field+".condition", true); ferr != nil {
				return nil, ferr
			}
			return nil, fmt.Errorf("%s.condition: %w", field, err)
		}
		out.sidecar = append(out.sidecar, sc)

		if out.proxylessErr != nil {
			continue
		}
		pd, err := forProxyless(d)
		if err != nil {
			out.proxylessErr = fmt.Errorf("%s.condition: %w", field, err)
			out.proxyless = nil
			continue
		}
		pc := base
		if pc.matches, err = envoyMatches(pd); err != nil {
			return nil, fmt.Errorf("%s.condition: %w", field, err)
		}
		out.proxyless = append(out.proxyless, pc)
	}
	return out, nil
}

// checkMatchFields refuses methods that are not tokens and regexes that
// are not UTF-8 or (with parse) do not parse, naming the field path of the
// first bad one.
func checkMatchFields(m mesh.RequestMatch, field string, parse bool) error {
	if m.PathRegex != "" {
		if !utf8.ValidString(m.PathRegex) {
			return fmt.Errorf("%s.pathRegex: not valid UTF-8", field)
		}
		if parse {
			if _, err := syntax.Parse(m.PathRegex, syntax.Perl); err != nil {
				return fmt.Errorf("%s.pathRegex: %w", field, err)
			}
		}
	}
	if m.Method != "" && !profiles.IsHTTPToken(m.Method) {
		return fmt.Errorf("%s.method: %q is not an HTTP method token", field, m.Method)
	}
	for i, c := range m.All {
		if err := checkMatchFields(c, fmt.Sprintf("%s.all[%d]", field, i), parse); err != nil {
			return err
		}
	}
	for i, c := range m.Any {
		if err := checkMatchFields(c, fmt.Sprintf("%s.any[%d]", field, i), parse); err != nil {
			return err
		}
	}
	if m.Not != nil {
		return checkMatchFields(*m.Not, field+".not", parse)
	}
	return nil
}

// checkEmittedRegexes bounds the size of every regex a route will carry, in
// the form it is emitted (anchored, or widened for the :path header).
func checkEmittedRegexes(matches []*routev3.RouteMatch) error {
	for _, m := range matches {
		if re := m.GetSafeRegex(); re != nil {
			if err := checkRegex(re.Regex); err != nil {
				return err
			}
		}
		for _, h := range m.Headers {
			if re := h.GetStringMatch().GetSafeRegex(); re != nil {
				if err := checkRegex(re.Regex); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// envoyMatches turns each conjunct into one RouteMatch (see match.go).
func envoyMatches(d dnf) ([]*routev3.RouteMatch, error) {
	out := make([]*routev3.RouteMatch, 0, len(d))
	for _, c := range d {
		m := &routev3.RouteMatch{}
		for _, l := range c {
			switch {
			case l.kind == literalMethod:
				m.Headers = append(m.Headers, &routev3.HeaderMatcher{
					Name: ":method",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Exact{Exact: l.value},
					}},
					InvertMatch: l.negated,
				})
			case !l.negated && m.PathSpecifier == nil:
				m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
					Regex: anchoredPathRegex(l.value),
				}}
			default:
				re, err := pathHeaderRegex(l.value)
				if err != nil {
					return nil, err
				}
				m.Headers = append(m.Headers, &routev3.HeaderMatcher{
					Name: ":path",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}},
					}},
					InvertMatch: l.negated,
				})
			}
		}
		if m.PathSpecifier == nil {
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		}
		out = append(out, m)
	}
	return out, nil
}

// weightedBackend is one share of a port's traffic, by cluster name.
type weightedBackend struct {
	cluster string
	weight  uint32
}

// backendsFor resolves where a service port's traffic goes: to the backends
// mesh.BackendsFor picks (a split wins over dstOverrides). A backend counts
// only when its service exists and has the port; weight-0 backends get no
// traffic and are dropped. With no usable backend left (all weights 0, or none exists)
// traffic goes to the apex itself, the same as having no split: an
// all-zero split is far more likely a rollout mid-edit than a wish to send
// every request to nowhere. targets are the backends' services, in the
// order of the list that names them (backendServices).
func backendsFor(targets []*mesh.Service, svc *mesh.Service, sp mesh.ServicePort, split *mesh.Split, profile *mesh.Profile, domain string) ([]weightedBackend, []error) {
	chosen := mesh.BackendsFor(split, profile)
	list, source, field := chosen.List, chosen.Source, chosen.Field
	if len(list) == 0 {
		return nil, nil
	}
	var errs []error
	index := map[string]int{}
	var out []weightedBackend
	var total uint64
	for i, b := range list {
		port := b.Port
		if port == 0 {
			port = sp.Port
		}
		var target *mesh.Service
		if i < len(targets) {
			target = targets[i]
		}
		if target == nil || !hasPort(target, port) {
			errs = append(errs, mesh.ConfigError{Object: source, Err: fmt.Errorf("%s[%d]: backend %s has no port %d; backend ignored for %s port %d", field, i, b.Service, port, svc.Key, sp.Port)})
			continue
		}
		if b.Weight == 0 {
			continue
		}
		name := OutboundClusterName(b.Service, port, domain)
		total += uint64(b.Weight)
		if j, ok := index[name]; ok {
			out[j].weight = uint32(min(uint64(out[j].weight)+uint64(b.Weight), math.MaxUint32))
			continue
		}
		index[name] = len(out)
		out = append(out, weightedBackend{cluster: name, weight: b.Weight})
	}
	if total > math.MaxUint32 {
		// Envoy and grpc-go refuse weights summing past uint32: scale down,
		// keeping every backend at least 1.
		errs = append(errs, mesh.ConfigError{Object: source, Err: fmt.Errorf("%s: weights sum to %d, more than Envoy accepts; scaled down", field, total)})
		scale := float64(math.MaxUint32-uint32(len(out))) / float64(total)
		for i := range out {
			out[i].weight = max(1, uint32(float64(out[i].weight)*scale))
		}
	}
	apex := OutboundClusterName(svc.Key, sp.Port, domain)
	if len(out) == 1 && out[0].cluster == apex {
		return nil, errs
	}
	return out, errs
}

func hasPort(svc *mesh.Service, port uint32) bool {
	for _, p := range svc.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// routeTarget is where one port's requests go.
type routeTarget struct {
	cluster  string
	backends []weightedBackend // replaces cluster when set
}

func (t routeTarget) apply(a *routev3.RouteAction) {
	if len(t.backends) == 0 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: t.cluster}
		return
	}
	wc := &routev3.WeightedCluster{}
	for _, b := range t.backends {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   b.cluster,
			Weight: wrapperspb.UInt32(b.weight),
		})
	}
	a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
}

// routeConfigParams describes one port's RouteConfiguration.
type routeConfigParams struct {
	name      string
	vhostName string
	domains   []string
	target    routeTarget
	grpc      bool // retry on gRPC codes rather than HTTP statuses
	proxyless bool
	routes    []compiledRoute
}

func routeConfiguration(p routeConfigParams) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{Name: p.vhostName, Domains: p.domains}
	for _, r := range p.routes {
		action := &routev3.RouteAction{Timeout: durationpb.New(r.timeout)}
		p.target.apply(action)
		if r.timeout > 0 && p.proxyless {
			// grpc-go ignores RouteAction.timeout and reads this instead.
			action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(r.timeout)}
		}
		if r.retryable {
			action.RetryPolicy = retryPolicy(r, p.grpc, p.proxyless)
		}
		for _, m := range r.matches {
			vh.Routes = append(vh.Routes, &routev3.Route{
				Name:       r.name,
				Match:      m,
				Action:     &routev3.Route_Route{Route: action},
				StatPrefix: r.name,
				Metadata:   r.metadata,
			})
		}
	}
	// Envoy's default route timeout is 15s; Linkerd has none, and a
	// streaming gRPC call must not be cut, so the default route says 0
	// (no timeout) explicitly.
	def := &routev3.RouteAction{Timeout: durationpb.New(0)}
	p.target.apply(def)
	vh.Routes = append(vh.Routes, &routev3.Route{
		Name:   DefaultRouteName,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: def},
	})
	return &routev3.RouteConfiguration{Name: p.name, VirtualHosts: []*routev3.VirtualHost{vh}}
}

// retryPolicy retries what the route counts as failures. On HTTP ports that
// is the statuses its response classes call failures (Linkerd's default:
// 5xx), written as "5xx" when all of 5xx is included and as
// retriable_status_codes otherwise; on gRPC ports the gRPC codes. Envoy
// caps the whole exchange, retries included, at the route timeout, which is
// Linkerd's meaning of `timeout`; per_try_timeout is set to the same value
// so no single attempt is cut shorter than Linkerd would cut it.
func retryPolicy(r compiledRoute, grpc, proxyless bool) *routev3.RetryPolicy {
	rp := &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(numRetries)}
	var on []string
	switch {
	case proxyless:
		on = grpcRetryOn
	case grpc:
		on = append(append(on, grpcRetryOn...), connectionRetryOn...)
	default:
		all5xx := r.failures.and(serverErrors) == serverErrors
		var codes []uint32
		for s := uint32(minStatus); s <= maxStatus; s++ {
			if r.failures.has(s) && !(all5xx && s >= 500) {
				codes = append(codes, s)
			}
		}
		if all5xx {
			on = append(on, "5xx")
		}
		if len(codes) > 0 {
			on = append(on, "retriable-status-codes")
			rp.RetriableStatusCodes = codes
		}
		on = append(on, connectionRetryOn...)
	}
	rp.RetryOn = strings.Join(on, ",")
	if r.timeout > 0 {
		rp.PerTryTimeout = durationpb.New(r.timeout)
	}
	return rp
}
