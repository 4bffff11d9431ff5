package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/translate"
)

type tapSet map[string]bool

func (s tapSet) SetTapped(string, bool) bool { return true }

// tapControlPlane serves /api/tap on a real tap.Hub, whose access log
// service a stand-in Envoy feeds as soon as web-1.shop is tapped; it
// returns the URL and the hub.
func tapControlPlane(t *testing.T) (string, *tap.Hub) {
	t.Helper()
	hub := tap.NewHub(tapSet{}, slog.New(slog.DiscardHandler))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hub.Register(gs)
	go gs.Serve(lis)
	resolve := func(ns, target string) ([]string, error) {
		switch {
		case ns == "shop" && target == "deploy/web":
			return []string{"web-1.shop"}, nil
		case target == "deploy/plain":
			return nil, &tap.TargetError{Code: http.StatusUnprocessableEntity, Msg: "Deployment shop/plain cannot be tapped: not meshed (no Weft proxy): plain-1"}
		}
		return nil, &tap.TargetError{Code: http.StatusNotFound, Msg: "no pods"}
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+tap.Path, hub.Handler(resolve))
	hs := httptest.NewServer(mux)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for !hub.Tapped("web-1.shop") {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		// Stands in for Envoy 1.40's http_grpc access logger (messages of
		// api/envoy/service/accesslog/v3/als.proto).
		s, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
		if err != nil {
			return
		}
		entry := func(path string, code uint32, latency time.Duration) *accesslogdatav3.HTTPAccessLogEntry {
			return &accesslogdatav3.HTTPAccessLogEntry{
				CommonProperties: &accesslogdatav3.AccessLogCommon{
					DownstreamRemoteAddress:     &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.9", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5000}}}},
					DownstreamLocalAddress:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}},
					TlsProperties:               &accesslogdatav3.TLSProperties{},
					TimeToFirstDownstreamTxByte: durationpb.New(latency),
					TimeToLastDownstreamTxByte:  durationpb.New(latency + time.Millisecond),
				},
				Request:  &accesslogdatav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Authority: "web.shop:80", Path: path},
				Response: &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(code), ResponseBodyBytes: 5},
			}
		}
		_ = s.Send(&accesslogv3.StreamAccessLogsMessage{
			Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "web-1.shop"}, LogName: translate.TapLogInbound},
			LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
				LogEntry: []*accesslogdatav3.HTTPAccessLogEntry{entry("/books", 200, 2*time.Millisecond), entry("/books", 503, 7*time.Millisecond)},
			}},
		})
		_, _ = s.CloseAndRecv()
	}()
	t.Cleanup(func() {
		cancel()
		<-fed
		conn.Close()
		hs.Close()
		gs.Stop()
	})
	return hs.URL, hub
}

func TestTapCommand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantOut    []string
		wantErr    string
		wantStderr string
	}{
		{
			name: "lines",
			args: []string{"tap", "deploy/web", "-n", "shop", "--max", "1s"},
			wantOut: []string{
				"req id=1:1 proxy=in src=10.0.0.9:5000 dst=10.0.0.1:8080 tls=true :method=GET :authority=web.shop:80 :path=/books",
				"rsp id=1:1 proxy=in src=10.0.0.9:5000 dst=10.0.0.1:8080 tls=true :status=200 latency=2000µs",
				"end id=1:1 proxy=in src=10.0.0.9:5000 dst=10.0.0.1:8080 tls=true duration=1000µs response-length=5B",
				"req id=1:2 proxy=in src=10.0.0.9:5000 dst=10.0.0.1:8080 tls=true :method=GET :authority=web.shop:80 :path=/books",
				"rsp id=1:2 proxy=in src=10.0.0.9:5000 dst=10.0.0.1:8080 tls=true :status=503 latency=7000µs",
				"end id=1:2 proxy=in src=10.0.0.9:5000 dst=10.0.0.1:8080 tls=true duration=1000µs response-length=5B",
			},
			wantStderr: "session ended: session reached its maximum of 1s",
		},
		{
			name: "top without a terminal prints once",
			args: []string{"top", "deploy/web", "-n", "shop", "--max", "1s"},
			wantOut: []string{
				"Source     Destination   Method   Path     Count   Best   Worst   Last   Success Rate",
				"10.0.0.9   web-1         GET      /books   2       2ms    7ms     7ms    50.00%",
			},
		},
		{
			name:    "unmeshed target",
			args:    []string{"tap", "deploy/plain", "-n", "shop"},
			wantErr: "tap deploy/plain: Deployment shop/plain cannot be tapped: not meshed (no Weft proxy): plain-1",
		},
		{
			name:    "bad output",
			args:    []string{"tap", "deploy/web", "-o", "yaml"},
			wantErr: `-o "yaml": want text or json`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := tapControlPlane(t)
			out, stderr, err := run(t, map[string]string{cpEnv: url}, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(tc.wantOut, "\n") {
				t.Errorf("output:\n%s\nwant:\n%s", out, strings.Join(tc.wantOut, "\n"))
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q, want %q", stderr, tc.wantStderr)
			}
		})
	}
}

func TestTapJSON(t *testing.T) {
	url, _ := tapControlPlane(t)
	out, _, err := run(t, map[string]string{cpEnv: url}, "tap", "deploy/web", "-n", "shop", "--max", "1s", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var statuses []uint32
	for dec.More() {
		var e tap.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, e.Status)
		if e.Proxy != "web-1.shop" || e.Path != "/books" {
			t.Errorf("event %+v", e)
		}
	}
	if len(statuses) != 2 || statuses[0] != 200 || statuses[1] != 503 {
		t.Errorf("statuses %v, want [200 503]", statuses)
	}
}
