package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo end to end, as `make demo` runs it, except that it tears down after the summary.
func TestDemoShowsTheSampleAppAndCleansUp(t *testing.T) {
	var out, errOut bytes.Buffer
	sample := filepath.Join("..", "..", "..", "deploy", "samples", "emojivoto.yaml")
	if err := run(t.Context(), []string{"-once", "-sample", sample}, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	got := out.String()

	wants := []struct {
		what string
		re   string
		n    int
	}{
		{"a running pod per replica (2 emoji, 1 voting, 1 web)", `(?m)^\s+(emoji|voting|web)-\S+\s+Running\s+10\.244\.\d+\.\d+\s+(emoji|voting|web)\s+kwok-node-0$`, 4},
		{"gRPC services on 8080", `(?m)^\s+(emoji|voting)-svc\s+10\.0\.0\.\d+\s+grpc 8080->8080 \(appProtocol grpc\)`, 2},
		{"the web service on 80", `(?m)^\s+web-svc\s+10\.0\.0\.\d+\s+http 80->8080 \(appProtocol http\)$`, 1},
		{"a ready endpoint per pod", `ready=true\s+pod (emoji|voting|web)-`, 4},
		{"a kubectl command line", `kubectl -n emojivoto get`, 1},
		{"a clean teardown", `Stopped every component and removed the cluster's files\.`, 1},
	}
	for _, w := range wants {
		if n := len(regexp.MustCompile(w.re).FindAllString(got, -1)); n != w.n {
			t.Errorf("want %d lines showing %s, found %d", w.n, w.what, n)
		}
	}

	m := regexp.MustCompile(`KUBECONFIG=(\S+)/kubeconfig`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no kubeconfig path printed:\n%s", got)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s left behind (stat: %v)", m[1], err)
	}
	if t.Failed() || strings.Contains(errOut.String(), "level=ERROR") {
		t.Logf("stdout:\n%s\nstderr:\n%s", got, &errOut)
	}
}
