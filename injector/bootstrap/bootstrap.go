// Package bootstrap writes the start-up configuration of a meshed pod's xDS client: the Envoy
// v3 bootstrap of an injected sidecar (EnvoyYAML, Envoy) and the xDS bootstrap JSON of a
// proxyless grpc-go application (GRPC).
//
// What Envoy is given here is only what it needs before it can talk to the control plane:
// the ADS stream, the admin interface on loopback, the readiness listener kubelet probes and
// the stats configuration. Everything else (listeners, routes, clusters, endpoints, secrets)
// arrives over ADS. The node is not in the bootstrap: the injected container passes
// `--service-node <pod>.<namespace>` and `--service-cluster <namespace>`, which Envoy writes
// over node.id and node.cluster (LocalInfoImpl's buildLocalNode,
// source/common/local_info/local_info_impl.h), so one bootstrap text serves every pod of a
// workload and the pod's name comes from the downward API.
package bootstrap

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	grpccredv3 "github.com/envoyproxy/go-control-plane/envoy/config/grpc_credential/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/sds/tokenauth"
)

// Config says where the control plane is and how a pod proves itself to it.
type Config struct {
	// ControlPlaneAddress is the xDS server, host:port.
	ControlPlaneAddress string
	// ServerName is the TLS name of the xDS server's certificate; "" means plaintext xDS
	// (the control plane without --identity).
	ServerName string
	// TrustBundlePEM holds the roots the xDS server's certificate must chain to (Envoy
	// gets them inline). Required with ServerName.
	TrustBundlePEM []byte
	// TokenPath is the projected ServiceAccount token sent on every xDS stream; "" sends
	// none. It is read again for every stream, so a token kubelet rotated is the one sent
	// after a reconnect.
	TokenPath string
	// AdminPort is Envoy's admin port on 127.0.0.1; 0 means mesh.ProxyAdminPort.
	AdminPort uint32

	// ClusterDomain is the services' DNS suffix, which the stats tag rules must know to find
	// where a cluster name ends; "" means "cluster.local".
	ClusterDomain string
	// TrustBundleFile is where the bundle is mounted in the pod, for grpc-go, whose TLS
	// channel credentials read roots from a file. Required by GRPC with ServerName.
	TrustBundleFile string
	// IdentityDir holds the proxyless pod's certificate files (cert.pem, key.pem,
	// bundle.pem) read by grpc-go's certificate provider; "" means DefaultIdentityDir.
	IdentityDir string
}

// Names that appear in the bootstrap and, for some, in what kubelet or the control plane
// see.
const (
	// HealthListenerName serves /ready and /stats/prometheus on mesh.ProxyHealthPort.
	HealthListenerName = "weft-health"
	// AdminClusterName is the static cluster to the admin interface on 127.0.0.1, the one
	// upstream of the health listener.
	AdminClusterName = "weft-admin"
	// XDSClusterName is the static cluster to the control plane, used for plaintext xDS
	// only: TLS xDS goes through Envoy's Google gRPC client, which names no cluster.
	XDSClusterName = "weft-xds"
	// ReadyPath is kubelet's readiness path, forwarded to the admin interface.
	ReadyPath = "/ready"
	// PrometheusStatsPath is Envoy's admin endpoint of its stats in Prometheus' text
	// format, forwarded for a Prometheus that scrapes the proxies (the only other admin
	// path the health listener forwards; it only reads).
	PrometheusStatsPath = "/stats/prometheus"
	// xdsStatPrefix roots the Google gRPC client's stats of the xDS stream.
	xdsStatPrefix = "weft_xds"
	// fileBasedMetadata is Envoy's call credentials plugin that reads a header value
	// from a file for every call (source/extensions/grpc_credentials/file_based_metadata).
	fileBasedMetadata = "envoy.grpc_credentials.file_based_metadata"
	// sslTargetNameOverride makes the Google gRPC client verify (and send as SNI) a name
	// other than the target's host.
	sslTargetNameOverride = "grpc.ssl_target_name_override"
)

// The xDS connection's keepalive. A control plane host that dies, or a connection the
// kernel drops on its side (TCP_USER_TIMEOUT), sends the sidecar no reset: without pings
// of its own an Envoy waiting on an idle ADS stream would wait for ever and never get
// config again. 30 s keeps 10,000 mostly idle streams cheap (333 pings/s at the control
// plane, whose policy accepts pings 10 s apart: xds/server.go) and finds a dead
// connection within a minute.
const (
	XDSKeepaliveInterval = 30 * time.Second
	XDSKeepaliveTimeout  = 20 * time.Second
)

