package sds

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/testenv"
)

func TestParseIssuerRef(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    cmmeta.IssuerReference
		wantErr string
	}{
		{in: "ClusterIssuer/weft-ca", want: cmmeta.IssuerReference{Kind: "ClusterIssuer", Group: "cert-manager.io", Name: "weft-ca"}},
		{in: "Issuer/weft.ca.v2", want: cmmeta.IssuerReference{Kind: "Issuer", Group: "cert-manager.io", Name: "weft.ca.v2"}},
		{in: "Issuer.cert-manager.io/weft", want: cmmeta.IssuerReference{Kind: "Issuer", Group: "cert-manager.io", Name: "weft"}},
		{in: "AWSPCAClusterIssuer.awspca.cert-manager.io/pca", want: cmmeta.IssuerReference{Kind: "AWSPCAClusterIssuer", Group: "awspca.cert-manager.io", Name: "pca"}},
		{in: "Certificate/weft", wantErr: `kind "Certificate" of group cert-manager.io is neither Issuer nor ClusterIssuer`},
		{in: "weft-ca", wantErr: "want <Kind>[.<group>]/<name>"},
		{in: "Issuer/", wantErr: "want <Kind>[.<group>]/<name>"},
		{in: "/weft", wantErr: "want <Kind>[.<group>]/<name>"},
		{in: "Issuer/a/b", wantErr: "want <Kind>[.<group>]/<name>"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseIssuerRef(tc.in)
			if tc.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
					t.Fatalf("ParseIssuerRef(%q) = %+v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseIssuerRef(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

// seenRequests records every CertificateRequest written in a namespace while
// a test runs, to check afterwards what they held and that they are gone.
type seenRequests struct {
	mu   sync.Mutex
	objs map[string][]byte // name -> last JSON seen
}

func watchRequests(t *testing.T, cm cmclient.Interface, ns string, act func(context.Context, *cmapi.CertificateRequest)) *seenRequests {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := cm.CertmanagerV1().CertificateRequests(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &seenRequests{objs: map[string][]byte{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			cr, ok := ev.Object.(*cmapi.CertificateRequest)
			if !ok {
				continue
			}
			b, _ := json.Marshal(cr)
			s.mu.Lock()
			s.objs[cr.Name] = b
			s.mu.Unlock()
			if ev.Type == watch.Added && act != nil {
				act(ctx, cr)
			}
		}
	}()
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	return s
}

// assertHeldNoKey fails if any request seen held one of the keys, in PEM or
// DER (base64 in JSON), and returns how many were seen.
func (s *seenRequests) assertHeldNoKey(t *testing.T, keys ...*Leaf) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, b := range s.objs {
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("CertificateRequest %s holds a private key", name)
		}
		for _, l := range keys {
			der, _ := x509.MarshalPKCS8PrivateKey(l.Key)
			enc, _ := json.Marshal(der)
			if bytes.Contains(b, bytes.Trim(enc, `"`)) {
				t.Errorf("CertificateRequest %s holds the leaf's key", name)
			}
		}
	}
	return len(s.objs)
}

// assertNoWeftRequests fails if a request Weft made is still there.
func assertNoWeftRequests(t *testing.T, cm cmclient.Interface, ns string) {
	t.Helper()
	left, err := cm.CertmanagerV1().CertificateRequests(ns).List(t.Context(), metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedByWeft})
	if err != nil {
		t.Fatal(err)
	}
	for _, cr := range left.Items {
		t.Errorf("CertificateRequest %s/%s was not cleaned up", ns, cr.Name)
	}
}

func newRecorder(t *testing.T) record.EventRecorder {
	t.Helper()
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: env.Clientset.CoreV1().Events("")})
	t.Cleanup(bc.Shutdown)
	return bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "weft-identity"})
}

