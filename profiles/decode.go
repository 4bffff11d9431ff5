package profiles

import (
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ServiceProfileV1alpha1 is Linkerd's older version of the same schema. The
// CRD serves it (deprecated) because Linkerd does and old manifests use it;
// objects are stored as v1alpha2 without conversion, so it decodes into the
// same type.
var ServiceProfileV1alpha1 = schema.GroupVersion{Group: "linkerd.io", Version: "v1alpha1"}

// DecodeServiceProfile reads one ServiceProfile from YAML or JSON, strictly:
// unknown fields (compared case-sensitively, as the API server does),
// duplicate keys, wrong types and missing required fields are errors. It
// does not validate values; see ValidateServiceProfile.
func DecodeServiceProfile(data []byte) (*ServiceProfile, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("decoding ServiceProfile%s: %w", nameForYAMLError(data), err)
	}
	return decodeServiceProfileJSON(j)
}

// ServiceProfileFromUnstructured converts what a dynamic informer delivers,
// with the same strictness as DecodeServiceProfile.
func ServiceProfileFromUnstructured(u *unstructured.Unstructured) (*ServiceProfile, error) {
	j, err := json.Marshal(u.UnstructuredContent())
	if err != nil {
		return nil, fmt.Errorf("decoding ServiceProfile %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return decodeServiceProfileJSON(j)
}

func decodeServiceProfileJSON(j []byte) (*ServiceProfile, error) {
	raw, what, err := serviceProfileHeader(j)
	if err != nil {
		return nil, err
	}
	// Quantities are checked first: their own parse error names no field.
	if errs := quantitiesParse(raw, "dstOverrides", "weight"); len(errs) > 0 {
		return nil, fmt.Errorf("decoding %s: %w", what, errs.ToAggregate())
	}
	var sp ServiceProfile
	if err := strictUnmarshal(j, &sp); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", what, err)
	}
	if errs := serviceProfileRequired(raw); len(errs) > 0 {
		return nil, fmt.Errorf("decoding %s: %w", what, errs.ToAggregate())
	}
	return &sp, nil
}

// DecodeTrafficSplit reads one SMI TrafficSplit, v1alpha1 or v1alpha2, from
// YAML or JSON, strictly, and returns the version-independent form: v1alpha1
// quantity weights become exact milli-units ("500m" -> 500), v1alpha2 integer
// weights are kept. It does not validate values; see ValidateTrafficSplit.
func DecodeTrafficSplit(data []byte) (*TrafficSplit, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("decoding TrafficSplit%s: %w", nameForYAMLError(data), err)
	}
	return decodeTrafficSplitJSON(j, nil)
}