const (
	// DefaultIdentityDir is where a proxyless pod's certificate files are mounted.
	DefaultIdentityDir = "/var/run/weft/identity"
)

// Envoy builds the sidecar's bootstrap. It refuses a Config it cannot make a working
// bootstrap from, naming the field.
func Envoy(c Config) (*bootstrapv3.Bootstrap, error) {
	svc, err := ControlPlaneService(c)
	if err != nil {
		return nil, err
	}
	adminPort := c.adminPort()
	b := &bootstrapv3.Bootstrap{
		Admin: &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", adminPort)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{healthListener()},
			Clusters:  []*clusterv3.Cluster{staticCluster(AdminClusterName, "127.0.0.1", adminPort, false)},
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: adsSource(),
			CdsConfig: adsSource(),
		},
		StatsConfig:        statsConfig(c.clusterDomain()),
		StatsFlushInterval: durationpb.New(StatsFlushInterval),
	}
	if c.ServerName == "" {
		host, port, _ := splitHostPort(c.ControlPlaneAddress)
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, staticCluster(XDSClusterName, host, port, true))
	}
	b.DynamicResources.AdsConfig.GrpcServices = []*corev3.GrpcService{svc}
	b.StatsSinks = statsSinks(svc)
	return b, nil
}

// ControlPlaneService is how a sidecar with this bootstrap reaches the
// control plane over gRPC: the ADS channel's service, which other gRPC
// services of the control plane (the access log service of `weft tap`, the
// metrics service of the stats sink)
// reuse, with its TLS and token.
func ControlPlaneService(c Config) (*corev3.GrpcService, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.ServerName != "" {
		if err := checkBundle(c.TrustBundlePEM); err != nil {
			return nil, fmt.Errorf("bootstrap: invalid Config: TrustBundlePEM: %w", err)
		}
	}
	return c.controlPlaneService()
}

func (c Config) controlPlaneService() (*corev3.GrpcService, error) {
	if c.ServerName == "" {
		return &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName}},
		}, nil
	}
	g, err := c.googleGRPC()
	if err != nil {
		return nil, err
	}
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: g}}, nil
}

// EnvoyYAML is Envoy(c) as YAML for `envoy --config-yaml`: Envoy's field names, keys
// sorted, so that the same Config gives the same bytes (the injector's annotations and
// goldens compare them).
func EnvoyYAML(c Config) ([]byte, error) {
	b, err := Envoy(c)
	if err != nil {
		return nil, err
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: encoding the Envoy bootstrap: %w", err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: encoding the Envoy bootstrap as YAML: %w", err)
	}
	return y, nil
}

func (c Config) adminPort() uint32 {
	if c.AdminPort == 0 {
		return mesh.ProxyAdminPort
	}
	return c.AdminPort
}

func (c Config) clusterDomain() string {
	if c.ClusterDomain == "" {
		return "cluster.local"
	}
	return c.ClusterDomain
}

func (c Config) identityDir() string {
	if c.IdentityDir == "" {
		return DefaultIdentityDir
	}
	return c.IdentityDir
}

// validate checks what both bootstraps need; Envoy also needs TrustBundlePEM, grpc-go
// TrustBundleFile.
func (c Config) validate() error {
	var errs []error
	if _, _, err := splitHostPort(c.ControlPlaneAddress); err != nil {
		errs = append(errs, fmt.Errorf("ControlPlaneAddress: %w", err))
	}
	if c.AdminPort > 65535 {
		errs = append(errs, fmt.Errorf("AdminPort: %d is not a port number", c.AdminPort))
	}
	for _, p := range []uint32{mesh.ProxyInboundPort, mesh.ProxyOutboundPort, mesh.ProxyHealthPort} {
		if c.AdminPort == p {
			errs = append(errs, fmt.Errorf("AdminPort: %d is another proxy port", p))
		}
	}
	if c.TokenPath != "" && !path.IsAbs(c.TokenPath) {
		errs = append(errs, fmt.Errorf("TokenPath: %q is not an absolute path", c.TokenPath))
	}
	if c.ServerName == "" && c.TokenPath != "" {
		// gRPC refuses to send call credentials over a channel without transport security.
		errs = append(errs, errors.New("TokenPath: a token needs TLS to the control plane (ServerName is empty)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bootstrap: invalid Config: %w", err)
	}
	return nil
}

// checkBundle accepts PEM holding at least one certificate and nothing else.
func checkBundle(pemBytes []byte) error {
	rest := bytes.TrimSpace(pemBytes)
	n := 0
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return fmt.Errorf("bytes after certificate %d are not PEM", n)
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("block %d is a %q, not a CERTIFICATE", n+1, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
		rest = bytes.TrimSpace(rest)
	}
	if n == 0 {
		return errors.New("no certificate")
	}
	return nil
}

func splitHostPort(addr string) (string, uint32, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q has no host", addr)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("%q: port %q is not a port number", addr, portStr)
	}
	return host, uint32(port), nil
}

