package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo end to end, as `make demo` runs it, except that it tears down after the summary.
func TestDemoShowsTheSampleAppAndCleansUp(t *testing.T) {
	var out, errOut bytes.Buffer
	root := filepath.Join("..", "..", "..")
	args := []string{"-once",
		"-sample", filepath.Join(root, "deploy", "samples", "emojivoto.yaml"),
		"-mesh", filepath.Join(root, "deploy", "samples", "emojivoto-mesh.yaml"),
		"-crds", filepath.Join(root, "deploy", "crds"),
	}
	if err := run(t.Context(), args, &out, &errOut); err != nil {
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

		// The control plane's config for web's sidecar, from the ServiceProfiles.
		{"the config heading", `(?m)^==> What web's sidecar receives from the control plane$`, 1},
		{"the sidecar synced", `(?m)^\s+node web-\S+\.emojivoto ACKed listeners \S+, routes \S+, clusters \S+ and \d+ load assignments$`, 1},
		{"retried emoji routes with their timeouts", `(?m)^\s+POST /emojivoto\.v1\.EmojiService/(ListAll|FindByShortcode)\s+POST regex /emojivoto\\\.v1\\\.EmojiService/\S+\s+outbound\|8080\|emoji-svc\.emojivoto\.svc\.cluster\.local\s+(300|100)ms\s+\dx on `, 2},
		{"the voting routes, votes not retried", `(?m)^\s+POST /emojivoto\.v1\.VotingService/(Results\s.*\s+outbound\|8080\|voting-svc\.emojivoto\.svc\.cluster\.local\s+500ms\s+\dx on |VoteDoughnut\s.*\s+outbound\|8080\|voting-svc\.emojivoto\.svc\.cluster\.local\s+1s\s+-$)`, 2},
		{"a default route after each profile's", `(?m)^\s+\[DEFAULT\]\s+prefix /\s+outbound\|8080\|(emoji|voting)-svc\.emojivoto\.svc\.cluster\.local\s`, 2},
		{"least-request gRPC clusters for emoji and voting", `(?m)^\s+outbound\|8080\|(emoji|voting)-svc\.emojivoto\.svc\.cluster\.local\s+EDS\s+least_request \(choose 2\)\s+h2\s`, 2},
		{"the profiles' retry budget on emoji's cluster", `(?m)^\s+outbound\|8080\|emoji-svc\.emojivoto\.svc\.cluster\.local\s.*retry budget 20% \(min 10\)`, 1},
		{"a look-further command line per tool", `(?m)^\s+(go run \./cmd/weft --cp http://127\.0\.0\.1:\d+ (proxies|proxy-config web-\S+\.emojivoto)|curl -s http://127\.0\.0\.1:\d+/metrics \| grep \^weft_)$`, 3},
		{"a clean teardown", `Stopped every component and removed the cluster's files\.`, 1},
	}
	for _, w := range wants {
		if n := len(regexp.MustCompile(w.re).FindAllString(got, -1)); n != w.n {
			t.Errorf("want %d lines showing %s, found %d", w.n, w.what, n)
		}
	}

	// Every emoji pod's IP is an endpoint of emoji-svc's gRPC cluster, and nothing else is (a
	// cluster's further endpoints are printed on lines of their own, without its name).
	emojiIPs := regexp.MustCompile(`(?m)^\s+emoji-\S+\s+Running\s+(10\.244\.\d+\.\d+)\s`).FindAllStringSubmatch(got, -1)
	endpoints := regexp.MustCompile(`(?m)^\s+(?:outbound\|8080\|emoji-svc\.emojivoto\.svc\.cluster\.local\s+)?(\S+):8080\s+healthy\s.*\s(emoji-\S+)\.emojivoto$`).FindAllStringSubmatch(got, -1)
	var wantIPs, gotIPs []string
	for _, m := range emojiIPs {
		wantIPs = append(wantIPs, m[1])
	}
	for _, m := range endpoints {
		gotIPs = append(gotIPs, m[1])
	}
	slices.Sort(wantIPs)
	slices.Sort(gotIPs)
	if len(wantIPs) != 2 || !slices.Equal(wantIPs, gotIPs) {
		t.Errorf("emoji-svc's endpoints for web's sidecar are %v, want the emoji pods' IPs %v", gotIPs, wantIPs)
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
