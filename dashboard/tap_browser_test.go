package dashboard_test

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/dashboard"
	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/translate"
)

// tapSet is the model's tap set as the hub drives it: what the control plane's
// store would be told.
type tapSet struct {
	mu    sync.Mutex
	calls []string
}

func (s *tapSet) SetTapped(node string, on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	verb := "untap "
	if on {
		verb = "tap "
	}
	s.calls = append(s.calls, verb+node)
	return true
}

func (s *tapSet) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// hubTapper runs sessions on a tap.Hub in this process, as the control plane's
// /api/tap handler does (tap.Hub.Handler): deploy/web is the one proxy
// web-7d9c-1.shop.
type hubTapper struct{ hub *tap.Hub }

func (t hubTapper) Tap(ctx context.Context, namespace, target string, onProxies func([]string), onEvent func(tap.Event) error) (tap.Line, error) {
	if namespace != "shop" || target != "deploy/web" {
		return tap.Line{}, errors.New("no such deployment")
	}
	nodes := []string{"web-7d9c-1.shop"}
	w, err := t.hub.Watch(ctx, nodes, tap.Filter{})
	if err != nil {
		return tap.Line{}, err
	}
	defer w.Close()
	onProxies(nodes)
	for ev := range w.Events {
		if err := onEvent(ev); err != nil {
			return tap.Line{}, err
		}
	}
	return tap.Line{End: "client gone", Dropped: w.Dropped()}, nil
}

func sock(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// webEntry is one request as web's Envoy logs it (HTTPAccessLogEntry,
// api/envoy/data/accesslog/v3/accesslog.proto, Envoy 1.40): inbound from a
// client over mTLS, or outbound to api, whose upstream TLS version the tap
// logger's custom tag carries (translate.TapUpstreamTLSTag).
func webEntry(outbound bool, path string, status uint32, at time.Time) *accesslogdatav3.HTTPAccessLogEntry {
	c := &accesslogdatav3.AccessLogCommon{
		StartTime:                   timestamppb.New(at),
		TimeToFirstDownstreamTxByte: durationpb.New(4200 * time.Microsecond),
		TimeToLastDownstreamTxByte:  durationpb.New(4500 * time.Microsecond),
	}
	authority := "web.shop.svc.cluster.local:80"
	if outbound {
		authority = "api.shop.svc.cluster.local:80"
		c.DownstreamRemoteAddress, c.DownstreamLocalAddress = sock("10.0.1.21", 51200), sock("10.96.0.40", 80)
		c.UpstreamRemoteAddress = sock("10.0.2.7", 8080)
		c.CustomTags = map[string]string{translate.TapUpstreamTLSTag: "TLSv1.3"}
	} else {
		c.DownstreamRemoteAddress, c.DownstreamLocalAddress = sock("10.0.3.9", 40312), sock("10.0.1.21", 8080)
		c.UpstreamRemoteAddress = sock("127.0.0.1", 8080)
		c.TlsProperties = &accesslogdatav3.TLSProperties{TlsVersion: accesslogdatav3.TLSProperties_TLSv1_3}
	}
	return &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: c,
		ProtocolVersion:  accesslogdatav3.HTTPAccessLogEntry_HTTP11,
		Request:          &accesslogdatav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Authority: authority, Path: path},
		Response:         &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(status), ResponseBodyBytes: 310},
	}
}

