package check

import (
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpccredv3 "github.com/envoyproxy/go-control-plane/envoy/config/grpc_credential/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy"
)

// BootstrapType is the TypeURL of problems found in a bootstrap outside its static
// listeners and clusters (which are reported as listeners and clusters).
const BootstrapType = "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap"

// kindGRPCCredentials is the registry of Google gRPC call credentials plugins.
const kindGRPCCredentials extKind = 1 << 15

// kindStatsSink is the registry of bootstrap stats_sinks.
const kindStatsSink extKind = 1 << 14

const fileBasedMetadataFactory = "envoy.grpc_credentials.file_based_metadata"

func init() {
	extensions[fullName(&grpccredv3.FileBasedMetadataConfig{})] = extension{kinds: kindGRPCCredentials, factory: fileBasedMetadataFactory}
	extensions[fullName(&metricsv3.MetricsServiceConfig{})] = extension{kinds: kindStatsSink, factory: "envoy.stat_sinks.metrics_service"}
}

// Bootstrap finds what Envoy would refuse at start-up in a bootstrap: its static listeners
// and clusters get every rule an LDS/CDS push gets (with the static clusters as the only
// clusters a static route may name), the rest its proto constraints, every Any and regex in
// it, and the rules Envoy applies to the bootstrap itself (config/utility.cc): ADS config
// sources need ads_config, ADS needs a node id and cluster, an envoy_grpc config source
// names a static cluster. serviceNode and serviceCluster are the --service-node and
// --service-cluster Envoy is started with ("" when not given), which override node.id and
// node.cluster. Problems are sorted as Problems sorts them, warnings included.
func Bootstrap(b *bootstrapv3.Bootstrap, serviceNode, serviceCluster string) []*Problem {
	res := map[string][]types.Resource{resource.ListenerType: {}, resource.ClusterType: {}}
	for _, l := range b.GetStaticResources().GetListeners() {
		res[resource.ListenerType] = append(res[resource.ListenerType], l)
	}
	for _, cl := range b.GetStaticResources().GetClusters() {
		res[resource.ClusterType] = append(res[resource.ClusterType], cl)
	}
	c := newChecker(proxy.Envoy, res)
	c.run()

	rest := proto.Clone(b).(*bootstrapv3.Bootstrap)
	rest.StaticResources = nil
	c.typeURL, c.name, c.path = BootstrapType, "bootstrap", c.path[:0]
	c.validateMessage(rest)
	c.walk(rest.ProtoReflect())
	c.checkBootstrap(b, serviceNode, serviceCluster)

	slices.SortStableFunc(c.problems, func(a, b *Problem) int {
		if ra, rb := typeRank(a.TypeURL), typeRank(b.TypeURL); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.Name, b.Name)
	})
	return c.problems
}

func (c *checker) checkBootstrap(b *bootstrapv3.Bootstrap, serviceNode, serviceCluster string) {
	c.checkStatsSinks(b.GetStatsSinks())
	dyn := b.GetDynamicResources()
	c.push("dynamic_resources")
	defer c.pop()
	usesADS := false
	for _, src := range []struct {
		field string
		cs    *corev3.ConfigSource
	}{{"lds_config", dyn.GetLdsConfig()}, {"cds_config", dyn.GetCdsConfig()}} {
		if src.cs.GetAds() == nil {
			if api := src.cs.GetApiConfigSource(); api != nil {
				c.push(src.field)
				c.checkAPIConfigSource(api)
				c.pop()
			}
			continue
		}
		usesADS = true
		if dyn.GetAdsConfig() == nil {
			c.errorAt(src.field, "ADS must be configured to support an ADS config source")
		}
	}
	if ads := dyn.GetAdsConfig(); ads != nil {
		usesADS = true
		c.push("ads_config")
		c.checkAPIConfigSource(ads)
		c.pop()
	}
	if !usesADS {
		return
	}
	id, cluster := b.GetNode().GetId(), b.GetNode().GetCluster()
	if serviceNode != "" {
		id = serviceNode
	}
	if serviceCluster != "" {
		cluster = serviceCluster
	}
	if id == "" || cluster == "" {
		c.errorf("ads: node 'id' and 'cluster' are required. Set it either in 'node' config or via --service-node and --service-cluster options.")
	}
}

// checkAPIConfigSource applies Envoy's rules for the gRPC services of a config source: an
// envoy_grpc service names a static, non-EDS cluster of the bootstrap; a google_grpc call
// credentials plugin is installed only by its own credentials factory.
func (c *checker) checkAPIConfigSource(api *corev3.ApiConfigSource) {
	for i, gs := range api.GetGrpcServices() {
		c.pushIndex("grpc_services", i)
		if eg := gs.GetEnvoyGrpc(); eg != nil {
			cl := c.clusters[eg.GetClusterName()]
			if cl == nil || cl.GetType() == clusterv3.Cluster_EDS {
				c.errorAt("envoy_grpc.cluster_name", "envoy::config::core::v3::ConfigSource must have a statically defined non-EDS cluster: '%s' does not exist, was added via api, or is an EDS cluster", eg.GetClusterName())
			}
		}
		if gg := gs.GetGoogleGrpc(); gg != nil {
			for j, cc := range gg.GetCallCredentials() {
				plugin := cc.GetFromPlugin()
				if plugin == nil || plugin.GetName() == gg.GetCredentialsFactoryName() {
					continue
				}
				// CredsUtility::callCredentials (source/common/grpc/google_grpc_creds_impl.cc)
				// skips plugin credentials; only the factory of the same name installs them.
				c.push("google_grpc")
				c.pushIndex("call_credentials", j)
				c.errorf("call credentials plugin '%s' is never called: credentials_factory_name is '%s', and only the plugin's own factory installs it", plugin.GetName(), gg.GetCredentialsFactoryName())
				c.pop()
				c.pop()
			}
		}
		c.pop()
	}
}

// checkStatsSinks applies to a metrics_service sink's gRPC service what Envoy applies when it
// creates the sink at start-up, before any CDS: an envoy_grpc service names a static cluster
// (AsyncClientFactoryImpl, source/common/grpc/async_client_manager_impl.cc: "Unknown gRPC
// client cluster").
func (c *checker) checkStatsSinks(sinks []*metricsv3.StatsSink) {
	for i, s := range sinks {
		ms := &metricsv3.MetricsServiceConfig{}
		if s.GetTypedConfig().UnmarshalTo(ms) != nil {
			continue // an unknown or broken type is the generic walk's to report
		}
		c.pushIndex("stats_sinks", i)
		if eg := ms.GetGrpcService().GetEnvoyGrpc(); eg != nil && c.clusters[eg.GetClusterName()] == nil {
			c.errorAt("typed_config.grpc_service.envoy_grpc.cluster_name", "Unknown gRPC client cluster '%s'", eg.GetClusterName())
		}
		c.pop()
	}
}
