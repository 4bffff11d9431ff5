package tap

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/translate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingTapper is the model's tap set as the hub drives it.
type recordingTapper struct {
	mu    sync.Mutex
	calls []string
	set   map[string]bool
}

func (r *recordingTapper) SetTapped(node string, on bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = map[string]bool{}
	}
	if r.set[node] == on {
		return false
	}
	r.set[node] = on
	verb := "untap "
	if on {
		verb = "tap "
	}
	r.calls = append(r.calls, verb+node)
	return true
}

func (r *recordingTapper) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// serve runs the hub's access log service on 127.0.0.1 and returns a
// client of it.
func serve(t *testing.T, h *Hub) accesslogv3.AccessLogServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	h.Register(gs)
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return accesslogv3.NewAccessLogServiceClient(conn)
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// entry is what Envoy 1.40's http_grpc access logger sends for one request
// (HTTPAccessLogEntry, api/envoy/data/accesslog/v3/accesslog.proto; filled
// by source/extensions/access_loggers/grpc/http_grpc_access_log_impl.cc
// and grpc_access_log_utils.cc). This test stands in for Envoy.
func entry(method corev3.RequestMethod, path string, status uint32, grpcStatus string, tls bool) *accesslogdatav3.HTTPAccessLogEntry {
	e := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			DownstreamRemoteAddress:     sockAddr("10.0.1.30", 40312),
			DownstreamLocalAddress:      sockAddr("10.0.1.21", 50051),
			UpstreamRemoteAddress:       sockAddr("127.0.0.1", 50051),
			StartTime:                   timestamppb.New(time.Unix(1_800_000_000, 0)),
			TimeToFirstDownstreamTxByte: durationpb.New(1500 * time.Microsecond),
			TimeToLastDownstreamTxByte:  durationpb.New(1800 * time.Microsecond),
		},
		ProtocolVersion: accesslogdatav3.HTTPAccessLogEntry_HTTP2,
		Request:         &accesslogdatav3.HTTPRequestProperties{RequestMethod: method, Authority: "greeter.apps.svc.cluster.local:50051", Path: path},
		Response:        &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(status), ResponseBodyBytes: 12},
	}
	if grpcStatus != "" {
		e.Response.ResponseTrailers = map[string]string{"grpc-status": grpcStatus}
	}
	if tls {
		e.CommonProperties.TlsProperties = &accesslogdatav3.TLSProperties{TlsVersion: accesslogdatav3.TLSProperties_TLSv1_3}
	}
	return e
}

func stream(t *testing.T, c accesslogv3.AccessLogServiceClient, node, logName string, batches ...[]*accesslogdatav3.HTTPAccessLogEntry) error {
	t.Helper()
	s, err := c.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range batches {
		msg := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
			HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: b}}}
		if i == 0 {
			msg.Identifier = &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: node}, LogName: logName}
		}
		if err := s.Send(msg); err != nil {
			break // the server ended the stream: CloseAndRecv says why
		}
	}
	_, err = s.CloseAndRecv()
	return err
}

