package proxyconfig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/translate"
)

// handBuiltGoldens are the cases built here rather than read from translate.
var handBuiltGoldens = []string{"hand-built"}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func lbEndpoint(ip string, port uint32, hs corev3.HealthStatus, meta map[string]any) *endpointv3.LbEndpoint {
	ep := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sockAddr(ip, port)}},
		HealthStatus:   hs,
	}
	if meta != nil {
		s, err := structpb.NewStruct(meta)
		if err != nil {
			panic(err)
		}
		ep.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{EndpointMetadataKey: s}}
	}
	return ep
}

// keyPair is a certificate for spiffe://cluster.local/ns/demo/sa/web
// expiring at a fixed time (the signature differs per run; what Render
// prints does not) and its key.
func keyPair(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/demo/sa/web")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "web"},
		URIs:         []*url.URL{spiffe},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
}

// handBuilt covers what translate does not emit (yet): TLS, other filters,
// redirects, every header matcher, defaults left unset, odd clusters and
// endpoints, secrets, and entries of the wrong type.
func handBuilt(t testing.TB) (map[string][]types.Resource, []byte) {
	certPEM, keyPEM := keyPair(t)
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "in",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads, RouteConfigName: "web"}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &faultv3.HTTPFault{})}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
		},
	}
	split := &tcpproxyv3.TcpProxy{StatPrefix: "db", ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{
		Clusters: []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: "db-a", Weight: 1}, {Name: "db-b", Weight: 2}},
	}}}
	mtls := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "web-cert", SdsConfig: ads}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "root-ca", SdsConfig: ads},
			},
		},
	}
	listeners := []types.Resource{
		&listenerv3.Listener{
			Name:                "secure",
			Address:             sockAddr("0.0.0.0", 4143),
			AdditionalAddresses: []*listenerv3.AdditionalAddress{{Address: sockAddr("::", 4143)}},
			FilterChains: []*listenerv3.FilterChain{
				{
					FilterChainMatch: &listenerv3.FilterChainMatch{
						DestinationPort:      wrapperspb.UInt32(5432),
						PrefixRanges:         []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(24)}},
						SourcePrefixRanges:   []*corev3.CidrRange{{AddressPrefix: "10.1.0.0", PrefixLen: wrapperspb.UInt32(16)}},
						SourcePorts:          []uint32{1000, 1001},
						SourceType:           listenerv3.FilterChainMatch_EXTERNAL,
						TransportProtocol:    "tls",
						ApplicationProtocols: []string{"istio-peer-exchange", "h2"},
						ServerNames:          []string{"db.data.svc.cluster.local"},
					},
					TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, mtls)}},
					Filters: []*listenerv3.Filter{
						{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &netrbacv3.RBAC{StatPrefix: "db"})}},
						{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, split)}},
					},
				},
				{
					FilterChainMatch: &listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "fd00::1", PrefixLen: wrapperspb.UInt32(128)}}, DestinationPort: wrapperspb.UInt32(80)},
					Filters:          []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}},
				},
				{
					FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9)},
					Filters: []*listenerv3.Filter{{Name: "example.not_linked", ConfigType: &listenerv3.Filter_TypedConfig{
						TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/example.NotLinked"},
					}}},
				},
				{},
			},
		},
		&listenerv3.Listener{Name: "empty", Address: sockAddr("127.0.0.1", 15000)},
		&clusterv3.Cluster{Name: "a cluster among the listeners"},
	}

	vhRetry := &routev3.RetryPolicy{RetryOn: "connect-failure"}
	routes := []types.Resource{
		&routev3.RouteConfiguration{Name: "web", VirtualHosts: []*routev3.VirtualHost{{
			Name:        "web",
			Domains:     []string{"web", "web:80", "web.demo", "[fd00::1]:80", "[fd00::1]", "web.demo.svc", "web.demo.svc.cluster.local"},
			RetryPolicy: vhRetry,
			Routes: []*routev3.Route{
				{
					Name: "headers",
					Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"},
						CaseSensitive: wrapperspb.Bool(false),
						Headers: []*routev3.HeaderMatcher{
							{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "PUT"}},
							{Name: "x-exact", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "a"}, IgnoreCase: true}}},
							{Name: "x-prefix", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "b"}}}},
							{Name: "x-regex", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "c+"}}},
							{Name: "x-range", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 1, End: 10}}},
							{Name: "x-present", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
							{Name: "x-absent", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true},
							{Name: "x-bare"},
						},
						QueryParameters: []*routev3.QueryParameterMatcher{
							{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}},
							{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "2"}}}},
						},
						Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{},
					},
					// No timeout: Envoy's 15s. No retry policy: the virtual host's.
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
							Clusters: []*routev3.WeightedCluster_ClusterWeight{
								{Name: "web-v1", Weight: wrapperspb.UInt32(1)},
								{Name: "web-v2", Weight: wrapperspb.UInt32(2)},
							},
						}},
					}},
				},
				{
					Name:  "not one group",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `^(?:/a)|(?:/b)$`}}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"},
						Timeout:          durationpb.New(90 * time.Second),
						RetryPolicy: &routev3.RetryPolicy{
							RetryOn:              "retriable-status-codes",
							RetriableStatusCodes: []uint32{503, 500, 501, 502, 504, 429},
							PerTryTimeout:        durationpb.New(0),
							RetryBackOff:         &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(25 * time.Millisecond)},
						},
						MaxStreamDuration: &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(0)},
					}},
				},
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/old"}}, Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
					HostRedirect: "new.example", PortRedirect: 8443, SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
				}}},
				{Name: "teapot", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/tea"}}, Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418}}},
				{Name: "split of 3", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					Timeout: durationpb.New(2 * time.Hour),
					ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
						TotalWeight: wrapperspb.UInt32(1000),
						Clusters: []*routev3.WeightedCluster_ClusterWeight{
							{Name: "a", Weight: wrapperspb.UInt32(333)}, {Name: "b", Weight: wrapperspb.UInt32(667)},
						},
					}},
				}}},
			},
		}, {Name: "no routes", Domains: []string{"*"}}}},
		&routev3.RouteConfiguration{Name: "nothing"},
		nil,
	}

	lbPolicy := func(m proto.Message) *clusterv3.LoadBalancingPolicy {
		return &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
			TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "lb", TypedConfig: mustAny(t, m)},
		}}}
	}
	httpOpts := func(o *httpv3.HttpProtocolOptions) map[string]*anypb.Any {
		return map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(t, o)}
	}
	upTLS := &tlsv3.UpstreamTlsContext{Sni: "db.data.svc.cluster.local", CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "web-cert", SdsConfig: ads}},
	}}
	clusters := []types.Resource{
		&clusterv3.Cluster{
			Name:                 "dns",
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			LoadBalancingPolicy:  lbPolicy(&ringhashv3.RingHash{}),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "ignored", Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: sockAddr("api.example.com", 443), Hostname: "api.example.com",
				}}}},
			}}},
			TypedExtensionProtocolOptions: httpOpts(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_AutoConfig{AutoConfig: &httpv3.HttpProtocolOptions_AutoHttpConfig{}}}),
			TransportSocket:               &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, upTLS)}},
		},
		&clusterv3.Cluster{
			Name:                 "eds-empty",
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
			LoadBalancingPolicy:  lbPolicy(&wrrlocalityv3.WrrLocality{EndpointPickingPolicy: lbPolicy(&roundrobinv3.RoundRobin{})}),
			TypedExtensionProtocolOptions: httpOpts(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			}}}),
			CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
				{MaxConnections: wrapperspb.UInt32(100), MaxRetries: wrapperspb.UInt32(5)},
				{Priority: corev3.RoutingPriority_HIGH, RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}},
			}},
			OutlierDetection: &clusterv3.OutlierDetection{},
		},
		&clusterv3.Cluster{
			Name:                 "eds-missing",
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads, ServiceName: "eds-missing-cla"},
			ConnectTimeout:       durationpb.New(250 * time.Millisecond),
			OutlierDetection: &clusterv3.OutlierDetection{
				EnforcingConsecutive_5Xx:               wrapperspb.UInt32(50),
				EnforcingSuccessRate:                   wrapperspb.UInt32(0),
				SplitExternalLocalOriginErrors:         true,
				EnforcingFailurePercentage:             wrapperspb.UInt32(100),
				ConsecutiveLocalOriginFailure:          wrapperspb.UInt32(2),
				EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(100),
			},
		},
		&clusterv3.Cluster{
			Name:                 "web",
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
		},
	}

	webCLA := &endpointv3.ClusterLoadAssignment{ClusterName: "web", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{
			Locality:            &corev3.Locality{Region: "eu", Zone: "eu-1a", SubZone: "rack-3"},
			LoadBalancingWeight: wrapperspb.UInt32(3),
			LbEndpoints: []*endpointv3.LbEndpoint{
				lbEndpoint("10.0.0.1", 8080, corev3.HealthStatus_HEALTHY, map[string]any{"pod": "web-0", "namespace": "demo"}),
				lbEndpoint("10.0.0.2", 8080, corev3.HealthStatus_DRAINING, map[string]any{"pod": "web-1", "namespace": "demo", "terminating": true}),
			},
		},
		{
			Locality: &corev3.Locality{Zone: "eu-1b"},
			Priority: 1,
			LbEndpoints: []*endpointv3.LbEndpoint{
				lbEndpoint("fd00::2", 8080, corev3.HealthStatus_UNHEALTHY, map[string]any{"pod": "web-2"}),
			},
		},
	}}
	webCLA.Endpoints[0].LbEndpoints[1].LoadBalancingWeight = wrapperspb.UInt32(5)
	endpoints := []types.Resource{
		webCLA,
		&endpointv3.ClusterLoadAssignment{ClusterName: "eds-empty"},
	}

	secrets := []types.Resource{
		&tlsv3.Secret{Name: "web-cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: append(append([]byte{}, certPEM...), certPEM...)}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
		}}},
		&tlsv3.Secret{Name: "root-ca", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/weft/ca.pem"}},
		}}},
		&tlsv3.Secret{Name: "file-cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/certs/tls.crt"}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/certs/tls.key"}},
		}}},
		&tlsv3.Secret{Name: "hmac", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
			Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "generic-secret-value"}},
		}}},
		&tlsv3.Secret{Name: "tickets", Type: &tlsv3.Secret_SessionTicketKeys{SessionTicketKeys: &tlsv3.TlsSessionTicketKeys{
			Keys: []*corev3.DataSource{{Specifier: &corev3.DataSource_InlineString{InlineString: "ticket-key-value"}}},
		}}},
		&tlsv3.Secret{Name: "void"},
	}
	return map[string][]types.Resource{
		resourcev3.ListenerType: listeners,
		resourcev3.RouteType:    routes,
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: endpoints,
		resourcev3.SecretType:   secrets,
	}, keyPEM
}

