package sds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestParseIssuerSecretAndValidate(t *testing.T) {
	now := time.Now()
	good := newTrust(t, now, 48*time.Hour, 24*time.Hour)
	other := newTrust(t, now, 48*time.Hour, 24*time.Hour)
	expired := newTrust(t, now.Add(-72*time.Hour), 100*time.Hour, time.Hour)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.MarshalPKCS8PrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	secret := func(mut func(*corev1.Secret)) *corev1.Secret {
		s := IssuerSecret("weft-system", "issuer", good.issuer, good.anchor)
		mut(s)
		return s
	}
	cases := []struct {
		name    string
		secret  *corev1.Secret
		anchors []*x509.Certificate
		reason  Reason
		// wantMsg must appear in the error: the object and field path.
		wantMsg string
	}{
		{"valid", secret(func(*corev1.Secret) {}), []*x509.Certificate{good.anchor.Cert}, "", ""},
		{"valid, PKCS#8 key (cert-manager privateKey.encoding: PKCS8)", secret(func(s *corev1.Secret) { s.Data["tls.key"] = pkcs8(t, good.issuer) }), []*x509.Certificate{good.anchor.Cert}, "", ""},
		{"valid, tls.crt carries the anchor after the issuer", secret(func(s *corev1.Secret) {
			s.Data["tls.crt"] = append(append([]byte(nil), good.issuer.CertPEM...), good.anchor.CertPEM...)
		}), []*x509.Certificate{good.anchor.Cert}, "", ""},
		{"valid with two anchors (overlap)", secret(func(*corev1.Secret) {}), []*x509.Certificate{other.anchor.Cert, good.anchor.Cert}, "", ""},
		{"missing tls.crt", secret(func(s *corev1.Secret) { delete(s.Data, "tls.crt") }), nil, ReasonMalformedIssuer, "Secret weft-system/issuer data[tls.crt]: MalformedIssuer: missing or empty"},
		{"garbage tls.crt", secret(func(s *corev1.Secret) { s.Data["tls.crt"] = []byte("hello") }), nil, ReasonMalformedIssuer, "data[tls.crt]: MalformedIssuer: no PEM CERTIFICATE block"},
		{"key in tls.crt", secret(func(s *corev1.Secret) { s.Data["tls.crt"] = good.issuer.KeyPEM }), nil, ReasonMalformedIssuer, `PEM block 0 is "EC PRIVATE KEY", want CERTIFICATE`},
		{"missing tls.key", secret(func(s *corev1.Secret) { delete(s.Data, "tls.key") }), nil, ReasonMalformedIssuer, "data[tls.key]: MalformedIssuer: missing or empty"},
		{"RSA key", secret(func(s *corev1.Secret) { s.Data["tls.key"] = rsaPEM }), nil, ReasonUnsupportedKey, "data[tls.key]: UnsupportedKey"},
		{"P-384 key", secret(func(s *corev1.Secret) {
			s.Data["tls.key"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER})
		}), nil, ReasonUnsupportedKey, "want ECDSA P-256"},
		{"key of another issuer", secret(func(s *corev1.Secret) { s.Data["tls.key"] = other.issuer.KeyPEM }), nil, ReasonIssuerKeyMismatch, "data[tls.key]: IssuerKeyMismatch"},
		{"wrong secret type", secret(func(s *corev1.Secret) { s.Type = corev1.SecretTypeDockerConfigJson }), nil, ReasonMalformedIssuer, "Secret weft-system/issuer type"},
		{"not signed by any anchor", secret(func(*corev1.Secret) {}), []*x509.Certificate{other.anchor.Cert}, ReasonIssuerUntrusted, "does not chain to any of 1 anchors"},
		{"expired issuer", IssuerSecret("weft-system", "issuer", expired.issuer, expired.anchor), []*x509.Certificate{expired.anchor.Cert}, ReasonIssuerExpired, "data[tls.crt]: IssuerExpired: issuer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chain, key, _, err := ParseIssuerSecret(c.secret)
			if err == nil {
				_, err = NewMaterial("Secret weft-system/issuer", chain, key, c.anchors, now)
			}
			if got := ReasonOf(err); got != c.reason {
				t.Fatalf("reason %q, want %q (err: %v)", got, c.reason, err)
			}
			if c.wantMsg != "" && !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q does not contain %q", err, c.wantMsg)
			}
			if err == nil {
				// Leaves carry the issuer, never the anchor peers already have.
				m, _ := NewMaterial("Secret weft-system/issuer", chain, key, c.anchors, now)
				if len(m.Chain) != 1 || !m.Chain[0].Equal(m.Issuer) {
					t.Errorf("chain sent with leaves: %d certificates, want the issuer only", len(m.Chain))
				}
			}
		})
	}
}

