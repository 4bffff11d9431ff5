package admission

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// profile is a ServiceProfile web.ns.svc.cluster.local (unless name is
// given) around spec, which is indented by two spaces.
func profile(name, spec string) string {
	if name == "" {
		name = "web.ns.svc.cluster.local"
	}
	return "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata:\n  name: " + name + "\n  namespace: ns\nspec:\n" + spec
}

func rawJSON(t *testing.T, y string) runtime.RawExtension {
	t.Helper()
	if y == "" {
		return runtime.RawExtension{}
	}
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	return runtime.RawExtension{Raw: j}
}

// manyRoutes is a condition that expands into 2^7 = 128 Envoy routes
// (seven `any` of two paths under one `all`), more than translate's 64.
func manyRoutes() string {
	var b strings.Builder
	b.WriteString("  routes:\n  - name: big\n    condition:\n      all:\n")
	for i := range 7 {
		b.WriteString("      - any:\n")
		for _, c := range []string{"a", "b"} {
			b.WriteString("        - pathRegex: /" + c + strings.Repeat("x", i) + "/.*\n")
		}
	}
	return b.String()
}

func TestReview(t *testing.T) {
	const good = "  routes:\n  - name: books\n    condition: {method: GET, pathRegex: '/books/[^/]*'}\n    timeout: 2s\n    isRetryable: true\n"
	const badRegex = "  routes:\n  - name: books\n    condition: {pathRegex: '/api/(?=books)'}\n"
	deleting := "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata:\n  name: web.ns.svc.cluster.local\n  namespace: ns\n  deletionTimestamp: \"2026-11-29T00:00:00Z\"\n  finalizers: [example.com/f]\nspec:\n" + badRegex
	tests := []struct {
		name      string
		op        admissionv1.Operation
		obj, old  string
		allowed   bool
		causes    []string // field paths of the causes, in order
		inMessage []string
		warnings  []string // substrings, one per warning
	}{
		{name: "valid profile", op: admissionv1.Create, obj: profile("", good), allowed: true},
		{name: "every error at once", op: admissionv1.Create,
			obj:    profile("web.ns.svc.example.org", "  routes:\n  - name: books\n    condition: {pathRegex: '/api/(?=books)'}\n    timeot: 1s\n    timeout: 0s\n  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10}\n"),
			causes: []string{"spec.retryBudget.ttl", "spec.routes[0].timeot", "metadata.name", "spec.routes[0].condition.pathRegex", "spec.routes[0].timeout"},
			inMessage: []string{`ServiceProfile.linkerd.io "web.ns.svc.example.org" is invalid`, "unknown field", "must be <service>.<namespace>.svc.cluster.local",
				"not a valid RE2 regular expression", "must be positive"}},
		{name: "regex over Envoy's program size", op: admissionv1.Create, obj: profile("", "  routes:\n  - name: words\n    condition: {pathRegex: '/\\p{L}+'}\n"),
			causes: []string{"spec.routes[0].condition.pathRegex"}, inMessage: []string{"too complex"}},
		{name: "status range min above max, nested", op: admissionv1.Create,
			obj:    profile("", "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition:\n        any:\n        - status: {min: 500, max: 400}\n      isFailure: true\n"),
			causes: []string{"spec.routes[0].responseClasses[0].condition.any[0].status.max"}},
		{name: "condition translate cannot expand", op: admissionv1.Create, obj: profile("", manyRoutes()),
			causes: []string{"spec.routes[0].condition"}, inMessage: []string{"cannot turn this condition into Envoy routes", "more than 64 Envoy routes"}},
		{name: "negated path: allowed, proxyless clients warned", op: admissionv1.Create,
			obj:     profile("", "  routes:\n  - name: not-admin\n    condition:\n      not: {pathRegex: /admin/.*}\n"),
			allowed: true, warnings: []string{"spec.routes[0].condition: proxyless gRPC clients will get none of this profile's routes"}},
		{name: "not an object of the kinds checked", op: admissionv1.Create, obj: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns}\n", allowed: true},
		{name: "delete", op: admissionv1.Delete, old: profile("", badRegex), allowed: true},
		{name: "update to an invalid spec", op: admissionv1.Update, obj: profile("", badRegex), old: profile("", good),
			causes: []string{"spec.routes[0].condition.pathRegex"}},
		{name: "update keeping an invalid spec", op: admissionv1.Update, obj: profile("", badRegex), old: profile("", badRegex),
			allowed: true, warnings: []string{"spec did not change"}},
		{name: "update of an object being deleted", op: admissionv1.Update, obj: deleting, old: profile("", good),
			allowed: true, warnings: []string{"being deleted"}},
		{name: "traffic split with a negative weight", op: admissionv1.Create,
			obj:    "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s, namespace: ns}\nspec:\n  service: web\n  backends:\n  - {service: web-v1, weight: -1}\n  - {service: web-v2, weight: 1}\n",
			causes: []string{"spec.backends[0].weight"}, inMessage: []string{`TrafficSplit.split.smi-spec.io "s" is invalid`}},
		{name: "traffic split whose weights sum to 0", op: admissionv1.Create,
			obj:    "apiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: {name: s, namespace: ns}\nspec:\n  service: web\n  backends:\n  - {service: web-v1, weight: 0}\n",
			causes: []string{"spec.backends"}},
		{name: "traffic split: unknown field and bad weight together", op: admissionv1.Create,
			obj:    "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s, namespace: ns}\nspec:\n  service: web\n  backends:\n  - {service: web-v1, weight: -1, extra: true}\n  - {service: web-v2, weight: 1}\n",
			causes: []string{"spec.backends[0].extra", "spec.backends[0].weight"}},
		{name: "traffic split that does not decode", op: admissionv1.Create,
			obj:       "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s, namespace: ns}\nspec:\n  service: web\n  backends:\n  - {service: web-v1, weight: true}\n",
			inMessage: []string{`decoding TrafficSplit "s" in namespace "ns"`, "weight must be an integer"}},
	}
	h := &Handler{Validator: Validator{ClusterDomain: "cluster.local"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &admissionv1.AdmissionRequest{UID: "uid-1", Operation: tt.op, Namespace: "ns", Object: rawJSON(t, tt.obj), OldObject: rawJSON(t, tt.old)}
			resp := h.Review(r)
			if resp.UID != r.UID {
				t.Errorf("UID = %q, want %q", resp.UID, r.UID)
			}
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed = %v, want %v; result %+v", resp.Allowed, tt.allowed, resp.Result)
			}
			if len(resp.Warnings) != len(tt.warnings) {
				t.Errorf("warnings = %q, want %d", resp.Warnings, len(tt.warnings))
			}
			for i, w := range tt.warnings {
				if i < len(resp.Warnings) && !strings.Contains(resp.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, resp.Warnings[i], w)
				}
			}
			if tt.allowed {
				return
			}
			var causes []string
			if d := resp.Result.Details; d != nil {
				for _, c := range d.Causes {
					causes = append(causes, c.Field)
				}
			}
			if !slices.Equal(causes, tt.causes) {
				t.Errorf("causes = %q, want %q\nmessage: %s", causes, tt.causes, resp.Result.Message)
			}
			for _, c := range tt.causes {
				if !strings.Contains(resp.Result.Message, c+":") {
					t.Errorf("message does not name %s: %s", c, resp.Result.Message)
				}
			}
			for _, s := range tt.inMessage {
				if !strings.Contains(resp.Result.Message, s) {
					t.Errorf("message does not contain %q: %s", s, resp.Result.Message)
				}
			}
			if resp.Result.Code < 400 {
				t.Errorf("code = %d, want a client error", resp.Result.Code)
			}
		})
	}
}

