package healthcheck_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/healthcheck"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/testenv"
	"github.com/weftmesh/weft/xds"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.MainUnlessShort(m, testenv.Options{}, &env)) }

const trustDomain = "cluster.local"

var nsCounter atomic.Int32

// installOptions vary the healthy installation a test starts from.
type installOptions struct {
	anchorTTL, issuerTTL, webhookCertTTL time.Duration
}

// installation is what the chart would install, made by hand in a
// namespace of its own: the CRDs, the identity Secret and bundle, the
// control plane Deployment (kwok runs its pod), both webhook
// configurations pointing at a TLS server of the test, and a stand-in for
// the control plane's admin endpoint built from its real parts (the CA fed
// by sds.Watcher from the Secret, the xDS server's debug handler).
type installation struct {
	ns        string
	anchor    *sds.CertKey
	issuer    *sds.CertKey
	webhook   *httptest.Server
	webhookCA []byte
	xds       *xds.Server
	adsAddr   string
	ca        *sds.CA
	admin     *httptest.Server
	cfg       healthcheck.Config
}

func install(t *testing.T, o installOptions) *installation {
	t.Helper()
	testenv.RequireEnv(t, env)
	if o.anchorTTL == 0 {
		o.anchorTTL = 365 * 24 * time.Hour
	}
	if o.issuerTTL == 0 {
		o.issuerTTL = 90 * 24 * time.Hour
	}
	if o.webhookCertTTL == 0 {
		o.webhookCertTTL = 365 * 24 * time.Hour
	}
	ctx := t.Context()
	cs := env.Clientset
	in := &installation{ns: fmt.Sprintf("weft-check-%d", nsCounter.Add(1))}
	if _, err := env.InstallCRDs(ctx, "../deploy/crds"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: in.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	var err error
	if in.anchor, err = sds.NewAnchor(trustDomain, now, o.anchorTTL); err != nil {
		t.Fatal(err)
	}
	if in.issuer, err = sds.NewIssuer(trustDomain, in.anchor, now, o.issuerTTL); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(in.ns).Create(ctx, sds.IssuerSecret(in.ns, healthcheck.IssuerSecretName, in.issuer, in.anchor), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(in.ns).Create(ctx, sds.BundleConfigMap(in.ns, healthcheck.TrustBundleName, sds.DefaultBundleKey, in.anchor.Cert), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	runDeployment(t, in.ns, healthcheck.ControlPlaneName, 1,
		map[string]string{"app.kubernetes.io/name": "weft", "app.kubernetes.io/component": "control-plane"})
	grantControlPlane(t, in.ns, healthcheck.ControlPlanePermissions(healthcheck.ControlPlaneFeatures{}))
	if _, err := env.RunningPods(ctx, time.Minute, in.ns, healthcheck.ControlPlaneSelector, 1); err != nil {
		t.Fatal(err)
	}

	certPEM, keyPEM := selfSigned(t, now, o.webhookCertTTL, healthcheck.ControlPlaneName+"."+in.ns+".svc")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	in.webhookCA = certPEM
	in.webhook = httptest.NewUnstartedServer(http.NotFoundHandler())
	in.webhook.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	in.webhook.StartTLS()
	t.Cleanup(in.webhook.Close)
	registerWebhooks(t, admissionregistrationv1.WebhookClientConfig{URL: ptr.To(in.webhook.URL + healthcheck.InjectorWebhookPath), CABundle: certPEM},
		admissionregistrationv1.WebhookClientConfig{URL: ptr.To(in.webhook.URL + healthcheck.ValidatorWebhookPath), CABundle: certPEM})

	in.startControlPlane(t)
	in.cfg = healthcheck.Config{
		Kube: cs, APIExtensions: env.APIExtensions, Admin: httpAdmin(in.admin.URL),
		Namespace: in.ns, CheckTimeout: 5 * time.Second,
	}
	return in
}

// runDeployment creates a Deployment whose pods kwok runs (the image is
// never pulled).
func runDeployment(t *testing.T, ns, name string, replicas int32, labels map[string]string) {
	t.Helper()
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: name}}},
			},
		},
	}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(t.Context(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// grantControlPlane gives the ServiceAccount of runDeployment's pods (ns's
// default) the permissions, by a ClusterRole named after ns bound to it
// cluster-wide or, for namespaced ones, in ns: one rule a permission, so a
// test can take one away.
func grantControlPlane(t *testing.T, ns string, perms []healthcheck.Permission) {
	t.Helper()
	ctx := t.Context()
	rbac := env.Clientset.RbacV1()
	var clusterRules, nsRules []rbacv1.PolicyRule
	for _, p := range perms {
		rule := rbacv1.PolicyRule{Verbs: []string{p.Verb}, APIGroups: []string{p.Group}, Resources: []string{p.Resource}}
		if p.Name != "" {
			rule.ResourceNames = []string{p.Name}
		}
		if p.Namespaced {
			nsRules = append(nsRules, rule)
		} else {
			clusterRules = append(clusterRules, rule)
		}
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "default"}}
	for _, r := range []struct {
		name  string
		rules []rbacv1.PolicyRule
	}{{ns, clusterRules}, {ns + "-namespaced", nsRules}} {
		if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: r.name}, Rules: r.rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), r.name, metav1.DeleteOptions{}) })
	}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ns}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns}, RoleRef: ref, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	ref.Name = ns + "-namespaced"
	if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns}, RoleRef: ref, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startControlPlane runs the parts of cp that its admin endpoint reports
