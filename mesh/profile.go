package mesh

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/profiles"
)

// FieldErrors is the Err of a ConfigError for an invalid object: every bad
// field with its path. errors.As finds each *field.Error through Unwrap.
type FieldErrors field.ErrorList

func (e FieldErrors) Error() string {
	msgs := make([]string, len(e))
	for i, fe := range e {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e FieldErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, fe := range e {
		out[i] = fe
	}
	return out
}

// ProfileFrom validates and converts a ServiceProfile. The service it
// describes comes from its name (svc.ns.svc.<clusterDomain>), which may be in
// another namespace than the profile: that is a client-side override,
// keyed by the profile's own namespace.
func ProfileFrom(sp *profiles.ServiceProfile, clusterDomain string) (*Profile, field.ErrorList) {
	if errs := profiles.ValidateServiceProfile(sp, clusterDomain); len(errs) > 0 {
		return nil, errs
	}
	svc, ns, _ := profiles.ParseProfileName(sp.Name, clusterDomain)
	p := &Profile{
		Source:  ObjectRef{Kind: "ServiceProfile", Namespace: sp.Namespace, Name: sp.Name},
		Service: ServiceKey{Namespace: ns, Name: svc},
	}
	for _, r := range sp.Spec.Routes {
		route := Route{
			Name:        r.Name,
			Match:       requestMatchFrom(r.Condition),
			IsRetryable: r.IsRetryable,
		}
		if r.Timeout != "" {
			route.Timeout, _ = time.ParseDuration(r.Timeout)
		}
		for _, rc := range r.ResponseClasses {
			route.ResponseClasses = append(route.ResponseClasses, ResponseClass{
				Match:     responseMatchFrom(rc.Condition),
				IsFailure: rc.IsFailure,
			})
		}
		p.Routes = append(p.Routes, route)
	}
	if b := sp.Spec.RetryBudget; b != nil {
		ttl, _ := time.ParseDuration(b.TTL)
		p.RetryBudget = &RetryBudget{
			RetryRatio:          float32ToDecimal(b.RetryRatio),
			MinRetriesPerSecond: b.MinRetriesPerSecond,
			TTL:                 ttl,
		}
	}
	for _, d := range sp.Spec.DstOverrides {
		name, namespace, port, _ := profiles.ParseAuthority(d.Authority, clusterDomain)
		weight, _ := profiles.WeightMilli(d.Weight)
		p.DstOverrides = append(p.DstOverrides, WeightedBackend{
			Service: ServiceKey{Namespace: namespace, Name: name},
			Port:    port,
			Weight:  weight,
		})
	}
	if len(sp.Spec.OpaquePorts) > 0 {
		p.OpaquePorts = slices.Sorted(maps.Keys(sp.Spec.OpaquePorts))
	}
	return p, nil
}

// float32ToDecimal widens the way a person reads the YAML: 0.2 stays 0.2,
// not float64(float32(0.2)) = 0.20000000298023224.
func float32ToDecimal(f float32) float64 {
	d, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil {
		return float64(f)
	}
	return d
}

func requestMatchFrom(m *profiles.RequestMatch) RequestMatch {
	out := RequestMatch{
		PathRegex: m.PathRegex,
		Method:    m.Method,
		All:       matchesFrom(m.All, requestMatchFrom),
		Any:       matchesFrom(m.Any, requestMatchFrom),
	}
	if m.Not != nil {
		not := requestMatchFrom(m.Not)
		out.Not = &not
	}
	return out
}

func responseMatchFrom(m *profiles.ResponseMatch) ResponseMatch {
	out := ResponseMatch{
		All: matchesFrom(m.All, responseMatchFrom),
		Any: matchesFrom(m.Any, responseMatchFrom),
	}
	if m.Not != nil {
		not := responseMatchFrom(m.Not)
		out.Not = &not
	}
	if m.Status != nil {
		out.Status = &StatusRange{Min: m.Status.Min, Max: m.Status.Max}
	}
	return out
}

// matchesFrom converts the entries of an all/any list, keeping nil as nil.
func matchesFrom[In, Out any](in []*In, from func(*In) Out) []Out {
	if in == nil {
		return nil
	}
	out := make([]Out, len(in))
	for i, sub := range in {
		out[i] = from(sub)
	}
	return out
}

// SplitFrom validates and converts a TrafficSplit. serviceExists is asked
// about the apex and every backend (all in the split's namespace, as SMI
// says); a missing one is an error at its field, and the split is not used:
// a split sending a share of traffic into a void would fail those requests.
func SplitFrom(ts *profiles.TrafficSplit, serviceExists func(ServiceKey) bool) (*Split, field.ErrorList) {
	errs := profiles.ValidateTrafficSplit(ts)
	if len(errs) > 0 {
		return nil, errs
	}
	spec := field.NewPath("spec")
	apex := ServiceKey{Namespace: ts.Namespace, Name: ts.Service}
	if serviceExists != nil && !serviceExists(apex) {
		errs = append(errs, field.NotFound(spec.Child("service"), ts.Service))
	}
	split := &Split{
		Source: ObjectRef{Kind: "TrafficSplit", Namespace: ts.Namespace, Name: ts.Name},
		Apex:   apex,
	}
	for i, b := range ts.Backends {
		key := ServiceKey{Namespace: ts.Namespace, Name: b.Service}
		if serviceExists != nil && !serviceExists(key) {
			errs = append(errs, field.NotFound(spec.Child("backends").Index(i).Child("service"), b.Service))
			continue
		}
		split.Backends = append(split.Backends, WeightedBackend{Service: key, Weight: uint32(b.Weight)})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return split, nil
}

// configError reports an invalid object; Err keeps the field errors.
func configError(ref ObjectRef, errs field.ErrorList) ConfigError {
	return ConfigError{Object: ref, Err: FieldErrors(errs)}
}