// TrafficSplitFromUnstructured converts what a dynamic informer delivers
// (either SMI version), with the same strictness as DecodeTrafficSplit.
func TrafficSplitFromUnstructured(u *unstructured.Unstructured) (*TrafficSplit, error) {
	j, err := json.Marshal(u.UnstructuredContent())
	if err != nil {
		return nil, fmt.Errorf("decoding TrafficSplit %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return decodeTrafficSplitJSON(j, nil)
}

// decodeTrafficSplitJSON decodes either version. With collect non-nil,
// unknown and duplicate fields are appended to it instead of failing the
// decode (see CheckTrafficSplit).
func decodeTrafficSplitJSON(j []byte, collect *[]error) (*TrafficSplit, error) {
	tm, raw, err := readHeader(j)
	if err != nil {
		return nil, fmt.Errorf("decoding TrafficSplit: %w", err)
	}
	what := fmt.Sprintf("TrafficSplit %s", describeObject(raw))
	if tm.Kind != "TrafficSplit" {
		return nil, fmt.Errorf("decoding %s: kind is %q, want TrafficSplit", what, tm.Kind)
	}
	what += " (" + tm.APIVersion + ")"
	out := &TrafficSplit{}
	switch tm.APIVersion {
	case TrafficSplitV1alpha1.String():
		if errs := quantitiesParse(raw, "backends", "weight"); len(errs) > 0 {
			return nil, fmt.Errorf("decoding %s: %w", what, errs.ToAggregate())
		}
		var ts TrafficSplitV1
		if err := unmarshalCollecting(j, &ts, collect); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", what, err)
		}
		if errs := trafficSplitRequired(raw); len(errs) > 0 {
			return nil, fmt.Errorf("decoding %s: %w", what, errs.ToAggregate())
		}
		out.Version, out.ObjectMeta, out.Service = TrafficSplitV1alpha1, ts.ObjectMeta, ts.Spec.Service
		var errs field.ErrorList
		for i, b := range ts.Spec.Backends {
			milli, err := milliUnits(b.Weight)
			if err != nil {
				errs = append(errs, field.Invalid(specPath.Child("backends").Index(i).Child("weight"), b.Weight.String(), err.Error()))
				continue
			}
			out.Backends = append(out.Backends, SplitBackend{Service: b.Service, Weight: milli})
		}
		if len(errs) > 0 {
			return nil, fmt.Errorf("decoding %s: %w", what, errs.ToAggregate())
		}
	case TrafficSplitV1alpha2.String():
		var ts trafficSplitV2Wire
		if err := unmarshalCollecting(j, &ts, collect); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", what, err)
		}
		if errs := trafficSplitRequired(raw); len(errs) > 0 {
			return nil, fmt.Errorf("decoding %s: %w", what, errs.ToAggregate())
		}
		out.Version, out.ObjectMeta, out.Service = TrafficSplitV1alpha2, ts.ObjectMeta, ts.Spec.Service
		// A string weight is a quantity stored through v1alpha1 (see the
		// CRD): then every weight is read as a quantity, so the units agree.
		anyString := false
		for _, b := range ts.Spec.Backends {
			anyString = anyString || b.Weight.isString
		}
		var errs field.ErrorList
		for i, b := range ts.Spec.Backends {
			w := b.Weight.n
			if anyString {
				q := *resource.NewQuantity(b.Weight.n, resource.DecimalSI)
				if b.Weight.isString {
					var err error
					if q, err = resource.ParseQuantity(b.Weight.s); err != nil {
						errs = append(errs, field.Invalid(specPath.Child("backends").Index(i).Child("weight"), b.Weight.s, fmt.Sprintf("not an integer nor a Kubernetes quantity: %v", err)))
						continue
					}
				}
				milli, err := milliUnits(q)
				if err != nil {
					errs = append(errs, field.Invalid(specPath.Child("backends").Index(i).Child("weight"), q.String(), err.Error()))
					continue
				}
				w = milli
			}
			out.Backends = append(out.Backends, SplitBackend{Service: b.Service, Weight: w})
		}
		if len(errs) > 0 {
			return nil, fmt.Errorf("decoding %s: %w", what, errs.ToAggregate())
		}
	default:
		return nil, fmt.Errorf("decoding %s: apiVersion is %q, want %s or %s", what, tm.APIVersion, TrafficSplitV1alpha1, TrafficSplitV1alpha2)
	}
	return out, nil
}

// trafficSplitV2Wire is v1alpha2 as the API server may hold it: weights are
// integers, or quantity strings when the object was written as v1alpha1.
type trafficSplitV2Wire struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Service  string `json:"service"`
		Backends []struct {
			Service string     `json:"service"`
			Weight  wireWeight `json:"weight"`
		} `json:"backends"`
	} `json:"spec"`
}

// wireWeight is an int-or-string weight, without intstr's int32 limit.
type wireWeight struct {
	isString bool
	n        int64
	s        string
}

func (w *wireWeight) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		w.isString = true
		return json.Unmarshal(b, &w.s)
	}
	if err := json.Unmarshal(b, &w.n); err != nil {
		return fmt.Errorf("weight must be an integer (or a quantity string): %s", b)
	}
	return nil
}

// readHeader reads apiVersion/kind and the document as a generic map (for
// presence checks the typed structs cannot make).
func readHeader(j []byte) (metav1.TypeMeta, map[string]any, error) {
	var raw map[string]any
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(j, &raw); err != nil {
		return metav1.TypeMeta{}, nil, err
	}
	if raw == nil {
		return metav1.TypeMeta{}, nil, errors.New("empty document")
	}
	var tm metav1.TypeMeta
	tm.APIVersion, _ = raw["apiVersion"].(string)
	tm.Kind, _ = raw["kind"].(string)
	return tm, raw, nil
}