func TestHandBuiltGolden(t *testing.T) {
	res, keyPEM := handBuilt(t)
	var out bytes.Buffer
	if err := Render(&out, res, Options{}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	for _, secret := range []string{"PRIVATE KEY", string(keyPEM[40:80]), "generic-secret-value", "ticket-key-value"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("output shows secret material %q", secret)
		}
	}
	checkGolden(t, filepath.Join("testdata", "hand-built.txt"), out.Bytes())
}

func TestSections(t *testing.T) {
	res, _ := handBuilt(t)
	tests := []struct {
		name     string
		opts     Options
		want     []string
		dontWant []string
	}{
		{"all", Options{}, []string{"LISTENERS (2)", "ROUTES (2)", "CLUSTERS (4)", "ENDPOINTS (4 clusters)", "SECRETS (6)"}, nil},
		{"routes only", Options{Sections: []Section{Routes}}, []string{"ROUTES (2)"}, []string{"LISTENERS", "CLUSTERS", "ENDPOINTS", "SECRETS"}},
		{"order is fixed", Options{Sections: []Section{Secrets, Listeners}}, []string{"LISTENERS (2)", "SECRETS (6)"}, []string{"ROUTES", "CLUSTERS"}},
		{"two domains", Options{Sections: []Section{Routes}, Domains: 2}, []string{"virtual host web: web, web.demo (+5)"}, nil},
		{"every domain", Options{Sections: []Section{Routes}, Domains: -1}, []string{"virtual host web: web, web:80, web.demo, [fd00::1]:80, [fd00::1], web.demo.svc, web.demo.svc.cluster.local"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Render(&out, res, tt.opts); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
			if tt.name == "order is fixed" && strings.Index(out.String(), "SECRETS") < strings.Index(out.String(), "LISTENERS") {
				t.Error("sections not in AllSections order")
			}
		})
	}
}