func TestSessionSeesItsProxyOnly(t *testing.T) {
	tapper := &recordingTapper{}
	h := NewHub(tapper, nil)
	c := serve(t, h)
	w, err := h.Watch(context.Background(), []string{"greeter-1.apps"}, Filter{Path: "/helloworld."})
	if err != nil {
		t.Fatal(err)
	}
	ok := entry(corev3.RequestMethod_POST, "/helloworld.Greeter/SayHello", 200, "0", true)
	filtered := entry(corev3.RequestMethod_GET, "/healthz", 200, "", true)
	failed := entry(corev3.RequestMethod_POST, "/helloworld.Greeter/SayHello", 200, "14", false)
	if err := stream(t, c, "greeter-1.apps", translate.TapLogInbound, []*accesslogdatav3.HTTPAccessLogEntry{ok, filtered}, []*accesslogdatav3.HTTPAccessLogEntry{failed}); err != nil {
		t.Fatal(err)
	}
	// Another proxy's stream: not this session's.
	if err := stream(t, c, "other-1.apps", translate.TapLogOutbound, []*accesslogdatav3.HTTPAccessLogEntry{ok}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var lines []string
	var events []Event
	for ev := range w.Events {
		events = append(events, ev)
		lines = append(lines, ev.Lines()...)
	}
	want := []string{
		"req id=1:1 proxy=in src=10.0.1.30:40312 dst=10.0.1.21:50051 tls=true :method=POST :authority=greeter.apps.svc.cluster.local:50051 :path=/helloworld.Greeter/SayHello",
		"rsp id=1:1 proxy=in src=10.0.1.30:40312 dst=10.0.1.21:50051 tls=true :status=200 latency=1500µs",
		"end id=1:1 proxy=in src=10.0.1.30:40312 dst=10.0.1.21:50051 tls=true grpc-status=OK duration=300µs response-length=12B",
		"req id=1:2 proxy=in src=10.0.1.30:40312 dst=10.0.1.21:50051 tls=false :method=POST :authority=greeter.apps.svc.cluster.local:50051 :path=/helloworld.Greeter/SayHello",
		"rsp id=1:2 proxy=in src=10.0.1.30:40312 dst=10.0.1.21:50051 tls=false :status=200 latency=1500µs",
		"end id=1:2 proxy=in src=10.0.1.30:40312 dst=10.0.1.21:50051 tls=false grpc-status=Unavailable duration=300µs response-length=12B",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", join(lines), join(want))
	}
	if got := tapper.Calls(); !slices.Equal(got, []string{"tap greeter-1.apps", "untap greeter-1.apps"}) {
		t.Errorf("tapper calls %v", got)
	}
	top := NewTop()
	for _, ev := range events {
		top.Add(ev)
	}
	rows := top.Rows()
	if len(rows) != 1 || rows[0].Count != 2 || rows[0].Successes != 1 || rows[0].Source != "10.0.1.30" || rows[0].Destination != "greeter-1" {
		t.Errorf("top rows %+v", rows)
	}
}

func join(l []string) string {
	out := ""
	for _, s := range l {
		out += "  " + s + "\n"
	}
	return out
}

// TestLastWatcherUntaps: a proxy stays tapped while any session watches it.
func TestLastWatcherUntaps(t *testing.T) {
	tapper := &recordingTapper{}
	h := NewHub(tapper, nil)
	ctx, cancel := context.WithCancel(context.Background())
	a, _ := h.Watch(ctx, []string{"web-1.shop"}, Filter{})
	b, _ := h.Watch(context.Background(), []string{"web-1.shop", "web-2.shop"}, Filter{})
	cancel() // a ends with its context (the HTTP request of /api/tap)
	waitClosed(t, a)
	if !h.Tapped("web-1.shop") {
		t.Fatal("web-1 untapped while b still watches it")
	}
	b.Close()
	want := []string{"tap web-1.shop", "tap web-2.shop", "untap web-1.shop", "untap web-2.shop"}
	if got := tapper.Calls(); !slices.Equal(got, want) {
		t.Errorf("tapper calls %v, want %v", got, want)
	}
	if _, err := h.Watch(context.Background(), nil, Filter{}); err == nil {
		t.Error("a session on no proxies was accepted")
	}
}

func waitClosed(t *testing.T, w *Watcher) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, open := <-w.Events:
			if !open {
				return
			}
		case <-timeout:
			t.Fatal("session did not end")
		}
	}
}

// TestSlowWatcherDrops: a watcher that does not read loses events, counted,
// and the proxy's stream is never held up.
func TestSlowWatcherDrops(t *testing.T) {
	h := NewHub(&recordingTapper{}, nil)
	h.Buffer = 2
	c := serve(t, h)
	w, _ := h.Watch(context.Background(), []string{"web-1.shop"}, Filter{})
	batch := make([]*accesslogdatav3.HTTPAccessLogEntry, 50)
	for i := range batch {
		batch[i] = entry(corev3.RequestMethod_GET, "/", 200, "", true)
	}
	done := make(chan error, 1)
	go func() { done <- stream(t, c, "web-1.shop", translate.TapLogInbound, batch) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy's stream was held up by a slow watcher")
	}
	if got := w.Dropped(); got != 48 {
		t.Errorf("dropped %d, want 48", got)
	}
	w.Close()
}