func describeObject(raw map[string]any) string {
	md, _ := raw["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	if ns == "" {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("%q in namespace %q", name, ns)
}

func strictUnmarshal(j []byte, into any) error { return unmarshalCollecting(j, into, nil) }

// unmarshalCollecting is strictUnmarshal, except that with collect
// non-nil the unknown and duplicate fields are appended to it and the
// decode counts as successful.
func unmarshalCollecting(j []byte, into any, collect *[]error) error {
	strictErrs, err := sigsjson.UnmarshalStrict(j, into)
	if err != nil {
		return err
	}
	if collect != nil {
		*collect = append(*collect, strictErrs...)
		return nil
	}
	return errors.Join(strictErrs...)
}

// serviceProfileRequired checks fields the schema requires whose absence
// the Go types cannot show (a missing number decodes as 0).
func serviceProfileRequired(raw map[string]any) field.ErrorList {
	errs := requireKeys(raw, nil, "spec")
	spec, _ := raw["spec"].(map[string]any)
	if b, ok := spec["retryBudget"].(map[string]any); ok {
		errs = append(errs, requireKeys(b, specPath.Child("retryBudget"), "retryRatio", "minRetriesPerSecond", "ttl")...)
	}
	routes, _ := spec["routes"].([]any)
	for i, r := range routes {
		if r, ok := r.(map[string]any); ok {
			p := specPath.Child("routes").Index(i)
			errs = append(errs, requireKeys(r, p, "name", "condition")...)
			classes, _ := r["responseClasses"].([]any)
			for j, rc := range classes {
				if rc, ok := rc.(map[string]any); ok {
					errs = append(errs, requireKeys(rc, p.Child("responseClasses").Index(j), "condition")...)
				}
			}
		}
	}
	dsts, _ := spec["dstOverrides"].([]any)
	for i, d := range dsts {
		if d, ok := d.(map[string]any); ok {
			errs = append(errs, requireKeys(d, specPath.Child("dstOverrides").Index(i), "authority", "weight")...)
		}
	}
	return errs
}

func trafficSplitRequired(raw map[string]any) field.ErrorList {
	errs := requireKeys(raw, nil, "spec")
	spec, ok := raw["spec"].(map[string]any)
	if !ok {
		return errs
	}
	errs = append(errs, requireKeys(spec, specPath, "service", "backends")...)
	backends, _ := spec["backends"].([]any)
	for i, b := range backends {
		if b, ok := b.(map[string]any); ok {
			errs = append(errs, requireKeys(b, specPath.Child("backends").Index(i), "service", "weight")...)
		}
	}
	return errs
}

// quantitiesParse checks spec.<list>[i].<key> values parse as quantities,
// so a bad one is reported at its path.
func quantitiesParse(raw map[string]any, list, key string) field.ErrorList {
	var errs field.ErrorList
	spec, _ := raw["spec"].(map[string]any)
	items, _ := spec[list].([]any)
	for i, item := range items {
		m, _ := item.(map[string]any)
		v, ok := m[key]
		if !ok || v == nil {
			continue
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case int64, float64:
			s = fmt.Sprint(v)
		default:
			continue // the typed decode reports the wrong type
		}
		if _, err := resource.ParseQuantity(s); err != nil {
			errs = append(errs, field.Invalid(specPath.Child(list).Index(i).Child(key), v, fmt.Sprintf("not a Kubernetes quantity: %v", err)))
		}
	}
	return errs
}

// nameForYAMLError names the object in a strict-YAML error, read leniently,
// so that a duplicate key still says which object it is in.
func nameForYAMLError(data []byte) string {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil || raw == nil {
		return ""
	}
	return " " + describeObject(raw)
}

// requireKeys reports each key absent or null in obj.
func requireKeys(obj map[string]any, path *field.Path, keys ...string) field.ErrorList {
	var errs field.ErrorList
	for _, k := range keys {
		if v, ok := obj[k]; !ok || v == nil {
			p := field.NewPath(k)
			if path != nil {
				p = path.Child(k)
			}
			errs = append(errs, field.Required(p, ""))
		}
	}
	return errs
}
