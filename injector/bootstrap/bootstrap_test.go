package bootstrap_test

import (
	"bytes"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpccredv3 "github.com/envoyproxy/go-control-plane/envoy/config/grpc_credential/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/telemetry/envoystats"
	"github.com/weftmesh/weft/translate/check"
)

var update = flag.Bool("update", false, "rewrite injector/bootstrap/testdata golden files")

func bundle(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./injector/bootstrap -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./injector/bootstrap -update and review the diff); got:\n%s", path, got)
	}
}

// parseEnvoyYAML reads YAML back as Envoy's --config-yaml does: YAML to JSON, then the
// proto's JSON mapping, refusing unknown fields.
func parseEnvoyYAML(t *testing.T, y []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("the YAML is not a Bootstrap: %v", err)
	}
	return b
}

func envoyCases(t *testing.T) []struct {
	name string
	cfg  bootstrap.Config
} {
	return []struct {
		name string
		cfg  bootstrap.Config
	}{
		{"envoy-tls-token", bootstrap.Config{
			ControlPlaneAddress: "weft-cp.weft-system.svc:8086", ServerName: "weft-cp.weft-system.svc",
			TrustBundlePEM: bundle(t), TokenPath: "/var/run/secrets/weft/token",
		}},
		// An address that is not the certificate's name: the name is set as a channel arg.
		{"envoy-tls-ip", bootstrap.Config{
			ControlPlaneAddress: "10.96.0.20:8086", ServerName: "weft-cp.weft-system.svc",
			TrustBundlePEM: bundle(t), TokenPath: "/var/run/secrets/weft/token", AdminPort: 9901,
			ClusterDomain: "example.org",
		}},
		{"envoy-plaintext", bootstrap.Config{ControlPlaneAddress: "weft-cp.weft-system.svc:8086"}},
	}
}

func TestEnvoyGolden(t *testing.T) {
	for _, tc := range envoyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			y, err := bootstrap.EnvoyYAML(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".yaml", y)
			again, err := bootstrap.EnvoyYAML(tc.cfg)
			if err != nil || !bytes.Equal(again, y) {
				t.Errorf("a second rendering differs (err %v)", err)
			}

			b := parseEnvoyYAML(t, y)
			if err := b.ValidateAll(); err != nil {
				t.Errorf("ValidateAll: %v", err)
			}
			// Started as the injector starts it.
			if probs := check.Bootstrap(b, "web-0.shop", "shop"); len(probs) > 0 {
				for _, p := range probs {
					t.Errorf("checker: %v", p)
				}
			}
			// Without --service-node the same bootstrap is refused: the node comes from
			// the command line, and the checker knows it.
			if probs := check.Bootstrap(b, "", ""); !slices.ContainsFunc(probs, func(p *check.Problem) bool {
				return strings.Contains(p.Msg, "node 'id' and 'cluster' are required")
			}) {
				t.Errorf("no node problem without --service-node: %v", probs)
			}
		})
	}
}

