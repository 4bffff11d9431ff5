package check

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// pemPair is a self-signed certificate and its key, PEM encoded.
type pemPair struct{ cert, key []byte }

var (
	certsOnce                       sync.Once
	goodPair, smallRSA, p224, other pemPair
)

func testCerts() {
	certsOnce.Do(func() {
		ec := func(c elliptic.Curve) crypto.Signer {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				panic(err)
			}
			return k
		}
		small, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		goodPair = selfSigned(ec(elliptic.P256()))
		smallRSA = selfSigned(small)
		p224 = selfSigned(ec(elliptic.P224()))
		other = selfSigned(ec(elliptic.P256()))
	})
}

func selfSigned(key crypto.Signer) pemPair {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "weft-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pemPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func tlsCert(chain, key []byte) *tlsv3.TlsCertificate {
	return &tlsv3.TlsCertificate{CertificateChain: inlineBytes(chain), PrivateKey: inlineBytes(key)}
}

func sdsRef(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: ads()}
}

func certSecret(name string, p pemPair) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: tlsCert(p.cert, p.key)}}
}

func caSecret(name string, ca []byte) *tlsv3.Secret {
	vc := &tlsv3.CertificateValidationContext{}
	if ca != nil {
		vc.TrustedCa = inlineBytes(ca)
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc}}
}

func sanMatcher(spiffeID string) []*tlsv3.SubjectAltNameMatcher {
	return []*tlsv3.SubjectAltNameMatcher{{
		SanType: tlsv3.SubjectAltNameMatcher_URI,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: spiffeID}},
	}}
}

// withServerTLS returns a push whose listener chain terminates TLS with ctx, plus secrets.
func withServerTLS(ctx func() *tlsv3.CommonTlsContext, secrets ...func() *tlsv3.Secret) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		testCerts()
		n := baseNode()
		n.listeners[0].FilterChains[0].TransportSocket = transportSocket(&tlsv3.DownstreamTlsContext{CommonTlsContext: ctx()})
		for _, s := range secrets {
			n.secrets = append(n.secrets, s())
		}
		return n.res()
	}
}

// withClientTLS returns a push whose cluster "c" originates TLS with ctx, plus secrets.
func withClientTLS(ctx func() *tlsv3.CommonTlsContext, secrets ...func() *tlsv3.Secret) func() map[string][]types.Resource {
	return func() map[string][]types.Resource {
		testCerts()
		n := baseNode()
		n.clusters[0].TransportSocket = transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: ctx()})
		for _, s := range secrets {
			n.secrets = append(n.secrets, s())
		}
		return n.res()
	}
}

func withSecrets(secrets ...func() *tlsv3.Secret) func() map[string][]types.Resource {
	return withServerTLS(func() *tlsv3.CommonTlsContext {
		return &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("cert")}}
	}, secrets...)
}

// mtls is the context weft's sidecars use: certificate and CA both from SDS, SAN checked.
func mtls() *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("cert")},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatcher("spiffe://weft/ns/default/sa/web")},
				ValidationContextSdsSecretConfig: sdsRef("ca"),
			},
		},
	}
}

const serverTLSPath = "filter_chains[0].transport_socket.typed_config.common_tls_context"

