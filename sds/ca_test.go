package sds

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// verifyLeaf checks that chainPEM (leaf first) verifies to anchor for
// client and server use, and returns the leaf.
func verifyLeaf(t testing.TB, chainPEM []byte, anchor *x509.Certificate, now time.Time) *x509.Certificate {
	t.Helper()
	certs, err := parseCertificates(chainPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(anchor)
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("leaf does not verify to the anchor for %v: %v", u, err)
		}
	}
	return certs[0]
}

func TestSignCSRIssuesOnlyTheAuthenticatedIdentity(t *testing.T) {
	now := time.Now()
	tr := newTrust(t, now, 72*time.Hour, 48*time.Hour)
	ca := newTestCA(t, func() time.Time { return now }, 0)
	ca.SetMaterial(tr.material(t, now), nil)
	cases := []struct {
		name  string
		askID string
		dns   []string
	}{
		{"asks for nothing", "", nil},
		{"asks for its own identity", "spiffe://cluster.local/ns/x/sa/a", nil},
		{"asks for another identity", "spiffe://cluster.local/ns/kube-system/sa/admin", []string{"kubernetes.default"}},
		{"asks for another trust domain", "spiffe://evil.example/ns/x/sa/a", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, der := csr(t, c.askID, c.dns...)
			leaf, err := ca.SignCSR(Workload{"x", "a"}, der)
			if err != nil {
				t.Fatal(err)
			}
			cert := verifyLeaf(t, leaf.CertChainPEM, tr.anchor.Cert, now)
			if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://cluster.local/ns/x/sa/a" {
				t.Errorf("URIs %v, want exactly spiffe://cluster.local/ns/x/sa/a", cert.URIs)
			}
			if len(cert.DNSNames) != 0 || cert.Subject.CommonName != "" || cert.IsCA {
				t.Errorf("leaf carries CSR-chosen fields: dns %v cn %q ca %v", cert.DNSNames, cert.Subject.CommonName, cert.IsCA)
			}
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Error("leaf is not for the CSR's key")
			}
			if leaf.KeyPEM != nil || leaf.Key != nil {
				t.Error("SignCSR returned a key: the key stays with the workload")
			}
			if want := now.Add(DefaultLeafTTL); !cert.NotAfter.Equal(want.Truncate(time.Second)) {
				t.Errorf("NotAfter %s, want %s (24h default)", cert.NotAfter, want)
			}
		})
	}
}

