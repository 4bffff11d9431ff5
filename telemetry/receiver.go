package telemetry

import (
	"errors"
	"io"
	"log/slog"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/xds"
)

// Receiver is the control plane's envoy.service.metrics.v3.MetricsService:
// every proxy's metrics_service sink streams its stats here over the xDS
// channel (injector/bootstrap's stats sink).
type Receiver struct {
	metricsv3.UnimplementedMetricsServiceServer
	Store *Store
	// Authenticate, when set, is the xDS Authenticator: the sink's stream
	// carries the same TLS channel and token as ADS, so it proves the same
	// identity. xds.StreamIdentity does not apply: it reads a handle only
	// ADS streams get; the Authenticator itself is what works on any stream.
	Authenticate xds.Authenticator
	Log          *slog.Logger
}

// Register adds the metrics service to a gRPC server.
func (r *Receiver) Register(gs grpc.ServiceRegistrar) {
	metricsv3.RegisterMetricsServiceServer(gs, r)
}

// StreamMetrics reads one proxy's flushes. Envoy sends its node only in the
// first message of a stream (GrpcMetricsStreamerImpl::send,
// source/extensions/stat_sinks/metrics_service/grpc_metrics_service_impl.cc),
// so the stream is bound to that node, and to the identity that opened it.
func (r *Receiver) StreamMetrics(stream metricsv3.MetricsService_StreamMetricsServer) error {
	ctx := stream.Context()
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	var id xds.Identity
	if r.Authenticate != nil {
		var err error
		if id, err = r.Authenticate(ctx); err != nil {
			if _, ok := status.FromError(err); ok {
				return err
			}
			return status.Errorf(codes.Unauthenticated, "authenticating metrics stream: %v", err)
		}
	}
	var pod, namespace string
	warned := false
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&metricsv3.StreamMetricsResponse{})
		}
		if err != nil {
			return err
		}
		if pod == "" {
			node := msg.GetIdentifier().GetNode()
			if node == nil {
				return status.Error(codes.InvalidArgument, "metrics stream: the first message carries no identifier.node")
			}
			if pod, namespace, err = proxy.ParseNodeID(node.GetId()); err != nil {
				return status.Errorf(codes.InvalidArgument, "metrics stream: identifier.node.id: %v", err)
			}
			if r.Authenticate != nil {
				if err := xds.CheckIdentity(id, xds.NodeInfo{ID: node.GetId(), Pod: pod, Namespace: namespace}); err != nil {
					return err
				}
			}
			log = log.With("pod", pod, "namespace", namespace)
		}
		res := r.Store.Ingest(pod, namespace, msg.GetEnvoyMetrics())
		if res.Bad > 0 && !warned {
			// Once per stream: a proxy sending garbage would otherwise flood the log.
			log.Warn("metrics from proxy skipped", "bad", res.Bad, "first", res.Problem)
			warned = true
		}
	}
}
