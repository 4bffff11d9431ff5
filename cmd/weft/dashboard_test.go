package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// lineWriter hands the first line written to it to a channel.
type lineWriter struct{ lines chan string }

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w.lines <- string(p):
	default:
	}
	return len(p), nil
}

// startDashboard runs weft with args until ctx ends: out receives what it
// prints first (the dashboard's address), done how it ended.
func startDashboard(ctx context.Context, args ...string) (out lineWriter, done <-chan error) {
	cmd := newRootCommand(func(string) string { return "" }, time.Now)
	out = lineWriter{make(chan string, 1)}
	cmd.SetOut(out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	d := make(chan error, 1)
	go func() { d <- cmd.ExecuteContext(ctx) }()
	return out, d
}

// TestDashboardCommand serves the dashboard over a Prometheus that is not there: the
// command prints its address, the page says what is wrong, and the command ends with
// its context.
func TestDashboardCommand(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		path    string
		want    string
		wantErr string
	}{
		{name: "Prometheus down", args: []string{"dashboard", "--prometheus", "http://127.0.0.1:1", "--addr", "127.0.0.1:0"},
			path: "namespaces/shop", want: "cannot reach Prometheus at http://127.0.0.1:1"},
		{name: "control plane down", args: []string{"dashboard", "--cp", "http://127.0.0.1:1", "--addr", "127.0.0.1:0"},
			path: "", want: "namespaces: "},
		{name: "bad address", args: []string{"dashboard", "--prometheus", "http://127.0.0.1:1", "--addr", "256.0.0.1:x"}, wantErr: "serving the dashboard on 256.0.0.1:x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out, done := startDashboard(ctx, tc.args...)
			if tc.wantErr != "" {
				err := <-done
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			var line string
			select {
			case line = <-out.lines:
			case err := <-done:
				t.Fatalf("the command ended before serving: %v", err)
			}
			url := strings.TrimSpace(strings.TrimPrefix(line, "Weft dashboard: "))
			resp, err := http.Get(url + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("page lacks %q:\n%s", tc.want, body)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("the command ended with %v", err)
			}
		})
	}
}

// TestDashboardTap: `weft dashboard` serves the tap page's stream from the control
// plane's /api/tap (tapControlPlane's hub, fed by a stand-in Envoy): the requests
// arrive as events, a target that cannot be tapped says why, and when the page's
// request ends the control plane's session ends with it (the hub untaps web-1).
func TestDashboardTap(t *testing.T) {
	cpURL, hub := tapControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, done := startDashboard(ctx, "dashboard", "--cp", cpURL, "--addr", "127.0.0.1:0")
	base := strings.TrimSpace(strings.TrimPrefix(<-out.lines, "Weft dashboard: "))

	tests := []struct {
		name, deployment string
		// want are the stream's lines to wait for, in order.
		want []string
	}{
		{name: "requests arrive", deployment: "web", want: []string{
			"event: proxies", `data: ["web-1.shop"]`, `"path":"/books","status":"200"`, `"status":"503"`}},
		{name: "an unmeshed deployment", deployment: "plain", want: []string{
			"event: end", `{"failed":"true","reason":"tap deploy/plain: Deployment shop/plain cannot be tapped: not meshed (no Weft proxy): plain-1"}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reqCtx, endPage := context.WithTimeout(ctx, 20*time.Second)
			defer endPage()
			req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, base+"namespaces/shop/deployments/"+tc.deployment+"/tap/events", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			sc := bufio.NewScanner(resp.Body)
			want := tc.want
			for len(want) > 0 && sc.Scan() {
				if strings.Contains(sc.Text(), want[0]) {
					want = want[1:]
				}
			}
			if len(want) > 0 {
				t.Fatalf("the stream ended (%v) before %q", sc.Err(), want[0])
			}
			if tc.deployment != "web" {
				return
			}
			if !hub.Tapped("web-1.shop") {
				t.Fatal("web-1 is not tapped while its page streams")
			}
			endPage() // the browser closes the page
			deadline := time.Now().Add(10 * time.Second)
			for hub.Tapped("web-1.shop") {
				if time.Now().After(deadline) {
					t.Fatal("the control plane's session outlived the page")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the command ended with %v", err)
	}
}
