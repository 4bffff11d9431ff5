package translate

import (
	grpcstatsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// gRPC status counts. A gRPC call that fails answers HTTP 200 with a
// grpc-status other than 0 (in the trailers, or in the headers of a
// trailers-only response), so the HTTP status classes Envoy counts see it
// as a success. Envoy 1.40's grpc_stats filter
// (source/extensions/filters/http/grpc_stats/grpc_stats_filter.cc, docs
// configuration/http/http_filters/grpc_stats_filter.rst) reads grpc-status
// from the response the connection manager sends back and charges
// cluster.<route's cluster>.grpc.{success,failure,total} (and .<status>;
// source/common/grpc/context_impl.cc, ContextImpl::chargeStat). It sees the
// final response only, so on a client it counts calls after retries.
//
// stats_for_all_methods is false and no allowlist is given: the counters
// then carry no service or method in their names (one set per cluster, not
// one per method a client happens to call), which keeps the series per
// proxy bounded. The stats matcher (injector/bootstrap/stats.go) keeps only
// .grpc.failure of them.
//
// The filter goes on the connection managers of gRPC ports only: on other
// ports it would count nothing (it tracks requests with a gRPC
// content-type) yet cost a filter per request. Proxyless clients and
// servers (grpc-go) get none: grpc-go refuses HTTP filters it does not
// know, and sends no Envoy stats.
var (
	grpcStatsOutbound = feature{
		name:  "weft.grpc_stats.outbound",
		on:    onOutboundChain,
		reads: InputsOf(InputService),
		httpFilter: func(in featureInputs) *hcmv3.HttpFilter {
			if in.port.Protocol != mesh.ProtocolGRPC {
				return nil
			}
			return grpcStatsFilter()
		},
	}
	grpcStatsInbound = feature{
		name:  "weft.grpc_stats.inbound",
		on:    onInboundChain,
		reads: InputsOf(InputProxy),
		httpFilter: func(in featureInputs) *hcmv3.HttpFilter {
			if in.kind == proxy.GRPC || in.inbound.protocol != mesh.ProtocolGRPC {
				return nil
			}
			return grpcStatsFilter()
		},
	}
)

// grpcStatsFilterName names the filter in the connection manager; Envoy
// picks the extension by the typed config.
const grpcStatsFilterName = "envoy.filters.http.grpc_stats"

func grpcStatsFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name: grpcStatsFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&grpcstatsv3.FilterConfig{
			PerMethodStatSpecifier: &grpcstatsv3.FilterConfig_StatsForAllMethods{StatsForAllMethods: wrapperspb.Bool(false)},
		})},
	}
}