// on: the CA fed by the watcher of the issuer Secret and bundle, and an
// xDS server (plaintext, no authentication: the stand-in proxies of the
// data plane tests connect to it).
func (in *installation) startControlPlane(t *testing.T) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ca, err := sds.New(sds.Config{TrustDomain: spiffeid.RequireTrustDomainFromString(trustDomain), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	w, err := sds.NewWatcher(sds.WatcherConfig{Client: env.Clientset, Namespace: in.ns, IssuerSecret: healthcheck.IssuerSecretName,
		BundleConfigMap: healthcheck.TrustBundleName, CA: ca, Logger: log, Resync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := xds.New(xds.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched, served := make(chan error, 1), make(chan error, 1)
	go func() { watched <- w.Run(ctx) }()
	go func() { served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		for _, c := range []chan error{watched, served} {
			if err := <-c; err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}
	})
	select {
	case <-w.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("the identity watcher did not sync in 30s")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	dbg := srv.DebugHandler()
	mux.Handle("/debug/proxies", dbg)
	mux.Handle("/debug/proxies/", dbg)
	mux.Handle("/debug/config/", dbg)
	mux.Handle("GET "+healthcheck.IdentityPath, ca.StatusHandler())
	in.admin = httptest.NewServer(mux)
	t.Cleanup(in.admin.Close)
	in.xds, in.adsAddr, in.ca = srv, lis.Addr().String(), ca
}

// registerWebhooks replaces both webhook configurations (they are
// cluster-wide, one per cluster) with ones served at the given places. The
// rules select nothing any test creates: only weft check reads them.
func registerWebhooks(t *testing.T, inject, validate admissionregistrationv1.WebhookClientConfig) {
	t.Helper()
	ctx := t.Context()
	adm := env.Clientset.AdmissionregistrationV1()
	deleteWebhooks(t)
	none := ptr.To(admissionregistrationv1.SideEffectClassNone)
	nobody := &metav1.LabelSelector{MatchLabels: map[string]string{"weft-check-test": "never"}}
	if _, err := adm.MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: healthcheck.InjectorWebhookName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "inject.weft.io", ClientConfig: inject, SideEffects: none, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nobody,
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: healthcheck.ValidatorWebhookName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "validate.weft.io", ClientConfig: validate, SideEffects: none, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nobody,
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteWebhooks(t) })
}

func deleteWebhooks(t *testing.T) {
	adm := env.Clientset.AdmissionregistrationV1()
	ctx := context.Background()
	_ = adm.MutatingWebhookConfigurations().Delete(ctx, healthcheck.InjectorWebhookName, metav1.DeleteOptions{})
	_ = adm.ValidatingWebhookConfigurations().Delete(ctx, healthcheck.ValidatorWebhookName, metav1.DeleteOptions{})
}

// selfSigned is a certificate for 127.0.0.1 and dnsName that is its own CA, so one PEM
// is both the webhook's certificate and its caBundle.
func selfSigned(t *testing.T, now time.Time, ttl time.Duration, dnsName string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "weft webhook test"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(ttl),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{dnsName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// httpAdmin reads an admin endpoint over plain HTTP, as weft's --cp does.
type httpAdmin string

func (a httpAdmin) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, string(a)+path, nil)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// line is a check that did not pass, as a test expects it.
type line struct {
	description string
	status      healthcheck.Status
	anchor      string
	errContains string
}

// problems are the lines of a report that did not pass, by description.
func problems(rep healthcheck.Report) map[string]healthcheck.Result {
	out := map[string]healthcheck.Result{}
	for _, c := range rep.Categories {
		for _, ch := range c.Checks {
			if ch.Result != healthcheck.StatusSuccess {
				out[ch.Description] = ch
			}
		}
	}
	return out
}

// expectLines fails unless exactly the wanted lines did not pass, each with
// its status, error and a hint at its anchor.
func expectLines(t *testing.T, rep healthcheck.Report, want []line) {
	t.Helper()
	got := problems(rep)
	for _, w := range want {
		r, ok := got[w.description]
		if !ok {
			t.Errorf("line %q passed or is missing, want %s containing %q", w.description, w.status, w.errContains)
			continue
		}
		delete(got, w.description)
		if r.Result != w.status {
			t.Errorf("line %q is %s, want %s: %s", w.description, r.Result, w.status, r.Error)
		}
		if !strings.Contains(r.Error, w.errContains) {
			t.Errorf("line %q error %q lacks %q", w.description, r.Error, w.errContains)
		}
		if r.Hint != healthcheck.DefaultHintBase+"#"+w.anchor {
			t.Errorf("line %q hint %q, want anchor %s", w.description, r.Hint, w.anchor)
		}
	}
	for d, r := range got {
		t.Errorf("unexpected %s line %q: %s", r.Result, d, r.Error)
	}
	wantSuccess := true
	for _, w := range want {
		if w.status == healthcheck.StatusError {
			wantSuccess = false
		}
	}
	if rep.Success != wantSuccess {
		t.Errorf("report success = %v, want %v", rep.Success, wantSuccess)
	}
}
