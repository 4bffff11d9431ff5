package sds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var quiet = slog.New(slog.DiscardHandler)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// trust is an anchor and an issuer it signed.
type trust struct{ anchor, issuer *CertKey }

func newTrust(t testing.TB, now time.Time, anchorTTL, issuerTTL time.Duration) trust {
	t.Helper()
	a, err := NewAnchor(td.Name(), now, anchorTTL)
	if err != nil {
		t.Fatal(err)
	}
	i, err := NewIssuer(td.Name(), a, now, issuerTTL)
	if err != nil {
		t.Fatal(err)
	}
	return trust{a, i}
}

func (tr trust) material(t testing.TB, now time.Time) *Material {
	t.Helper()
	m, err := NewMaterial("Secret test/issuer", []*x509.Certificate{tr.issuer.Cert}, tr.issuer.Key, []*x509.Certificate{tr.anchor.Cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// csr makes a key and a CSR for it that asks for the given SPIFFE ID and
// DNS name, which the CA must ignore.
func csr(t testing.TB, askID string, dns ...string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "i-am-admin"}, DNSNames: dns}
	if askID != "" {
		u, err := url.Parse(askID)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func newTestCA(t testing.TB, now func() time.Time, ttl time.Duration) *CA {
	t.Helper()
	ca, err := New(Config{TrustDomain: td, LeafTTL: ttl, Now: now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
