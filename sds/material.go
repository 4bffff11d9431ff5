package sds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	// Only the meta API package: it holds the Secret key names and pulls in
	// nothing but apimachinery (the certmanager/v1 package would drag in
	// gateway-api through the ACME types).
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
)

// DefaultBundleKey is the ConfigMap key holding the trust anchors (PEM, one
// or more CERTIFICATE blocks). trust-manager lets the target key be chosen;
// this is the one `weft identity generate` writes.
const DefaultBundleKey = "ca-bundle.crt"

// Reason says what is wrong with the trust material, for metrics labels,
// Event reasons and `weft check`.
type Reason string

const (
	ReasonMalformedIssuer   Reason = "MalformedIssuer"
	ReasonIssuerNotCA       Reason = "IssuerNotCA"
	ReasonIssuerKeyMismatch Reason = "IssuerKeyMismatch"
	ReasonUnsupportedKey    Reason = "UnsupportedKey"
	ReasonIssuerExpired     Reason = "IssuerExpired"
	ReasonIssuerNotYetValid Reason = "IssuerNotYetValid"
	ReasonIssuerUntrusted   Reason = "IssuerNotSignedByAnchor"
	ReasonMalformedBundle   Reason = "MalformedBundle"
	ReasonNoValidAnchor     Reason = "NoValidAnchor"
	ReasonMissing           Reason = "Missing"
)

// MaterialError is one thing wrong with the issuer Secret or bundle
// ConfigMap: which object, which field, and why.
type MaterialError struct {
	Reason Reason
	// Object is "Secret ns/name" or "ConfigMap ns/name".
	Object string
	// Field is the path inside the object, e.g. data[tls.crt].
	Field string
	Err   error
}

func (e *MaterialError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s: %v", e.Object, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s %s: %s: %v", e.Object, e.Field, e.Reason, e.Err)
}

func (e *MaterialError) Unwrap() error { return e.Err }

// ReasonOf is the Reason of the first MaterialError in err's chain, or "".
func ReasonOf(err error) Reason {
	var me *MaterialError
	if errors.As(err, &me) {
		return me.Reason
	}
	return ""
}

// Material is a validated issuer and the anchors it chains to. It is
// immutable once built: the CA swaps whole Materials.
type Material struct {
	// Issuer signs leaves; Chain is the issuer followed by any intermediates
	// between it and an anchor (from tls.crt), sent after every leaf.
	Issuer *x509.Certificate
	Chain  []*x509.Certificate
	Key    *ecdsa.PrivateKey
	// Anchors is the trust bundle: every valid anchor, the rotation overlap
	// included. AnchorsPEM is what validation contexts are given.
	Anchors    []*x509.Certificate
	AnchorsPEM []byte
	// anchorsPool is Anchors as a pool, built once for chain verification
	// here and reused by every TLS handshake (CA.BundlePool).
	anchorsPool *x509.CertPool
	// ChainPEM is Chain encoded once, appended to every leaf.
	ChainPEM []byte
	// From names where this came from (resourceVersions), for status.
	From string
}

// ParseIssuerSecret reads the issuer from a Secret in cert-manager's shape:
// tls.crt (issuer certificate, then any intermediates), tls.key (its key),
// and optionally ca.crt (the anchor, returned as extraAnchors for installs
// without a bundle ConfigMap).
func ParseIssuerSecret(s *corev1.Secret) (chain []*x509.Certificate, key *ecdsa.PrivateKey, extraAnchors []*x509.Certificate, err error) {
	obj := "Secret " + s.Namespace + "/" + s.Name
	fail := func(r Reason, field string, err error) error {
		return &MaterialError{Reason: r, Object: obj, Field: field, Err: err}
	}
	if s.Type != "" && s.Type != corev1.SecretTypeTLS && s.Type != corev1.SecretTypeOpaque {
		return nil, nil, nil, fail(ReasonMalformedIssuer, "type", fmt.Errorf("type %s: want %s", s.Type, corev1.SecretTypeTLS))
	}
	crtField, keyField := "data["+corev1.TLSCertKey+"]", "data["+corev1.TLSPrivateKeyKey+"]"
	chain, err = parseCertificates(s.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, nil, nil, fail(ReasonMalformedIssuer, crtField, err)
	}
	keyPEM := s.Data[corev1.TLSPrivateKeyKey]
	if len(keyPEM) == 0 {
		return nil, nil, nil, fail(ReasonMalformedIssuer, keyField, errors.New("missing or empty"))
	}
	key, err = parseECKey(keyPEM)
	if err != nil {
		r := ReasonMalformedIssuer
		if errors.Is(err, errUnsupportedKey) {
			r = ReasonUnsupportedKey
		}
		return nil, nil, nil, fail(r, keyField, err)
	}
	issuer := chain[0]
	if !issuer.IsCA || !issuer.BasicConstraintsValid || issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, nil, fail(ReasonIssuerNotCA, crtField,
			fmt.Errorf("certificate %q is not a CA (basicConstraints CA:TRUE and keyUsage certSign are both required)", issuer.Subject))
	}
	pub, ok := issuer.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, nil, nil, fail(ReasonUnsupportedKey, crtField, fmt.Errorf("certificate %q: %w", issuer.Subject, errUnsupportedKey))
	}
	if !pub.Equal(key.Public()) {
		return nil, nil, nil, fail(ReasonIssuerKeyMismatch, keyField, fmt.Errorf("key does not belong to the certificate %q in %s", issuer.Subject, crtField))
	}
	if ca := s.Data[cmmeta.TLSCAKey]; len(ca) > 0 {
		extraAnchors, err = parseCertificates(ca)
		if err != nil {
			return nil, nil, nil, fail(ReasonMalformedBundle, "data["+cmmeta.TLSCAKey+"]", err)
		}
	}
	return chain, key, extraAnchors, nil
}

