package profiles

import (
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxRegexProgramSize is the largest compiled pathRegex accepted. Envoy
// refuses a RE2 regex whose program size exceeds the runtime value
// re2.max_program_size.error_level, 100 unless the bootstrap raises it
// ("regex '...' RE2 program size of N > max program size of 100",
// source/common/common/regex.cc). RE2ProgramSize estimates that size, so the
// same bound applied here turns a NACK into a field error.
const MaxRegexProgramSize = 100

// MaxMatchNesting is how many levels of all/any/not a route condition or a
// response class condition may nest. The CRD schema must spell recursive
// types out level by level (it has no $ref), and deploy/crds unrolls them
// to this depth; enforcing it here too keeps `weft check` and the API
// server in agreement, and bounds recursion on hostile input.
const MaxMatchNesting = 4

var (
	specPath     = field.NewPath("spec")
	metadataName = field.NewPath("metadata", "name")
)

// ParseProfileName splits a profile name svc.ns.svc.<clusterDomain> into the
// service it describes.
func ParseProfileName(name, clusterDomain string) (service, namespace string, err error) {
	suffix := ".svc." + clusterDomain
	rest, ok := strings.CutSuffix(name, suffix)
	if !ok || clusterDomain == "" {
		return "", "", fmt.Errorf("must be <service>.<namespace>.svc.%s", clusterDomain)
	}
	service, namespace, ok = strings.Cut(rest, ".")
	if !ok || strings.Contains(namespace, ".") {
		return "", "", fmt.Errorf("must be <service>.<namespace>.svc.%s", clusterDomain)
	}
	if msgs := validation.IsDNS1035Label(service); len(msgs) > 0 {
		return "", "", fmt.Errorf("service name %q: %s", service, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return "", "", fmt.Errorf("namespace name %q: %s", namespace, strings.Join(msgs, "; "))
	}
	return service, namespace, nil
}

// ParseAuthority splits a dstOverrides authority svc.ns.svc.<clusterDomain>[:port].
// port is 0 when the authority names none (the caller's port applies).
func ParseAuthority(authority, clusterDomain string) (service, namespace string, port uint32, err error) {
	host := authority
	if h, p, found := strings.Cut(authority, ":"); found {
		n, perr := strconv.ParseUint(p, 10, 32)
		if perr != nil || n < 1 || n > 65535 {
			return "", "", 0, fmt.Errorf("port %q is not a number in 1..65535", p)
		}
		host, port = h, uint32(n)
	}
	service, namespace, err = ParseProfileName(host, clusterDomain)
	if err != nil {
		return "", "", 0, fmt.Errorf("authority must be <service>.<namespace>.svc.%s[:port]: %w", clusterDomain, err)
	}
	return service, namespace, port, nil
}

// WeightMilli converts a dstOverrides weight quantity into exact milli-units
// ("1" -> 1000, "500m" -> 500). Negative weights, weights finer than a
// milli-unit and weights beyond uint32 milli-units are errors: a rounded
// weight would silently change the split.
func WeightMilli(q resource.Quantity) (uint32, error) {
	if q.Sign() < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	milli, err := milliUnits(q)
	if err != nil {
		return 0, err
	}
	if milli > math.MaxUint32 {
		return 0, fmt.Errorf("must be at most %d milli-units", uint32(math.MaxUint32))
	}
	return uint32(milli), nil
}

// milliUnits is q in milli-units, exactly: a quantity is unscaled*10^-scale,
// so milli-units are unscaled*10^(3-scale), which must be a whole number.
// resource.Quantity.MilliValue would round instead.
func milliUnits(q resource.Quantity) (int64, error) {
	dec := q.AsDec()
	n := new(big.Int).Set(dec.UnscaledBig())
	if n.Sign() == 0 {
		return 0, nil
	}
	tooLarge := fmt.Errorf("must be at most %d milli-units in magnitude", int64(math.MaxInt64))
	shift := 3 - int64(dec.Scale())
	switch {
	case shift > 19:
		// |n| >= 1, so the result is >= 10^20 > MaxInt64; do not compute it.
		return 0, tooLarge
	case shift >= 0:
		n.Mul(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(shift), nil))
	default:
		notWhole := fmt.Errorf("must be a whole number of milli-units (at most 3 decimals)")
		if int64(len(new(big.Int).Abs(n).String())) < -shift {
			// Fewer digits than the divisor has zeros: cannot divide evenly.
			return 0, notWhole
		}
		var rem big.Int
		n.QuoRem(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(-shift), nil), &rem)
		if rem.Sign() != 0 {
			return 0, notWhole
		}
	}
	if !n.IsInt64() {
		return 0, tooLarge
	}
	return n.Int64(), nil
}

