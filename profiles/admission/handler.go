package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds a request body. An AdmissionReview carries the
// object and, on UPDATE, the old one; the API server stores objects of at
// most about 1.5 MiB, so two of them fit with room to spare.
const maxReviewBytes = 8 << 20

// Path is where the control plane's webhook server serves Handler, beside the
// injection webhook.
const Path = "/validate"

// Handler is a validating admission webhook (AdmissionReview v1) for
// ServiceProfiles and TrafficSplits.
//
// It refuses a CREATE or UPDATE whose object Validator finds invalid, with
// every error at its field path in the status the API server shows
// (`kubectl apply` prints them). It allows everything else: other
// operations, other kinds (the webhook configuration should not send them,
// but a wide rule must not turn into an outage), an update of an object
// being deleted (finalizers must always be removable), and an update that
// leaves an invalid spec as it was (such an object was stored before the
// webhook existed; its labels and annotations may still change), the last
// two with the errors as warnings.
type Handler struct {
	Validator Validator
	Log       *slog.Logger
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		code := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, fmt.Sprintf("reading the admission review: %v", err), code)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, fmt.Sprintf("decoding the admission review: %v", err), http.StatusBadRequest)
		return
	}
	if review.Request == nil {
		http.Error(w, "the admission review has no request", http.StatusBadRequest)
		return
	}
	resp := h.Review(review.Request)
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.TypeMeta = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		h.log().Warn("writing the admission response", "uid", review.Request.UID, "err", err)
	}
}

// Review decides one admission request.
func (h *Handler) Review(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{UID: r.UID, Allowed: true}
	if r.Operation != admissionv1.Create && r.Operation != admissionv1.Update {
		return allow
	}
	v := h.Validator.Check(r.Object.Raw)
	if v.Namespace == "" {
		v.Namespace = r.Namespace
	}
	if v.Name == "" {
		v.Name = r.Name
	}
	if !v.Checked() && v.Err == nil {
		h.log().Warn("admission request for an object this webhook does not check: allowed; narrow the webhook's rules",
			"kind", r.Kind.Kind, "namespace", r.Namespace, "name", r.Name)
		return allow
	}
	allow.Warnings = v.Warnings
	if v.OK() {
		return allow
	}
	if r.Operation == admissionv1.Update {
		if why := h.updateExempt(r); why != "" {
			allow.Warnings = append(allow.Warnings, verdictWarnings(v, why)...)
			return allow
		}
	}
	h.log().Info("refused an invalid object", "kind", v.Kind, "namespace", v.Namespace, "name", v.Name,
		"operation", r.Operation, "errors", verdictError(v))
	return &admissionv1.AdmissionResponse{UID: r.UID, Allowed: false, Result: denial(v), Warnings: v.Warnings}
}

// updateExempt says why an update of an invalid object is let through, or
// "" when it is not.
func (h *Handler) updateExempt(r *admissionv1.AdmissionRequest) string {
	var obj, old struct {
		Metadata struct {
			DeletionTimestamp *metav1.Time `json:"deletionTimestamp"`
		} `json:"metadata"`
		Spec any `json:"spec"`
	}
	if json.Unmarshal(r.Object.Raw, &obj) != nil {
		return ""
	}
	if obj.Metadata.DeletionTimestamp != nil {
		return "allowed because the object is being deleted"
	}
	if json.Unmarshal(r.OldObject.Raw, &old) == nil && old.Spec != nil && reflect.DeepEqual(obj.Spec, old.Spec) {
		return "allowed because the spec did not change; fix it before the next change"
	}
	return ""
}

// denial is the status the API server shows the client: for invalid fields
// the same 422 Invalid status it returns for its own validation, whose
// causes carry the field paths.
func denial(v Verdict) *metav1.Status {
	if v.Err != nil {
		return &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: v.Err.Error()}
	}
	st := apierrors.NewInvalid(v.GroupKind(), v.Name, v.Errors).ErrStatus
	return &st
}

func verdictError(v Verdict) error {
	if v.Err != nil {
		return v.Err
	}
	return v.Errors.ToAggregate()
}

func verdictWarnings(v Verdict, why string) []string {
	if v.Err != nil {
		return []string{fmt.Sprintf("%s %s is invalid (%s): %v", v.Kind, v.Name, why, v.Err)}
	}
	out := make([]string, 0, len(v.Errors))
	for _, e := range v.Errors {
		out = append(out, fmt.Sprintf("%s %s is invalid (%s): %v", v.Kind, v.Name, why, e))
	}
	return out
}
