package healthcheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/healthcheck"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/testenv"
)

const (
	splitCRDLine      = "CRD " + healthcheck.TrafficSplitCRD + " is installed with v1alpha2 served"
	validatorReg      = "profile validator webhook is registered (ValidatingWebhookConfiguration weft-profile-validator)"
	validatorReach    = "profile validator webhook is reachable"
	validatorCert     = "profile validator webhook certificate is valid and matches the caBundle"
	injectorReach     = "proxy injector webhook is reachable"
	injectorCert      = "proxy injector webhook certificate is valid and matches the caBundle"
	anchorsLine       = "trust anchors are valid for at least 60 days"
	issuerSignedLine  = "issuer certificate is signed by a trust anchor"
	controlPlaneCA    = "control plane's CA is ready and uses the issuer in the Secret"
	controlPlanePods  = "control plane pods are ready"
	controlPlaneAdmin = "control plane admin endpoint says it is ready"
	controlPlaneRBAC  = "control plane ServiceAccount has the permissions the control plane uses"
)

// deleteTrafficSplitCRD removes a CRD every test needs; install puts it
// back.
func deleteTrafficSplitCRD(t *testing.T) {
	t.Helper()
	crds := env.APIExtensions.ApiextensionsV1().CustomResourceDefinitions()
	if err := crds.Delete(t.Context(), healthcheck.TrafficSplitCRD, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := env.WaitFor(t.Context(), 30*time.Second, "the TrafficSplit CRD gone", func(ctx context.Context) (bool, error) {
		_, err := crds.Get(ctx, healthcheck.TrafficSplitCRD, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Each case starts from a healthy installation and breaks one thing; the
// report must turn exactly the matching lines red (or yellow), each with
// its hint.
func TestCheckInstallation(t *testing.T) {
	cases := []struct {
		name  string
		opts  installOptions
		brk   func(t *testing.T, in *installation)
		lines []line
	}{
		{name: "healthy"},
		{
			name:  "CRD missing",
			brk:   func(t *testing.T, _ *installation) { deleteTrafficSplitCRD(t) },
			lines: []line{{splitCRDLine, healthcheck.StatusError, "crds", "CustomResourceDefinition trafficsplits.split.smi-spec.io is not installed"}},
		},
		{
			name: "validating webhook configuration missing",
			brk: func(t *testing.T, _ *installation) {
				err := env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(t.Context(), healthcheck.ValidatorWebhookName, metav1.DeleteOptions{})
				if err != nil {
					t.Fatal(err)
				}
			},
			lines: []line{
				{validatorReg, healthcheck.StatusError, "webhook-registered", "ValidatingWebhookConfiguration weft-profile-validator does not exist"},
				{validatorReach, healthcheck.StatusError, "webhook-reachable", "nothing to dial"},
				{validatorCert, healthcheck.StatusError, "webhook-certificate", "no caBundle to check against"},
			},
		},
		{
			name: "caBundle of another CA",
			brk: func(t *testing.T, in *installation) {
				other, _ := selfSigned(t, time.Now(), 365*24*time.Hour, "other")
				registerWebhooks(t, admissionregistrationv1.WebhookClientConfig{URL: ptr.To(in.webhook.URL + "/inject"), CABundle: other},
					admissionregistrationv1.WebhookClientConfig{URL: ptr.To(in.webhook.URL + "/validate"), CABundle: in.webhookCA})
			},
			lines: []line{{injectorCert, healthcheck.StatusError, "webhook-certificate", "does not match MutatingWebhookConfiguration weft-proxy-injector's caBundle"}},
		},
		{
			name: "webhook certificate expiring in 10 days",
			opts: installOptions{webhookCertTTL: 10 * 24 * time.Hour},
			lines: []line{
				{injectorCert, healthcheck.StatusWarning, "webhook-certificate", "the certificate served expires at"},
				{validatorCert, healthcheck.StatusWarning, "webhook-certificate", "the certificate served expires at"},
			},
		},
		{
			name:  "anchor expiring in 30 days",
			opts:  installOptions{anchorTTL: 30 * 24 * time.Hour},
			lines: []line{{anchorsLine, healthcheck.StatusWarning, "identity-anchors", "in 29 days"}},
		},
		{
			name: "issuer not signed by an anchor",
			brk: func(t *testing.T, in *installation) {
				other, err := sds.NewAnchor(trustDomain, time.Now(), 365*24*time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				cm := sds.BundleConfigMap(in.ns, healthcheck.TrustBundleName, sds.DefaultBundleKey, other.Cert)
				if _, err := env.Clientset.CoreV1().ConfigMaps(in.ns).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				// The control plane's own view: it refuses the bundle and
				// keeps its issuer.
				err = env.WaitFor(t.Context(), 30*time.Second, "the CA to refuse the bundle", func(context.Context) (bool, error) {
					return in.ca.Status().Problem != "", nil
				})
				if err != nil {
					t.Fatal(err)
				}
			},
			lines: []line{
				{issuerSignedLine, healthcheck.StatusError, "identity-issuer-signed", "does not chain to any of 1 anchors"},
				{controlPlaneCA, healthcheck.StatusError, "identity-cp-ca", "the control plane refused the newest trust material (IssuerNotSignedByAnchor"},
			},
		},
		{
			name: "control plane pods gone",
			brk: func(t *testing.T, in *installation) {
				deps := env.Clientset.AppsV1().Deployments(in.ns)
				dep, err := deps.Get(t.Context(), healthcheck.ControlPlaneName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				dep.Spec.Replicas = ptr.To(int32(0))
				if _, err := deps.Update(t.Context(), dep, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				if _, err := env.RunningPods(t.Context(), time.Minute, in.ns, healthcheck.ControlPlaneSelector, 0); err != nil {
					t.Fatal(err)
				}
			},
			lines: []line{{controlPlanePods, healthcheck.StatusError, "cp-pods-ready", "no pods labelled"}},
		},
		{
			name: "control plane RBAC without watch on pods",
			brk: func(t *testing.T, in *installation) {
				roles := env.Clientset.RbacV1().ClusterRoles()
				role, err := roles.Get(t.Context(), in.ns, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
					return r.Resources[0] == "pods" && r.Verbs[0] == "watch"
				})
				if _, err := roles.Update(t.Context(), role, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				// The authorizer learns of the change from its informer.
				err = env.WaitFor(t.Context(), 30*time.Second, "watch on pods to be denied", func(ctx context.Context) (bool, error) {
					rev, err := env.Clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
						User: "system:serviceaccount:" + in.ns + ":default", ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods"},
					}}, metav1.CreateOptions{})
					return err == nil && !rev.Status.Allowed, err
				})
				if err != nil {
					t.Fatal(err)
				}
			},
			lines: []line{{controlPlaneRBAC, healthcheck.StatusError, "cp-rbac", "lacks: watch pods"}},
		},
		{
			name: "control plane stopped",
			brk:  func(_ *testing.T, in *installation) { in.admin.Close() },
			lines: []line{
				{controlPlaneAdmin, healthcheck.StatusError, "cp-admin", "connection refused"},
				{controlPlaneCA, healthcheck.StatusError, "identity-cp-ca", "connection refused"},
			},
		},
		{
			// A webhook behind the Service with no ready endpoint: not
			// reachable, and its certificate is read from the serving
			// Secret instead.
			name:  "webhook Service without endpoints",
			brk:   serviceWebhook,
			lines: []line{{injectorReach, healthcheck.StatusError, "webhook-reachable", "port 8443 has no ready endpoints"}},
		},
		{
			// Ready endpoints that weft cannot dial (192.0.2.1 is
			// TEST-NET-1, reachable nowhere): a warning, not a verdict.
			name: "webhook endpoints out of reach",
			brk: func(t *testing.T, in *installation) {
				serviceWebhook(t, in)
				slice := &discoveryv1.EndpointSlice{
					ObjectMeta: metav1.ObjectMeta{Name: healthcheck.ControlPlaneName + "-manual", Namespace: in.ns,
						Labels: map[string]string{discoveryv1.LabelServiceName: healthcheck.ControlPlaneName}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("webhook"), Port: ptr.To(int32(8443))}},
				}
				if _, err := env.Clientset.DiscoveryV1().EndpointSlices(in.ns).Create(t.Context(), slice, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			lines: []line{{injectorReach, healthcheck.StatusWarning, "webhook-reachable", "do not answer from here"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := install(t, tc.opts)
			if tc.brk != nil {
				tc.brk(t, in)
			}
			rep := healthcheck.Run(t.Context(), in.cfg)
			expectLines(t, rep, tc.lines)
			if t.Failed() {
				var b bytes.Buffer
				_ = healthcheck.WriteText(&b, rep)
				t.Log("\n" + b.String())
			}
		})
	}
}

// serviceWebhook points the injector's configuration at Service weft-cp
// port 8443 (made here, without a selector: its endpoints are up to the
// test) and puts the serving certificate in the Secret weft-webhook-tls.
func serviceWebhook(t *testing.T, in *installation) {
	t.Helper()
	ctx := t.Context()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: healthcheck.ControlPlaneName, Namespace: in.ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "webhook", Port: 8443, TargetPort: intstr.FromInt32(8443)}}},
	}
	if _, err := env.Clientset.CoreV1().Services(in.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: healthcheck.WebhookServingSecret, Namespace: in.ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: in.webhookCA, corev1.TLSPrivateKeyKey: []byte("unused")},
	}
	if _, err := env.Clientset.CoreV1().Secrets(in.ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	registerWebhooks(t, admissionregistrationv1.WebhookClientConfig{
		Service:  &admissionregistrationv1.ServiceReference{Namespace: in.ns, Name: healthcheck.ControlPlaneName, Path: ptr.To("/inject"), Port: ptr.To(int32(8443))},
		CABundle: in.webhookCA,
	}, admissionregistrationv1.WebhookClientConfig{URL: ptr.To(in.webhook.URL + "/validate"), CABundle: in.webhookCA})
}

// -o json is Linkerd's shape: success, and categories of checks with
// description, result, and error and hint for a problem.
func TestJSONShape(t *testing.T) {
	in := install(t, installOptions{anchorTTL: 30 * 24 * time.Hour})
	deleteTrafficSplitCRD(t)
	var b bytes.Buffer
	if err := healthcheck.WriteJSON(&b, healthcheck.Run(t.Context(), in.cfg)); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Success    *bool `json:"success"`
		Categories []struct {
			CategoryName string           `json:"categoryName"`
			Checks       []map[string]any `json:"checks"`
		} `json:"categories"`
	}
	dec := json.NewDecoder(&b)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Success == nil || *doc.Success {
		t.Errorf("success = %v, want false", doc.Success)
	}
	seen := map[string]map[string]any{}
	var names []string
	for _, c := range doc.Categories {
		names = append(names, c.CategoryName)
		for _, ch := range c.Checks {
			seen[ch["description"].(string)] = ch
		}
	}
	wantNames := "kubernetes-api kubernetes-version weft-crds weft-existence weft-webhooks weft-identity"
	if got := strings.Join(names, " "); got != wantNames {
		t.Errorf("categories %q, want %q", got, wantNames)
	}
	for _, tc := range []struct {
		description, result string
		keys                []string
	}{
		{"can query the Kubernetes API", "success", []string{"description", "result"}},
		{splitCRDLine, "error", []string{"description", "result", "error", "hint"}},
		{anchorsLine, "warning", []string{"description", "result", "error", "hint"}},
	} {
		ch := seen[tc.description]
		if ch["result"] != tc.result {
			t.Errorf("%q: result %v, want %s", tc.description, ch["result"], tc.result)
		}
		var keys []string
		for k := range ch {
			keys = append(keys, k)
		}
		if len(keys) != len(tc.keys) {
			t.Errorf("%q: keys %v, want %v", tc.description, keys, tc.keys)
		}
		for _, k := range tc.keys {
			if _, ok := ch[k]; !ok {
				t.Errorf("%q lacks %q: %v", tc.description, k, ch)
			}
		}
	}
}

// --wait: a CRD installed while weft check waits turns the run green, and
// each failing run was reported to the progress indicator.
func TestWaitSucceedsWhenTheFaultIsFixed(t *testing.T) {
	in := install(t, installOptions{})
	deleteTrafficSplitCRD(t)
	baseline := goleak.IgnoreCurrent()
	var summaries []string
	fixed := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		_, err := env.InstallCRDs(context.Background(), "../deploy/crds")
		fixed <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep := healthcheck.Wait(ctx, in.cfg, 200*time.Millisecond, func(r healthcheck.Report) {
		summaries = append(summaries, healthcheck.Summary(r))
	})
	if err := <-fixed; err != nil {
		t.Fatal(err)
	}
	if !rep.Success {
		t.Errorf("still failing after the fix: %v", problems(rep))
	}
	if len(summaries) == 0 || !strings.Contains(summaries[0], "1 failing, first: weft-crds: "+splitCRDLine) {
		t.Errorf("progress = %q", summaries)
	}
	goleak.VerifyNone(t, baseline, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))

	// Never fixed: Wait gives up at the deadline with the failing report.
	deleteTrafficSplitCRD(t)
	short, cancel2 := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel2()
	start := time.Now()
	rep = healthcheck.Wait(short, in.cfg, 200*time.Millisecond, nil)
	if rep.Success || problems(rep)[splitCRDLine].Result != healthcheck.StatusError {
		t.Errorf("want the CRD line failing at the deadline: %v", problems(rep))
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Wait took %s past a 2s deadline", d)
	}
}

// --pre on a cluster without Weft passes; a user who may not create
// Deployments is told exactly that; an earlier install is named.
func TestPre(t *testing.T) {
	testenv.RequireEnv(t, env)
	ctx := t.Context()
	const user = "weft-check-user"
	var rules []rbacv1.PolicyRule
	for _, r := range []struct{ group, resource string }{
		{"", "namespaces"}, {"apiextensions.k8s.io", "customresourcedefinitions"},
		{"rbac.authorization.k8s.io", "clusterroles"}, {"rbac.authorization.k8s.io", "clusterrolebindings"},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations"}, {"admissionregistration.k8s.io", "validatingwebhookconfigurations"},
		{"", "services"}, {"", "serviceaccounts"}, {"", "secrets"}, {"", "configmaps"},
		{"rbac.authorization.k8s.io", "roles"}, {"rbac.authorization.k8s.io", "rolebindings"}, {"policy", "poddisruptionbudgets"},
	} {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{r.group}, Resources: []string{r.resource}, Verbs: []string{"create", "get"}})
	}
	rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}})
	rbac := env.Clientset.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), user, metav1.DeleteOptions{})
		_ = rbac.ClusterRoles().Delete(context.Background(), user, metav1.DeleteOptions{})
	})
	impersonated := rest.CopyConfig(env.Config)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: user}
	limited, err := kubernetes.NewForConfig(impersonated)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "weft-check-pre"
	cases := []struct {
		name  string
		kube  kubernetes.Interface
		setup func(t *testing.T)
		lines []line
	}{
		{name: "empty cluster", kube: env.Clientset},
		{
			name: "no permission to create Deployments", kube: limited,
			lines: []line{{"can create the objects Weft installs in its namespace", healthcheck.StatusError, "pre-k8s-namespaced",
				"missing permissions: create deployments.apps in namespace " + ns}},
		},
		{
			name: "an earlier install", kube: env.Clientset,
			setup: func(t *testing.T) {
				cc := admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/inject"), CABundle: []byte("x")}
				registerWebhooks(t, cc, cc)
			},
			lines: []line{{"no Weft control plane is installed already", healthcheck.StatusError, "pre-k8s-conflicts",
				"already installed: MutatingWebhookConfiguration weft-proxy-injector, ValidatingWebhookConfiguration weft-profile-validator"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			rep := healthcheck.Run(ctx, healthcheck.Config{Kube: tc.kube, Namespace: ns, Pre: true})
			expectLines(t, rep, tc.lines)
		})
	}
}
