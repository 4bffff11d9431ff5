package check

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// secretKind is what a Secret holds; an SDS reference expects one kind.
type secretKind string

const (
	secretTLSCertificate    secretKind = "a tls_certificate"
	secretValidationContext secretKind = "a validation_context"
	secretSessionTicketKeys secretKind = "session_ticket_keys"
	secretGeneric           secretKind = "a generic_secret"
	secretEmpty             secretKind = "nothing"
)

func kindOfSecret(s *tlsv3.Secret) secretKind {
	switch s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		return secretTLSCertificate
	case *tlsv3.Secret_ValidationContext:
		return secretValidationContext
	case *tlsv3.Secret_SessionTicketKeys:
		return secretSessionTicketKeys
	case *tlsv3.Secret_GenericSecret:
		return secretGeneric
	}
	return secretEmpty
}

// inline is where Envoy's messages say inline data was loaded from.
const inlineSource = "<inline>"

func (c *checker) checkSecret(s *tlsv3.Secret) {
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		c.push("tls_certificate")
		c.checkTLSCertificate(t.TlsCertificate)
		c.pop()
	case *tlsv3.Secret_ValidationContext:
		c.push("validation_context")
		c.checkValidationContextData(t.ValidationContext)
		c.pop()
	case nil:
		c.warnf("the secret holds nothing: every context referring to it fails")
	}
}

func (c *checker) checkDownstreamTLS(d *tlsv3.DownstreamTlsContext) {
	c.push("common_tls_context")
	c.checkCommonTLS(d.GetCommonTlsContext(), true)
	c.pop()
}

func (c *checker) checkUpstreamTLS(u *tlsv3.UpstreamTlsContext) {
	c.push("common_tls_context")
	c.checkCommonTLS(u.GetCommonTlsContext(), false)
	c.pop()
}

// checkCommonTLS applies server_context_config_impl.cc / client_context_config_impl.cc /
// context_config_impl.cc (the common_tls_context path is current).
func (c *checker) checkCommonTLS(ct *tlsv3.CommonTlsContext, server bool) {
	certs := len(ct.GetTlsCertificates())
	sds := len(ct.GetTlsCertificateSdsSecretConfigs())
	provided := ct.GetTlsCertificateProviderInstance() != nil || ct.GetCustomHandshaker() != nil ||
		ct.GetCustomTlsCertificateSelector() != nil
	switch {
	case server && certs+sds == 0 && !provided:
		c.errorf("No TLS certificates found for server context")
	case server && certs > 0 && sds > 0:
		c.errorf("SDS and non-SDS TLS certificates may not be mixed in server contexts")
	case !server && certs+sds > 1:
		c.errorf("Multiple TLS certificates are not supported for client contexts")
	}
	for i, tc := range ct.GetTlsCertificates() {
		c.pushIndex("tls_certificates", i)
		c.checkTLSCertificate(tc)
		c.pop()
	}
	for i, ref := range ct.GetTlsCertificateSdsSecretConfigs() {
		c.pushIndex("tls_certificate_sds_secret_configs", i)
		if c.checkSDSRef(ref) {
			name := ref.GetName()
			c.cross(func(c *checker) { c.lookupSecret(name, secretTLSCertificate) })
		}
		c.pop()
	}
	c.checkValidation(ct, server)
}

// checkValidation merges the validation context the way Envoy does for
// combined_validation_context (default + SDS) before applying the "SAN needs a CA" rule.
func (c *checker) checkValidation(ct *tlsv3.CommonTlsContext, server bool) {
	var inline validationFlags
	var field string
	// sdsPath is where the SDS reference is, below the current path; sdsName what it names.
	var sdsPath []string
	var sdsName string
	switch v := ct.GetValidationContextType().(type) {
	case nil:
		if !server {
			c.warnf("no validation context: the upstream's certificate is not verified")
		}
		return
	case *tlsv3.CommonTlsContext_ValidationContextCertificateProviderInstance,
		*tlsv3.CommonTlsContext_ValidationContextCertificateProvider:
		return
	case *tlsv3.CommonTlsContext_ValidationContext:
		field = "validation_context"
		c.push(field)
		c.checkValidationContextData(v.ValidationContext)
		c.pop()
		inline = inline.with(v.ValidationContext)
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		field = "validation_context_sds_secret_config"
		c.push(field)
		ok := c.checkSDSRef(v.ValidationContextSdsSecretConfig)
		c.pop()
		if !ok {
			return // cannot be known
		}
		sdsPath, sdsName = []string{field}, v.ValidationContextSdsSecretConfig.GetName()
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		field = "combined_validation_context"
		c.push(field)
		if def := v.CombinedValidationContext.GetDefaultValidationContext(); def != nil {
			c.push("default_validation_context")
			c.checkValidationContextData(def)
			c.pop()
			inline = inline.with(def)
		}
		ok := false
		if ref := v.CombinedValidationContext.GetValidationContextSdsSecretConfig(); ref != nil {
			c.push("validation_context_sds_secret_config")
			ok = c.checkSDSRef(ref)
			c.pop()
			sdsPath, sdsName = []string{field, "validation_context_sds_secret_config"}, ref.GetName()
		}
		c.pop()
		if !ok {
			return
		}
	}
	if sdsPath == nil {
		c.reportValidation(field, inline)
		return
	}
	c.cross(func(c *checker) {
		for _, seg := range sdsPath {
			c.push(seg)
		}
		s := c.lookupSecret(sdsName, secretValidationContext)
		for range sdsPath {
			c.pop()
		}
		if s == nil {
			return // reported, or cannot be known
		}
		c.reportValidation(field, inline.with(s.GetValidationContext()))
	})
}

