package bench

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	netpprof "net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDumpStacks: a sync that failed leaves the load generator's
// goroutines, and the control plane's when its admin port answers.
func TestDumpStacks(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/debug/pprof/goroutine", netpprof.Handler("goroutine"))
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	downAddr := strings.TrimPrefix(down.URL, "http://")
	down.Close()

	for _, tc := range []struct {
		name      string
		adminAddr string
		wantCP    bool
	}{
		{"control plane answers", strings.TrimPrefix(up.URL, "http://"), true},
		{"control plane gone", downAddr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			r := &run{
				cfg:     Config{Out: out, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
				cp:      &controlPlane{adminAddr: tc.adminAddr},
				proxies: 7,
			}
			r.dumpStacks(t.Context(), "connect")

			load, err := os.ReadFile(filepath.Join(out, "load-7-connect-goroutines.txt"))
			if err != nil {
				t.Fatalf("load generator dump: %v", err)
			}
			// debug=2 is the panic format, one "goroutine N [state]:" per goroutine.
			if !strings.Contains(string(load), "TestDumpStacks") {
				t.Errorf("load generator dump does not show this test's goroutine:\n%.500s", load)
			}
			cp, err := os.ReadFile(filepath.Join(out, "cp-7-connect-goroutines.txt"))
			switch {
			case tc.wantCP && err != nil:
				t.Errorf("control plane dump: %v", err)
			case tc.wantCP && !strings.Contains(string(cp), "goroutine "):
				t.Errorf("control plane dump holds no goroutine:\n%.500s", cp)
			case !tc.wantCP && err == nil:
				t.Errorf("a control plane dump was left although its admin port was gone:\n%.500s", cp)
			}
		})
	}
}