var errUnsupportedKey = errors.New("unsupported key: want ECDSA P-256")

func parseECKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing EC PRIVATE KEY: %w", err)
		}
		if k.Curve != elliptic.P256() {
			return nil, errUnsupportedKey
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing PRIVATE KEY: %w", err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%T: %w", k, errUnsupportedKey)
		}
		return ek, nil
	case "RSA PRIVATE KEY":
		return nil, fmt.Errorf("RSA PRIVATE KEY: %w", errUnsupportedKey)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
}

// parseCertificates reads every CERTIFICATE block; anything else, or
// nothing, is an error.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	if len(data) == 0 {
		return nil, errors.New("missing or empty")
	}
	var certs []*x509.Certificate
	for i := 0; ; i++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", i, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", i, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// ParseBundle reads the anchors from a bundle ConfigMap. Anchors that are
// expired, not yet valid or not CAs are skipped (an overlap rotation leaves
// an old anchor in place for a while) and reported in skipped; no valid
// anchor at all is an error.
func ParseBundle(cm *corev1.ConfigMap, key string, now time.Time) (anchors []*x509.Certificate, skipped []string, err error) {
	obj := "ConfigMap " + cm.Namespace + "/" + cm.Name
	field := "data[" + key + "]"
	data := cm.Data[key]
	if data == "" && cm.BinaryData[key] != nil {
		data = string(cm.BinaryData[key])
		field = "binaryData[" + key + "]"
	}
	certs, err := parseCertificates([]byte(data))
	if err != nil {
		return nil, nil, &MaterialError{Reason: ReasonMalformedBundle, Object: obj, Field: field, Err: err}
	}
	anchors, skipped = validAnchors(certs, now)
	if len(anchors) == 0 {
		return nil, skipped, &MaterialError{Reason: ReasonNoValidAnchor, Object: obj, Field: field,
			Err: fmt.Errorf("none of %d certificates is a valid anchor: %v", len(certs), skipped)}
	}
	return anchors, skipped, nil
}

func validAnchors(certs []*x509.Certificate, now time.Time) (valid []*x509.Certificate, skipped []string) {
	for i, c := range certs {
		switch {
		case !c.IsCA || !c.BasicConstraintsValid:
			skipped = append(skipped, fmt.Sprintf("certificate %d (%q) is not a CA", i, c.Subject))
		case now.After(c.NotAfter):
			skipped = append(skipped, fmt.Sprintf("certificate %d (%q) expired at %s", i, c.Subject, c.NotAfter.UTC().Format(time.RFC3339)))
		case now.Before(c.NotBefore):
			skipped = append(skipped, fmt.Sprintf("certificate %d (%q) is not valid before %s", i, c.Subject, c.NotBefore.UTC().Format(time.RFC3339)))
		default:
			valid = append(valid, c)
		}
	}
	return valid, skipped
}

// NewMaterial checks that the issuer is valid now and chains to one of the
// anchors, and builds the Material leaves will be signed with. object names
// the issuer Secret in errors.
func NewMaterial(object string, chain []*x509.Certificate, key *ecdsa.PrivateKey, anchors []*x509.Certificate, now time.Time) (*Material, error) {
	field := "data[" + corev1.TLSCertKey + "]"
	if len(chain) == 0 || key == nil {
		return nil, &MaterialError{Reason: ReasonMalformedIssuer, Object: object, Field: field, Err: errors.New("no issuer certificate or key")}
	}
	issuer := chain[0]
	if now.After(issuer.NotAfter) {
		return nil, &MaterialError{Reason: ReasonIssuerExpired, Object: object, Field: field,
			Err: fmt.Errorf("issuer %q expired at %s", issuer.Subject, issuer.NotAfter.UTC().Format(time.RFC3339))}
	}
	if now.Before(issuer.NotBefore) {
		return nil, &MaterialError{Reason: ReasonIssuerNotYetValid, Object: object, Field: field,
			Err: fmt.Errorf("issuer %q is not valid before %s", issuer.Subject, issuer.NotBefore.UTC().Format(time.RFC3339))}
	}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verified, err := issuer.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, &MaterialError{Reason: ReasonIssuerUntrusted, Object: object, Field: field,
			Err: fmt.Errorf("issuer %q (issued by %q) does not chain to any of %d anchors: %w", issuer.Subject, issuer.Issuer, len(anchors), err)}
	}
	// Leaves carry the issuer and the intermediates up to (not including)
	// the anchor, which peers already have.
	path := verified[0]
	send := path[:len(path)-1]
	m := &Material{Issuer: issuer, Chain: send, Key: key, Anchors: anchors, anchorsPool: roots}
	for _, c := range send {
		m.ChainPEM = append(m.ChainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, a := range anchors {
		m.AnchorsPEM = append(m.AnchorsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Raw})...)
	}
	return m, nil
}

// earliestAnchorExpiry is when the first anchor of the bundle stops being
// valid: the deadline for the next overlap rotation.
func (m *Material) earliestAnchorExpiry() time.Time {
	var t time.Time
	for _, a := range m.Anchors {
		if t.IsZero() || a.NotAfter.Before(t) {
			t = a.NotAfter
		}
	}
	return t
}