// TestBadStreams: garbage from a proxy is refused or skipped, never shown.
func TestBadStreams(t *testing.T) {
	h := NewHub(&recordingTapper{}, nil)
	h.Authorize = func(_ context.Context, node string) error {
		if node == "intruder.shop" {
			return status.Error(codes.PermissionDenied, "not you")
		}
		return nil
	}
	c := serve(t, h)
	w, _ := h.Watch(context.Background(), []string{"web-1.shop", "intruder.shop"}, Filter{})
	good := entry(corev3.RequestMethod_GET, "/ok", 200, "", true)
	tests := []struct {
		name     string
		node     string
		logName  string
		batch    []*accesslogdatav3.HTTPAccessLogEntry
		wantCode codes.Code
	}{
		{"no node id", "", translate.TapLogInbound, []*accesslogdatav3.HTTPAccessLogEntry{good}, codes.InvalidArgument},
		{"unknown log name", "web-1.shop", "someone-elses-log", []*accesslogdatav3.HTTPAccessLogEntry{good}, codes.InvalidArgument},
		{"not authorized for the node", "intruder.shop", translate.TapLogInbound, []*accesslogdatav3.HTTPAccessLogEntry{good}, codes.PermissionDenied},
		{"entries without request or common properties, bad grpc-status", "web-1.shop", translate.TapLogOutbound, []*accesslogdatav3.HTTPAccessLogEntry{
			{}, {CommonProperties: &accesslogdatav3.AccessLogCommon{}}, entry(corev3.RequestMethod_GET, "/bad", 200, "not-a-number", false),
		}, codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := stream(t, c, tc.node, tc.logName, tc.batch)
			if got := status.Code(err); got != tc.wantCode {
				t.Errorf("stream ended with %v (%v), want %v", got, err, tc.wantCode)
			}
		})
	}
	w.Close()
	for ev := range w.Events {
		t.Errorf("an event came through: %+v", ev)
	}
	if got := h.BadEntries(); got != 3 {
		t.Errorf("bad entries %d, want 3", got)
	}
}

// TestEventFrom: which entry field becomes which part of a tap line, per
// side of the proxy.
func TestEventFrom(t *testing.T) {
	trailersOnly := entry(corev3.RequestMethod_POST, "/helloworld.Greeter/SayHello", 200, "", true)
	trailersOnly.Response.ResponseHeaders = map[string]string{"grpc-status": "5"}
	noResponse := entry(corev3.RequestMethod_GET, "/", 200, "", false)
	noResponse.Response = nil
	// Outbound entries as Envoy 1.40 fills custom_tags from the tap
	// logger's value tag %UPSTREAM_TLS_VERSION% (translate.TapUpstreamTLSTag).
	upstreamTag := func(v string, withTag bool) *accesslogdatav3.HTTPAccessLogEntry {
		e := entry(corev3.RequestMethod_GET, "/", 200, "", true)
		if withTag {
			e.CommonProperties.CustomTags = map[string]string{translate.TapUpstreamTLSTag: v}
		}
		return e
	}
	noUpstream := upstreamTag("", false)
	noUpstream.CommonProperties.UpstreamRemoteAddress = nil
	noUpstream.Response.ResponseCode = wrapperspb.UInt32(503)
	tests := []struct {
		name    string
		dir     string
		e       *accesslogdatav3.HTTPAccessLogEntry
		dst     string
		tls     string
		grpc    string
		status  uint32
		success bool
	}{
		{"inbound: the original destination, downstream TLS", "in", entry(corev3.RequestMethod_GET, "/", 200, "", true), "10.0.1.21:50051", "true", "", 200, true},
		{"outbound: the chosen endpoint over TLS", "out", upstreamTag("TLSv1.3", true), "127.0.0.1:50051", "true", "", 200, true},
		{"outbound: plaintext upstream, the tag left out (downstream TLS does not count)", "out", upstreamTag("", false), "127.0.0.1:50051", "false", "", 200, true},
		{"outbound: plaintext upstream, the tag empty", "out", upstreamTag("", true), "127.0.0.1:50051", "false", "", 200, true},
		{"outbound: plaintext upstream, the tag a dash", "out", upstreamTag("-", true), "127.0.0.1:50051", "false", "", 200, true},
		{"outbound: no upstream reached, nothing to say of TLS", "out", noUpstream, "10.0.1.21:50051", "-", "", 503, false},
		{"inbound: an upstream tag is not the downstream's TLS", "in", func() *accesslogdatav3.HTTPAccessLogEntry {
			e := upstreamTag("TLSv1.3", true)
			e.CommonProperties.TlsProperties = nil
			return e
		}(), "10.0.1.21:50051", "false", "", 200, true},
		{"grpc-status in the headers of a trailers-only response", "in", trailersOnly, "10.0.1.21:50051", "true", "NotFound", 200, false},
		{"no response: status 0, not a success", "in", noResponse, "10.0.1.21:50051", "false", "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := eventFrom(tc.dir, tc.e)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Dst != tc.dst || ev.TLS != tc.tls || ev.GRPCStatus != tc.grpc || ev.Status != tc.status || ev.Success() != tc.success {
				t.Errorf("dst %s tls %s grpc %q status %d success %v, want %s %s %q %d %v",
					ev.Dst, ev.TLS, ev.GRPCStatus, ev.Status, ev.Success(), tc.dst, tc.tls, tc.grpc, tc.status, tc.success)
			}
		})
	}
}
