package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/mesh"
)

func review(t *testing.T, op admissionv1.Operation, kind string, object []byte) []byte {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind}, Namespace: "app",
			Operation: op, Object: runtime.RawExtension{Raw: object},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// The handler's answers: the patch it returns, applied to the pod the
// apiserver sent, gives exactly Inject's pod; everything else is allowed
// untouched, and only a request that is not an AdmissionReview is refused.
func TestHandler(t *testing.T) {
	in := testInjector(t)
	namespaces := map[string]*corev1.Namespace{"app": namespace("app", enabled, nil)}
	events := &record.FakeRecorder{Events: make(chan string, 10), IncludeObject: true}
	h := &Handler{
		Injector: in,
		Namespace: func(_ context.Context, name string) (*corev1.Namespace, error) {
			if ns, ok := namespaces[name]; ok {
				return ns, nil
			}
			return nil, errors.New("no such namespace")
		},
		Events: events,
		Log:    quietLogger(),
	}
	podJSON := func(p *corev1.Pod) []byte {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain := testPod("", nil)
	plain.Annotations = nil
	badAnnotation := testPod("", map[string]string{mesh.AnnotationProxyMemoryLimit: "lots"})
	owned := badAnnotation.DeepCopy()
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-abc", Controller: new(bool)}}
	*owned.OwnerReferences[0].Controller = true
	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		wantStatus  int
		wantPatch   bool
		wantWarning string
		wantEvent   string // prefix, then the object it is on
		wantOn      string
	}{
		{"a pod in an enabled namespace", http.MethodPost, "application/json", review(t, admissionv1.Create, "Pod", podJSON(plain)), 200, true, "", "", ""},
		{"a bad annotation: injected, warned, an Event on the namespace", http.MethodPost, "application/json", review(t, admissionv1.Create, "Pod", podJSON(badAnnotation)), 200, true,
			`metadata.annotations[config.weft.io/proxy-memory-limit]: Invalid value: "lots"`, "Warning InjectionWarning pod web-1: weft: metadata.annotations[config.weft.io/proxy-memory-limit]", "involvedObject{kind=Namespace,apiVersion=v1}"},
		{"the Event goes to the pod's owner", http.MethodPost, "application/json", review(t, admissionv1.Create, "Pod", podJSON(owned)), 200, true, "proxy-memory-limit", "Warning InjectionWarning", "involvedObject{kind=ReplicaSet,apiVersion=apps/v1}"},
		{"an update is not injected", http.MethodPost, "application/json", review(t, admissionv1.Update, "Pod", podJSON(plain)), 200, false, "", "", ""},
		{"another kind passes", http.MethodPost, "application/json", review(t, admissionv1.Create, "ConfigMap", []byte(`{"data":{}}`)), 200, false, "", "", ""},
		{"an undecodable pod is allowed with a warning", http.MethodPost, "application/json", review(t, admissionv1.Create, "Pod", []byte(`{"spec":{"containers":3}}`)), 200, false, "pod not injected: decoding it", "", ""},
		{"not JSON", http.MethodPost, "application/json", []byte("garbage"), 400, false, "", "", ""},
		{"not an AdmissionReview request", http.MethodPost, "application/json", []byte(`{"kind":"AdmissionReview"}`), 400, false, "", "", ""},
		{"wrong content type", http.MethodPost, "text/plain", review(t, admissionv1.Create, "Pod", podJSON(plain)), 415, false, "", "", ""},
		{"GET", http.MethodGet, "application/json", nil, 405, false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, InjectPath, bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.contentType)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus != 200 {
				return
			}
			var resp admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			r := resp.Response
			if resp.Kind != "AdmissionReview" || r.UID != "u1" || !r.Allowed {
				t.Fatalf("response %+v (kind %q)", r, resp.Kind)
			}
			if (len(r.Patch) > 0) != tt.wantPatch {
				t.Fatalf("patch %s, want one: %v", r.Patch, tt.wantPatch)
			}
			if warnings := strings.Join(r.Warnings, "\n"); (tt.wantWarning == "") != (warnings == "") || !strings.Contains(warnings, tt.wantWarning) {
				t.Errorf("warnings %q, want %q", warnings, tt.wantWarning)
			}
			select {
			case ev := <-events.Events:
				if tt.wantEvent == "" || !strings.HasPrefix(ev, tt.wantEvent) || !strings.HasSuffix(ev, tt.wantOn) {
					t.Errorf("event %q, want %q ... %q", ev, tt.wantEvent, tt.wantOn)
				}
			default:
				if tt.wantEvent != "" {
					t.Errorf("no event, want %q", tt.wantEvent)
				}
			}
			if !tt.wantPatch {
				return
			}
			var sent corev1.Pod
			var rv admissionv1.AdmissionReview
			if err := json.Unmarshal(tt.body, &rv); err != nil {
				t.Fatal(err)
			}
			patched, err := applyPatch(rv.Request.Object.Raw, r.Patch)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(rv.Request.Object.Raw, &sent); err != nil {
				t.Fatal(err)
			}
			sent.Namespace = "app"
			want, _ := in.Inject(&sent, namespaces["app"])
			want.Pod.Namespace = ""
			if !equality.Semantic.DeepEqual(patched, want.Pod) {
				t.Errorf("the patched pod is not Inject's:\n%+v\n%+v", patched, want.Pod)
			}
		})
	}
}

func applyPatch(object, patch []byte) (*corev1.Pod, error) {
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, err
	}
	out, err := p.Apply(object)
	if err != nil {
		return nil, err
	}
	var pod corev1.Pod
	return &pod, json.Unmarshal(out, &pod)
}