// ValidateServiceProfile checks everything Weft relies on when translating
// a profile, with the path of each bad field.
func ValidateServiceProfile(sp *ServiceProfile, clusterDomain string) field.ErrorList {
	var errs field.ErrorList
	if sp.Name == "" {
		errs = append(errs, field.Required(metadataName, "must be <service>.<namespace>.svc."+clusterDomain))
	} else if _, _, err := ParseProfileName(sp.Name, clusterDomain); err != nil {
		errs = append(errs, field.Invalid(metadataName, sp.Name, err.Error()))
	}

	routesPath := specPath.Child("routes")
	for i, r := range sp.Spec.Routes {
		errs = append(errs, validateRoute(r, routesPath.Index(i))...)
	}
	if b := sp.Spec.RetryBudget; b != nil {
		errs = append(errs, validateRetryBudget(b, specPath.Child("retryBudget"))...)
	}
	errs = append(errs, validateDstOverrides(sp.Spec.DstOverrides, clusterDomain, specPath.Child("dstOverrides"))...)
	// Sorted so that the same profile gives the same errors every time.
	for _, port := range slices.Sorted(maps.Keys(sp.Spec.OpaquePorts)) {
		if port < 1 || port > 65535 {
			errs = append(errs, field.Invalid(specPath.Child("opaquePorts").Key(strconv.FormatUint(uint64(port), 10)), port, "must be a port number in 1..65535"))
		}
	}
	return errs
}

func validateRoute(r *RouteSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r == nil {
		return field.ErrorList{field.Required(path, "route must not be null")}
	}
	if r.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), "every route needs a name"))
	}
	if r.Condition == nil {
		errs = append(errs, field.Required(path.Child("condition"), fmt.Sprintf("route %q has no condition", r.Name)))
	} else {
		errs = append(errs, validateRequestMatch(r.Condition, path.Child("condition"), MaxMatchNesting)...)
	}
	for j, rc := range r.ResponseClasses {
		rcPath := path.Child("responseClasses").Index(j)
		switch {
		case rc == nil:
			errs = append(errs, field.Required(rcPath, "response class must not be null"))
		case rc.Condition == nil:
			errs = append(errs, field.Required(rcPath.Child("condition"), fmt.Sprintf("route %q has a response class with no condition", r.Name)))
		default:
			errs = append(errs, validateResponseMatch(rc.Condition, rcPath.Child("condition"), MaxMatchNesting)...)
		}
	}
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(path.Child("timeout"), r.Timeout, fmt.Sprintf("route %q has an invalid timeout: %v", r.Name, err)))
		case d <= 0:
			errs = append(errs, field.Invalid(path.Child("timeout"), r.Timeout, fmt.Sprintf("route %q has an invalid timeout: must be positive", r.Name)))
		}
	}
	return errs
}

func validateRequestMatch(m *RequestMatch, path *field.Path, nesting int) field.ErrorList {
	var errs field.ErrorList
	set := false
	if m.All != nil || m.Any != nil || m.Not != nil {
		set = true
		errs = append(errs, validateCombinators(m.All, m.Any, m.Not, path, nesting, validateRequestMatch)...)
	}
	if m.PathRegex != "" {
		set = true
		if err := checkPathRegex(m.PathRegex); err != nil {
			errs = append(errs, field.Invalid(path.Child("pathRegex"), m.PathRegex, err.Error()))
		}
	}
	if m.Method != "" {
		set = true
		if !IsHTTPToken(m.Method) {
			errs = append(errs, field.Invalid(path.Child("method"), m.Method, "must be an HTTP method (an RFC 9110 token, such as GET)"))
		}
	}
	if !set {
		errs = append(errs, field.Required(path, "a request match must have a field set (all, any, not, pathRegex or method)"))
	}
	return errs
}

