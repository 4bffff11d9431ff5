package testenv_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/testenv"
)

// The apiserver really calls a webhook served by ServeWebhook: a validating webhook that
// refuses ConfigMaps named "refused" blocks exactly those.
func TestServeWebhookIsCalledByTheAPIServer(t *testing.T) {
	var calls atomic.Int32
	wh := testenv.ServeWebhook(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: review.Request.Name != "refused"}
		if !resp.Allowed {
			resp.Result = &metav1.Status{Message: "refused by the test webhook"}
		}
		review.Response, review.Request = resp, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	ctx := t.Context()
	const ns = "webhook-test"
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	none := admissionregistrationv1.SideEffectClassNone
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "test.weft.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr(wh.URL + "/validate"), CABundle: wh.CABundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if _, err := env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, ns, metav1.DeleteOptions{})
	})
	// The configuration takes effect asynchronously in the apiserver: retry until it does.
	err := testenv.WaitFor(ctx, 30*time.Second, "the apiserver calling the webhook", func(ctx context.Context) (bool, error) {
		_, err := env.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}}, metav1.CreateOptions{})
		return err == nil && calls.Load() > 0, err
	})
	if err != nil {
		t.Fatalf("the apiserver never called the webhook: %v", err)
	}
	_, err = env.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "refused"}}, metav1.CreateOptions{})
	if err == nil {
		t.Fatal("a ConfigMap the webhook refuses was created")
	}
	if want := "refused by the test webhook"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not carry the webhook's message %q", err, want)
	}
}
