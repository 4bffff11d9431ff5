package translate

import (
	"fmt"
	"slices"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Tap: a watched proxy's HTTP connection managers stream every request's
// access log entry to the control plane (Envoy's gRPC access log service,
// envoy.access_loggers.http_grpc, HttpGrpcAccessLogConfig in
// api/envoy/extensions/access_loggers/grpc/v3/als.proto, Envoy 1.40). The
// logger is added only while someone watches: an idle mesh sends nothing.
//
// Only a watched proxy's listeners change, and they are copies: the shared
// listeners every other proxy gets stay the same pointers and bytes.

// Log names of the tap loggers. Envoy sends the log name in the first
// message of each stream (StreamAccessLogsMessage.identifier.log_name), and
// an entry carries nothing else that says which side of the proxy it was
// logged on: the name does.
const (
	TapLogInbound  = "weft-tap-inbound"
	TapLogOutbound = "weft-tap-outbound"
)

// tapFlushInterval is how long Envoy buffers entries before sending them
// (buffer_flush_interval, default 1s): short, since someone is watching.
const tapFlushInterval = 200 * time.Millisecond

// tapHeaders are the headers beyond HTTPRequestProperties and
// HTTPResponseProperties that a tap line shows: grpc-status, which a
// trailers-only response carries in its headers and any other in its
// trailers.
var tapHeaders = []string{"grpc-status"}

// TapUpstreamTLSTag is the custom tag (AccessLogCommon.custom_tags) in which
// an outbound entry carries the TLS version of the upstream connection the
// request went over. AccessLogCommon has tls_properties for the downstream
// connection only; the upstream's TLS is in no field of the entry
// (api/envoy/data/accesslog/v3/accesslog.proto, Envoy 1.40). A custom tag
// of type value is a substitution format string (CustomTag.value,
// api/envoy/type/tracing/v3/custom_tag.proto), and %UPSTREAM_TLS_VERSION% is
// "the TLS version ... used to establish the upstream TLS connection"
// (docs/root/configuration/observability/access_log/usage.rst). Without an
// upstream TLS connection the command has no value: a value tag renders it
// as the empty string ("unknown specifier values are replaced with the
// empty string instead of -", custom_tag.proto), and an empty tag may be
// left out of the entry altogether. tap reads a TLS version as TLS, and
// its absence on an entry that reached an upstream as none: the tag is
// what Envoy saw on the connection, not what the cluster was meant to do.
const TapUpstreamTLSTag = "weft.upstream_tls_version"

// tapCustomTags are the custom tags of every tap logger.
var tapCustomTags = []*tracingv3.CustomTag{{
	Tag:  TapUpstreamTLSTag,
	Type: &tracingv3.CustomTag_Value{Value: "%UPSTREAM_TLS_VERSION%"},
}}

// tapLogger is the access logger of one side of a watched proxy, sending to
// service, the control plane as the proxy's bootstrap reaches it.
func tapLogger(logName string, service *corev3.GrpcService) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{
		Name: wellknown.HTTPGRPCAccessLog,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&grpclogv3.HttpGrpcAccessLogConfig{
			CommonConfig: &grpclogv3.CommonGrpcAccessLogConfig{
				LogName:             logName,
				GrpcService:         service,
				TransportApiVersion: corev3.ApiVersion_V3,
				BufferFlushInterval: durationpb.New(tapFlushInterval),
				CustomTags:          tapCustomTags,
			},
			AdditionalResponseHeadersToLog:  tapHeaders,
			AdditionalResponseTrailersToLog: tapHeaders,
		})},
	}
}

// tapped returns copies of a sidecar's listeners with the tap logger on
// every HTTP connection manager: inbound ones log as TapLogInbound, the
// rest as TapLogOutbound.
func tapped(listeners []*listenerv3.Listener, service *corev3.GrpcService) ([]*listenerv3.Listener, error) {
	out := make([]*listenerv3.Listener, 0, len(listeners))
	for _, l := range listeners {
		logName := TapLogOutbound
		if l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND {
			logName = TapLogInbound
		}
		c := proto.Clone(l).(*listenerv3.Listener)
		logger := tapLogger(logName, service)
		err := EachHTTPConnectionManager(c, func(hcm *hcmv3.HttpConnectionManager) bool {
			hcm.AccessLog = append(hcm.AccessLog, logger)
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("translate: tap: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// EachHTTPConnectionManager calls f with every HTTP connection manager of
// l's filter chains, the default chain's included, decoded; one f reports
// having changed is packed back into l.
func EachHTTPConnectionManager(l *listenerv3.Listener, f func(*hcmv3.HttpConnectionManager) (changed bool)) error {
	// Clipped: appending must not write into spare capacity of l's own slice.
	for _, fc := range append(slices.Clip(l.GetFilterChains()), l.GetDefaultFilterChain()) {
		for _, filter := range fc.GetFilters() {
			if filter.GetName() != wellknown.HTTPConnectionManager {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := filter.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				return fmt.Errorf("listener %s chain %s: %w", l.GetName(), fc.GetName(), err)
			}
			if f(hcm) {
				filter.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
			}
		}
	}
	return nil
}
