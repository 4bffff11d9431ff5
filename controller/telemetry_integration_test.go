package controller

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	promclient "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/telemetry"
)

const metricsApp = `
apiVersion: v1
kind: Namespace
metadata:
  name: itm
  annotations: {weft.io/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: itm}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: example.invalid/web:1, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: itm}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - {name: api, image: example.invalid/api:1, ports: [{name: http, containerPort: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: itm}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: itm}
spec:
  selector: {app: api}
  ports: [{name: http, port: 9090, targetPort: 9090}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: greeter, namespace: itm}
spec:
  replicas: 1
  selector: {matchLabels: {app: greeter}}
  template:
    metadata: {labels: {app: greeter}}
    spec:
      containers:
      - {name: greeter, image: example.invalid/greeter:1, ports: [{name: grpc, containerPort: 50051}]}
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: itm}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 50051, targetPort: 50051, appProtocol: grpc}]
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: api.itm.svc.cluster.local, namespace: itm}
spec:
  routes:
  - name: get-items
    condition: {method: GET, pathRegex: /items}
    isRetryable: true
    responseClasses:
    - condition: {status: {min: 400, max: 499}}
      isFailure: true
`

// envoyBuckets are Envoy's default histogram bounds in ms
// (HistogramSettingsImpl::defaultBuckets, source/common/stats/histogram_impl.h, Envoy 1.40).
var envoyBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// statFlush builds the metric families of one flush as Envoy 1.40's metrics_service sink
// sends them with emit_tags_as_labels (MetricsFlusher, source/extensions/stat_sinks/
// metrics_service/grpc_metrics_service_impl.cc): one family per stat, named by its
// tag-extracted name, tags (injector/bootstrap.StatTags) as labels.
type statFlush struct {
	ts       int64
	families []*promclient.MetricFamily
}

func labels(kv ...string) []*promclient.LabelPair {
	var out []*promclient.LabelPair
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &promclient.LabelPair{Name: proto.String(kv[i]), Value: proto.String(kv[i+1])})
	}
	return out
}

func (f *statFlush) counter(name string, v float64, kv ...string) *statFlush {
	f.families = append(f.families, &promclient.MetricFamily{Name: proto.String(name), Type: promclient.MetricType_COUNTER.Enum(),
		Metric: []*promclient.Metric{{Label: labels(kv...), Counter: &promclient.Counter{Value: proto.Float64(v)}, TimestampMs: proto.Int64(f.ts)}}})
	return f
}

func (f *statFlush) gauge(name string, v float64, kv ...string) *statFlush {
	f.families = append(f.families, &promclient.MetricFamily{Name: proto.String(name), Type: promclient.MetricType_GAUGE.Enum(),
		Metric: []*promclient.Metric{{Label: labels(kv...), Gauge: &promclient.Gauge{Value: proto.Float64(v)}, TimestampMs: proto.Int64(f.ts)}}})
	return f
}

// hist adds an interval histogram with cumulative bucket counts over envoyBuckets.
func (f *statFlush) hist(name string, cum []uint64, kv ...string) *statFlush {
	h := &promclient.Histogram{SampleCount: proto.Uint64(cum[len(cum)-1])}
	for i, b := range envoyBuckets {
		c := cum[min(i, len(cum)-1)]
		h.Bucket = append(h.Bucket, &promclient.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(c)})
	}
	f.families = append(f.families, &promclient.MetricFamily{Name: proto.String(name), Type: promclient.MetricType_HISTOGRAM.Enum(),
		Metric: []*promclient.Metric{{Label: labels(kv...), Histogram: h, TimestampMs: proto.Int64(f.ts)}}})
	return f
}