// googleGRPC is the xDS channel with TLS against the bundle and, with a token, the
// file-based-metadata plugin, which reads the token file for every call (docs/identity.md
// says why this and not initial_metadata).
func (c Config) googleGRPC() (*corev3.GrpcService_GoogleGrpc, error) {
	g := &corev3.GrpcService_GoogleGrpc{
		TargetUri:  c.ControlPlaneAddress,
		StatPrefix: xdsStatPrefix,
		ChannelCredentials: &corev3.GrpcService_GoogleGrpc_ChannelCredentials{
			CredentialSpecifier: &corev3.GrpcService_GoogleGrpc_ChannelCredentials_SslCredentials{
				SslCredentials: &corev3.GrpcService_GoogleGrpc_SslCredentials{
					RootCerts: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(c.TrustBundlePEM)}},
				},
			},
		},
	}
	intArg := func(v int64) *corev3.GrpcService_GoogleGrpc_ChannelArgs_Value {
		return &corev3.GrpcService_GoogleGrpc_ChannelArgs_Value{ValueSpecifier: &corev3.GrpcService_GoogleGrpc_ChannelArgs_Value_IntValue{IntValue: v}}
	}
	// gRPC core's keepalive (doc/keepalive.md of grpc/grpc): pings on the xDS channel, and
	// max_pings_without_data 0 so they go on while the stream is idle (its default, 2,
	// stops pinging an idle ADS stream after two).
	g.ChannelArgs = &corev3.GrpcService_GoogleGrpc_ChannelArgs{Args: map[string]*corev3.GrpcService_GoogleGrpc_ChannelArgs_Value{
		"grpc.keepalive_time_ms":            intArg(XDSKeepaliveInterval.Milliseconds()),
		"grpc.keepalive_timeout_ms":         intArg(XDSKeepaliveTimeout.Milliseconds()),
		"grpc.http2.max_pings_without_data": intArg(0),
	}}
	if host, _, _ := splitHostPort(c.ControlPlaneAddress); host != c.ServerName {
		g.ChannelArgs.Args[sslTargetNameOverride] = &corev3.GrpcService_GoogleGrpc_ChannelArgs_Value{ValueSpecifier: &corev3.GrpcService_GoogleGrpc_ChannelArgs_Value_StringValue{StringValue: c.ServerName}}
	}
	if c.TokenPath == "" {
		return g, nil
	}
	plugin, err := anypb.New(&grpccredv3.FileBasedMetadataConfig{
		SecretData:   &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: c.TokenPath}},
		HeaderKey:    tokenauth.Header,
		HeaderPrefix: "Bearer ",
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: packing the token plugin's config: %w", err)
	}
	// The default credentials factory skips plugin call credentials
	// (CredsUtility::callCredentials in source/common/grpc/google_grpc_creds_impl.cc): only
	// the plugin's own factory, named here, installs it.
	g.CredentialsFactoryName = fileBasedMetadata
	g.CallCredentials = []*corev3.GrpcService_GoogleGrpc_CallCredentials{{
		CredentialSpecifier: &corev3.GrpcService_GoogleGrpc_CallCredentials_FromPlugin{
			FromPlugin: &corev3.GrpcService_GoogleGrpc_CallCredentials_MetadataCredentialsFromPlugin{
				Name:       fileBasedMetadata,
				ConfigType: &corev3.GrpcService_GoogleGrpc_CallCredentials_MetadataCredentialsFromPlugin_TypedConfig{TypedConfig: plugin},
			},
		},
	}}
	return g, nil
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// staticCluster is a cluster of one address; http2 for a gRPC upstream. A hostname (the
// control plane's Service name) is resolved by DNS, an IP is taken as is.
func staticCluster(name, host string, port uint32, http2 bool) *clusterv3.Cluster {
	kind := clusterv3.Cluster_STATIC
	if net.ParseIP(host) == nil {
		kind = clusterv3.Cluster_STRICT_DNS
	}
	cl := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: kind},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}},
			}}}},
		},
	}
	if http2 {
		cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
						ConnectionKeepalive: &corev3.KeepaliveSettings{
							Interval: durationpb.New(XDSKeepaliveInterval),
							Timeout:  durationpb.New(XDSKeepaliveTimeout),
						},
					}},
				}},
			}),
		}
	}
	return cl
}

