package mesh

import (
	"cmp"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The resolution rules live here and nowhere else: which object gives a
// model value when several claim it, which profile applies to a client, and
// whether a split or a profile's dstOverrides says where traffic goes. Build
// (the golden cases) and the control plane's incremental store both decide
// through these functions, so the goldens test the rules production runs.

// Claim is a valid object's claim on one model key: a TrafficSplit on its
// apex service, a ServiceProfile on (its namespace, the service it
// describes).
type Claim struct {
	Object  ObjectRef
	Created time.Time
}

// ClaimOf is the claim obj makes as an object of kind.
func ClaimOf(kind string, obj metav1.Object) Claim {
	return Claim{
		Object:  ObjectRef{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()},
		Created: obj.GetCreationTimestamp().Time,
	}
}

// ResolveSplitClaims picks the TrafficSplit that splits apex among valid
// splits naming it. See resolveClaims for the rule and the results.
func ResolveSplitClaims(apex ServiceKey, claims []Claim) (winner int, errs []error) {
	return resolveClaims(claims, field.NewPath("spec", "service"),
		func(Claim) string { return apex.Name }, "splits service "+apex.String())
}

// ResolveProfileClaims picks the ServiceProfile that describes key among
// valid profiles claiming it. A profile's name is its service's FQDN and
// a namespace holds one object of a name, so a cluster never holds two;
// the rule is the splits' all the same, so that no input depends on order.
func ResolveProfileClaims(key ProfileKey, claims []Claim) (winner int, errs []error) {
	what := "describes service " + key.Service.String()
	if key.Namespace != key.Service.Namespace {
		what += " for clients in namespace " + key.Namespace
	}
	return resolveClaims(claims, field.NewPath("metadata", "name"),
		func(c Claim) string { return c.Object.Name }, what)
}

// resolveClaims applies the rule for objects claiming one key: the oldest
// (creationTimestamp) wins, so a newer object cannot take a service over
// from the one already serving it; objects created in the same second
// (Kubernetes keeps no finer time) go by namespace/name. It returns the
// winner's index and, aligned with claims, the error each loser is
// reported with (nil for the winner): a field error on the claiming field
// naming the winner.
func resolveClaims(claims []Claim, path *field.Path, value func(Claim) string, what string) (int, []error) {
	winner := 0
	for i, c := range claims[1:] {
		if claimOrder(c, claims[winner]) < 0 {
			winner = i + 1
		}
	}
	w := claims[winner]
	errs := make([]error, len(claims))
	for i, c := range claims {
		if i == winner {
			continue
		}
		why := "created earlier"
		if w.Created.Equal(c.Created) {
			why = "created at the same time and first by name"
		}
		errs[i] = FieldErrors{&field.Error{
			Type:     field.ErrorTypeDuplicate,
			Field:    path.String(),
			BadValue: value(c),
			Detail:   fmt.Sprintf("%s %s/%s, %s, already %s; this one is ignored", w.Object.Kind, w.Object.Namespace, w.Object.Name, why, what),
		}}
	}
	return winner, errs
}

func claimOrder(a, b Claim) int {
	return cmp.Or(a.Created.Compare(b.Created),
		cmp.Compare(a.Object.Namespace, b.Object.Namespace),
		cmp.Compare(a.Object.Name, b.Object.Name))
}

// ProfileFor is the profile that shapes traffic from clients in clientNS to
// svc, and the namespace it lives in ("" with none). Linkerd's rule: a
// profile in the client's namespace wins over one in the service's own.
func (m *Model) ProfileFor(clientNS string, svc ServiceKey) (*Profile, string) {
	for _, ns := range []string{clientNS, svc.Namespace} {
		if p := m.Profiles[ProfileKey{Namespace: ns, Service: svc}]; p != nil {
			return p, ns
		}
	}
	return nil, ""
}

// ProfileReadBy reports whether clients in clientNS read the profile slot
// k, that is whether ProfileFor would return the profile at k if there were
// one: the client namespace's own slot, and the service namespace's while
// the client namespace has none of its own. The dependency index uses it to
// find who a profile change reaches; it is ProfileFor read backwards, so the
// two live together.
func (m *Model) ProfileReadBy(clientNS string, k ProfileKey) bool {
	if k.Namespace == clientNS {
		return true
	}
	return k.Namespace == k.Service.Namespace && m.Profiles[ProfileKey{Namespace: clientNS, Service: k.Service}] == nil
}

// Backends is where traffic to a service goes instead of to the service.
type Backends struct {
	List []WeightedBackend
	// Source is the TrafficSplit or ServiceProfile that says so, and Field
	// the path of List in it, for errors about single backends.
	Source ObjectRef
	Field  *field.Path
}

// BackendsFor says where traffic to a service goes, given the split the
// model holds for it (m.Splits) and the profile that applies (ProfileFor):
// Linkerd turns a TrafficSplit into the apex profile's dstOverrides,
// replacing any the profile had, so a split wins over dstOverrides. An
// empty List means the service itself.
func BackendsFor(split *Split, profile *Profile) Backends {
	switch {
	case split != nil:
		return Backends{List: split.Backends, Source: split.Source, Field: field.NewPath("spec", "backends")}
	case profile != nil && len(profile.DstOverrides) > 0:
		return Backends{List: profile.DstOverrides, Source: profile.Source, Field: field.NewPath("spec", "dstOverrides")}
	}
	return Backends{}
}
