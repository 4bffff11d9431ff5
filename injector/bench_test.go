package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// BenchmarkAdmission times one AdmissionReview of a typical pod through
// Handler.ServeHTTP, in process (decode, decide, mutate, patch, encode),
// and prints the p50 and p99 of the per-review latencies. Goal: p99 under
// 5 ms.
func BenchmarkAdmission(b *testing.B) {
	in := testInjector(b)
	ns := namespace("app", enabled, nil)
	h := &Handler{Injector: in, Namespace: func(_ context.Context, _ string) (*corev1.Namespace, error) { return ns, nil }, Log: quietLogger()}
	pod := testPod("app", map[string]string{"prometheus.io/scrape": "true"}, func(p *corev1.Pod) {
		p.Name, p.GenerateName = "", "web-7d9f8c6b5-"
		p.Labels = map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5", Controller: ptr.To(true)}}
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "PORT", Value: "8080"}}
	})
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("b1f7"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "app",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	var latencies []time.Duration
	var rec *httptest.ResponseRecorder
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		req := httptest.NewRequest(http.MethodPost, InjectPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		latencies = append(latencies, time.Since(start))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	// The response must be an injection, or the figures time a skip.
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil || review.Response == nil || len(review.Response.Patch) == 0 {
		b.Fatalf("the benchmarked review injected nothing: %v %s", err, rec.Body)
	}
	slices.Sort(latencies)
	p := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
	b.ReportMetric(float64(p(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(p(0.99).Microseconds()), "p99-µs")
	b.Logf("admission latency over %d reviews: p50 %v, p99 %v", len(latencies), p(0.50), p(0.99))
}
