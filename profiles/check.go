package profiles

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
)

// CheckServiceProfile decodes a ServiceProfile from JSON as strictly as
// DecodeServiceProfile and validates it as ValidateServiceProfile does, but
// reports every problem at once, each at its field path: unknown and
// duplicate fields, missing required fields, quantities that do not parse
// and every invalid value. This is what a person fixing a profile wants to
// see (the admission webhook, `weft profile validate`); the control plane
// keeps DecodeServiceProfile, which stops at the first decoding problem.
//
// sp is the decoded profile when the document could be decoded at all
// (possibly with errors); err is set instead when it could not (not an
// object, another kind, a value of the wrong type), and names the object.
func CheckServiceProfile(j []byte, clusterDomain string) (sp *ServiceProfile, errs field.ErrorList, err error) {
	raw, what, err := serviceProfileHeader(j)
	if err != nil {
		return nil, nil, err
	}
	errs = append(errs, quantitiesParse(raw, "dstOverrides", "weight")...)
	errs = append(errs, serviceProfileRequired(raw)...)
	if len(errs) > 0 && hasInvalidQuantity(errs) {
		// The typed decode would stop at the quantity with a message that
		// names no field; what is already known is the better report.
		return nil, errs, nil
	}
	sp = &ServiceProfile{}
	var strictErrs []error
	if err := unmarshalCollecting(j, sp, &strictErrs); err != nil {
		return nil, nil, fmt.Errorf("decoding %s: %w", what, err)
	}
	for _, se := range strictErrs {
		errs = append(errs, strictFieldError(se, "ServiceProfile"))
	}
	// A missing required field is already reported; validation would say
	// the same thing again in other words.
	required := map[string]bool{}
	for _, e := range errs {
		if e.Type == field.ErrorTypeRequired {
			required[e.Field] = true
		}
	}
	for _, ve := range ValidateServiceProfile(sp, clusterDomain) {
		if ve.Type != field.ErrorTypeRequired || !required[ve.Field] {
			errs = append(errs, ve)
		}
	}
	return sp, errs, nil
}

// CheckTrafficSplit is CheckServiceProfile for a TrafficSplit of either
// version: unknown and duplicate fields and ValidateTrafficSplit's errors
// together. Other decoding problems (a missing field, a weight that is not
// a number) are err, as DecodeTrafficSplit reports them.
func CheckTrafficSplit(j []byte) (ts *TrafficSplit, errs field.ErrorList, err error) {
	var strictErrs []error
	if ts, err = decodeTrafficSplitJSON(j, &strictErrs); err != nil {
		return nil, nil, err
	}
	for _, se := range strictErrs {
		errs = append(errs, strictFieldError(se, "TrafficSplit"))
	}
	return ts, append(errs, ValidateTrafficSplit(ts)...), nil
}

func hasInvalidQuantity(errs field.ErrorList) bool {
	for _, e := range errs {
		if e.Type == field.ErrorTypeInvalid {
			return true
		}
	}
	return false
}

// strictFieldError turns an unknown or duplicate field reported by the
// strict JSON decoder into a field error at its path.
func strictFieldError(err error, kind string) *field.Error {
	var fe sigsjson.FieldError
	if !errors.As(err, &fe) {
		return field.InternalError(nil, err)
	}
	path := field.NewPath(fe.FieldPath())
	if strings.HasPrefix(err.Error(), "duplicate field") {
		return field.Duplicate(path, "the key appears more than once in the same object")
	}
	return field.Forbidden(path, fmt.Sprintf("unknown field: the %s schema has no such field (names are case-sensitive)", kind))
}

// serviceProfileHeader reads a document's apiVersion and kind and refuses
// anything but a ServiceProfile; what names the object for messages.
func serviceProfileHeader(j []byte) (raw map[string]any, what string, err error) {
	tm, raw, err := readHeader(j)
	if err != nil {
		return nil, "", fmt.Errorf("decoding ServiceProfile: %w", err)
	}
	what = fmt.Sprintf("ServiceProfile %s", describeObject(raw))
	if tm.Kind != "ServiceProfile" {
		return nil, "", fmt.Errorf("decoding %s: kind is %q, want ServiceProfile", what, tm.Kind)
	}
	if tm.APIVersion != ServiceProfileGroupVersion.String() && tm.APIVersion != ServiceProfileV1alpha1.String() {
		return nil, "", fmt.Errorf("decoding %s: apiVersion is %q, want %s (or the deprecated %s)", what, tm.APIVersion, ServiceProfileGroupVersion, ServiceProfileV1alpha1)
	}
	return raw, what, nil
}
