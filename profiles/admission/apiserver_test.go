package admission

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/weftmesh/weft/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.MainUnlessShort(m, testenv.Options{}, &env)) }

const webhookName = "profiles.weft.io"

var (
	profilesGVR = schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}
	splitsGVR   = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}
)

// registerWebhook serves the handler and registers it the way
// docs/profiles.md says, plus a namespace selector that keeps it to the
// test's namespace.
func registerWebhook(t *testing.T, ns string) {
	t.Helper()
	ctx := t.Context()
	wh := testenv.ServeWebhook(t, &Handler{Validator: Validator{ClusterDomain: "cluster.local"}})
	url := wh.URL + "/validate"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(5)
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-profiles-" + ns},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         webhookName,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: wh.CABundle},
			Rules: []admissionregistrationv1.RuleWithOperations{
				{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"linkerd.io"}, APIVersions: []string{"v1alpha1", "v1alpha2"}, Resources: []string{"serviceprofiles"}},
				},
				{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"split.smi-spec.io"}, APIVersions: []string{"v1alpha1", "v1alpha2"}, Resources: []string{"trafficsplits"}},
				},
			},
			FailurePolicy:           &fail,
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	hooks := env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := hooks.Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hooks.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{}) })
	// The apiserver picks the configuration up asynchronously: wait until
	// a profile only the webhook can refuse is refused.
	probe := object(t, profile("probe.wh.svc.cluster.local", "  routes:\n  - name: r\n    condition: {pathRegex: '(?=x)'}\n"), ns)
	err := testenv.WaitFor(ctx, 30*time.Second, "the apiserver calling the webhook", func(ctx context.Context) (bool, error) {
		_, err := create(ctx, profilesGVR, probe)
		if err == nil {
			_ = env.Dynamic.Resource(profilesGVR).Namespace(ns).Delete(ctx, probe.GetName(), metav1.DeleteOptions{})
			return false, nil
		}
		return strings.Contains(err.Error(), webhookName), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func object(t *testing.T, manifest, ns string) *unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.Decode([]byte(manifest))
	if err != nil || len(objs) != 1 {
		t.Fatalf("test manifest: %v (%d objects)", err, len(objs))
	}
	objs[0].SetNamespace(ns)
	return objs[0]
}

// create writes as `kubectl create` does: unknown fields are an error
// (Strict field validation), not silently pruned.
func create(ctx context.Context, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return env.Dynamic.Resource(gvr).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
}

// The webhook registered with a real apiserver, against the CRDs of
// deploy/crds. Some invalid objects never reach the webhook: the CRD schema
// (patterns, required fields, CEL rules) refuses them first, and for those
// the test asserts that the apiserver's own message names the field; `by`
// says which of the two refuses, and the test checks that too.
func TestWebhookWithTheAPIServer(t *testing.T) {
	testenv.RequireEnv(t, env)
	ctx := t.Context()
	const ns = "wh"
	if _, err := env.InstallCRDs(ctx, "../../deploy/crds"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	registerWebhook(t, ns)

	const (
		webhook   = "webhook"
		apiserver = "apiserver"
		fqdn      = "web.wh.svc.cluster.local"
		route     = "  routes:\n  - name: books\n    condition: {method: GET, pathRegex: '/books/[^/]*'}\n"
	)
	split := func(weights ...string) string {
		s := "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: web-split}\nspec:\n  service: web\n  backends:\n"
		for i, w := range weights {
			s += "  - {service: web-v" + string(rune('1'+i)) + ", weight: " + w + "}\n"
		}
		return s
	}
	tests := []struct {
		name     string
		gvr      schema.GroupVersionResource
		manifest string
		by       string // "" when allowed
		paths    []string
	}{
		{name: "valid profile", gvr: profilesGVR, manifest: profile(fqdn, route+"    timeout: 2s\n    isRetryable: true\n    responseClasses:\n    - condition: {status: {min: 500, max: 599}}\n      isFailure: true\n  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}\n")},
		{name: "unknown field", gvr: profilesGVR, manifest: profile(fqdn, route+"    timeot: 1s\n"), by: apiserver, paths: []string{`unknown field "spec.routes[0].timeot"`}},
		{name: "lookahead regex", gvr: profilesGVR, manifest: profile(fqdn, "  routes:\n  - name: books\n    condition: {pathRegex: '/api/(?=books)'}\n"),
			by: webhook, paths: []string{"spec.routes[0].condition.pathRegex: Invalid value"}},
		{name: "regex over Envoy's program size", gvr: profilesGVR, manifest: profile(fqdn, "  routes:\n  - name: words\n    condition: {pathRegex: '/\\p{L}+'}\n"),
			by: webhook, paths: []string{"spec.routes[0].condition.pathRegex: Invalid value"}},
		{name: "malformed timeout", gvr: profilesGVR, manifest: profile(fqdn, route+"    timeout: one-second\n"), by: apiserver, paths: []string{"spec.routes[0].timeout"}},
		{name: "zero timeout", gvr: profilesGVR, manifest: profile(fqdn, route+"    timeout: 0s\n"), by: webhook, paths: []string{"spec.routes[0].timeout: Invalid value"}},
		{name: "status range min above max", gvr: profilesGVR,
			manifest: profile(fqdn, route+"    responseClasses:\n    - condition: {status: {min: 500, max: 400}}\n"),
			by:       apiserver, paths: []string{"spec.routes[0].responseClasses[0].condition.status"}},
		{name: "status range min above max, nested", gvr: profilesGVR,
			manifest: profile(fqdn, route+"    responseClasses:\n    - condition:\n        any:\n        - status: {min: 500, max: 400}\n"),
			by:       webhook, paths: []string{"spec.routes[0].responseClasses[0].condition.any[0].status.max: Invalid value"}},
		{name: "budget without ttl", gvr: profilesGVR, manifest: profile(fqdn, route+"  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10}\n"),
			by: apiserver, paths: []string{"spec.retryBudget.ttl: Required value"}},
		{name: "name not an FQDN", gvr: profilesGVR, manifest: profile("web", route), by: apiserver, paths: []string{"metadata.name"}},
		{name: "name in another cluster domain", gvr: profilesGVR, manifest: profile("web.wh.svc.example.org", route),
			by: webhook, paths: []string{"metadata.name: Invalid value"}},
		{name: "condition too large to translate", gvr: profilesGVR, manifest: profile(fqdn, manyRoutes()),
			by: webhook, paths: []string{"spec.routes[0].condition: Invalid value"}},
		{name: "valid split", gvr: splitsGVR, manifest: split("1", "3")},
		{name: "split with a negative weight", gvr: splitsGVR, manifest: split("-1", "3"), by: apiserver, paths: []string{"spec.backends[0].weight"}},
		{name: "split with only zero weights", gvr: splitsGVR, manifest: split("0", "0"), by: webhook, paths: []string{"spec.backends: Invalid value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := object(t, tt.manifest, ns)
			_, err := create(ctx, tt.gvr, obj)
			t.Cleanup(func() {
				_ = env.Dynamic.Resource(tt.gvr).Namespace(ns).Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{})
			})
			if tt.by == "" {
				if err != nil {
					t.Fatalf("valid object refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("invalid object accepted")
			}
			msg := err.Error()
			fromWebhook := strings.Contains(msg, `admission webhook "`+webhookName+`" denied the request`)
			if fromWebhook != (tt.by == webhook) {
				t.Errorf("refused by the webhook: %v, want refused by the %s: %s", fromWebhook, tt.by, msg)
			}
			for _, p := range tt.paths {
				if !strings.Contains(msg, p) {
					t.Errorf("message does not name %q: %s", p, msg)
				}
			}
		})
	}

	t.Run("update to an invalid profile", func(t *testing.T) {
		obj := object(t, profile("upd.wh.svc.cluster.local", route), ns)
		created, err := create(ctx, profilesGVR, obj)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = env.Dynamic.Resource(profilesGVR).Namespace(ns).Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{})
		})
		routes, _, _ := unstructured.NestedSlice(created.Object, "spec", "routes")
		routes[0].(map[string]any)["condition"] = map[string]any{"pathRegex": "/api/(?=books)"}
		if err := unstructured.SetNestedSlice(created.Object, routes, "spec", "routes"); err != nil {
			t.Fatal(err)
		}
		_, err = env.Dynamic.Resource(profilesGVR).Namespace(ns).Update(ctx, created, metav1.UpdateOptions{FieldValidation: metav1.FieldValidationStrict})
		if err == nil {
			t.Fatal("an update to an invalid regex was accepted")
		}
		if want := "spec.routes[0].condition.pathRegex: Invalid value"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), webhookName) {
			t.Errorf("update refused with %q, want the webhook naming %s", err, want)
		}
	})
}
