package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileExplainGolden runs `weft profile explain` on every
// testdata/explain/<case>.in.yaml and compares its output with <case>.txt,
// and `-o envoy` with <case>.envoy.yaml. go test -update rewrites them.
func TestProfileExplainGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "explain", "*.in.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no explain cases: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		for _, format := range []struct{ flag, ext string }{{"text", ".txt"}, {"envoy", ".envoy.yaml"}} {
			t.Run(name+"/"+format.flag, func(t *testing.T) {
				out, _, err := runStdin(t, "", "profile", "explain", "-o", format.flag, in)
				if err != nil {
					t.Fatalf("explain %s: %v", in, err)
				}
				path := filepath.Join("testdata", "explain", name+format.ext)
				if *update {
					if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if out != string(want) {
					t.Errorf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, out, want)
				}
			})
		}
	}
}

func TestProfileExplainRefuses(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		stdin   string
		wantErr string
	}{
		{name: "invalid profile", args: []string{"-"}, stdin: invalidProfile, wantErr: "1 of 1 objects invalid; nothing explained"},
		{name: "no profile or split", args: []string{"-"}, stdin: service, wantErr: "no ServiceProfile or TrafficSplit to explain"},
		{name: "unknown output", args: []string{"-o", "json", "-"}, stdin: validProfile, wantErr: `-o "json": want text or envoy`},
		{name: "bad port", args: []string{"--port", "0", "-"}, stdin: validProfile, wantErr: "--port 0"},
		{name: "not YAML", args: []string{"-"}, stdin: "a: [", wantErr: "<stdin>: not YAML or JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runStdin(t, tt.stdin, append([]string{"profile", "explain"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing when the input is refused", out)
			}
		})
	}
}
