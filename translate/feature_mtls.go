package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// mTLS on every meshed hop. It is off entirely when Options.TrustDomain is
// empty: neither side adds anything, and the output is exactly what it is
// without the feature.
//
// The certificate and the trust bundle come by SDS for sidecars, under the
// names of mesh/secrets.go: one name for every proxy's own certificate, so
// clusters and listeners stay shared (the SDS server answers each stream
// with its own identity's certificate). grpc-go does not consume SDS
// (check/grpc.go): proxyless clients get certificate provider instances
// instead, mesh.GRPCCertificateProviderInstance from their bootstrap.

// mtlsOrigination makes a cluster to a meshed service originate mTLS:
// present the proxy's certificate, verify the server's chain against the
// bundle and its URI SAN against the SPIFFE IDs of the ServiceAccounts
// backing the service. A service with an endpoint that is not a meshed pod
// stays plaintext as a whole (see mtlsUpstream).
var mtlsOrigination = feature{
	name:             "weft.mtls.origination",
	on:               onOutboundCluster,
	reads:            InputsOf(InputService, InputEndpointIdentities),
	byClientKind:     true,
	needsTrustDomain: true,
	transportSocket:  mtlsUpstream,
}

// mtlsTermination makes the inbound side terminate mTLS on every port,
// requiring a client certificate from the bundle; in strict mode the port
// accepts nothing else. A proxyless grpc-go server cannot have both on one
// port: it terminates mTLS only in strict mode (grpcServerListener).
var mtlsTermination = feature{
	name:             "weft.mtls.termination",
	on:               onInboundChain,
	reads:            InputsOf(InputProxy),
	needsTrustDomain: true,
	inboundTLS:       mtlsDownstream,
}

// mtlsUpstream is the client side. A service is mTLS when every endpoint
// is a meshed pod (mesh.Peers): a cluster has one transport socket for
// every endpoint, and TLS to a pod without a sidecar fails. A mixed
// service (a rollout half done) stays plaintext, which a strict server
// refuses: finish meshing a service's pods before making them strict.
// Envoy could choose TLS per endpoint (transport_socket_matches on
// endpoint metadata) but grpc-go refuses a cluster with
// transport_socket_matches, and one rule for both kinds keeps what a
// client does predictable.
//
// SNI is the service's FQDN: a DNS name (the cluster name is not one) that
// says which service was meant. The server does not route on it; the
// identity checked is the SAN.
func mtlsUpstream(in featureInputs) *corev3.TransportSocket {
	peers := in.service.peers
	if in.trustDomain == "" || in.service.svc == nil || !peers.Meshed || len(peers.Identities) == 0 {
		return nil
	}
	ids := make([]string, len(peers.Identities))
	for i, id := range peers.Identities {
		ids[i] = id.SPIFFE(in.trustDomain)
	}
	var common *tlsv3.CommonTlsContext
	if in.kind == proxy.GRPC {
		// grpc-go reads SAN matchers only from the deprecated field and
		// ignores the typed one (check/grpc.go).
		sans := make([]*matcherv3.StringMatcher, len(ids))
		for i, id := range ids {
			sans[i] = exactString(id)
		}
		common = &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: grpcProvider(),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: grpcProvider(),
				MatchSubjectAltNames:          sans,
			}},
		}
	} else {
		sans := make([]*tlsv3.SubjectAltNameMatcher, len(ids))
		for i, id := range ids {
			sans[i] = &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: exactString(id)}
		}
		common = sdsCommonTLS(&tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans})
		// No alpn_protocols: Envoy then offers the protocol of the
		// connection pool that opens the connection (h2 or http/1.1,
		// conn_pool_base.cc wrapTransportSocketOptions), which is what the
		// server's HTTP TLS chain matches on (inboundChains). A fixed list
		// here would be wrong for clusters that follow the downstream's
		// protocol.
	}
	return tlsSocket(&tlsv3.UpstreamTlsContext{
		CommonTlsContext: common,
		Sni:              in.service.svc.Key.FQDN(in.service.domain),
	})
}

// mtlsDownstream is the server side: any client certificate that chains to
// the bundle and names an identity of this trust domain. Who may call
// what is authorization's business, not the handshake's.
//
// A proxyless grpc-go server reads its certificate and the bundle from the
// certificate provider instance of its bootstrap, as its clients do, and
// cannot check the client's SAN: grpc-go refuses match_subject_alt_names
// on the server side ("not supported on the server",
// securityConfigFromCommonTLSContext), so any certificate from the bundle
// is accepted there.
func mtlsDownstream(in featureInputs) inboundTLS {
	if in.trustDomain == "" {
		return inboundTLS{}
	}
	var common *tlsv3.CommonTlsContext
	if in.kind == proxy.GRPC {
		common = &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: grpcProvider(),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: grpcProvider(),
			}},
		}
	} else {
		common = sdsCommonTLS(&tlsv3.CertificateValidationContext{
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{
					Prefix: mesh.SPIFFEPrefix(in.trustDomain),
				}},
			}},
		})
		// Offered so that HTTP clients negotiate what inboundChains sends
		// to the HTTP connection manager. grpc-go negotiates h2 itself.
		common.AlpnProtocols = tlsHTTPALPN
	}
	return inboundTLS{
		socket: tlsSocket(&tlsv3.DownstreamTlsContext{
			CommonTlsContext:         common,
			RequireClientCertificate: wrapperspb.Bool(true),
		}),
		strict: in.mode == mesh.MTLSStrict,
	}
}

// sdsCommonTLS presents the proxy's certificate and verifies the peer
// against the bundle, both by SDS over ADS, plus the SAN matchers in
// sans: Envoy combines the two validation contexts, so the SAN check has
// the bundle as its trusted CA.
func sdsCommonTLS(sans *tlsv3.CertificateValidationContext) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: mesh.SDSCertificateSecret, SdsConfig: adsConfigSource()}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         sans,
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: mesh.SDSTrustBundleSecret, SdsConfig: adsConfigSource()},
			},
		},
	}
}

func grpcProvider() *tlsv3.CertificateProviderPluginInstance {
	return &tlsv3.CertificateProviderPluginInstance{InstanceName: mesh.GRPCCertificateProviderInstance}
}

func exactString(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func tlsSocket(ctx proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}
