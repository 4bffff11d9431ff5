package telemetry

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	promclient "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/injector/bootstrap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counterFamily is one counter as Envoy 1.40's metrics_service sink sends it with
// emit_tags_as_labels: the tag-extracted name, the tags as labels, cumulative.
func counterFamily(name string, v float64, ts time.Time, labels ...string) *promclient.MetricFamily {
	m := &promclient.Metric{Counter: &promclient.Counter{Value: proto.Float64(v)}, TimestampMs: proto.Int64(ts.UnixMilli())}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &promclient.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	return &promclient.MetricFamily{Name: proto.String(name), Type: promclient.MetricType_COUNTER.Enum(), Metric: []*promclient.Metric{m}}
}

// TestReceiverGRPCStatus stands in for two Envoy 1.40 proxies' metrics_service sinks
// (envoy.service.metrics.v3.MetricsService.StreamMetrics; the node only in the first
// message of the stream, GrpcMetricsStreamerImpl::send in
// source/extensions/stat_sinks/metrics_service/grpc_metrics_service_impl.cc), streaming
// three 10s flushes of gRPC traffic: web calls greeter 40 times per flush, every call
// answered HTTP 200, 8 of them with grpc-status UNAVAILABLE. The status classes
// (http.inbound.downstream_rq_2xx, cluster.<name>.upstream_rq_2xx; http_conn_man/stats.rst,
// cluster_stats.rst) see 40 successes; the grpc_stats filter's cluster.<name>.grpc.failure
// (grpc_stats_filter.rst; ContextImpl::chargeStat, source/common/grpc/context_impl.cc)
// sees the 8 failures, on greeter's inbound|50051 and on web's outbound cluster.
func TestReceiverGRPCStatus(t *testing.T) {
	store := NewStore(func() time.Time { return t0 })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	(&Receiver{Store: store, Log: slog.New(slog.DiscardHandler)}).Register(gs)
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	client := metricsv3.NewMetricsServiceClient(conn)

	inbound := []string{bootstrap.TagHTTPPrefix, "inbound", bootstrap.TagResponseCodeClass, "2xx"}
	outbound := "outbound|50051|greeter.apps.svc.cluster.local"
	proxies := []struct {
		node    string
		flushes func(i int, ts time.Time) []*promclient.MetricFamily
	}{
		{"greeter-0.apps", func(i int, ts time.Time) []*promclient.MetricFamily {
			return []*promclient.MetricFamily{
				counterFamily("http.downstream_rq", float64(40*i), ts, inbound...),
				counterFamily("cluster.grpc.failure", float64(8*i), ts, bootstrap.TagCluster, "inbound|50051"),
			}
		}},
		{"web-0.apps", func(i int, ts time.Time) []*promclient.MetricFamily {
			return []*promclient.MetricFamily{
				counterFamily("cluster.upstream_rq", float64(40*i), ts, bootstrap.TagCluster, outbound, bootstrap.TagResponseCodeClass, "2xx"),
				counterFamily("cluster.grpc.failure", float64(8*i), ts, bootstrap.TagCluster, outbound),
			}
		}},
	}
	for _, p := range proxies {
		stream, err := client.StreamMetrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			msg := &metricsv3.StreamMetricsMessage{EnvoyMetrics: p.flushes(i, t0.Add(time.Duration(i-2)*10*time.Second))}
			if i == 0 {
				msg.Identifier = &metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: p.node}}
			}
			if err := stream.Send(msg); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatalf("%s: %v", p.node, err)
		}
	}

	e := &Embedded{Store: store, Dir: oneDir{
		{Namespace: "apps", Pod: "greeter-0", Deployment: "greeter", Services: []string{"greeter"}, Meshed: true},
		{Namespace: "apps", Pod: "web-0", Deployment: "web", Meshed: true},
	}}
	for _, c := range []struct {
		name        string
		q           Query
		row         string
		wantSuccess string
		wantRPS     string
	}{
		{"greeter as a server", Query{Resource: ResourceDeployment, Namespace: "apps", Name: "greeter"}, "greeter", "80.00%", "4.0rps"},
		{"web as greeter's client", Query{Resource: ResourceDeployment, Namespace: "apps", To: "deploy/greeter"}, "web", "80.00%", "4.0rps"},
		{"greeter's [DEFAULT] route", Query{Resource: ResourceRoute, Namespace: "apps", Name: "greeter"}, DefaultRoute, "80.00%", "4.0rps"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, err := e.Query(context.Background(), c.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(tab.Rows) != 1 || tab.Rows[0].Name != c.row {
				t.Fatalf("rows %+v, want one named %s", tab.Rows, c.row)
			}
			r := tab.Rows[0]
			if FormatSuccess(r.SuccessRate) != c.wantSuccess || FormatRPS(r.RPS) != c.wantRPS {
				t.Errorf("success %s rps %s, want %s %s", FormatSuccess(r.SuccessRate), FormatRPS(r.RPS), c.wantSuccess, c.wantRPS)
			}
		})
	}
}