func TestEnvoyBootstrapShape(t *testing.T) {
	for _, tc := range envoyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bootstrap.Envoy(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			wantAdmin := tc.cfg.AdminPort
			if wantAdmin == 0 {
				wantAdmin = mesh.ProxyAdminPort
			}
			sa := b.GetAdmin().GetAddress().GetSocketAddress()
			if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != wantAdmin {
				t.Errorf("admin on %s:%d, want 127.0.0.1:%d", sa.GetAddress(), sa.GetPortValue(), wantAdmin)
			}
			ads := b.GetDynamicResources().GetAdsConfig()
			if ads.GetApiType().String() != "DELTA_GRPC" || ads.GetTransportApiVersion().String() != "V3" {
				t.Errorf("ads_config %v/%v, want DELTA_GRPC over V3", ads.GetApiType(), ads.GetTransportApiVersion())
			}
			if b.GetDynamicResources().GetLdsConfig().GetAds() == nil || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
				t.Error("LDS and CDS do not come from ADS")
			}
			gg := ads.GetGrpcServices()[0].GetGoogleGrpc()
			switch {
			case tc.cfg.ServerName == "":
				if gg != nil || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != bootstrap.XDSClusterName {
					t.Errorf("plaintext xDS does not go through the %s cluster", bootstrap.XDSClusterName)
				}
				// The xDS cluster pings the control plane, so a dead connection is found.
				var ka *corev3.KeepaliveSettings
				for _, c := range b.GetStaticResources().GetClusters() {
					if c.GetName() != bootstrap.XDSClusterName {
						continue
					}
					opts := &upstreamhttpv3.HttpProtocolOptions{}
					if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(opts); err != nil {
						t.Fatal(err)
					}
					ka = opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive()
				}
				if ka.GetInterval().AsDuration() != bootstrap.XDSKeepaliveInterval || ka.GetTimeout().AsDuration() != bootstrap.XDSKeepaliveTimeout {
					t.Errorf("xDS cluster keepalive %v, want every %v, %v timeout", ka, bootstrap.XDSKeepaliveInterval, bootstrap.XDSKeepaliveTimeout)
				}
			default:
				// gRPC core pings the control plane, also while the ADS stream is idle.
				args := gg.GetChannelArgs().GetArgs()
				if args["grpc.keepalive_time_ms"].GetIntValue() != bootstrap.XDSKeepaliveInterval.Milliseconds() ||
					args["grpc.keepalive_timeout_ms"].GetIntValue() != bootstrap.XDSKeepaliveTimeout.Milliseconds() ||
					args["grpc.http2.max_pings_without_data"] == nil || args["grpc.http2.max_pings_without_data"].GetIntValue() != 0 {
					t.Errorf("xDS channel args %v: want keepalive pings every %v, %v timeout, unlimited without data", args, bootstrap.XDSKeepaliveInterval, bootstrap.XDSKeepaliveTimeout)
				}
				if got := gg.GetChannelCredentials().GetSslCredentials().GetRootCerts().GetInlineString(); got != string(tc.cfg.TrustBundlePEM) {
					t.Error("root_certs are not the bundle")
				}
				plugin := gg.GetCallCredentials()[0].GetFromPlugin()
				fb := &grpccredv3.FileBasedMetadataConfig{}
				if err := plugin.GetTypedConfig().UnmarshalTo(fb); err != nil {
					t.Fatal(err)
				}
				if fb.GetSecretData().GetFilename() != tc.cfg.TokenPath || fb.GetHeaderKey() != "authorization" || fb.GetHeaderPrefix() != "Bearer " {
					t.Errorf("token plugin reads %q into %q with prefix %q", fb.GetSecretData().GetFilename(), fb.GetHeaderKey(), fb.GetHeaderPrefix())
				}
			}

			// The metrics sink streams over exactly the ADS channel (cluster, or TLS and
			// token), cumulative counters, tag labels, histogram buckets only.
			sinks := b.GetStatsSinks()
			if len(sinks) != 1 || sinks[0].GetName() != "envoy.stat_sinks.metrics_service" {
				t.Fatalf("stats_sinks %v, want one envoy.stat_sinks.metrics_service", sinks)
			}
			ms := &metricsv3.MetricsServiceConfig{}
			if err := sinks[0].GetTypedConfig().UnmarshalTo(ms); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(ms.GetGrpcService(), ads.GetGrpcServices()[0]) {
				t.Errorf("metrics sink grpc_service %v differs from ADS's %v", ms.GetGrpcService(), ads.GetGrpcServices()[0])
			}
			if ms.GetReportCountersAsDeltas().GetValue() || !ms.GetEmitTagsAsLabels() ||
				ms.GetHistogramEmitMode() != metricsv3.HistogramEmitMode_HISTOGRAM || ms.GetTransportApiVersion().String() != "V3" {
				t.Errorf("metrics sink %v: want cumulative counters, tags as labels, histograms only, V3", ms)
			}
			if got := b.GetStatsFlushInterval().AsDuration(); got != bootstrap.StatsFlushInterval {
				t.Errorf("stats_flush_interval %v, want %v", got, bootstrap.StatsFlushInterval)
			}

			// The health listener: on every address at ProxyHealthPort, GET /ready and GET
			// /stats/prometheus to the admin cluster, nothing else of the admin interface.
			ls := b.GetStaticResources().GetListeners()
			if len(ls) != 1 || ls[0].GetAddress().GetSocketAddress().GetPortValue() != mesh.ProxyHealthPort {
				t.Fatalf("static listeners %v, want one on %d", ls, mesh.ProxyHealthPort)
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			var toAdmin []*routev3.Route
			for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
				if r.GetRoute().GetCluster() == bootstrap.AdminClusterName {
					toAdmin = append(toAdmin, r)
				}
			}
			var paths []string
			for _, r := range toAdmin {
				if r.GetMatch().GetPath() == "" || len(r.GetMatch().GetHeaders()) != 1 || r.GetMatch().GetHeaders()[0].GetStringMatch().GetExact() != "GET" {
					t.Errorf("route to the admin cluster %v: want an exact path for GET only", r)
				}
				paths = append(paths, r.GetMatch().GetPath())
			}
			if !slices.Equal(paths, []string{"/ready", "/stats/prometheus"}) {
				t.Errorf("paths routed to the admin cluster: %v, want exactly /ready and /stats/prometheus", paths)
			}
		})
	}
}

func TestEnvoyRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name    string
		cfg     bootstrap.Config
		wantErr string
	}{
		{"no address", bootstrap.Config{}, "ControlPlaneAddress"},
		{"no port", bootstrap.Config{ControlPlaneAddress: "weft-cp"}, "ControlPlaneAddress"},
		{"port zero", bootstrap.Config{ControlPlaneAddress: "weft-cp:0"}, "ControlPlaneAddress"},
		{"tls without bundle", bootstrap.Config{ControlPlaneAddress: "cp:8086", ServerName: "cp"}, "TrustBundlePEM: no certificate"},
		{"bundle not PEM", bootstrap.Config{ControlPlaneAddress: "cp:8086", ServerName: "cp", TrustBundlePEM: []byte("hello")}, "TrustBundlePEM"},
		{"bundle with a key", bootstrap.Config{ControlPlaneAddress: "cp:8086", ServerName: "cp", TrustBundlePEM: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, "not a CERTIFICATE"},
		{"token without tls", bootstrap.Config{ControlPlaneAddress: "cp:8086", TokenPath: "/t"}, "TokenPath: a token needs TLS"},
		{"relative token", bootstrap.Config{ControlPlaneAddress: "cp:8086", ServerName: "cp", TrustBundlePEM: bundle(t), TokenPath: "token"}, "TokenPath"},
		{"admin on the inbound port", bootstrap.Config{ControlPlaneAddress: "cp:8086", AdminPort: mesh.ProxyInboundPort}, "AdminPort"},
		{"admin port too big", bootstrap.Config{ControlPlaneAddress: "cp:8086", AdminPort: 70000}, "AdminPort"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bootstrap.EnvoyYAML(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if _, err := bootstrap.GRPC(tc.cfg, "web-0.shop"); err == nil {
				t.Error("GRPC accepted it")
			}
			if _, err := bootstrap.ControlPlaneService(tc.cfg); err == nil {
				t.Error("ControlPlaneService accepted it")
			}
		})
	}
}

// TestControlPlaneServiceIsTheADSChannel: what other gRPC services of the
// control plane (tap's access log service) are reached by is exactly the
// ADS channel of the same bootstrap: its cluster, or its TLS and token.
func TestControlPlaneServiceIsTheADSChannel(t *testing.T) {
	for _, tc := range envoyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bootstrap.Envoy(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			svc, err := bootstrap.ControlPlaneService(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ads := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()
			if len(ads) != 1 || !proto.Equal(ads[0], svc) {
				t.Errorf("ControlPlaneService = %v, ADS uses %v", svc, ads)
			}
		})
	}
}

