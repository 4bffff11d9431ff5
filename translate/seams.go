package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
)

// This file holds the places where identity (mTLS) and authorization plug
// in. They are deliberately not wired yet.

func routerConfig() *routerv3.Router { return &routerv3.Router{} }

// inboundHTTPFilters is the HTTP filter chain in front of the local app.
// Authorization goes here: an RBAC (or ext_authz) filter inserted before the
// router, fed by the peer identity the mTLS handshake established. The
// router must stay last.
func inboundHTTPFilters() []*hcmv3.HttpFilter {
	// TODO(authorization): insert the authorization filter before the
	// router once server policies exist in the model.
	return []*hcmv3.HttpFilter{routerFilter()}
}

// SDS secret names, shared with the sds package: one certificate per
// workload identity and one trust bundle per trust domain.
func identitySecretName(id mesh.Identity, trustDomain string) string {
	return "identity|" + id.SPIFFE(trustDomain)
}

func trustBundleSecretName(trustDomain string) string { return "trust-bundle|" + trustDomain }

// inboundTLSContext is the DownstreamTlsContext an inbound TLS filter chain
// will carry: the pod's own certificate and the trust bundle, both by SDS
// name over ADS, client certificates required and checked against the
// mesh's trust domain.
//
// TODO(identity): not attached to any chain yet. Wiring it needs the sds
// package to serve these two secret names for the proxy's identity; then the
// inbound listener gains, per port, a chain matching transport_protocol
// "tls" with this context and the HTTP/TCP chains below it, and outbound
// clusters gain the matching UpstreamTlsContext (SAN = the destination
// endpoints' identities from EndpointMetadataKey).
func inboundTLSContext(id mesh.Identity, trustDomain string) *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{
				Name:      identitySecretName(id, trustDomain),
				SdsConfig: adsConfigSource(),
			}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_URI,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{
								Prefix: "spiffe://" + trustDomain + "/",
							}},
						}},
					},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{
						Name:      trustBundleSecretName(trustDomain),
						SdsConfig: adsConfigSource(),
					},
				},
			},
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
	}
}

// tlsTransportSocket wraps a TLS context for a filter chain.
func tlsTransportSocket(ctx *tlsv3.DownstreamTlsContext) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}
