package check_test

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpccredv3 "github.com/envoyproxy/go-control-plane/envoy/config/grpc_credential/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/translate/check"
)

func adsBootstrap(grpc *corev3.GrpcService) *bootstrapv3.Bootstrap {
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	return &bootstrapv3.Bootstrap{
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			LdsConfig: ads,
			CdsConfig: ads,
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices:        []*corev3.GrpcService{grpc},
			},
		},
	}
}

func envoyGRPC(cluster string) *corev3.GrpcService {
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}}
}

func googleGRPCWithPlugin(factory string, cfg *anypb.Any) *corev3.GrpcService {
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{
		TargetUri: "cp:8086", StatPrefix: "xds", CredentialsFactoryName: factory,
		CallCredentials: []*corev3.GrpcService_GoogleGrpc_CallCredentials{{
			CredentialSpecifier: &corev3.GrpcService_GoogleGrpc_CallCredentials_FromPlugin{FromPlugin: &corev3.GrpcService_GoogleGrpc_CallCredentials_MetadataCredentialsFromPlugin{
				Name:       "envoy.grpc_credentials.file_based_metadata",
				ConfigType: &corev3.GrpcService_GoogleGrpc_CallCredentials_MetadataCredentialsFromPlugin_TypedConfig{TypedConfig: cfg},
			}},
		}},
	}}}
}

func TestBootstrapRules(t *testing.T) {
	tokenPlugin, err := anypb.New(&grpccredv3.FileBasedMetadataConfig{
		SecretData: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/token"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	notAPlugin, err := anypb.New(&structpb.Struct{})
	if err != nil {
		t.Fatal(err)
	}
	xdsCluster := &clusterv3.Cluster{
		Name: "xds", ConnectTimeout: durationpb.New(1e9),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
	}
	withStatic := func(b *bootstrapv3.Bootstrap, cls ...*clusterv3.Cluster) *bootstrapv3.Bootstrap {
		b.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Clusters: cls}
		return b
	}
	cases := []struct {
		name          string
		b             *bootstrapv3.Bootstrap
		node, cluster string
		want          []string // substrings of the problems, in order; none: clean
	}{
		{name: "ads through a static cluster", b: withStatic(adsBootstrap(envoyGRPC("xds")), xdsCluster), node: "web-0.shop", cluster: "shop"},
		{name: "node from the bootstrap", b: func() *bootstrapv3.Bootstrap {
			b := withStatic(adsBootstrap(envoyGRPC("xds")), xdsCluster)
			b.Node = &corev3.Node{Id: "web-0.shop", Cluster: "shop"}
			return b
		}()},
		{name: "no node", b: withStatic(adsBootstrap(envoyGRPC("xds")), xdsCluster), node: "web-0.shop",
			want: []string{"Bootstrap bootstrap: dynamic_resources: ads: node 'id' and 'cluster' are required"}},
		{name: "unknown xds cluster", b: adsBootstrap(envoyGRPC("nowhere")), node: "n.s", cluster: "s",
			want: []string{"dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: envoy::config::core::v3::ConfigSource must have a statically defined non-EDS cluster: 'nowhere'"}},
		{name: "ads source without ads_config", b: func() *bootstrapv3.Bootstrap {
			b := adsBootstrap(envoyGRPC("xds"))
			b.DynamicResources.AdsConfig = nil
			return b
		}(), node: "n.s", cluster: "s", want: []string{
			"dynamic_resources.lds_config: ADS must be configured to support an ADS config source",
			"dynamic_resources.cds_config: ADS must be configured to support an ADS config source",
		}},
		{name: "token plugin with its factory", b: adsBootstrap(googleGRPCWithPlugin("envoy.grpc_credentials.file_based_metadata", tokenPlugin)), node: "n.s", cluster: "s"},
		{name: "token plugin without its factory", b: adsBootstrap(googleGRPCWithPlugin("", tokenPlugin)), node: "n.s", cluster: "s",
			want: []string{"google_grpc.call_credentials[0]: call credentials plugin 'envoy.grpc_credentials.file_based_metadata' is never called"}},
		{name: "plugin config of an unknown type", b: adsBootstrap(googleGRPCWithPlugin("envoy.grpc_credentials.file_based_metadata", notAPlugin)), node: "n.s", cluster: "s",
			want: []string{"Didn't find a registered implementation for 'envoy.grpc_credentials.file_based_metadata' with type URL: 'google.protobuf.Struct'"}},
		{name: "oversized stats regex", b: func() *bootstrapv3.Bootstrap {
			b := withStatic(adsBootstrap(envoyGRPC("xds")), xdsCluster)
			b.StatsConfig = &metricsv3.StatsConfig{StatsMatcher: &metricsv3.StatsMatcher{StatsMatcher: &metricsv3.StatsMatcher_InclusionList{
				InclusionList: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{{
					MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Repeat("[a-z]{3}", 40)}},
				}}},
			}}}
			return b
		}(), node: "n.s", cluster: "s", want: []string{"stats_config.stats_matcher.inclusion_list.patterns[0].safe_regex.regex: regex"}},
		{name: "metrics sink through the xds cluster", b: func() *bootstrapv3.Bootstrap {
			b := withStatic(adsBootstrap(envoyGRPC("xds")), xdsCluster)
			b.StatsSinks = metricsSink(t, envoyGRPC("xds"))
			return b
		}(), node: "n.s", cluster: "s"},
		{name: "metrics sink to an unknown cluster", b: func() *bootstrapv3.Bootstrap {
			b := withStatic(adsBootstrap(envoyGRPC("xds")), xdsCluster)
			b.StatsSinks = metricsSink(t, envoyGRPC("nowhere"))
			return b
		}(), node: "n.s", cluster: "s", want: []string{"stats_sinks[0].typed_config.grpc_service.envoy_grpc.cluster_name: Unknown gRPC client cluster 'nowhere'"}},
		{name: "bad static cluster", b: withStatic(adsBootstrap(envoyGRPC("xds")), &clusterv3.Cluster{
			Name: "xds", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		}), node: "n.s", cluster: "s",
			want: []string{"Cluster xds: lb_policy: cluster: LB policy ROUND_ROBIN is not valid for Cluster type ORIGINAL_DST"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probs := check.Bootstrap(tc.b, tc.node, tc.cluster)
			var got []string
			for _, p := range probs {
				if !p.Warning {
					got = append(got, p.Error())
				}
			}
			if len(got) < len(tc.want) || (len(tc.want) == 0 && len(got) > 0) {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func metricsSink(t *testing.T, gs *corev3.GrpcService) []*metricsv3.StatsSink {
	a, err := anypb.New(&metricsv3.MetricsServiceConfig{GrpcService: gs, TransportApiVersion: corev3.ApiVersion_V3})
	if err != nil {
		t.Fatal(err)
	}
	return []*metricsv3.StatsSink{{Name: "envoy.stat_sinks.metrics_service", ConfigType: &metricsv3.StatsSink_TypedConfig{TypedConfig: a}}}
}