func TestStatTags(t *testing.T) {
	cases := []struct {
		domain, stat, wantName string
		wantTags               map[string]string
	}{
		{"cluster.local", "cluster.outbound|80|web.shop.svc.cluster.local.upstream_rq_2xx", "cluster.upstream_rq",
			map[string]string{bootstrap.TagCluster: "outbound|80|web.shop.svc.cluster.local", bootstrap.TagResponseCodeClass: "2xx"}},
		{"cluster.local", "cluster.outbound|80|web.shop.svc.cluster.local.outlier_detection.ejections_active", "cluster.outlier_detection.ejections_active",
			map[string]string{bootstrap.TagCluster: "outbound|80|web.shop.svc.cluster.local"}},
		{"example.org", "cluster.outbound|8080|api.v2.svc.example.org.upstream_rq_time", "cluster.upstream_rq_time",
			map[string]string{bootstrap.TagCluster: "outbound|8080|api.v2.svc.example.org"}},
		{"cluster.local", "cluster.inbound|8080.upstream_cx_active", "cluster.upstream_cx_active",
			map[string]string{bootstrap.TagCluster: "inbound|8080"}},
		{"cluster.local", "cluster.passthrough.upstream_cx_total", "cluster.upstream_cx_total",
			map[string]string{bootstrap.TagCluster: "passthrough"}},
		{"cluster.local", "vhost.web.shop.svc.cluster.local:80.route.GET /items.upstream_rq_5xx", "vhost.route.upstream_rq",
			map[string]string{bootstrap.TagVirtualHost: "web.shop.svc.cluster.local:80", bootstrap.TagRoute: "GET /items", bootstrap.TagResponseCodeClass: "5xx"}},
		{"cluster.local", "http.inbound.downstream_rq_4xx", "http.downstream_rq",
			map[string]string{bootstrap.TagHTTPPrefix: "inbound", bootstrap.TagResponseCodeClass: "4xx"}},
		{"cluster.local", "tcp.outbound.downstream_cx_total", "tcp.downstream_cx_total",
			map[string]string{bootstrap.TagTCPPrefix: "outbound"}},
		// The grpc_stats filter's counters (Envoy 1.40 source/common/grpc/context_impl.cc):
		// the cluster comes off like any other cluster stat.
		{"cluster.local", "cluster.outbound|50051|greeter.apps.svc.cluster.local.grpc.failure", "cluster.grpc.failure",
			map[string]string{bootstrap.TagCluster: "outbound|50051|greeter.apps.svc.cluster.local"}},
		{"cluster.local", "cluster.inbound|50051.grpc.failure", "cluster.grpc.failure",
			map[string]string{bootstrap.TagCluster: "inbound|50051"}},
		{"cluster.local", "server.live", "server.live", map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.stat, func(t *testing.T) {
			// The rules as the bootstrap carries them, not as the package lists them.
			b, err := bootstrap.Envoy(bootstrap.Config{ControlPlaneAddress: "cp:8086", ClusterDomain: tc.domain})
			if err != nil {
				t.Fatal(err)
			}
			// Applied as Envoy applies them (envoystats refuses Envoy's default tags, which
			// would cut Weft's cluster names at the first dot).
			rules, err := envoystats.NewRules(b.GetStatsConfig())
			if err != nil {
				t.Fatal(err)
			}
			name, tags := rules.Extract(tc.stat)
			got := map[string]string{}
			for _, tag := range tags {
				got[tag.Name] = tag.Value
			}
			if name != tc.wantName {
				t.Errorf("name %q, want %q", name, tc.wantName)
			}
			for k, v := range tc.wantTags {
				if got[k] != v {
					t.Errorf("tag %s = %q, want %q", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := tc.wantTags[k]; !ok {
					t.Errorf("unexpected tag %s = %q", k, got[k])
				}
			}
		})
	}
}

func TestStatsMatcherBoundsCardinality(t *testing.T) {
	b, err := bootstrap.Envoy(bootstrap.Config{ControlPlaneAddress: "cp:8086"})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := envoystats.NewRules(b.GetStatsConfig())
	if err != nil {
		t.Fatal(err)
	}
	const c = "cluster.outbound|80|web.shop.svc.cluster.local."
	cases := []struct {
		stat string
		keep bool
	}{
		{c + "upstream_rq_2xx", true},
		{c + "upstream_rq_503", false},
		{c + "upstream_rq_time", true},
		// The router's second charge of every response (codes.cc writeCategory) and each
		// listener's copy of its connection managers' classes: no golden metric reads them.
		{c + "external.upstream_rq_2xx", false},
		{c + "external.upstream_rq_time", false},
		{"cluster.inbound|8080.external.upstream_rq_5xx", false},
		{"cluster.inbound|8080.upstream_rq_5xx", true},
		{"listener.0.0.0.0_4143.http.inbound.downstream_rq_2xx", false},
		{"http.weft_health.downstream_rq_time", false},
		{"cluster.weft-admin.upstream_rq_time", false},
		{"vhost.web.shop.svc.cluster.local:80.route.GET /items.upstream_rq_time", true},
		{c + "upstream_rq_retry", true},
		// Created with every cluster, read by nothing: a series per service on every proxy.
		{c + "upstream_cx_active", false},
		{c + "outlier_detection.ejections_active", false},
		{c + "upstream_rq_total", false},
		{c + "circuit_breakers.default.rq_open", false},
		{c + "upstream_cx_destroy_local_with_active_rq", false},
		{c + "lb_zone_routing_all_directly", false},
		{"vhost.web.shop.svc.cluster.local:80.route.GET /items.upstream_rq_5xx", true},
		{"http.inbound.downstream_rq_2xx", true},
		{"http.inbound.downstream_rq_time", true},
		{"http.inbound.rs_too_large", false},
		{"tcp.outbound.downstream_cx_total", true},
		// gRPC status counts: the failures only, never per status or per method.
		{c + "grpc.failure", true},
		{"cluster.inbound|50051.grpc.failure", true},
		{c + "grpc.success", false},
		{c + "grpc.total", false},
		{c + "grpc.14", false},
		{c + "grpc.request_message_count", false},
		{c + "grpc.helloworld.Greeter.SayHello.failure", false},
		{"server.live", true},
		{"listener_manager.lds.update_rejected", true},
		{"control_plane.connected_state", true},
		{"listener.0.0.0.0_4143.downstream_cx_overflow", false},
	}
	for _, tc := range cases {
		if got := rules.Keeps(tc.stat); got != tc.keep {
			t.Errorf("%s kept = %v, want %v", tc.stat, got, tc.keep)
		}
	}
}

func TestGRPCGolden(t *testing.T) {
	cases := []struct {
		name string
		cfg  bootstrap.Config
	}{
		{"grpc-tls-token", bootstrap.Config{
			ControlPlaneAddress: "weft-cp.weft-system.svc:8086", ServerName: "weft-cp.weft-system.svc",
			TrustBundlePEM: bundle(t), TrustBundleFile: "/var/run/weft/bundle/ca-bundle.crt",
			TokenPath: "/var/run/secrets/weft/token",
		}},
		{"grpc-plaintext", bootstrap.Config{ControlPlaneAddress: "weft-cp.weft-system.svc:8086", IdentityDir: "/etc/weft"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js, err := bootstrap.GRPC(tc.cfg, "web-0.shop")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".json", js)
		})
	}
}

func TestGRPCRefusesWhatGRPCGoCannotDo(t *testing.T) {
	base := bootstrap.Config{ControlPlaneAddress: "10.96.0.20:8086", ServerName: "weft-cp.weft-system.svc", TrustBundlePEM: bundle(t), TrustBundleFile: "/b.pem"}
	if _, err := bootstrap.GRPC(base, "web-0.shop"); err == nil || !strings.Contains(err.Error(), "ServerName") {
		t.Errorf("a server name other than the address's host: error %v", err)
	}
	base.ControlPlaneAddress = "weft-cp.weft-system.svc:8086"
	base.TrustBundleFile = ""
	if _, err := bootstrap.GRPC(base, "web-0.shop"); err == nil || !strings.Contains(err.Error(), "TrustBundleFile") {
		t.Errorf("TLS without a bundle file: error %v", err)
	}
	base.TrustBundleFile = "/b.pem"
	if _, err := bootstrap.GRPC(base, "no-namespace"); err == nil {
		t.Error("a node id without a namespace was accepted")
	}
}

// parseWithGRPCGo builds grpc-go's xDS resolver from a bootstrap: the resolver parses the
// bootstrap (internal/xds/bootstrap.NewConfigFromContents) when it is built, and is closed
// before its xDS client gets anywhere.
func parseWithGRPCGo(js []byte) error {
	builder, err := grpcxds.NewXDSResolverWithConfigForTesting(js)
	if err != nil {
		return err
	}
	target, err := url.Parse("xds:///web.shop:80")
	if err != nil {
		return err
	}
	r, err := builder.Build(resolver.Target{URL: *target}, idleClientConn{}, resolver.BuildOptions{})
	if err != nil {
		return err
	}
	r.Close()
	return nil
}

// idleClientConn is a channel that ignores what the resolver reports.
type idleClientConn struct{ resolver.ClientConn }

func (idleClientConn) UpdateState(resolver.State) error { return nil }
func (idleClientConn) ReportError(error)                {}
func (idleClientConn) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

const callCredsEnv = "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"

// TestGRPCBootstrapParsedByGRPCGo hands the bootstrap to grpc-go's own parser
// (google.golang.org/grpc/xds.NewXDSResolverWithConfigForTesting, which runs
// internal/xds/bootstrap's NewConfigFromContents: channel and call credentials are built,
// the certificate provider config parsed). grpc-go reads the call-credentials switch once at
// start-up, so the test runs itself again in a process that has it set.
func TestGRPCBootstrapParsedByGRPCGo(t *testing.T) {
	if os.Getenv(callCredsEnv) != "true" {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestGRPCBootstrapParsedByGRPCGo$", "-test.count=1")
		cmd.Env = append(os.Environ(), callCredsEnv+"=true")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("PASS")) {
			t.Fatalf("the run with %s=true failed: %v\n%s", callCredsEnv, err, out)
		}
		return
	}
	dir := t.TempDir()
	files := map[string][]byte{"bundle.pem": bundle(t), "token": []byte("header.payload.signature")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		cfg     bootstrap.Config
		wantErr string
	}{
		{name: "tls and token", cfg: bootstrap.Config{
			ControlPlaneAddress: "weft-cp.weft-system.svc:8086", ServerName: "weft-cp.weft-system.svc",
			TrustBundlePEM: bundle(t), TrustBundleFile: filepath.Join(dir, "bundle.pem"), TokenPath: filepath.Join(dir, "token"),
			IdentityDir: dir,
		}},
		{name: "plaintext", cfg: bootstrap.Config{ControlPlaneAddress: "weft-cp.weft-system.svc:8086", IdentityDir: dir}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js, err := bootstrap.GRPC(tc.cfg, "web-0.shop")
			if err != nil {
				t.Fatal(err)
			}
			if err := parseWithGRPCGo(js); err != nil {
				t.Errorf("grpc-go refuses the bootstrap: %v\n%s", err, js)
			}
		})
	}
	// The parser is not a rubber stamp: call credentials with no file are refused, which
	// also shows they are read at all in this process.
	bad := []byte(`{"xds_servers":[{"server_uri":"cp:8086","channel_creds":[{"type":"insecure"}],` +
		`"call_creds":[{"type":"jwt_token_file","config":{}}]}],"node":{"id":"web-0.shop"}}`)
	if err := parseWithGRPCGo(bad); err == nil {
		t.Error("grpc-go accepted jwt_token_file call credentials without a file")
	}
}