// validationFlags is what the rules about a merged validation context look at.
type validationFlags struct{ hasCA, hasSAN, hasCRL bool }

func (f validationFlags) with(vc *tlsv3.CertificateValidationContext) validationFlags {
	f.hasCA = f.hasCA || vc.GetTrustedCa() != nil || vc.GetCaCertificateProviderInstance() != nil ||
		vc.GetSystemRootCerts() != nil
	f.hasSAN = f.hasSAN || len(vc.GetMatchTypedSubjectAltNames()) > 0 || len(vc.GetMatchSubjectAltNames()) > 0
	f.hasCRL = f.hasCRL || vc.GetCrl() != nil
	return f
}

func (c *checker) reportValidation(field string, f validationFlags) {
	switch {
	case f.hasSAN && !f.hasCA:
		c.errorAt(field, "SAN-based verification of peer certificates without trusted CA is insecure and not allowed")
	case f.hasCRL && !f.hasCA:
		c.errorAt(field, "Failed to load CRL from %s without trusted CA", inlineSource)
	case !f.hasCA:
		c.warnAt(field, "no trusted CA: the peer's certificate is not verified")
	}
}

// checkSDSRef checks what an SDS reference says on its own (its path is current) and
// reports whether it names a secret to look for in the push (lookupSecret, deferred).
// weft never references a secret it does not send: Envoy would warm up to
// initial_fetch_timeout (15 s by default, forever with 0) and then fail every handshake.
func (c *checker) checkSDSRef(ref *tlsv3.SdsSecretConfig) bool {
	if ref.GetSdsConfig() == nil {
		c.warnf("secret %q has no sds_config: Envoy looks it up among its bootstrap's static secrets (\"Unknown static secret\" if it is not there)", ref.GetName())
		return false
	}
	c.checkConfigSource("sds_config", ref.GetSdsConfig())
	return true
}

// lookupSecret returns the secret an SDS reference names (its path is current) when the
// push carries it with the expected kind.
func (c *checker) lookupSecret(name string, want secretKind) *tlsv3.Secret {
	if !c.secretsGiven {
		return nil
	}
	s := c.secrets[name]
	if s == nil {
		c.errorf("SDS secret %q is not in this push: Envoy warms until initial_fetch_timeout, then every handshake fails with \"Secret is not supplied by SDS\"", name)
		return nil
	}
	if k := kindOfSecret(s); k != want {
		c.errorf("secret %q holds %s but is referenced as %s", name, k, want)
		return nil
	}
	return s
}

// inlineData returns a DataSource's bytes when they are in the config (not a file or an
// environment variable on the proxy's side, which cannot be checked here).
func inlineData(ds *corev3.DataSource) []byte {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString)
	}
	return nil
}

// checkTLSCertificate checks inline PEM the way BoringSSL and context_impl.cc load it.
func (c *checker) checkTLSCertificate(tc *tlsv3.TlsCertificate) {
	chain := inlineData(tc.GetCertificateChain())
	if chain != nil {
		if msg := c.cached("chain", chain, nil, certChainProblem); msg != "" {
			c.errorAt("certificate_chain", "%s", msg)
			return
		}
	}
	key := inlineData(tc.GetPrivateKey())
	if key == nil || tc.GetPassword() != nil || tc.GetPrivateKeyProvider() != nil {
		return
	}
	if msg := c.cached("key", key, chain, privateKeyProblem); msg != "" {
		c.errorAt("private_key", "%s", msg)
	}
}

func (c *checker) checkValidationContextData(vc *tlsv3.CertificateValidationContext) {
	if ca := inlineData(vc.GetTrustedCa()); ca != nil {
		if msg := c.cached("ca", ca, nil, trustedCAProblem); msg != "" {
			c.errorAt("trusted_ca", "%s", msg)
		}
	}
}

// cached memoizes a PEM check by its inputs within one run.
func (c *checker) cached(kind string, data, extra []byte, check func(data, extra []byte) string) string {
	key := kind + "\x00" + string(data) + "\x00" + string(extra)
	if msg, ok := c.pemResults[key]; ok {
		return msg
	}
	msg := check(data, extra)
	c.pemResults[key] = msg
	return msg
}

func parseCertificates(data []byte) ([]*x509.Certificate, bool) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, false
		}
		certs = append(certs, cert)
	}
	return certs, len(certs) > 0
}

func certChainProblem(chain, _ []byte) string {
	const failed = "Failed to load certificate chain from " + inlineSource
	certs, ok := parseCertificates(chain)
	if !ok {
		return failed
	}
	switch k := certs[0].PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return failed + ", only RSA certificates with 2048-bit or larger keys are supported"
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return failed + ", only P-256, P-384 or P-521 ECDSA certificates are supported"
		}
	}
	return ""
}

func privateKeyProblem(key, chain []byte) string {
	const failed = "Failed to load private key from " + inlineSource
	if chain != nil {
		if _, err := tls.X509KeyPair(chain, key); err != nil {
			return failed + ", Cause: " + err.Error()
		}
		return ""
	}
	b, _ := pem.Decode(key)
	if b == nil {
		return failed
	}
	if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return ""
	}
	if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return ""
	}
	if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return ""
	}
	return failed
}

func trustedCAProblem(ca, _ []byte) string {
	if _, ok := parseCertificates(ca); !ok {
		return "Failed to load trusted CA certificates from " + inlineSource
	}
	return ""
}