// standInEnvoy streams web's access logs to addr over Envoy's access log
// service (envoy.service.accesslog.v3 StreamAccessLogs, identifier in the
// first message only) until ctx ends: a stand-in for web's sidecar, one
// stream per log name as the two tap loggers open them. burst, when it
// receives, sends n entries at once.
func standInEnvoy(ctx context.Context, t *testing.T, addr string, burst <-chan int) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := accesslogv3.NewAccessLogServiceClient(conn)
	streams := map[bool]accesslogv3.AccessLogService_StreamAccessLogsClient{}
	for _, out := range []bool{false, true} {
		s, err := client.StreamAccessLogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		streams[out] = s
	}
	send := func(out bool, first bool, entries ...*accesslogdatav3.HTTPAccessLogEntry) error {
		msg := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
			HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}}
		if first {
			name := translate.TapLogInbound
			if out {
				name = translate.TapLogOutbound
			}
			msg.Identifier = &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "web-7d9c-1.shop"}, LogName: name}
		}
		return streams[out].Send(msg)
	}
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		status := uint32(200)
		if i%5 == 4 {
			status = 503
		}
		now := time.Now()
		var err error
		if e := send(false, i == 0, webEntry(false, "/", 200, now)); e != nil {
			err = e
		}
		if e := send(true, i == 0, webEntry(true, "/items/"+strings.Repeat("x", i%3), status, now)); e != nil {
			err = e
		}
		if err != nil {
			return // the test is over and the connection with it
		}
		select {
		case n := <-burst:
			batch := make([]*accesslogdatav3.HTTPAccessLogEntry, n)
			for j := range batch {
				batch[j] = webEntry(true, "/burst", 200, now)
			}
			if send(true, false, batch...) != nil {
				return
			}
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// TestTapPageInBrowser opens web's tap page in headless Chromium the way a person
// does, from the deployment's page, while a stand-in Envoy streams web's requests:
// the table fills, newest first, with direction, addresses, method, path, status,
// latency and TLS; a burst leaves only dashboard.TapRows rows; Stop ends the session
// (the hub takes web out of the tap set) and so does leaving the page. Screenshots
// go to test-artifacts/dashboard/tap.
func TestTapPageInBrowser(t *testing.T) {
	exe := chromium(t)
	set := &tapSet{}
	hub := tap.NewHub(set, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hub.Register(gs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	ctxEnvoy, stopEnvoy := context.WithCancel(context.Background())
	burst := make(chan int)
	envoyDone := make(chan struct{})
	go func() { defer close(envoyDone); standInEnvoy(ctxEnvoy, t, lis.Addr().String(), burst) }()
	t.Cleanup(func() { stopEnvoy(); <-envoyDone })

	h, err := dashboard.New(tableSource{}, dashboard.Options{Tapper: hubTapper{hub}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx, errs := startBrowser(t, exe)
	dir := filepath.Join(artifacts(t), "tap")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) {
		t.Helper()
		// The viewport, what a person sees: a full page of 200 rows is too tall to read.
		b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#tap-rows tr:not(.waiting)").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 15s for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	tapped := func(calls ...string) func() bool {
		return func() bool { return slices.Equal(set.Calls(), calls) }
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/namespaces/shop/deployments/web")); err != nil {
		t.Fatal(err)
	}
	shot("deployment")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a.button[href="/namespaces/shop/deployments/web/tap"]`)), chromedp.WaitVisible(chromedp.CSS("#tap"))); err != nil {
		t.Fatalf("following the deployment page's tap link: %v", err)
	}
	waitFor("web to be tapped", tapped("tap web-7d9c-1.shop"))
	waitFor("a failed request among the rows", func() bool { return rows() >= 6 && strings.Contains(text("#tap-rows"), "503") })
	shot("live")
	page := text("main")
	for _, want := range []string{"Live tap of deployment web", "LIVE", "on 1 proxy: web-7d9c-1.shop",
		"inbound", "10.0.3.9:40312", "10.0.1.21:8080", // a client over mTLS: TLS yes
		"outbound", "api.shop.svc.cluster.local:80", "endpoint 10.0.2.7:8080", "/items/", "GET", "200", "503", "4ms", "yes"} {
		if !strings.Contains(page, want) {
			t.Errorf("the tap page does not show %q; it shows:\n%s", want, page)
		}
	}
	if strings.Contains(page, "{\"") {
		t.Errorf("the tap page shows raw JSON:\n%s", page)
	}
	first := text("#tap-rows tr:first-child td:first-child")
	if _, err := time.Parse("15:04:05.000", first); err != nil {
		t.Errorf("the newest row's time %q is not HH:MM:SS.mmm: %v", first, err)
	}

	burst <- dashboard.TapRows + 50
	waitFor("the burst to fill the table", func() bool { return strings.Contains(text("#tap-rows"), "/burst") && rows() == dashboard.TapRows })
	shot("burst")
	if n := rows(); n != dashboard.TapRows {
		t.Errorf("%d rows after a burst, want the bound %d", n, dashboard.TapRows)
	}

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#tap-stop"))); err != nil {
		t.Fatal(err)
	}
	waitFor("Stop to end the session", tapped("tap web-7d9c-1.shop", "untap web-7d9c-1.shop"))
	if s := text("#tap-state"); !strings.Contains(s, "Stopped") {
		t.Errorf("after Stop the state says %q", s)
	}
	if s := text("#tap-stop"); s != "Tap again" {
		t.Errorf("after Stop the button says %q", s)
	}
	shot("stopped")

	// Leaving the page ends its session too.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/namespaces/shop/deployments/web/tap")); err != nil {
		t.Fatal(err)
	}
	waitFor("the second session", tapped("tap web-7d9c-1.shop", "untap web-7d9c-1.shop", "tap web-7d9c-1.shop"))
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor("leaving the page to end the session", tapped("tap web-7d9c-1.shop", "untap web-7d9c-1.shop", "tap web-7d9c-1.shop", "untap web-7d9c-1.shop"))
	// A deployment that cannot be tapped: the page says why and stays stopped.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/namespaces/shop/deployments/nope/tap")); err != nil {
		t.Fatal(err)
	}
	waitFor("the reason on the page", func() bool { return strings.Contains(text("#tap-state"), "no such deployment") })
	shot("failed")
	if n := rows(); n != 0 {
		t.Errorf("%d rows for a session that never started", n)
	}
	if s := text("#tap-rows"); !strings.Contains(s, "No requests were seen.") {
		t.Errorf("the table of a session that never started says %q", s)
	}
	if e := errs.take(); len(e) > 0 {
		t.Errorf("the browser reported errors:\n%s", strings.Join(e, "\n"))
	}
}