// streamFlushes is a stand-in for one Envoy's metrics_service sink (Envoy 1.40): it opens
// envoy.service.metrics.v3.MetricsService/StreamMetrics, names its node in the first
// message only, as GrpcMetricsStreamerImpl::send does, and sends one message per flush.
func streamFlushes(t *testing.T, conn *grpc.ClientConn, nodeID string, flushes []*statFlush) error {
	t.Helper()
	stream, err := metricsv3.NewMetricsServiceClient(conn).StreamMetrics(t.Context())
	if err != nil {
		return err
	}
	for i, f := range flushes {
		msg := &metricsv3.StreamMetricsMessage{EnvoyMetrics: f.families}
		if i == 0 && nodeID != "" {
			msg.Identifier = &metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: nodeID, Cluster: "itm"}}
		}
		if err := stream.Send(msg); err != nil {
			break // the server ended the stream: CloseAndRecv says why
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func TestIntegrationEmbeddedMetrics(t *testing.T) {
	requireEnv(t)
	ensureCRDs(t)
	ctx := t.Context()
	rc := startController(t)
	if _, err := env.Apply(ctx, []byte(metricsApp)); err != nil {
		t.Fatal(err)
	}
	web := runningPods(t, "itm", "app=web", 1)[0]
	api := runningPods(t, "itm", "app=api", 2)
	greeter := runningPods(t, "itm", "app=greeter", 1)[0]
	// Wait until the model knows the pods as meshed and behind their services.
	waitUntil(t, time.Minute, "pods meshed and selected by their services", func() bool {
		n := 0
		for _, w := range (storeDirectory{rc.store, "cluster.local"}).Workloads() {
			if w.Namespace == "itm" && w.Meshed && len(w.Services) == 1 && w.Deployment != "" {
				n++
			}
		}
		return n == 4
	})
	waitUntil(t, time.Minute, "the profile's response classes", func() bool {
		return len((storeDirectory{rc.store, "cluster.local"}).ResponseClasses("itm", "api", "get-items")) > 0
	})

	conn, err := grpc.NewClient(rc.XDSAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Three flushes 10s apart ending now (Envoy stamps each with its snapshot time).
	now := time.Now()
	ts := func(i int) int64 { return now.Add(time.Duration(i-2) * 10 * time.Second).UnixMilli() }
	inbound := []string{"weft_http_prefix", "inbound"}
	class := func(c string, kv []string) []string {
		return append(append([]string(nil), kv...), "weft_response_code_class", c)
	}
	// Interval latency histogram of 100 samples: 50 in (1,5]ms, 40 in (5,10], 10 in (10,25].
	lat := []uint64{0, 0, 50, 90, 100}
	apiPod := func(ok, failed []float64, cx float64) []*statFlush {
		var fl []*statFlush
		for i := range 3 {
			f := &statFlush{ts: ts(i)}
			// http.<stat_prefix>.downstream_rq_<*xx>, downstream_rq_time, downstream_cx_active:
			// Envoy 1.40 docs, configuration/http/http_conn_man/stats.rst.
			f.counter("http.downstream_rq", ok[i], class("2xx", inbound)...).
				counter("http.downstream_rq", failed[i], class("5xx", inbound)...).
				gauge("http.downstream_cx_active", cx, inbound...)
			if i > 0 {
				f.hist("http.downstream_rq_time", lat, inbound...)
			}
			fl = append(fl, f)
		}
		return fl
	}
	cluster := []string{"weft_cluster", "outbound|9090|api.itm.svc.cluster.local"}
	route := []string{"weft_vhost", "api.itm.svc.cluster.local:9090", "weft_route", "get-items"}
	var webFlushes []*statFlush
	for i := range 3 {
		f := &statFlush{ts: ts(i)}
		n := float64(i)
		// cluster.<name>.upstream_rq_<*xx>, upstream_rq_retry, ssl.handshake: Envoy 1.40 docs,
		// configuration/upstream/cluster_manager/cluster_stats.rst; vhost.<vhost>.route.
		// <stat_prefix>.*: route_components.proto Route.stat_prefix, the virtual cluster stats of router_filter.rst.
		// The router charges upstream_rq_<*xx> for each request's final response only and
		// upstream_rq_retry per retry (Filter::onUpstreamHeaders, source/common/router/router.cc):
		// the retried attempts are counted in the retries alone.
		f.counter("cluster.upstream_rq", 150*n, class("2xx", cluster)...).
			counter("cluster.upstream_rq", 10*n*(n-1), class("5xx", cluster)...).
			counter("cluster.upstream_rq", 5*n*(n-1), class("4xx", cluster)...).
			counter("cluster.upstream_rq_retry", 5*n, cluster...).
			counter("cluster.ssl.handshake", n, cluster...).
			counter("vhost.route.upstream_rq", 100*n, class("2xx", route)...).
			counter("vhost.route.upstream_rq", 10*n*(n-1), class("5xx", route)...).
			counter("vhost.route.upstream_rq", 5*n*(n-1), class("4xx", route)...).
			counter("vhost.route.upstream_rq_retry", 5*n, route...).
			// What the embedded path does not use or cannot trust: skipped, never shown.
			counter("cluster.upstream_cx_destroy_with_active_rq", 3, cluster...).
			counter("server.some_future_stat", 1).
			hist("http.downstream_rq_time", []uint64{5, 3, 9}, inbound...) // buckets falling: garbage
		webFlushes = append(webFlushes, f)
	}
	// greeter serves gRPC: 100 calls per flush, every one answered HTTP 200, 20 of them
	// with grpc-status UNAVAILABLE, which the grpc_stats filter on its gRPC port counts
	// in cluster.inbound|50051.grpc.failure (Envoy 1.40 grpc_stats_filter.rst;
	// ContextImpl::chargeStat, source/common/grpc/context_impl.cc).
	var greeterFlushes []*statFlush
	for i := range 3 {
		f := &statFlush{ts: ts(i)}
		f.counter("http.downstream_rq", float64(100*i), class("2xx", inbound)...).
			counter("cluster.grpc.failure", float64(20*i), "weft_cluster", "inbound|50051").
			gauge("http.downstream_cx_active", 1, inbound...)
		greeterFlushes = append(greeterFlushes, f)
	}
	for _, s := range []struct {
		node    string
		flushes []*statFlush
	}{
		{greeter.Name + ".itm", greeterFlushes},
		{api[0].Name + ".itm", apiPod([]float64{0, 100, 200}, []float64{0, 0, 0}, 3)},
		{api[1].Name + ".itm", apiPod([]float64{0, 100, 190}, []float64{0, 0, 10}, 2)},
		{web.Name + ".itm", webFlushes},
	} {
		if err := streamFlushes(t, conn, s.node, s.flushes); err != nil {
			t.Fatalf("streaming %s: %v", s.node, err)
		}
	}
	// A stream that never says which proxy it is, and one naming no valid node, are
	// refused; nothing they sent is kept.
	for _, node := range []string{"", "no-namespace"} {
		err := streamFlushes(t, conn, node, []*statFlush{(&statFlush{ts: ts(2)}).counter("http.downstream_rq", 1e6, class("2xx", inbound)...)})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("stream with node %q: %v, want InvalidArgument", node, err)
		}
	}

	query := func(v url.Values) string {
		t.Helper()
		code, body, err := rc.adminGet("/api/stat?" + v.Encode())
		if err != nil || code != 200 {
			t.Fatalf("/api/stat?%s: %d %v %s", v.Encode(), code, err, body)
		}
		var tab telemetry.Table
		if err := json.Unmarshal([]byte(body), &tab); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		// What `weft stat|routes|edges` print for the same answer.
		if err := telemetry.Print(&b, tab, telemetry.PrintOptions{Output: v.Get("o")}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	cases := []struct {
		name string
		q    url.Values
		want string
	}{
		// api: 400 responses over 20s, 10 failed; latency from 200 samples per pod.
		{"stat deploy", url.Values{"resource": {"deploy"}, "namespace": {"itm"}}, `
NAME      MESHED   SUCCESS   RPS       LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
api       2/2      97.50%    20.0rps   5ms           18ms          24ms          5
greeter   1/1      80.00%    10.0rps   -             -             -             1
web       1/1      -         -         -             -             -             0
`},
		{"stat pod", url.Values{"resource": {"po"}, "namespace": {"itm"}, "name": {api[1].Name}}, `
NAME   MESHED   SUCCESS   RPS       LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
` + api[1].Name + `   1/1      95.00%    10.0rps   5ms           18ms          24ms          2
`},
		{"stat svc", url.Values{"resource": {"svc"}, "namespace": {"itm"}, "name": {"api"}}, `
NAME   MESHED   SUCCESS   RPS       LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
api    2/2      97.50%    20.0rps   5ms           18ms          24ms          5
`},
		// web's proxy as a client of api: 330 requests (final responses), 20 of them 5xx
		// (failures by default: the profile's classes are per route), 10 4xx.
		{"stat deploy --from", url.Values{"resource": {"deploy"}, "namespace": {"itm"}, "from": {"deploy/web"}}, `
NAME   MESHED   SUCCESS   RPS       LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
api    2/2      93.94%    16.5rps   -             -             -             0
`},
		{"stat deploy --to", url.Values{"resource": {"deploy"}, "namespace": {"itm"}, "to": {"deploy/api"}}, `
NAME   MESHED   SUCCESS   RPS       LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
web    1/1      93.94%    16.5rps   -             -             -             0
`},
		// get-items: 230 requests over 20s, 20 5xx and 10 4xx, which its responseClasses
		// call failures too: 30 failed; 10 retries, each after a failed attempt: the
		// servers saw 240 attempts and 40 failures. [DEFAULT]: the cluster's other 100
		// requests, no retries.
		{"routes wide", url.Values{"resource": {"route"}, "namespace": {"itm"}, "name": {"api"}, "o": {"wide"}}, `
ROUTE       SERVICE   EFFECTIVE_SUCCESS   EFFECTIVE_RPS   ACTUAL_SUCCESS   ACTUAL_RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99
get-items   api       86.96%              11.5rps         83.33%           12.0rps      -             -             -
[DEFAULT]   api       100.00%             5.0rps          100.00%          5.0rps       -             -             -
`},
		{"edges", url.Values{"resource": {"edge"}, "namespace": {"itm"}}, `
SRC   DST   SRC_NS   DST_NS   SECURED
web   api   itm      itm      √
`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Columns compared word by word: pod names set the padding.
			if got, want := query(c.q), strings.TrimPrefix(c.want, "\n"); normalize(got) != normalize(want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
	// Bad questions get a clear 400, never a table.
	for q, want := range map[string]string{
		"resource=cronjob":             `unknown resource "cronjob"`,
		"resource=deploy&window=often": `window "often"`,
		"resource=deploy&from=web":     `query.from: "web": want KIND/NAME`,
		"resource=route":               "query.name: routes need a service name",
	} {
		code, body, err := rc.adminGet("/api/stat?" + q)
		if err != nil || code != 400 || !strings.Contains(body, want) {
			t.Errorf("/api/stat?%s: %d %v %q, want 400 containing %q", q, code, err, body, want)
		}
	}
}

func normalize(table string) string {
	var lines []string
	for _, l := range strings.Split(table, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}
