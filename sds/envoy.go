package sds

import (
	"errors"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// SDS resource names. Transport sockets name these in their
// sds_config-backed secret references; the xDS server serves them to a
// proxy only for its own identity.
const (
	// WorkloadSecretName is the proxy's certificate chain and key.
	WorkloadSecretName = "weft-workload"
	// BundleSecretName is the validation context: the trust anchors.
	BundleSecretName = "weft-bundle"
)

// EnvoySecrets are the two SDS resources of a proxy: its leaf (with the key,
// delivered only over the TLS-protected, token-authenticated xDS stream of
// that same identity) and the bundle.
func EnvoySecrets(leaf *Leaf, bundlePEM []byte) ([]*tlsv3.Secret, error) {
	if leaf == nil || len(leaf.KeyPEM) == 0 {
		return nil, errors.New("SDS secrets: the leaf has no key (a CSR-signed leaf stays with the workload that made the key)")
	}
	if len(bundlePEM) == 0 {
		return nil, errors.New("SDS secrets: empty trust bundle")
	}
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	return []*tlsv3.Secret{
		{Name: WorkloadSecretName, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(leaf.CertChainPEM), PrivateKey: inline(leaf.KeyPEM),
		}}},
		{Name: BundleSecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(bundlePEM),
		}}},
	}, nil
}