func TestRenderEmpty(t *testing.T) {
	var out bytes.Buffer
	if err := Render(&out, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	want := "LISTENERS (0)\n(none)\n\nROUTES (0)\n(none)\n\nCLUSTERS (0)\n(none)\n\nENDPOINTS (0 clusters)\n(none)\n\nSECRETS (0)\n(none)\n"
	if out.String() != want {
		t.Errorf("empty config:\n%s\nwant:\n%s", out.String(), want)
	}
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestRenderReturnsWriteErrors(t *testing.T) {
	res, _ := handBuilt(t)
	for _, after := range []int{0, 3, 20} {
		if err := Render(&failingWriter{after: after}, res, Options{}); err == nil || err.Error() != "disk full" {
			t.Errorf("writer failing after %d writes: Render returned %v, want disk full", after, err)
		}
	}
}

func TestParseSection(t *testing.T) {
	tests := []struct {
		in      string
		want    Section
		wantErr bool
	}{
		{"routes", Routes, false},
		{"Route", Routes, false},
		{" clusters ", Clusters, false},
		{"endpoint", Endpoints, false},
		{"secret", Secrets, false},
		{"listeners", Listeners, false},
		{"bogus", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ParseSection(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSection(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCompactDomains(t *testing.T) {
	all := []string{"emoji", "emoji:8080", "emoji.emojivoto", "emoji.emojivoto:8080", "emoji.emojivoto.svc", "emoji.emojivoto.svc.cluster.local", "10.96.0.5", "*"}
	tests := []struct {
		domains []string
		n       int
		want    string
	}{
		{all, 3, "emoji, emoji.emojivoto, emoji.emojivoto.svc, * (+4)"},
		{all, 1, "emoji, * (+6)"},
		{all, 10, "emoji, emoji.emojivoto, emoji.emojivoto.svc, emoji.emojivoto.svc.cluster.local, 10.96.0.5, * (+2)"},
		{[]string{"*"}, 3, "*"},
		{[]string{"a", "b"}, 3, "a, b"},
		{[]string{"[fd00::1]", "[fd00::1]:80", "fd00::1"}, 3, "[fd00::1], fd00::1 (+1)"},
		{nil, 3, ""},
		{[]string{"a:1", "b"}, -1, "a:1, b"},
	}
	for _, tt := range tests {
		if got := compactDomains(tt.domains, tt.n); got != tt.want {
			t.Errorf("compactDomains(%v, %d) = %q, want %q", tt.domains, tt.n, got, tt.want)
		}
	}
}

func TestRanges(t *testing.T) {
	tests := []struct {
		in   []uint32
		want string
	}{
		{nil, ""},
		{[]uint32{429}, "429"},
		{[]uint32{503, 500, 501, 502, 429, 500}, "429,500-503"},
		{[]uint32{1, 3, 5, 6}, "1,3,5-6"},
	}
	for _, tt := range tests {
		if got := ranges(tt.in); got != tt.want {
			t.Errorf("ranges(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnwrapRegex(t *testing.T) {
	tests := []struct{ in, want string }{
		{`^(?:/books\.json)$`, `/books\.json`},
		{`^(?:/admin/[^\n?]*)(?:\?.*)?$`, `/admin/[^\n?]*`},
		{`^(?:/a)|(?:/b)$`, `^(?:/a)|(?:/b)$`},
		{`^(?:/(a|b))$`, `/(a|b)`},
		{`^(?:/[)])$`, `/[)]`},
		{`/plain`, `/plain`},
	}
	for _, tt := range tests {
		if got := unwrapRegex(tt.in); got != tt.want {
			t.Errorf("unwrapRegex(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitAndDurations(t *testing.T) {
	if got := splitString([]weighted{{"a", 1}, {"b", 2}}, 0); got != "a 33.3% / b 66.7%" {
		t.Errorf("split = %q", got)
	}
	if got := splitString([]weighted{{"a", 90}, {"b", 10}}, 0); got != "a 90% / b 10%" {
		t.Errorf("split = %q", got)
	}
	if got := splitString([]weighted{{"a", 0}}, 0); got != "a 0%" {
		t.Errorf("split of nothing = %q", got)
	}
	for d, want := range map[time.Duration]string{
		300 * time.Millisecond: "300ms", 2 * time.Second: "2s", time.Minute: "1m", 90 * time.Second: "1m30s",
		time.Hour: "1h", time.Hour + time.Minute: "1h1m", 0: "0s",
	} {
		if got := goDuration(d); got != want {
			t.Errorf("goDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestMetadataKeyMatchesTranslate(t *testing.T) {
	if EndpointMetadataKey != translate.EndpointMetadataKey {
		t.Errorf("EndpointMetadataKey = %q, translate writes %q", EndpointMetadataKey, translate.EndpointMetadataKey)
	}
}