// healthListener lets kubelet reach Envoy's /ready, and a Prometheus Envoy's
// /stats/prometheus, on the pod IP without exposing the rest of the admin interface
// (which can change the proxy): exactly GET /ready and GET /stats/prometheus go to the
// admin cluster, everything else is a 404 answered by Envoy itself.
func healthListener() *listenerv3.Listener {
	routes := &routev3.RouteConfiguration{
		Name: HealthListenerName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    HealthListenerName,
			Domains: []string{"*"},
			Routes: []*routev3.Route{
				adminGet(ReadyPath),
				adminGet(PrometheusStatsPath),
				{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
				},
			},
		}},
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "weft_health",
		CodecType:      hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routes},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{
		Name:    HealthListenerName,
		Address: socketAddress("0.0.0.0", mesh.ProxyHealthPort),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
		}}}},
	}
}

// adminGet routes exactly GET path to the admin cluster.
func adminGet(path string) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Path{Path: path},
			Headers: []*routev3.HeaderMatcher{{
				Name:                 ":method",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("GET")},
			}},
		},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: AdminClusterName},
		}},
	}
}

// mustAny packs a message built here from constants; it cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("bootstrap: packing %T: %v", m, err))
	}
	return a
}

// GRPC is the xDS bootstrap JSON of a proxyless grpc-go application whose node id is
// nodeID ("<pod>.<namespace>", see package proxy): the control plane over TLS with the
// token as gRFC A97 jwt_token_file call credentials (honoured by grpc-go when
// GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true) or plaintext, the certificate provider
// instance mesh.GRPCCertificateProviderInstance its clusters and listeners name, reading
// the files in IdentityDir, and the server listener name template.
func GRPC(c Config, nodeID string) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	_, ns, err := proxy.ParseNodeID(nodeID)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	type creds struct {
		Type   string `json:"type"`
		Config any    `json:"config,omitempty"`
	}
	server := struct {
		ServerURI      string   `json:"server_uri"`
		ChannelCreds   []creds  `json:"channel_creds"`
		CallCreds      []creds  `json:"call_creds,omitempty"`
		ServerFeatures []string `json:"server_features"`
	}{
		ServerURI:      c.ControlPlaneAddress,
		ChannelCreds:   []creds{{Type: "insecure"}},
		ServerFeatures: []string{"xds_v3"},
	}
	if c.ServerName != "" {
		// grpc-go verifies the server's certificate against server_uri's host and has no
		// bootstrap field to name another.
		if host, _, _ := splitHostPort(c.ControlPlaneAddress); host != c.ServerName {
			return nil, fmt.Errorf("bootstrap: invalid Config: ServerName %q: grpc-go checks the certificate against the host of ControlPlaneAddress %q", c.ServerName, c.ControlPlaneAddress)
		}
		if !path.IsAbs(c.TrustBundleFile) {
			return nil, fmt.Errorf("bootstrap: invalid Config: TrustBundleFile: %q is not an absolute path (grpc-go reads the roots from a file)", c.TrustBundleFile)
		}
		server.ChannelCreds = []creds{{Type: "tls", Config: map[string]string{"ca_certificate_file": c.TrustBundleFile}}}
		if c.TokenPath != "" {
			server.CallCreds = []creds{{Type: "jwt_token_file", Config: map[string]string{"jwt_token_file": c.TokenPath}}}
		}
	}
	dir := c.identityDir()
	doc := map[string]any{
		"xds_servers": []any{server},
		"node": map[string]any{
			"id":      nodeID,
			"cluster": ns,
			// grpc-go sends the node's locality with every EDS request; an empty one is
			// fine, but it must be an object.
			"locality": map[string]string{},
		},
		"certificate_providers": map[string]any{
			mesh.GRPCCertificateProviderInstance: map[string]any{
				"plugin_name": "file_watcher",
				"config": map[string]string{
					"certificate_file":    path.Join(dir, "cert.pem"),
					"private_key_file":    path.Join(dir, "key.pem"),
					"ca_certificate_file": path.Join(dir, "bundle.pem"),
					"refresh_interval":    "60s",
				},
			},
		},
		"server_listener_resource_name_template": proxy.GRPCServerListenerTemplate,
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bootstrap: encoding the grpc-go bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}