// validateCombinators checks the all/any/not of a request or response match,
// each one nesting level deeper; validate checks one (non-nil) match.
func validateCombinators[M any](all, anyOf []*M, not *M, path *field.Path, nesting int,
	validate func(*M, *field.Path, int) field.ErrorList) field.ErrorList {
	if nesting == 0 {
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf("all/any/not may nest at most %d levels", MaxMatchNesting))}
	}
	var errs field.ErrorList
	item := func(sub *M, p *field.Path) {
		if sub == nil {
			errs = append(errs, field.Required(p, "must not be null"))
			return
		}
		errs = append(errs, validate(sub, p, nesting-1)...)
	}
	for i, sub := range all {
		item(sub, path.Child("all").Index(i))
	}
	for i, sub := range anyOf {
		item(sub, path.Child("any").Index(i))
	}
	if not != nil {
		errs = append(errs, validate(not, path.Child("not"), nesting-1)...)
	}
	return errs
}

// checkPathRegex checks the regex compiles under RE2 (Go's regexp/syntax
// accepts the same language) and that Envoy will not refuse it for size.
func checkPathRegex(re string) error {
	size, err := RE2ProgramSize(re)
	if err != nil {
		return fmt.Errorf("not a valid RE2 regular expression: %w", err)
	}
	if size > MaxRegexProgramSize {
		return fmt.Errorf("regular expression is too complex: RE2 program size about %d exceeds %d, the largest Envoy accepts by default", size, MaxRegexProgramSize)
	}
	return nil
}

// IsHTTPToken reports whether s is an RFC 9110 token (the method grammar).
func IsHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validateResponseMatch(m *ResponseMatch, path *field.Path, nesting int) field.ErrorList {
	var errs field.ErrorList
	set := false
	if m.All != nil || m.Any != nil || m.Not != nil {
		set = true
		errs = append(errs, validateCombinators(m.All, m.Any, m.Not, path, nesting, validateResponseMatch)...)
	}
	if s := m.Status; s != nil {
		set = true
		statusPath := path.Child("status")
		if s.Min != 0 && (s.Min < 100 || s.Min > 599) {
			errs = append(errs, field.Invalid(statusPath.Child("min"), s.Min, "must be an HTTP status in 100..599"))
		}
		if s.Max != 0 && (s.Max < 100 || s.Max > 599) {
			errs = append(errs, field.Invalid(statusPath.Child("max"), s.Max, "must be an HTTP status in 100..599"))
		}
		if s.Min != 0 && s.Max != 0 && s.Max < s.Min {
			errs = append(errs, field.Invalid(statusPath.Child("max"), s.Max, fmt.Sprintf("range maximum cannot be smaller than minimum %d", s.Min)))
		}
	}
	if !set {
		errs = append(errs, field.Required(path, "a response match must have a field set (all, any, not or status)"))
	}
	return errs
}

func validateRetryBudget(b *RetryBudget, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	ratio := float64(b.RetryRatio)
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) || ratio < 0 {
		errs = append(errs, field.Invalid(path.Child("retryRatio"), b.RetryRatio, "must be a finite number >= 0"))
	}
	if b.TTL == "" {
		errs = append(errs, field.Required(path.Child("ttl"), "retry budget has no ttl"))
	} else if d, err := time.ParseDuration(b.TTL); err != nil {
		errs = append(errs, field.Invalid(path.Child("ttl"), b.TTL, fmt.Sprintf("retry budget has an invalid ttl: %v", err)))
	} else if d <= 0 {
		// Every positive Go duration (at most ~292 years) is inside
		// google.protobuf.Duration's range, so no upper bound is needed.
		errs = append(errs, field.Invalid(path.Child("ttl"), b.TTL, "retry budget has an invalid ttl: must be positive"))
	}
	return errs
}

