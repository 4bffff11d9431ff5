package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/healthcheck"
)

// Usage errors exit with 2, before anything is asked of a cluster.
func TestCheckUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"check", "-o", "yaml"}, `-o "yaml": want text or json`},
		{[]string{"check", "--pre", "--proxy"}, "--pre and --proxy exclude each other"},
		{[]string{"check", "--wait", "-1s"}, "--wait -1s: must not be negative"},
		{[]string{"check", "--wait", "soon"}, `invalid argument "soon" for "--wait"`},
		{[]string{"check", "--no-such-flag"}, "unknown flag: --no-such-flag"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := run(t, nil, tc.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage {
				t.Fatalf("error %v, want exit status %d", err, exitUsage)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// An API server that does not answer fails the first check, which ends
// the run: exit status 1, the same report in text and JSON.
func TestCheckUnreachableAPI(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://`+closedAddr(t)+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			out, _, err := run(t, nil, "check", "--kubeconfig", kubeconfig, "--timeout", "2s", "-o", format)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitCheckFailed || err.Error() != "1 checks failed" {
				t.Fatalf("error %v, want exit status %d and 1 check failed", err, exitCheckFailed)
			}
			if format == "text" {
				for _, want := range []string{
					"kubernetes-api\n--------------\n× can query the Kubernetes API\n    asking the API server its version: ",
					"    see " + healthcheck.DefaultHintBase + "#k8s-api for hints\n",
					"Status check results are ×\n",
				} {
					if !strings.Contains(out, want) {
						t.Errorf("output lacks %q:\n%s", want, out)
					}
				}
				return
			}
			var rep healthcheck.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Success || len(rep.Categories) != 1 || len(rep.Categories[0].Checks) != 1 ||
				rep.Categories[0].Checks[0].Result != healthcheck.StatusError {
				t.Errorf("report %+v, want one failed kubernetes-api check and nothing after it", rep)
			}
		})
	}
}
