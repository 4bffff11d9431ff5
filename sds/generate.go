package sds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"time"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CertKey is a certificate and its key, both PEM.
type CertKey struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewAnchor makes a self-signed ECDSA P-256 root valid from now for ttl.
func NewAnchor(trustDomain string, now time.Time, ttl time.Duration) (*CertKey, error) {
	return newCA(pkix.Name{Organization: []string{"weft"}, CommonName: "weft root " + trustDomain}, now, ttl, nil, 1)
}

// NewIssuer makes an intermediate CA signed by parent, valid from now for
// ttl (cut to the parent's expiry), that may sign leaves only.
func NewIssuer(trustDomain string, parent *CertKey, now time.Time, ttl time.Duration) (*CertKey, error) {
	if end := now.Add(ttl); end.After(parent.Cert.NotAfter) {
		ttl = parent.Cert.NotAfter.Sub(now)
	}
	return newCA(pkix.Name{Organization: []string{"weft"}, CommonName: "weft issuer " + trustDomain}, now, ttl, parent, 0)
}

func newCA(subject pkix.Name, now time.Time, ttl time.Duration, parent *CertKey, maxPathLen int) (*CertKey, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("making CA %q: validity %s is not positive", subject.CommonName, ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("making CA %q: %w", subject.CommonName, err)
	}
	serial, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, fmt.Errorf("making CA %q: %w", subject.CommonName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
		if tmpl.NotBefore.Before(parent.Cert.NotBefore) {
			tmpl.NotBefore = parent.Cert.NotBefore
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("making CA %q: %w", subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("making CA %q: %w", subject.CommonName, err)
	}
	// SEC1 "EC PRIVATE KEY", what cert-manager writes for ECDSA keys with
	// its default PKCS1 encoding.
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("making CA %q: %w", subject.CommonName, err)
	}
	return &CertKey{
		Cert: cert, Key: key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

// IssuerSecret is the issuer as cert-manager would store it for a
// Certificate issued by a CA Issuer holding the anchor: type
// kubernetes.io/tls with tls.crt, tls.key and ca.crt.
func IssuerSecret(namespace, name string, issuer, anchor *CertKey) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       issuer.CertPEM,
			corev1.TLSPrivateKeyKey: issuer.KeyPEM,
			cmmeta.TLSCAKey:         anchor.CertPEM,
		},
	}
}

// BundleConfigMap holds the anchors' certificates (never a key) under key.
func BundleConfigMap(namespace, name, key string, anchors ...*x509.Certificate) *corev1.ConfigMap {
	var pemData []byte
	for _, a := range anchors {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Raw})...)
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Data:       map[string]string{key: string(pemData)},
	}
}