func validateDstOverrides(dsts []*WeightedDst, clusterDomain string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	var total uint64
	weightsOK := true
	for i, d := range dsts {
		p := path.Index(i)
		if d == nil {
			errs = append(errs, field.Required(p, "must not be null"))
			weightsOK = false
			continue
		}
		if d.Authority == "" {
			errs = append(errs, field.Required(p.Child("authority"), "must be <service>.<namespace>.svc."+clusterDomain+"[:port]"))
		} else if _, _, _, err := ParseAuthority(d.Authority, clusterDomain); err != nil {
			errs = append(errs, field.Invalid(p.Child("authority"), d.Authority, err.Error()))
		}
		w, err := WeightMilli(d.Weight)
		if err != nil {
			errs = append(errs, field.Invalid(p.Child("weight"), d.Weight.String(), err.Error()))
			weightsOK = false
			continue
		}
		total += uint64(w)
	}
	if len(dsts) > 0 && weightsOK {
		switch {
		case total == 0:
			// Envoy refuses weighted clusters whose weights sum to 0.
			errs = append(errs, field.Invalid(path, "", "the sum of the weights must be greater than 0"))
		case total > math.MaxUint32:
			errs = append(errs, field.Invalid(path, "", fmt.Sprintf("the sum of the weights must be at most %d milli-units", uint32(math.MaxUint32))))
		}
	}
	return errs
}

// ValidateTrafficSplit checks a TrafficSplit. Paths are those of the source
// object (spec.service, spec.backends[i].weight) whichever SMI version it
// was read from. Whether the services exist is the caller's business (the
// model builder knows).
func ValidateTrafficSplit(ts *TrafficSplit) field.ErrorList {
	var errs field.ErrorList
	if ts.Service == "" {
		errs = append(errs, field.Required(specPath.Child("service"), "the apex service clients address"))
	} else if msgs := validation.IsDNS1035Label(ts.Service); len(msgs) > 0 {
		errs = append(errs, field.Invalid(specPath.Child("service"), ts.Service, strings.Join(msgs, "; ")))
	}
	backendsPath := specPath.Child("backends")
	if len(ts.Backends) == 0 {
		errs = append(errs, field.Required(backendsPath, "a split needs at least one backend"))
	}
	var total uint64
	weightsOK := true
	seen := map[string]int{}
	for i, b := range ts.Backends {
		p := backendsPath.Index(i)
		if b.Service == "" {
			errs = append(errs, field.Required(p.Child("service"), ""))
		} else if msgs := validation.IsDNS1035Label(b.Service); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("service"), b.Service, strings.Join(msgs, "; ")))
		} else if first, dup := seen[b.Service]; dup {
			errs = append(errs, field.Duplicate(p.Child("service"), fmt.Sprintf("%s (also spec.backends[%d])", b.Service, first)))
		} else {
			seen[b.Service] = i
		}
		switch {
		case b.Weight < 0:
			errs = append(errs, field.Invalid(p.Child("weight"), b.Weight, "must not be negative"))
			weightsOK = false
		case b.Weight > math.MaxUint32:
			errs = append(errs, field.Invalid(p.Child("weight"), b.Weight, fmt.Sprintf("must be at most %d", uint32(math.MaxUint32))))
			weightsOK = false
		default:
			total += uint64(b.Weight)
		}
	}
	if len(ts.Backends) > 0 && weightsOK {
		switch {
		case total == 0:
			errs = append(errs, field.Invalid(backendsPath, "", "the sum of the weights must be greater than 0"))
		case total > math.MaxUint32:
			errs = append(errs, field.Invalid(backendsPath, "", fmt.Sprintf("the sum of the weights must be at most %d", uint32(math.MaxUint32))))
		}
	}
	return errs
}