func TestParseIssuerSecretReadsNotACA(t *testing.T) {
	now := time.Now()
	tr := newTrust(t, now, time.Hour, time.Hour)
	ca := newTestCA(t, func() time.Time { return now }, time.Hour)
	ca.SetMaterial(tr.material(t, now), nil)
	leaf, err := ca.IssueKeyPair(Workload{"x", "a"})
	if err != nil {
		t.Fatal(err)
	}
	s := IssuerSecret("ns", "issuer", &CertKey{CertPEM: leaf.CertChainPEM, KeyPEM: leaf.KeyPEM}, tr.anchor)
	_, _, _, err = ParseIssuerSecret(s)
	if ReasonOf(err) != ReasonIssuerNotCA {
		t.Fatalf("a leaf as issuer: got %v, want %s", err, ReasonIssuerNotCA)
	}
}

func TestParseBundle(t *testing.T) {
	now := time.Now()
	fresh := newTrust(t, now, time.Hour, time.Hour)
	old := newTrust(t, now.Add(-3*time.Hour), time.Hour, time.Hour)
	future := newTrust(t, now.Add(2*time.Hour), time.Hour, time.Hour)
	cases := []struct {
		name        string
		cm          *corev1.ConfigMap
		wantAnchors int
		wantSkipped int
		reason      Reason
	}{
		{"one anchor", BundleConfigMap("ns", "b", DefaultBundleKey, fresh.anchor.Cert), 1, 0, ""},
		{"overlap: old expired and new", BundleConfigMap("ns", "b", DefaultBundleKey, old.anchor.Cert, fresh.anchor.Cert), 1, 1, ""},
		{"only expired and not yet valid", BundleConfigMap("ns", "b", DefaultBundleKey, old.anchor.Cert, future.anchor.Cert), 0, 2, ReasonNoValidAnchor},
		{"an issuer cert is still a CA", BundleConfigMap("ns", "b", DefaultBundleKey, fresh.issuer.Cert), 1, 0, ""},
		{"empty", BundleConfigMap("ns", "b", DefaultBundleKey), 0, 0, ReasonMalformedBundle},
		{"wrong key", BundleConfigMap("ns", "b", "other", fresh.anchor.Cert), 0, 0, ReasonMalformedBundle},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			anchors, skipped, err := ParseBundle(c.cm, DefaultBundleKey, now)
			if ReasonOf(err) != c.reason {
				t.Fatalf("reason %q, want %q (err %v)", ReasonOf(err), c.reason, err)
			}
			if err != nil && !strings.Contains(err.Error(), "ConfigMap ns/b data["+DefaultBundleKey+"]") {
				t.Errorf("error %q does not name the ConfigMap and field", err)
			}
			if len(anchors) != c.wantAnchors || len(skipped) != c.wantSkipped {
				t.Errorf("anchors %d skipped %d (%v), want %d and %d", len(anchors), len(skipped), skipped, c.wantAnchors, c.wantSkipped)
			}
		})
	}
}

func pkcs8(t *testing.T, ck *CertKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(ck.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
