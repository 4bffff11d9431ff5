package translate

import (
	"math"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
)

// ServiceMetadataKey is the cluster filter_metadata key naming the service
// port a cluster reaches, for telemetry that labels by destination.
const ServiceMetadataKey = "weft.io/service"

// httpProtocolOptionsKey is the only key Envoy accepts in a cluster's
// typed_extension_protocol_options for HTTP upstream settings.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

const (
	// outboundConnectTimeout is Linkerd's outbound connect timeout.
	outboundConnectTimeout = time.Second
	// inboundConnectTimeout bounds the connect to the app on loopback; an
	// app with a full accept backlog gets a little patience.
	inboundConnectTimeout = time.Second
)

// Failure accrual in Linkerd's spirit: an endpoint that fails 7 times in a
// row is taken out of the balancer for a while, the penalty growing with each
// ejection (Envoy multiplies base_ejection_time by the number of ejections)
// up to a minute. Success-rate ejection, which Envoy enables by default and
// Linkerd has no equivalent of, is turned off. grpc-go reads only the
// success-rate and failure-percentage algorithms, both off here, so proxyless
// clients do no failure accrual (they accept the config).
const (
	consecutiveFailures = 7
	ejectionInterval    = 5 * time.Second
	baseEjectionTime    = 5 * time.Second
	maxEjectionTime     = time.Minute
	maxEjectionPercent  = 50
)

// retryBudgetReferenceLatency converts Linkerd's minRetriesPerSecond (a
// rate) into Envoy's min_retry_concurrency (a number of retries in flight).
// By Little's law, concurrency = rate x latency: with retries that take this
// long, allowing this many retries in flight allows the configured number of
// retries per second. See docs/retry-budgets.md and the README.
const retryBudgetReferenceLatency = time.Second

func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// leastRequestPolicy is power-of-two-choices least request, Envoy's nearest
// to Linkerd's EWMA balancer. It is given as load_balancing_policy because
// grpc-go refuses the LEAST_REQUEST lb_policy enum but reads this form, and
// Envoy reads it too.
func leastRequestPolicy() *clusterv3.LoadBalancingPolicy {
	return &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
		TypedExtensionConfig: &corev3.TypedExtensionConfig{
			Name:        "envoy.load_balancing_policies.least_request",
			TypedConfig: mustAny(&leastrequestv3.LeastRequest{ChoiceCount: wrapperspb.UInt32(2)}),
		},
	}}}
}

func outlierDetection() *clusterv3.OutlierDetection {
	return &clusterv3.OutlierDetection{
		Consecutive_5Xx:                    wrapperspb.UInt32(consecutiveFailures),
		EnforcingConsecutive_5Xx:           wrapperspb.UInt32(100),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(consecutiveFailures),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		EnforcingSuccessRate:               wrapperspb.UInt32(0),
		Interval:                           durationpb.New(ejectionInterval),
		BaseEjectionTime:                   durationpb.New(baseEjectionTime),
		MaxEjectionTime:                    durationpb.New(maxEjectionTime),
		MaxEjectionPercent:                 wrapperspb.UInt32(maxEjectionPercent),
	}
}

// retryBudget maps Linkerd's rate-based budget onto Envoy's
// concurrency-based one. ttl has no Envoy analogue: Envoy counts requests
// and retries in flight now, not over a sliding window.
func retryBudget(b mesh.RetryBudget) *clusterv3.CircuitBreakers_Thresholds_RetryBudget {
	// Envoy's Percent stops at 100; rounding keeps 0.2 from becoming
	// 20.000000000000004 (and float32 0.2 from becoming 20.0000003).
	percent := math.Round(b.RetryRatio*100*1e4) / 1e4
	percent = min(max(percent, 0), 100)
	concurrency := math.Ceil(float64(b.MinRetriesPerSecond) * retryBudgetReferenceLatency.Seconds())
	return &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
		BudgetPercent:       &typev3.Percent{Value: percent},
		MinRetryConcurrency: wrapperspb.UInt32(uint32(min(concurrency, math.MaxUint32))),
	}
}

// circuitBreakers lifts Envoy's default limits (1024 connections, pending
// and active requests per cluster; grpc-go applies the same default to
// requests): Linkerd has no such caps and a busy client must not start
// failing at 1025 concurrent requests. Retries are capped by the budget.
func circuitBreakers(b mesh.RetryBudget) *clusterv3.CircuitBreakers {
	unlimited := wrapperspb.UInt32(math.MaxUint32)
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     unlimited,
		MaxPendingRequests: unlimited,
		MaxRequests:        unlimited,
		RetryBudget:        retryBudget(b),
	}}}
}

// upstreamProtocolOptions picks the upstream HTTP version: HTTP/2 for gRPC
// and HTTP/2 ports; for other HTTP ports the client's own version, so an
// app speaking h2c keeps speaking it. Opaque ports need none.
func upstreamProtocolOptions(p mesh.Protocol) map[string]*anypb.Any {
	var opts *upstreamhttpv3.HttpProtocolOptions
	switch p {
	case mesh.ProtocolOpaque:
		return nil
	case mesh.ProtocolGRPC, mesh.ProtocolHTTP2:
		opts = &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		}
	default:
		opts = &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
				UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
					HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		}
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(opts)}
}

// passthroughCluster sends a connection where it was going: ORIGINAL_DST
// takes the address the original_dst listener filter restored.
func passthroughCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 PassthroughClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(outboundConnectTimeout),
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
			MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
			MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		}}},
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func portString(p uint32) string { return strconv.FormatUint(uint64(p), 10) }