func TestServeHTTP(t *testing.T) {
	review := func(req *admissionv1.AdmissionRequest) string {
		b, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request:  req,
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	bad := review(&admissionv1.AdmissionRequest{UID: "u-2", Operation: admissionv1.Create,
		Object: rawJSON(t, profile("", "  routes:\n  - name: r\n    condition: {pathRegex: '(?=x)'}\n"))})
	tests := []struct {
		name, method, body string
		code               int
		allowed            bool
	}{
		{name: "refused review", method: http.MethodPost, body: bad, code: http.StatusOK, allowed: false},
		{name: "allowed review", method: http.MethodPost, code: http.StatusOK, allowed: true,
			body: review(&admissionv1.AdmissionRequest{UID: "u-2", Operation: admissionv1.Create, Object: rawJSON(t, profile("", "  routes:\n  - name: r\n    condition: {method: GET}\n"))})},
		{name: "GET", method: http.MethodGet, code: http.StatusMethodNotAllowed},
		{name: "not JSON", method: http.MethodPost, body: "{", code: http.StatusBadRequest},
		{name: "no request", method: http.MethodPost, body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, code: http.StatusBadRequest},
		{name: "too large", method: http.MethodPost, body: `{"x":"` + strings.Repeat("a", maxReviewBytes) + `"}`, code: http.StatusRequestEntityTooLarge},
	}
	h := &Handler{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/validate", bytes.NewBufferString(tt.body)))
			if rec.Code != tt.code {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			if tt.code != http.StatusOK {
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			if out.Kind != "AdmissionReview" || out.APIVersion != "admission.k8s.io/v1" || out.Request != nil {
				t.Errorf("review = %+v, want an admission.k8s.io/v1 AdmissionReview with only a response", out.TypeMeta)
			}
			if out.Response == nil || out.Response.UID != "u-2" || out.Response.Allowed != tt.allowed {
				t.Errorf("response = %+v, want UID u-2 allowed=%v", out.Response, tt.allowed)
			}
		})
	}
}
