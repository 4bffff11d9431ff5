package injector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/mesh"
)

// InjectPath is where the webhook server serves Handler.
const InjectPath = "/inject"

// maxReviewBytes bounds a request body; the apiserver caps objects at about
// 3 MiB, so an AdmissionReview fits with room.
const maxReviewBytes = 8 << 20

// Handler is the mutating admission webhook for Pod CREATE.
type Handler struct {
	Injector *Injector
	// Namespace returns the pod's namespace (from an informer's cache in the
	// control plane); an error injects as if the namespace had no annotations.
	Namespace func(ctx context.Context, name string) (*corev1.Namespace, error)
	// Events records a Warning per malformed annotation, on the pod's owner
	// (the pod has no UID yet) or else its namespace; nil records nothing.
	Events record.EventRecorder
	Log    *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(w, fmt.Sprintf("content type %q: want application/json", ct), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		http.Error(w, "reading the AdmissionReview: too large or unreadable", http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("decoding the AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp := h.Review(r.Context(), review.Request)
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		http.Error(w, fmt.Sprintf("encoding the response: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// Review answers one admission request. It always allows the pod: the
// worst a bad pod spec or annotation gets is no injection or a default,
// with a warning.
func (h *Handler) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		h.log().Error("admission: undecodable pod, not injected", "namespace", req.Namespace, "error", err)
		resp.Warnings = []string{fmt.Sprintf("weft: pod not injected: decoding it: %v", err)}
		return resp
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	var ns *corev1.Namespace
	if h.Namespace != nil {
		var err error
		if ns, err = h.Namespace(ctx, pod.Namespace); err != nil {
			h.log().Warn("admission: namespace unknown, judging the pod alone", "namespace", pod.Namespace, "error", err)
			ns = nil
		}
	}
	name := podName(&pod)
	result, warnings := h.Injector.Inject(&pod, ns)
	for i, w := range warnings {
		warnings[i] = "weft: " + w
	}
	resp.Warnings = warnings
	if len(warnings) > 0 && !ptr.Deref(req.DryRun, false) {
		h.recordWarnings(&pod, warnings)
	}
	if result.Pod == nil {
		h.log().Debug("admission: not injected", "pod", name, "namespace", pod.Namespace, "reason", result.Skipped)
		return resp
	}
	patch, err := json.Marshal(podPatch(result.Pod))
	if err != nil {
		resp.Warnings = append(resp.Warnings, fmt.Sprintf("weft: pod not injected: encoding the patch: %v", err))
		return resp
	}
	resp.Patch = patch
	resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
	h.log().Debug("admission: injected", "pod", name, "namespace", pod.Namespace, "warnings", len(warnings))
	return resp
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// podPatch sets the three fields Inject changes, whole: "add" replaces a
// member that exists (RFC 6902 4.1), and the apiserver applies the patch to
// the very object it sent, so nothing else is overwritten.
func podPatch(injected *corev1.Pod) []patchOp {
	return []patchOp{
		{Op: "add", Path: "/metadata/annotations", Value: injected.Annotations},
		{Op: "add", Path: "/spec/initContainers", Value: injected.Spec.InitContainers},
		{Op: "add", Path: "/spec/volumes", Value: injected.Spec.Volumes},
	}
}

func (h *Handler) recordWarnings(pod *corev1.Pod, warnings []string) {
	if h.Events == nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Namespace", APIVersion: "v1", Name: pod.Namespace, Namespace: pod.Namespace}
	if owner := metav1.GetControllerOf(pod); owner != nil {
		ref = &corev1.ObjectReference{Kind: owner.Kind, APIVersion: owner.APIVersion, Name: owner.Name, UID: owner.UID, Namespace: pod.Namespace}
	}
	for _, w := range warnings {
		h.Events.Eventf(ref, corev1.EventTypeWarning, "InjectionWarning", "pod %s: %s", podName(pod), w)
	}
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// podName is the pod's name, or its generateName prefix before it has one.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}

// WebhookConfiguration is the MutatingWebhookConfiguration for a webhook
// served at clientConfig. Chosen so a webhook that is down never blocks
// pods: failurePolicy Ignore (the pod is created uninjected), a short
// timeout, and a namespaceSelector that leaves out kube-system, the control
// plane's own namespace and every namespace labelled
// config.weft.io/admission-webhooks (or Linkerd's) disabled, so the apiserver
// does not even call it there.
func WebhookConfiguration(name, controlPlaneNamespace string, clientConfig admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "inject.weft.io",
			ClientConfig: clientConfig,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy: ptr.To(admissionregistrationv1.Ignore),
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{metav1.NamespaceSystem, controlPlaneNamespace}},
				{Key: mesh.LabelAdmissionWebhooks, Operator: metav1.LabelSelectorOpNotIn, Values: []string{mesh.AdmissionWebhooksDisabled}},
				{Key: mesh.LinkerdLabelAdmissionWebhooks, Operator: metav1.LabelSelectorOpNotIn, Values: []string{mesh.AdmissionWebhooksDisabled}},
			}},
			// Events are its only side effect, and none are recorded on dry runs.
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(int32(5)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
		}},
	}
}
