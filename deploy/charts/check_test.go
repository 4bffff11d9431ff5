package charts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/healthcheck"
	"github.com/weftmesh/weft/sds"
)

// Lines of weft check this test turns red.
const (
	materialLine       = "issuer Secret and trust bundle are readable and well-formed"
	anchorsLine        = "trust anchors are valid for at least 60 days"
	issuerSignedLine   = "issuer certificate is signed by a trust anchor"
	issuerValidityLine = "issuer certificate is valid for at least 7 days"
	cpCALine           = "control plane's CA is ready and uses the issuer in the Secret"
	cpAdminLine        = "control plane admin endpoint says it is ready"
	cpRBACLine         = "control plane ServiceAccount has the permissions the control plane uses"
	injectorReachLine  = "proxy injector webhook is reachable"
	validatorReachLine = "profile validator webhook is reachable"
	injectorCertLine   = "proxy injector webhook certificate is valid and matches the caBundle"
	validatorCertLine  = "profile validator webhook certificate is valid and matches the caBundle"
)

// problem is a line expected not to pass.
type problem struct {
	status      healthcheck.Status
	anchor      string
	errContains string
}

// TestCheckOnChartInstall is weft check against the chart installed with
// Helm's Go SDK and the control plane running on it (localCP): all green;
// then one thing broken at a time turns exactly its lines red, with their
// hints, in the text and in -o json, and once it is restored all is green
// again.
//
// Where this machine is not a cluster: kwok runs the Deployment's pods
// (Ready, whatever the local cp does), and their IPs lead nowhere, so the
// checker's dial to a pod's webhook port is routed to the local cp, as the
// pod network would route it to the pod.
func TestCheckOnChartInstall(t *testing.T) {
	cp := installWithLocalCP(t)
	webhookPort := fmt.Sprint(deployment(t).Spec.Template.Spec.Containers[0].Ports[1].ContainerPort)
	cfg := healthcheck.Config{
		Kube: env.Clientset, APIExtensions: env.APIExtensions, Admin: cp, Namespace: Namespace, CheckTimeout: 5 * time.Second,
		DialWebhook: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if _, port, _ := net.SplitHostPort(addr); port == webhookPort {
				addr = cp.whAddr
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	awaitReport(t, cfg, "the fresh install", nil)

	issuerGone := "Secret " + Namespace + "/" + healthcheck.IssuerSecretName + " does not exist"
	cases := []struct {
		name string
		// brk breaks one thing and returns what restores it.
		brk  func(t *testing.T) (restore func(t *testing.T))
		want map[string]problem
	}{
		{
			// Every identity line reads the Secret; the control plane keeps
			// signing with the issuer it has and says it refused the change.
			name: "issuer Secret deleted",
			brk: func(t *testing.T) func(*testing.T) {
				secrets := env.Clientset.CoreV1().Secrets(Namespace)
				s, err := secrets.Get(t.Context(), healthcheck.IssuerSecretName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := secrets.Delete(t.Context(), s.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				return func(t *testing.T) {
					s.ObjectMeta = metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Annotations: s.Annotations}
					if _, err := secrets.Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: map[string]problem{
				materialLine:       {healthcheck.StatusError, "identity-material", issuerGone},
				anchorsLine:        {healthcheck.StatusError, "identity-anchors", issuerGone},
				issuerSignedLine:   {healthcheck.StatusError, "identity-issuer-signed", issuerGone},
				issuerValidityLine: {healthcheck.StatusError, "identity-issuer-validity", issuerGone},
				cpCALine:           {healthcheck.StatusError, "identity-cp-ca", "the control plane refused the newest trust material (Missing"},
			},
		},
		{
			name: "webhook certificate expired",
			brk: func(t *testing.T) func(*testing.T) {
				saved := secretData(t, healthcheck.WebhookServingSecret)
				// Any pair will do: expiry is judged before the name and
				// the chain.
				expired, err := sds.NewAnchor("cluster.local", time.Now().Add(-48*time.Hour), 24*time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				setWebhookSecret(t, map[string][]byte{"ca.crt": saved["ca.crt"], "tls.crt": expired.CertPEM, "tls.key": expired.KeyPEM})
				cp.syncWebhookSecret(t)
				return func(t *testing.T) {
					setWebhookSecret(t, saved)
					cp.syncWebhookSecret(t)
				}
			},
			want: map[string]problem{
				injectorCertLine:  {healthcheck.StatusError, "webhook-certificate", "the certificate served (\"CN=weft root cluster.local,O=weft\") expired at"},
				validatorCertLine: {healthcheck.StatusError, "webhook-certificate", "the certificate served (\"CN=weft root cluster.local,O=weft\") expired at"},
			},
		},
		{
			// In a cluster the pods' readiness probe would fail too, and
			// the Service have no ready endpoints (×); kwok's pods stay
			// Ready, so the endpoints are there but do not answer (‼), and
			// the certificates are judged from the Secret.
			name: "control plane stopped",
			brk: func(t *testing.T) func(*testing.T) {
				cp.stop(t)
				return cp.start
			},
			want: map[string]problem{
				cpAdminLine:        {healthcheck.StatusError, "cp-admin", "connection refused"},
				cpCALine:           {healthcheck.StatusError, "identity-cp-ca", "connection refused"},
				injectorReachLine:  {healthcheck.StatusWarning, "webhook-reachable", "do not answer from here"},
				validatorReachLine: {healthcheck.StatusWarning, "webhook-reachable", "do not answer from here"},
			},
		},
		{
			name: "ClusterRole without watch on endpointslices",
			brk:  func(t *testing.T) func(*testing.T) { return removeVerb(t, "ClusterRole", "endpointslices", "watch") },
			want: map[string]problem{
				cpRBACLine: {healthcheck.StatusError, "cp-rbac", "ServiceAccount weft-system/weft-cp (of Deployment weft-cp) lacks: watch endpointslices.discovery.k8s.io"},
			},
		},
		{
			name: "Role without watch on the issuer Secret",
			brk:  func(t *testing.T) func(*testing.T) { return removeVerb(t, "Role", "secrets", "watch") },
			want: map[string]problem{
				cpRBACLine: {healthcheck.StatusError, "cp-rbac", "lacks: watch secrets weft-identity-issuer in namespace weft-system"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			restore := tc.brk(t)
			rep := awaitReport(t, cfg, tc.name, tc.want)
			var text, js bytes.Buffer
			if err := healthcheck.WriteText(&text, rep); err != nil {
				t.Fatal(err)
			}
			for d, p := range tc.want {
				want := fmt.Sprintf("%s %s\n", p.status.Symbol(), d)
				hint := fmt.Sprintf("    see %s#%s for hints\n", healthcheck.DefaultHintBase, p.anchor)
				if i := strings.Index(text.String(), want); i < 0 || !strings.Contains(text.String()[i:], hint) {
					t.Errorf("the text report lacks %q followed by %q:\n%s", want, hint, text.String())
				}
			}
			if err := healthcheck.WriteJSON(&js, rep); err != nil {
				t.Fatal(err)
			}
			var fromJSON healthcheck.Report
			if err := json.Unmarshal(js.Bytes(), &fromJSON); err != nil {
				t.Fatal(err)
			}
			for _, m := range mismatches(fromJSON, tc.want) {
				t.Errorf("-o json: %s", m)
			}
			restore(t)
			awaitReport(t, cfg, "restored after "+tc.name, nil)
		})
	}
}

// awaitReport runs weft check until exactly the wanted lines do not pass,
// each as wanted (the control plane and the authorizer learn of a change
// through watches), for at most 45s, and returns the last report; the test
// fails with what still differs.
func awaitReport(t *testing.T, cfg healthcheck.Config, what string, want map[string]problem) healthcheck.Report {
	t.Helper()
	var rep healthcheck.Report
	var diff []string
	deadline := time.Now().Add(45 * time.Second)
	for {
		rep = healthcheck.Run(t.Context(), cfg)
		if diff = mismatches(rep, want); len(diff) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, d := range diff {
		t.Errorf("%s: %s", what, d)
	}
	return rep
}

// mismatches says how a report differs from exactly the wanted problems,
// each with its status, error and hint.
func mismatches(rep healthcheck.Report, want map[string]problem) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range rep.Categories {
		for _, ch := range c.Checks {
			seen[ch.Description] = true
			w, wanted := want[ch.Description]
			switch {
			case !wanted && ch.Result != healthcheck.StatusSuccess:
				out = append(out, fmt.Sprintf("%s %q: %s", ch.Result, ch.Description, ch.Error))
			case !wanted:
			case ch.Result != w.status || !strings.Contains(ch.Error, w.errContains) || ch.Hint != healthcheck.DefaultHintBase+"#"+w.anchor:
				out = append(out, fmt.Sprintf("%q is %s %q (hint %s), want %s containing %q (hint #%s)",
					ch.Description, ch.Result, ch.Error, ch.Hint, w.status, w.errContains, w.anchor))
			}
		}
	}
	for d := range want {
		if !seen[d] {
			out = append(out, fmt.Sprintf("no line %q", d))
		}
	}
	failed := false
	for _, p := range want {
		failed = failed || p.status == healthcheck.StatusError
	}
	if rep.Success == failed {
		out = append(out, fmt.Sprintf("success %v, want %v", rep.Success, !failed))
	}
	sort.Strings(out)
	return out
}

// setWebhookSecret replaces the data of Secret weft-webhook-tls.
func setWebhookSecret(t *testing.T, data map[string][]byte) {
	t.Helper()
	secrets := env.Clientset.CoreV1().Secrets(Namespace)
	s, err := secrets.Get(t.Context(), healthcheck.WebhookServingSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = data
	if _, err := secrets.Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// removeVerb takes verb out of the rule on resource of the release's
// ClusterRole or Role weft-cp, and returns what puts the rules back.
func removeVerb(t *testing.T, kind, resource, verb string) func(*testing.T) {
	t.Helper()
	found := false
	before, err := editRules(t.Context(), kind, func(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
		for i, r := range rules {
			if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				if len(r.Resources) != 1 {
					t.Fatalf("%s weft-cp: the rule on %s covers %v too", kind, resource, r.Resources)
				}
				rules[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == verb })
				found = true
			}
		}
		return rules
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("%s weft-cp has no rule granting %s on %s", kind, verb, resource)
	}
	return func(t *testing.T) {
		if _, err := editRules(t.Context(), kind, func([]rbacv1.PolicyRule) []rbacv1.PolicyRule { return before }); err != nil {
			t.Fatal(err)
		}
	}
}

// editRules updates the rules of the release's ClusterRole or Role weft-cp
// to what edit makes of a copy of them, and returns them as they were.
func editRules(ctx context.Context, kind string, edit func([]rbacv1.PolicyRule) []rbacv1.PolicyRule) ([]rbacv1.PolicyRule, error) {
	rbac := env.Clientset.RbacV1()
	if kind == "ClusterRole" {
		r, err := rbac.ClusterRoles().Get(ctx, "weft-cp", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		before := r.Rules
		r.Rules = edit(slices.Clone(before))
		_, err = rbac.ClusterRoles().Update(ctx, r, metav1.UpdateOptions{})
		return before, err
	}
	r, err := rbac.Roles(Namespace).Get(ctx, "weft-cp", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	before := r.Rules
	r.Rules = edit(slices.Clone(before))
	_, err = rbac.Roles(Namespace).Update(ctx, r, metav1.UpdateOptions{})
	return before, err
}