func TestTLSRules(t *testing.T) {
	cert := func() *tlsv3.Secret { return certSecret("cert", goodPair) }
	ca := func() *tlsv3.Secret { return caSecret("ca", goodPair.cert) }
	runRows(t, []row{
		{
			name:    "server context without certificates",
			bad:     withServerTLS(func() *tlsv3.CommonTlsContext { return &tlsv3.CommonTlsContext{} }),
			good:    withServerTLS(mtls, cert, ca),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath,
			msg:  "No TLS certificates found for server context",
		},
		{
			name: "SDS and inline certificates mixed",
			bad: withServerTLS(func() *tlsv3.CommonTlsContext {
				ct := mtls()
				ct.TlsCertificates = []*tlsv3.TlsCertificate{tlsCert(goodPair.cert, goodPair.key)}
				return ct
			}, cert, ca),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath,
			msg:  "SDS and non-SDS TLS certificates may not be mixed in server contexts",
		},
		{
			name: "client context with two certificates",
			bad: withClientTLS(func() *tlsv3.CommonTlsContext {
				ct := mtls()
				ct.TlsCertificateSdsSecretConfigs = append(ct.TlsCertificateSdsSecretConfigs, sdsRef("cert"))
				return ct
			}, cert, ca),
			good:    withClientTLS(mtls, cert, ca),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context",
			msg:  "Multiple TLS certificates are not supported for client contexts",
		},
		{
			name:    "SAN matchers when the combined context has no CA",
			bad:     withClientTLS(mtls, cert, func() *tlsv3.Secret { return caSecret("ca", nil) }),
			good:    withClientTLS(mtls, cert, ca),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context.combined_validation_context",
			msg:  "SAN-based verification of peer certificates without trusted CA is insecure and not allowed",
		},
		{
			name: "SAN matchers in an inline context without CA",
			bad: withClientTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
					ValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatcher("spiffe://x")},
				}}
			}),
			good: withClientTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
					ValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatcher("spiffe://x"),
						TrustedCa: inlineBytes(goodPair.cert)},
				}}
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context.validation_context",
			msg:  "SAN-based verification of peer certificates without trusted CA",
		},
		{
			name: "CRL without CA",
			bad: withClientTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
					ValidationContext: &tlsv3.CertificateValidationContext{Crl: inlineBytes([]byte("crl"))},
				}}
			}),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context.validation_context",
			msg:  "Failed to load CRL from <inline> without trusted CA",
		},
		{
			name: "client context that verifies nothing",
			bad: withClientTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("cert")}}
			}, cert),
			good:    withClientTLS(mtls, cert, ca),
			typeURL: resource.ClusterType, resName: "c",
			path: "transport_socket.typed_config.common_tls_context",
			msg:  "no validation context: the upstream's certificate is not verified", warning: true,
		},
		{
			name:    "SDS secret not in the push",
			bad:     withServerTLS(mtls, ca),
			good:    withServerTLS(mtls, cert, ca),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath + ".tls_certificate_sds_secret_configs[0]",
			msg:  `SDS secret "cert" is not in this push`,
		},
		{
			name:    "SDS secret of the wrong kind",
			bad:     withServerTLS(mtls, cert, func() *tlsv3.Secret { return certSecret("ca", goodPair) }),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath + ".combined_validation_context.validation_context_sds_secret_config",
			msg:  `secret "ca" holds a tls_certificate but is referenced as a validation_context`,
		},
		{
			name: "SDS reference without a config source",
			bad: withServerTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "cert"}}}
			}, cert),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath + ".tls_certificate_sds_secret_configs[0]",
			msg:  `secret "cert" has no sds_config`, warning: true,
		},
		{
			name: "inline certificate that is not PEM",
			bad: withServerTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{tlsCert([]byte("not a certificate"), goodPair.key)}}
			}),
			good: withServerTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{tlsCert(goodPair.cert, goodPair.key)}}
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath + ".tls_certificates[0].certificate_chain",
			msg:  "Failed to load certificate chain from <inline>",
		},
		{
			name: "inline RSA key under 2048 bits",
			bad: withServerTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{tlsCert(smallRSA.cert, smallRSA.key)}}
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath + ".tls_certificates[0].certificate_chain",
			msg:  "Failed to load certificate chain from <inline>, only RSA certificates with 2048-bit or larger keys are supported",
		},
		{
			name: "inline ECDSA certificate on an unsupported curve",
			bad: withServerTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{tlsCert(p224.cert, p224.key)}}
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath + ".tls_certificates[0].certificate_chain",
			msg:  "only P-256, P-384 or P-521 ECDSA certificates are supported",
		},
		{
			name: "inline key that does not match the certificate",
			bad: withServerTLS(func() *tlsv3.CommonTlsContext {
				return &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{tlsCert(goodPair.cert, other.key)}}
			}),
			typeURL: resource.ListenerType, resName: "in",
			path: serverTLSPath + ".tls_certificates[0].private_key",
			msg:  "Failed to load private key from <inline>, Cause: tls: private key does not match public key",
		},
		{
			name:    "certificate secret that is not PEM",
			bad:     withSecrets(func() *tlsv3.Secret { return certSecret("cert", pemPair{cert: []byte("x"), key: goodPair.key}) }),
			good:    withSecrets(cert),
			typeURL: resource.SecretType, resName: "cert",
			path: "tls_certificate.certificate_chain",
			msg:  "Failed to load certificate chain from <inline>",
		},
		{
			name:    "CA secret that is not PEM",
			bad:     withSecrets(cert, func() *tlsv3.Secret { return caSecret("ca", []byte("x")) }),
			good:    withSecrets(cert, ca),
			typeURL: resource.SecretType, resName: "ca",
			path: "validation_context.trusted_ca",
			msg:  "Failed to load trusted CA certificates from <inline>",
		},
		{
			name:    "duplicate secret names",
			bad:     withSecrets(cert, cert),
			good:    withSecrets(cert),
			typeURL: resource.SecretType, resName: "cert",
			path: "",
			msg:  `duplicate Secret "cert" in one push`,
		},
	})
}
