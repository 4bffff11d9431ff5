package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// pki is what the apiserver and controller-manager need on disk: a CA the clients trust,
// a serving certificate for 127.0.0.1, and the ServiceAccount token signing key pair.
type pki struct {
	caCertPEM      []byte
	caFile         string
	servingCert    string
	servingKey     string
	saSigningKey   string // private key: apiserver signs tokens, controller-manager too
	saVerifyingKey string // public key: apiserver verifies tokens
}

// writePKI generates fresh keys for one environment. A fixed CA would be shared by every
// environment on the machine and let one test's tokens verify against another's apiserver.
func writePKI(dir string, serviceIP net.IP) (*pki, error) {
	caCert, caKey, err := newCA("weft-testenv-ca")
	if err != nil {
		return nil, err
	}
	servingDER, servingKey, err := newServingCert(caCert, caKey, "kube-apiserver", 10*365*24*time.Hour,
		[]net.IP{net.IPv4(127, 0, 0, 1), serviceIP},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"})
	if err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating ServiceAccount signing key: %w", err)
	}

	p := &pki{
		caCertPEM:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
		caFile:         filepath.Join(dir, "ca.crt"),
		servingCert:    filepath.Join(dir, "apiserver.crt"),
		servingKey:     filepath.Join(dir, "apiserver.key"),
		saSigningKey:   filepath.Join(dir, "sa.key"),
		saVerifyingKey: filepath.Join(dir, "sa.pub"),
	}
	servingKeyDER, err := x509.MarshalECPrivateKey(servingKey)
	if err != nil {
		return nil, fmt.Errorf("encoding serving key: %w", err)
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding ServiceAccount public key: %w", err)
	}
	files := []struct {
		path  string
		block *pem.Block
	}{
		{p.servingCert, &pem.Block{Type: "CERTIFICATE", Bytes: servingDER}},
		{p.servingKey, &pem.Block{Type: "EC PRIVATE KEY", Bytes: servingKeyDER}},
		{p.saSigningKey, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}},
		{p.saVerifyingKey, &pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}},
	}
	if err := os.WriteFile(p.caFile, p.caCertPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing CA certificate: %w", err)
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(f.block), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", filepath.Base(f.path), err)
		}
	}
	return p, nil
}

// newCA makes a throwaway self-signed CA with a P-256 key.
func newCA(commonName string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: commonName}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	return cert, key, nil
}

// newServingCert makes a P-256 key and a server certificate for it, signed by ca, valid
// from an hour ago for validFor, for the given addresses and names.
func newServingCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, commonName string, validFor time.Duration,
	ips []net.IP, dnsNames []string) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating serving key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	return der, key, nil
}