// caIssuerChain has cert-manager make an anchor (self-signed) and, under it,
// the issuer Weft reads from Secret weft-identity-issuer, both ECDSA P-256
// CAs, and a CA Issuer for each: what docs/identity.md tells an operator to
// apply. It returns once the issuer Secret is written.
func caIssuerChain(t *testing.T, cm cmclient.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	issuer := func(name string, cfg cmapi.IssuerConfig) {
		if _, err := cm.CertmanagerV1().Issuers(ns).Create(ctx, &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: cmapi.IssuerSpec{IssuerConfig: cfg}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	certificate := func(name, secret, issuedBy string) {
		crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: cmapi.CertificateSpec{
			IsCA: true, CommonName: name, SecretName: secret,
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Kind: cmapi.IssuerKind, Name: issuedBy},
		}}
		if _, err := cm.CertmanagerV1().Certificates(ns).Create(ctx, crt, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	issuer("selfsigned", cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}})
	certificate("weft-anchor", "weft-anchor", "selfsigned")
	issuer("weft-anchor", cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "weft-anchor"}})
	certificate("weft-issuer", "weft-identity-issuer", "weft-anchor")
	issuer("weft-issuer", cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "weft-identity-issuer"}})
	err := env.WaitFor(ctx, 90*time.Second, "cert-manager to write Secret weft-identity-issuer", func(ctx context.Context) (bool, error) {
		s, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, "weft-identity-issuer", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(s.Data[corev1.TLSCertKey]) > 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCertManagerIssuesLeavesAndRenewsTheIssuer runs cert-manager's own
// controllers (testenv.StartCertManager: the tagged v1.21.2 module, its
// approver, its self-signed and CA issuers and its certificates pipeline).
// cert-manager makes the anchor and the issuer; the watcher reads the issuer
// Secret; leaves come from CertificateRequests to the CA Issuer of that
// Secret. A renewal of the issuer by cert-manager makes the rotation loop
// re-issue at once, through a new request, chaining to the new issuer.
func TestCertManagerIssuesLeavesAndRenewsTheIssuer(t *testing.T) {
	requireEnv(t)
	ns := createNamespace(t)
	env.StartCertManager(t, ns)
	cm := cmclient.NewForConfigOrDie(env.Config)
	seen := watchRequests(t, cm, ns, nil)
	caIssuerChain(t, cm, ns)

	w := startWatcher(t, WatcherConfig{Namespace: ns, IssuerSecret: "weft-identity-issuer"})
	first := waitStatus(t, w.ca, "the CA to read cert-manager's issuer", func(s Status) bool { return s.Ready })
	crs, err := NewCertificateRequests(CertificateRequestConfig{
		Client: cm, Namespace: ns, CA: w.ca, Timeout: time.Minute,
		IssuerRef: cmmeta.IssuerReference{Kind: cmapi.IssuerKind, Group: "cert-manager.io", Name: "weft-issuer"},
		Recorder:  newRecorder(t), Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	p := &pushes{ready: make(chan struct{}, 1)}
	loop := make(chan struct{})
	go func() { defer close(loop); w.ca.RotateFrom(ctx, crs, Workload{"x", "a"}, p.push) }()
	defer func() { cancel(); <-loop }()

	anchor := func() *x509.Certificate {
		certs, err := parseCertificates(w.ca.Bundle())
		if err != nil || len(certs) != 1 {
			t.Fatalf("bundle: %d anchors, %v", len(certs), err)
		}
		return certs[0]
	}
	check := func(l *Leaf, issuerSerial string) {
		t.Helper()
		cert := verifyLeaf(t, l.CertChainPEM, anchor(), time.Now())
		if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://cluster.local/ns/x/sa/a" || len(cert.DNSNames) > 0 {
			t.Errorf("leaf SANs %v %v, want exactly spiffe://cluster.local/ns/x/sa/a", cert.URIs, cert.DNSNames)
		}
		if l.ID.String() != "spiffe://cluster.local/ns/x/sa/a" {
			t.Errorf("Leaf.ID %s", l.ID)
		}
		chain, _ := parseCertificates(l.CertChainPEM)
		if len(chain) != 2 || chain[1].SerialNumber.Text(16) != issuerSerial {
			t.Errorf("chain of %d certificates, issued by serial %s; want the leaf and the issuer in use, %s", len(chain), chain[len(chain)-1].SerialNumber.Text(16), issuerSerial)
		}
		if _, err := EnvoySecrets(l, w.ca.Bundle()); err != nil {
			t.Errorf("the leaf cannot be served by SDS: %v", err)
		}
		if d := cert.NotAfter.Sub(cert.NotBefore); d < 50*time.Minute || d > 70*time.Minute {
			t.Errorf("leaf lives %s, want the requested hour", d)
		}
	}

	leaf1, _ := p.wait(t, 1, 90*time.Second)
	check(leaf1, first.IssuerSerial)
	assertNoWeftRequests(t, cm, ns)

	// What `cmctl renew` does: cert-manager's certificates pipeline makes a
	// new key and certificate for the issuer and rewrites its Secret.
	crt, err := cm.CertmanagerV1().Certificates(ns).Get(t.Context(), "weft-issuer", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "ManuallyTriggered", "renewal requested by the test")
	if _, err := cm.CertmanagerV1().Certificates(ns).UpdateStatus(t.Context(), crt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	renewed := waitStatus(t, w.ca, "cert-manager's renewed issuer", func(s Status) bool { return s.Ready && s.IssuerSerial != first.IssuerSerial })
	var leaf2 *Leaf
	for n := 2; ; n++ {
		leaf2, _ = p.wait(t, n, 90*time.Second)
		chain, _ := parseCertificates(leaf2.CertChainPEM)
		if len(chain) == 2 && chain[1].SerialNumber.Text(16) == renewed.IssuerSerial {
			break
		}
	}
	check(leaf2, renewed.IssuerSerial)
	cancel()
	<-loop
	assertNoWeftRequests(t, cm, ns)
	if n := seen.assertHeldNoKey(t, leaf1, leaf2); n < 2 {
		t.Errorf("saw %d CertificateRequests, want at least Weft's two", n)
	}
	assertNoLeafKeyStored(t, [][]byte{leaf1.KeyPEM, leaf2.KeyPEM})
	if got := counter(t, w.reg, "weft_identity_issuance_failures_total", ""); got != 0 {
		t.Errorf("issuance failures %v, want 0", got)
	}
}

// standInSign is what cert-manager's CA issuer does with an approved request
// (pkg/controller/certificaterequests/ca/ca.go, v1.21.2): sign the CSR with
// the issuer, write status.certificate (leaf and chain) and status.ca, and
// set Ready=True reason Issued. uri replaces the CSR's SAN, to stand in for
// an issuer that signs something other than what was asked.
func standInSign(t *testing.T, cr *cmapi.CertificateRequest, tr trust, uri string) {
	block, _ := pem.Decode(cr.Spec.Request)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Errorf("stand-in issuer: %v", err)
		return
	}
	u, _ := url.Parse(uri)
	now := time.Now()
	serial, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		t.Errorf("stand-in issuer: %v", err)
		return
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(cr.Spec.Duration.Duration),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, tr.issuer.Cert, csr.PublicKey, tr.issuer.Key)
	if err != nil {
		t.Errorf("stand-in issuer: %v", err)
		return
	}
	cr.Status.Certificate = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), tr.issuer.CertPEM...)
	cr.Status.CA = tr.anchor.CertPEM
	apiutil.SetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionReady, cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued, "Certificate fetched from issuer successfully")
}