func TestSignCSRRefusesBadCSR(t *testing.T) {
	now := time.Now()
	tr := newTrust(t, now, time.Hour, time.Hour)
	ca := newTestCA(t, func() time.Time { return now }, 0)
	ca.SetMaterial(tr.material(t, now), nil)
	_, good := csr(t, "")
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff
	cases := []struct {
		name string
		der  []byte
		want string
	}{
		{"garbage", []byte("nope"), "parsing CSR"},
		{"bad signature", tampered, ""},
		{"certificate PEM", tr.anchor.CertPEM, `"CERTIFICATE" is not a CERTIFICATE REQUEST`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			leaf, err := ca.SignCSR(Workload{"x", "a"}, c.der)
			if err == nil {
				t.Fatalf("issued %v", leaf.ID)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
	pemCSR := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good})
	if _, err := ca.SignCSR(Workload{"x", "a"}, pemCSR); err != nil {
		t.Errorf("PEM CSR: %v", err)
	}
}

func TestLeafNeverOutlivesIssuer(t *testing.T) {
	now := time.Now()
	tr := newTrust(t, now, 72*time.Hour, 3*time.Hour)
	ca := newTestCA(t, func() time.Time { return now }, 24*time.Hour)
	ca.SetMaterial(tr.material(t, now), nil)
	leaf, err := ca.IssueKeyPair(Workload{"x", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.NotAfter.Equal(tr.issuer.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %s, want the issuer's %s", leaf.NotAfter, tr.issuer.Cert.NotAfter)
	}
	if leaf.NotBefore.Before(tr.issuer.Cert.NotBefore) {
		t.Errorf("leaf NotBefore %s precedes the issuer's %s", leaf.NotBefore, tr.issuer.Cert.NotBefore)
	}
	verifyLeaf(t, leaf.CertChainPEM, tr.anchor.Cert, now)
}

func TestRefusedMaterialKeepsTheLastGood(t *testing.T) {
	now := time.Now()
	clock := now
	tr := newTrust(t, now, 72*time.Hour, 2*time.Hour)
	ca := newTestCA(t, func() time.Time { return clock }, time.Hour)

	if _, err := ca.IssueKeyPair(Workload{"x", "a"}); !errors.Is(err, ErrNoMaterial) {
		t.Fatalf("issued with no material: %v", err)
	}
	if st := ca.Status(); st.Ready || st.ProblemReason != ReasonMissing {
		t.Fatalf("status with no material: %+v", st)
	}
	bad := &MaterialError{Reason: ReasonIssuerUntrusted, Object: "Secret a/b", Field: "data[tls.crt]", Err: errors.New("nope")}
	if !ca.Refuse(bad) {
		t.Error("first refusal not reported as new")
	}
	if _, err := ca.IssueKeyPair(Workload{"x", "a"}); !errors.Is(err, ErrNoMaterial) || !strings.Contains(err.Error(), "IssuerNotSignedByAnchor") {
		t.Fatalf("with only bad material: %v, want ErrNoMaterial naming the problem", err)
	}

	ca.SetMaterial(tr.material(t, now), nil)
	if st := ca.Status(); !st.Ready || st.Problem != "" {
		t.Fatalf("status after good material: %+v", st)
	}
	if !ca.Refuse(bad) || ca.Refuse(bad) {
		t.Error("a repeated refusal must be reported new once only (one Event, not one per resync)")
	}
	st := ca.Status()
	if !st.Ready || st.ProblemReason != ReasonIssuerUntrusted || !strings.Contains(st.Problem, "Secret a/b data[tls.crt]") {
		t.Fatalf("status after refusal with good material in hand: %+v", st)
	}
	leaf, err := ca.IssueKeyPair(Workload{"x", "a"})
	if err != nil {
		t.Fatalf("refused new material must not stop issuing with the last good one: %v", err)
	}
	verifyLeaf(t, leaf.CertChainPEM, tr.anchor.Cert, now)

	clock = now.Add(3 * time.Hour) // past the issuer's expiry
	if _, err := ca.IssueKeyPair(Workload{"x", "a"}); !errors.Is(err, ErrNoMaterial) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("issued with an expired issuer: %v", err)
	}
	if st := ca.Status(); st.Ready {
		t.Errorf("ready with an expired issuer: %+v", st)
	}
}

func TestRenewAt(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		life   time.Duration
		jitter float64
		want   time.Duration // after notBefore
	}{
		{"24h no jitter", 24 * time.Hour, 0, 16*time.Hour + 48*time.Minute},
		{"24h earliest", 24 * time.Hour, -1, 15*time.Hour + 36*time.Minute},
		{"24h latest", 24 * time.Hour, 1, 18 * time.Hour},
		{"jitter clamped", 24 * time.Hour, 7, 18 * time.Hour},
		{"1m", time.Minute, 0, 42 * time.Second},
		{"zero life", 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := RenewAt(nb, nb.Add(c.life), c.jitter).Sub(nb); got != c.want {
				t.Errorf("renew after %s, want %s", got, c.want)
			}
		})
	}
	// Real jitter stays inside the window and actually spreads.
	seen := map[time.Time]bool{}
	for range 100 {
		at := RenewAt(nb, nb.Add(24*time.Hour), jitter())
		if d := at.Sub(nb); d < 15*time.Hour+36*time.Minute || d > 18*time.Hour {
			t.Fatalf("jittered renewal at %s, outside [65%%, 75%%] of 24h", d)
		}
		seen[at] = true
	}
	if len(seen) < 50 {
		t.Errorf("100 renewals fell on %d distinct times: jitter does not spread them", len(seen))
	}
}

func TestWorkloadIDs(t *testing.T) {
	cases := []struct {
		in      string
		want    Workload
		wantErr string
	}{
		{"spiffe://cluster.local/ns/x/sa/a", Workload{"x", "a"}, ""},
		{"spiffe://cluster.local/ns/x/sa/a/extra", Workload{}, "is not /ns/<namespace>/sa/<serviceaccount>"},
		{"spiffe://cluster.local/sa/a/ns/x", Workload{}, "is not /ns/<namespace>/sa/<serviceaccount>"},
		{"spiffe://cluster.local", Workload{}, "is not /ns/"},
		{"https://cluster.local/ns/x/sa/a", Workload{}, "parsing SPIFFE ID"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			gotTD, got, err := ParseWorkloadID(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want || gotTD != td {
				t.Fatalf("got %v %v %v", gotTD, got, err)
			}
			id, err := got.ID(td)
			if err != nil || id.String() != c.in {
				t.Errorf("round trip: %v %v", id, err)
			}
		})
	}
	if _, err := (Workload{Namespace: "x"}).ID(td); err == nil {
		t.Error("a workload without a service account got an ID")
	}
	m, err := Matcher(td, Workload{"x", "a"}, Workload{"x", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{
		"spiffe://cluster.local/ns/x/sa/a": true, "spiffe://cluster.local/ns/x/sa/b": true,
		"spiffe://cluster.local/ns/x/sa/c": false, "spiffe://other/ns/x/sa/a": false,
	} {
		w := spiffeid.RequireFromString(id)
		if got := m(w) == nil; got != want {
			t.Errorf("matcher(%s) = %v, want %v", id, got, want)
		}
	}
}
