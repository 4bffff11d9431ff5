package main

import (
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
			cmd := newRootCommand(func(string) string { return "" }, time.Now)
			out := lineWriter{make(chan string, 1)}
			cmd.SetOut(out)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(tc.args)
			done := make(chan error, 1)
			go func() { done <- cmd.ExecuteContext(ctx) }()
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