// counter is a counter's value in reg for the series whose one label is
// value (every series when value is ""); 0 when it has none yet.
func counter(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if value == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == value) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// heldRequests is a namespace where no cert-manager runs, act standing in
// for it on every new request, and a CertificateRequests whose CA holds tr.
func heldRequests(t *testing.T, cm cmclient.Interface, tr trust, act func(context.Context, *cmapi.CertificateRequest)) (string, *CertificateRequests, *prometheus.Registry, *seenRequests) {
	t.Helper()
	crds, err := testenv.CertManagerCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.InstallCRDs(t.Context(), crds); err != nil {
		t.Fatal(err)
	}
	ns := createNamespace(t)
	seen := watchRequests(t, cm, ns, act)
	reg := prometheus.NewRegistry()
	ca, err := New(Config{TrustDomain: td, LeafTTL: time.Hour, Registry: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ca.SetMaterial(tr.material(t, time.Now()), nil)
	crs, err := NewCertificateRequests(CertificateRequestConfig{
		Client: cm, Namespace: ns, CA: ca, Timeout: 2 * time.Second,
		IssuerRef: cmmeta.IssuerReference{Kind: cmapi.ClusterIssuerKind, Group: "cert-manager.io", Name: "weft"},
		Recorder:  newRecorder(t), Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns, crs, reg, seen
}

// standInApprove is what cert-manager's approver does
// (pkg/controller/certificaterequests/approver/sync.go).
func standInApprove(cr *cmapi.CertificateRequest) {
	apiutil.SetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue, "cert-manager.io", "Certificate request has been approved by cert-manager.io")
}

// approveAndSign stands in for cert-manager's approver and then its CA
// issuer, signing for uri with tr's issuer.
func approveAndSign(t *testing.T, cm cmclient.Interface, tr trust, uri string) func(context.Context, *cmapi.CertificateRequest) {
	return func(ctx context.Context, cr *cmapi.CertificateRequest) {
		standInApprove(cr)
		standInSign(t, cr, tr, uri)
		if _, err := cm.CertmanagerV1().CertificateRequests(cr.Namespace).UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			t.Errorf("stand-in: updating %s: %v", cr.Name, err)
		}
	}
}

// TestCertificateRequestLeafEndsWithItsIssuer: cert-manager does not cut a
// leaf's life to its issuer's; the leaf Weft hands on is taken to end with
// its issuer, and renewed before that.
func TestCertificateRequestLeafEndsWithItsIssuer(t *testing.T) {
	requireEnv(t)
	cm := cmclient.NewForConfigOrDie(env.Config)
	tr := newTrust(t, time.Now(), 24*time.Hour, 30*time.Minute)
	_, crs, reg, _ := heldRequests(t, cm, tr, approveAndSign(t, cm, tr, "spiffe://cluster.local/ns/x/sa/a"))
	leaf, err := crs.IssueLeaf(t.Context(), Workload{"x", "a"})
	if err != nil {
		t.Fatal(err)
	}
	cert := verifyLeaf(t, leaf.CertChainPEM, tr.anchor.Cert, time.Now())
	if !cert.NotAfter.After(tr.issuer.Cert.NotAfter) {
		t.Fatalf("the stand-in signed to %s, not past the issuer's %s: the case is not exercised", cert.NotAfter, tr.issuer.Cert.NotAfter)
	}
	if !leaf.NotAfter.Equal(tr.issuer.Cert.NotAfter) {
		t.Errorf("Leaf.NotAfter %s, want the issuer's %s", leaf.NotAfter, tr.issuer.Cert.NotAfter)
	}
	if !leaf.RenewAt.Before(tr.issuer.Cert.NotAfter) {
		t.Errorf("RenewAt %s is not before the issuer expires (%s)", leaf.RenewAt, tr.issuer.Cert.NotAfter)
	}
	if got := counter(t, reg, "weft_identity_leaves_issued_total", "certificaterequest"); got != 1 {
		t.Errorf("weft_identity_leaves_issued_total{kind=certificaterequest} = %v, want 1", got)
	}
}

// TestCertificateRequestRefusals covers requests that give no leaf. No
// cert-manager runs in this test's namespace: the test acts on each request
// the way the real actors do, and says which one it stands in for.
func TestCertificateRequestRefusals(t *testing.T) {
	requireEnv(t)
	cm := cmclient.NewForConfigOrDie(env.Config)
	tr := newTrust(t, time.Now(), 24*time.Hour, 12*time.Hour)

	update := func(ctx context.Context, cr *cmapi.CertificateRequest) {
		if _, err := cm.CertmanagerV1().CertificateRequests(cr.Namespace).UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			t.Errorf("stand-in: updating %s: %v", cr.Name, err)
		}
	}
	// Approved, then Ready=False as the issuer's controller reports it
	// (cert-manager's reporter.Failed and reporter.Pending).
	approvedNotReady := func(reason, message string) func(context.Context, *cmapi.CertificateRequest) {
		return func(ctx context.Context, cr *cmapi.CertificateRequest) {
			standInApprove(cr)
			apiutil.SetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionReady, cmmeta.ConditionFalse, reason, message)
			update(ctx, cr)
		}
	}
	for _, tc := range []struct {
		name    string
		act     func(context.Context, *cmapi.CertificateRequest)
		reason  string
		wantErr string
	}{{
		// An approver that refuses, as approver-policy does when no policy
		// allows the request; cert-manager then marks it Ready=False Denied
		// (pkg/controller/certificaterequests/sync.go).
		name: "denied",
		act: func(ctx context.Context, cr *cmapi.CertificateRequest) {
			apiutil.SetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionDenied, cmmeta.ConditionTrue, "policy.cert-manager.io", "No policy approved this request")
			apiutil.SetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionReady, cmmeta.ConditionFalse, cmapi.CertificateRequestReasonDenied, "The CertificateRequest was denied by an approval controller")
			update(ctx, cr)
		},
		reason:  "denied",
		wantErr: `^CertificateRequest %s/weft-leaf-\w+: denied by policy.cert-manager.io: No policy approved this request$`,
	}, {
		// Approved, then the issuer fails it.
		name:    "failed",
		act:     approvedNotReady(cmapi.CertificateRequestReasonFailed, "Error signing certificate: the CA certificate has expired"),
		reason:  "failed",
		wantErr: `^CertificateRequest %s/weft-leaf-\w+: failed: Error signing certificate: the CA certificate has expired$`,
	}, {
		// Nobody approves: no approver runs for this issuer.
		name:    "pending",
		reason:  "timeout",
		wantErr: `^CertificateRequest %s/weft-leaf-\w+: still pending after 2s \(not approved: no approver has acted on it\)$`,
	}, {
		// Approved, and the issuer's CertificateRequest controller has not
		// signed yet.
		name:    "approved-never-signed",
		act:     approvedNotReady(cmapi.CertificateRequestReasonPending, "Referenced issuer does not have a Ready status condition"),
		reason:  "timeout",
		wantErr: `^CertificateRequest %s/weft-leaf-\w+: still pending after 2s \(approved, Ready=False Pending: Referenced issuer does not have a Ready status condition\)$`,
	}, {
		// An issuer that signs another identity than the CSR asked for.
		name:    "another-identity",
		act:     approveAndSign(t, cm, tr, "spiffe://cluster.local/ns/kube-system/sa/admin"),
		reason:  "invalid_certificate",
		wantErr: `^CertificateRequest %s/weft-leaf-\w+: status.certificate: SANs \[URI:spiffe://cluster.local/ns/kube-system/sa/admin\] are not exactly spiffe://cluster.local/ns/x/sa/a$`,
	}, {
		// An issuer outside the trust bundle.
		name:    "foreign-ca",
		act:     approveAndSign(t, cm, newTrust(t, time.Now(), 24*time.Hour, 12*time.Hour), "spiffe://cluster.local/ns/x/sa/a"),
		reason:  "invalid_certificate",
		wantErr: `^CertificateRequest %s/weft-leaf-\w+: status.certificate does not chain to the trust bundle: x509: certificate signed by unknown authority`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ns, crs, reg, seen := heldRequests(t, cm, tr, tc.act)
			leaf, err := crs.IssueLeaf(t.Context(), Workload{"x", "a"})
			if leaf != nil || err == nil {
				t.Fatalf("IssueLeaf = %v, %v; want no leaf and an error", leaf, err)
			}
			want := fmt.Sprintf(tc.wantErr, regexp.QuoteMeta(ns))
			if !regexp.MustCompile(want).MatchString(err.Error()) {
				t.Errorf("error %q\nwant match %q", err, want)
			}
			var re *RequestError
			if !errors.As(err, &re) || re.Reason != tc.reason {
				t.Fatalf("error %#v, want a RequestError with reason %s", err, tc.reason)
			}
			_, name, _ := strings.Cut(re.Request, "/")
			if _, err := cm.CertmanagerV1().CertificateRequests(ns).Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("CertificateRequest %s after the failure: %v, want it deleted", re.Request, err)
			}
			assertNoWeftRequests(t, cm, ns)
			if n := seen.assertHeldNoKey(t); n != 1 {
				t.Errorf("saw %d CertificateRequests, want 1", n)
			}
			if got := counter(t, reg, "weft_identity_issuance_failures_total", tc.reason); got != 1 {
				t.Errorf("weft_identity_issuance_failures_total{reason=%q} = %v, want 1", tc.reason, got)
			}
			if got := counter(t, reg, "weft_identity_leaves_issued_total", ""); got != 0 {
				t.Errorf("leaves issued %v, want 0", got)
			}
			ev := waitEvent(t, ns, cmapi.CertificateRequestKind, name, "IssuanceFailed")
			if ev.Message != err.Error() {
				t.Errorf("Event message %q, want the error %q", ev.Message, err)
			}
		})
	}
}

