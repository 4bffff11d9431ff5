// Package admission refuses, at `kubectl apply` time, the ServiceProfiles
// and TrafficSplits the control plane would skip later. The CRD schema
// cannot compile an RE2 regex, know the cluster domain or expand a route
// condition into Envoy routes; without this webhook such an object is
// accepted by the API server and then silently ignored (the control plane
// logs it and keeps the last good routes). Validator is the check itself,
// shared with `weft profile validate`; Handler serves it as a validating
// admission webhook (AdmissionReview v1).
package admission

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
	"github.com/weftmesh/weft/translate"
)

// Validator checks ServiceProfiles and TrafficSplits as the control plane
// will read them: strict decoding, profiles validation, then the route
// compilation translate does, so that what it admits can be served.
type Validator struct {
	// ClusterDomain is the suffix of profile names and authorities
	// (<svc>.<ns>.svc.<ClusterDomain>); empty means cluster.local.
	ClusterDomain string
}

// Verdict is what Check found in one object.
type Verdict struct {
	// Kind is ServiceProfile or TrafficSplit; empty for any other object,
	// which Check does not look into.
	Kind            string
	Group           string
	Namespace, Name string
	// Errors are the invalid fields, each at its path.
	Errors field.ErrorList
	// Err is set instead when the object could not be decoded at all.
	Err error
	// Warnings do not refuse the object but say what will not work.
	Warnings []string
}

// Checked reports whether the object was a kind Check validates.
func (v Verdict) Checked() bool { return v.Kind != "" }

// OK reports whether nothing is wrong.
func (v Verdict) OK() bool { return v.Err == nil && len(v.Errors) == 0 }

// GroupKind is the object's group and kind.
func (v Verdict) GroupKind() schema.GroupKind { return schema.GroupKind{Group: v.Group, Kind: v.Kind} }

// Check validates one object given as JSON.
func (val Validator) Check(j []byte) Verdict {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(j, &head); err != nil {
		return Verdict{Err: fmt.Errorf("not a Kubernetes object (a mapping with apiVersion, kind and metadata): %w", err)}
	}
	gv, _ := schema.ParseGroupVersion(head.APIVersion)
	v := Verdict{Group: gv.Group, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
	switch {
	case gv.Group == profiles.ServiceProfileGroupVersion.Group && head.Kind == "ServiceProfile":
		v.Kind = head.Kind
		val.checkServiceProfile(j, &v)
	case gv.Group == profiles.TrafficSplitV1alpha2.Group && head.Kind == "TrafficSplit":
		v.Kind = head.Kind
		_, v.Errors, v.Err = profiles.CheckTrafficSplit(j)
	}
	return v
}

func (val Validator) domain() string {
	if val.ClusterDomain == "" {
		return translate.DefaultClusterDomain
	}
	return val.ClusterDomain
}

func (val Validator) checkServiceProfile(j []byte, v *Verdict) {
	sp, errs, err := profiles.CheckServiceProfile(j, val.domain())
	if err != nil {
		v.Err = err
		return
	}
	v.Errors = errs
	if len(errs) > 0 {
		return
	}
	p, errs := mesh.ProfileFrom(sp, val.domain())
	if len(errs) > 0 {
		v.Errors = errs
		return
	}
	routes := field.NewPath("spec", "routes")
	for _, pr := range translate.CheckProfile(p) {
		path := routes.Index(pr.Route).Child("condition")
		if pr.ProxylessOnly {
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s: proxyless gRPC clients will get none of this profile's routes (sidecars will): %v", path, pr.Err))
			continue
		}
		v.Errors = append(v.Errors, field.Invalid(path, field.OmitValueType{}, fmt.Sprintf("the control plane cannot turn this condition into Envoy routes: %v", pr.Err)))
	}
}
