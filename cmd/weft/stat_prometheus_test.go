package main

import (
	"strings"
	"testing"
)

// TestStatPrometheusFlag: stat, routes and edges go to the Prometheus --prometheus names,
// not to the control plane, and a Prometheus that is down is said in one sentence.
func TestStatPrometheusFlag(t *testing.T) {
	for _, args := range [][]string{
		{"stat", "deploy", "-n", "shop"},
		{"routes", "svc/api", "-n", "shop"},
		{"edges", "deploy", "-n", "shop"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			// --cp points nowhere too: the error must name Prometheus, not the control plane.
			_, _, err := run(t, nil, append(args, "--cp", "http://127.0.0.1:1", "--prometheus", "http://127.0.0.1:1")...)
			if err == nil || !strings.Contains(err.Error(), "cannot reach Prometheus at http://127.0.0.1:1") {
				t.Fatalf("err = %v, want one saying Prometheus at http://127.0.0.1:1 cannot be reached", err)
			}
		})
	}
}