// TestCertificateRequestCallerGivesUp: a proxy that leaves mid-issuance
// ends the wait; its request is still deleted, and nothing is reported as
// an issuance failure.
func TestCertificateRequestCallerGivesUp(t *testing.T) {
	requireEnv(t)
	cm := cmclient.NewForConfigOrDie(env.Config)
	tr := newTrust(t, time.Now(), 24*time.Hour, 12*time.Hour)
	created := make(chan struct{}, 1)
	ns, crs, reg, seen := heldRequests(t, cm, tr, func(context.Context, *cmapi.CertificateRequest) { created <- struct{}{} })
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-created; cancel() }()
	leaf, err := crs.IssueLeaf(ctx, Workload{"x", "a"})
	if leaf != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("IssueLeaf = %v, %v; want context.Canceled", leaf, err)
	}
	var re *RequestError
	if errors.As(err, &re) {
		t.Errorf("a caller giving up is reported as a %s failure", re.Reason)
	}
	assertNoWeftRequests(t, cm, ns)
	if n := seen.assertHeldNoKey(t); n != 1 {
		t.Errorf("saw %d CertificateRequests, want 1", n)
	}
	if got := counter(t, reg, "weft_identity_issuance_failures_total", ""); got != 0 {
		t.Errorf("issuance failures %v, want 0", got)
	}
}
