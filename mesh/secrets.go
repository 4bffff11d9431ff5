package mesh

// Names of the TLS material a proxy asks for, shared by translate (which
// refers to them from listeners and clusters) and the SDS server (which
// serves them): the one place both read.
//
// Every proxy asks for its own certificate under one name. The SDS server
// answers each stream with the certificate of the identity that stream
// authenticated as, so a cluster or listener naming the certificate is the
// same for every proxy and is shared between them like the rest of a view.
const (
	// SDSCertificateSecret is the SDS secret holding the proxy's own
	// workload certificate and key (a TlsCertificate whose URI SAN is the
	// proxy's Identity.SPIFFE).
	SDSCertificateSecret = "weft-workload-certificate"
	// SDSTrustBundleSecret is the SDS secret holding the trust bundle (a
	// CertificateValidationContext with the anchors as trusted_ca).
	SDSTrustBundleSecret = "weft-trust-bundle"
	// GRPCCertificateProviderInstance is the certificate provider instance
	// a proxyless grpc-go client's bootstrap must define (its
	// certificate_providers key): grpc-go does not consume SDS and reads
	// both its certificate and the bundle from that provider (gRFC A29).
	GRPCCertificateProviderInstance = "weft"
)
