package sds

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

func createNamespace(t *testing.T) string {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	_, err := env.Clientset.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// runningWatcher is a Watcher feeding a CA, with real Events.
type runningWatcher struct {
	ca  *CA
	reg *prometheus.Registry
}

func startWatcher(t *testing.T, cfg WatcherConfig) *runningWatcher {
	t.Helper()
	reg := prometheus.NewRegistry()
	ca, err := New(Config{TrustDomain: td, LeafTTL: time.Hour, Registry: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: env.Clientset.CoreV1().Events("")})
	cfg.Client, cfg.CA, cfg.Logger = env.Clientset, ca, quiet
	cfg.Recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "weft-identity"})
	w, err := NewWatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
		bc.Shutdown()
	})
	select {
	case <-w.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("watcher did not sync in 30s")
	}
	return &runningWatcher{ca: ca, reg: reg}
}

func waitStatus(t *testing.T, ca *CA, what string, ok func(Status) bool) Status {
	t.Helper()
	var st Status
	err := env.WaitFor(t.Context(), 30*time.Second, what, func(context.Context) (bool, error) {
		st = ca.Status()
		return ok(st), nil
	})
	if err != nil {
		t.Fatalf("%v; last status %+v", err, st)
	}
	return st
}

func waitEvent(t *testing.T, ns, kind, name, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	err := env.WaitFor(t.Context(), 30*time.Second, fmt.Sprintf("Warning %s on %s %s", reason, kind, name), func(ctx context.Context) (bool, error) {
		evs, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Reason == reason && e.Type == corev1.EventTypeWarning {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestWatcherFollowsIssuerRenewalAndRefusesBadMaterial(t *testing.T) {
	requireEnv(t)
	// Registered first, so it runs after the watcher's own cleanup.
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, baseline,
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
	})
	ctx := t.Context()
	ns := createNamespace(t)
	now := time.Now()
	first := newTrust(t, now, 72*time.Hour, 48*time.Hour)
	secrets, cms := env.Clientset.CoreV1().Secrets(ns), env.Clientset.CoreV1().ConfigMaps(ns)
	if _, err := secrets.Create(ctx, IssuerSecret(ns, "issuer", first.issuer, first.anchor), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, BundleConfigMap(ns, "bundle", DefaultBundleKey, first.anchor.Cert), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rw := startWatcher(t, WatcherConfig{Namespace: ns, IssuerSecret: "issuer", BundleConfigMap: "bundle"})
	ca := rw.ca
	st := ca.Status()
	if !st.Ready || st.IssuerSerial != first.issuer.Cert.SerialNumber.Text(16) || st.Anchors != 1 {
		t.Fatalf("status after sync: %+v", st)
	}
	var issuedKeys [][]byte
	issue := func(want *CertKey, anchor *x509.Certificate) {
		t.Helper()
		leaf, err := ca.IssueKeyPair(Workload{"x", "a"})
		if err != nil {
			t.Fatal(err)
		}
		issuedKeys = append(issuedKeys, leaf.KeyPEM)
		cert := verifyLeaf(t, leaf.CertChainPEM, anchor, time.Now())
		if !bytes.Equal(cert.AuthorityKeyId, want.Cert.SubjectKeyId) {
			t.Fatalf("leaf signed by %x, want issuer %q (%x)", cert.AuthorityKeyId, want.Cert.Subject, want.Cert.SubjectKeyId)
		}
	}
	issue(first.issuer, first.anchor.Cert)

	// cert-manager renews the issuer under the same anchor: new leaves
	// chain to the new issuer, no restart.
	renewed, err := NewIssuer(td.Name(), first.anchor, time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Update(ctx, IssuerSecret(ns, "issuer", renewed, first.anchor), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ca, "renewed issuer in use", func(s Status) bool { return s.IssuerSerial == renewed.Cert.SerialNumber.Text(16) })
	issue(renewed, first.anchor.Cert)

	// An issuer from a foreign anchor is refused: the CA keeps signing with
	// the renewed one and says exactly what is wrong.
	foreign := newTrust(t, time.Now(), 72*time.Hour, 48*time.Hour)
	if _, err := secrets.Update(ctx, IssuerSecret(ns, "issuer", foreign.issuer, foreign.anchor), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, ca, "foreign issuer refused", func(s Status) bool { return s.ProblemReason == ReasonIssuerUntrusted })
	if !st.Ready || st.IssuerSerial != renewed.Cert.SerialNumber.Text(16) || !strings.Contains(st.Problem, "Secret "+ns+"/issuer data[tls.crt]") {
		t.Fatalf("status after a foreign issuer: %+v", st)
	}
	issue(renewed, first.anchor.Cert)
	ev := waitEvent(t, ns, "Secret", "issuer", string(ReasonIssuerUntrusted))
	if !strings.Contains(ev.Message, "does not chain to any of 1 anchors") {
		t.Errorf("Event message %q does not say what is wrong", ev.Message)
	}
	if v := gathered(t, rw.reg, "weft_identity_material_valid"); v != 0 {
		t.Errorf("weft_identity_material_valid = %v after a refusal, want 0", v)
	}
	if v := gathered(t, rw.reg, "weft_identity_material_refused_total"); v != 1 {
		t.Errorf("weft_identity_material_refused_total = %v, want 1", v)
	}
	if v := gathered(t, rw.reg, "weft_identity_issuer_expiry_seconds"); v < 47*3600 || v > 48*3600 {
		t.Errorf("weft_identity_issuer_expiry_seconds = %v, want about 48h (the renewed issuer still in use)", v)
	}
	if v := gathered(t, rw.reg, "weft_identity_anchor_expiry_seconds"); v < 71*3600 || v > 72*3600 {
		t.Errorf("weft_identity_anchor_expiry_seconds = %v, want about 72h", v)
	}

	// Overlap rotation: the bundle gets the foreign anchor too, and the
	// foreign issuer becomes acceptable without touching the Secret.
	if _, err := cms.Update(ctx, BundleConfigMap(ns, "bundle", DefaultBundleKey, first.anchor.Cert, foreign.anchor.Cert), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, ca, "rotated bundle accepted", func(s Status) bool { return s.IssuerSerial == foreign.issuer.Cert.SerialNumber.Text(16) })
	if st.Problem != "" || st.Anchors != 2 {
		t.Fatalf("status after overlap: %+v", st)
	}
	issue(foreign.issuer, foreign.anchor.Cert)

	// A malformed Secret and a bundle with no valid anchor: refused, old
	// material kept.
	if _, err := secrets.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "issuer", Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ca, "malformed Secret refused", func(s Status) bool { return s.ProblemReason == ReasonMalformedIssuer && s.Ready })
	waitEvent(t, ns, "Secret", "issuer", string(ReasonMalformedIssuer))
	if _, err := secrets.Update(ctx, IssuerSecret(ns, "issuer", foreign.issuer, foreign.anchor), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	old := newTrust(t, time.Now().Add(-10*time.Hour), time.Hour, time.Hour)
	if _, err := cms.Update(ctx, BundleConfigMap(ns, "bundle", DefaultBundleKey, old.anchor.Cert), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, ca, "expired-only bundle refused", func(s Status) bool { return s.ProblemReason == ReasonNoValidAnchor })
	if !st.Ready || !strings.Contains(st.Problem, "ConfigMap "+ns+"/bundle data["+DefaultBundleKey+"]") {
		t.Fatalf("status: %+v", st)
	}
	waitEvent(t, ns, "ConfigMap", "bundle", string(ReasonNoValidAnchor))
	issue(foreign.issuer, foreign.anchor.Cert)

	assertNoLeafKeyStored(t, issuedKeys)
}

// gathered is the sum of a metric's series in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return sum
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// assertNoLeafKeyStored lists every Secret and ConfigMap in the cluster and
// fails if any holds a key the CA made, or if a ConfigMap holds any key.
func assertNoLeafKeyStored(t *testing.T, keys [][]byte) {
	t.Helper()
	secrets, err := env.Clientset.CoreV1().Secrets("").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		for k, v := range s.Data {
			for _, key := range keys {
				if bytes.Contains(v, bytes.TrimSpace(key)) {
					t.Errorf("Secret %s/%s %s holds a leaf private key", s.Namespace, s.Name, k)
				}
			}
		}
	}
	cms, err := env.Clientset.CoreV1().ConfigMaps("").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cms.Items {
		for k, v := range c.Data {
			if strings.Contains(v, "PRIVATE KEY") {
				t.Errorf("ConfigMap %s/%s %s holds a private key", c.Namespace, c.Name, k)
			}
		}
	}
}

// notLeader is a replica that lost the election.
type notLeader struct{}

func (notLeader) IsLeader() bool { return false }

func TestWatcherCreatesMissingBundleOnlyAsLeader(t *testing.T) {
	requireEnv(t)
	cases := []struct {
		name   string
		leader interface{ IsLeader() bool }
		want   bool
	}{
		{"leader writes", nil, true},
		{"follower does not", notLeader{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			ns := createNamespace(t)
			tr := newTrust(t, time.Now(), 72*time.Hour, 48*time.Hour)
			if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, IssuerSecret(ns, "issuer", tr.issuer, tr.anchor), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			rw := startWatcher(t, WatcherConfig{Namespace: ns, IssuerSecret: "issuer", BundleConfigMap: "bundle", CreateMissingBundle: true, Leader: c.leader})
			// Either way this replica signs.
			if st := rw.ca.Status(); !st.Ready {
				t.Fatalf("status: %+v", st)
			}
			if c.want {
				waitStatus(t, rw.ca, "bundle ConfigMap in use", func(s Status) bool { return strings.Contains(s.From, "ConfigMap "+ns+"/bundle") })
				cm, err := env.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, "bundle", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if cm.Data[DefaultBundleKey] != string(tr.anchor.CertPEM) {
					t.Errorf("bundle %q, want the anchor", cm.Data[DefaultBundleKey])
				}
				return
			}
			time.Sleep(time.Second)
			if st := rw.ca.Status(); !strings.Contains(st.From, "(ca.crt)") {
				t.Errorf("follower signs from %q, want the Secret's ca.crt", st.From)
			}
			if _, err := env.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, "bundle", metav1.GetOptions{}); err == nil {
				t.Error("a follower created the bundle")
			}
		})
	}
}
