package sds

import (
	"errors"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/weftmesh/weft/mesh"
)

// SDS resource names: translate names them in transport sockets and the
// xDS server serves them to a proxy only for its own identity, so both read
// them from mesh.
const (
	// WorkloadSecretName is the proxy's certificate chain and key.
	WorkloadSecretName = mesh.SDSCertificateSecret
	// BundleSecretName is the validation context: the trust anchors.
	BundleSecretName = mesh.SDSTrustBundleSecret
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
