package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/weftmesh/weft/testenv"
)

var allComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// binDirWith builds a bin directory of links to the real binaries, where fakes[name] replaces
// a binary by a shell script and a nil entry leaves it out.
func binDirWith(t *testing.T, fakes map[string]*string) string {
	t.Helper()
	real, err := testenv.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range allComponents {
		script, faked := fakes[c]
		switch {
		case !faked:
			if err := os.Symlink(filepath.Join(real, c), filepath.Join(dir, c)); err != nil {
				t.Fatal(err)
			}
		case script != nil:
			body := strings.ReplaceAll(*script, "REAL", filepath.Join(real, c))
			if err := os.WriteFile(filepath.Join(dir, c), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func ptr[T any](v T) *T { return &v }

func TestStartRejectsMissingOrWrongBinaries(t *testing.T) {
	tests := []struct {
		name  string
		fakes map[string]*string
		want  string // %s is the bin directory
	}{
		{
			name:  "all missing",
			fakes: map[string]*string{"etcd": nil, "kube-apiserver": nil, "kube-controller-manager": nil, "kube-scheduler": nil, "kwok": nil},
			want:  "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok not found in %s: run make bins",
		},
		{
			name:  "scheduler missing",
			fakes: map[string]*string{"kube-scheduler": nil},
			want:  "kube-scheduler not found in %s: run make bins",
		},
		{
			name:  "apiserver at another version",
			fakes: map[string]*string{"kube-apiserver": ptr("echo 'Kubernetes v1.30.0'\n")},
			want:  "kube-apiserver in %s is v1.30.0, want v1.36",
		},
		{
			name:  "kwok without a version",
			fakes: map[string]*string{"kwok": ptr("echo hello\n")},
			want:  "kwok in %s reports no version",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := binDirWith(t, tt.fakes)
			_, err := testenv.Start(t.Context(), testenv.Options{BinDir: dir})
			if err == nil {
				t.Fatal("Start succeeded")
			}
			msg := err.Error()
			if want := fmt.Sprintf(tt.want, dir); !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
			if !strings.HasSuffix(msg, "run make bins") || strings.Contains(msg, "\n") {
				t.Errorf("want one line ending in the make target, got %q", msg)
			}
		})
	}
}

var envDirInLog = regexp.MustCompile(`(/\S*weft-testenv-\d+)/logs/`)

func TestStartReportsCrashedComponentWithItsLog(t *testing.T) {
	tests := []struct {
		name    string
		fakes   map[string]*string
		opts    testenv.Options
		wantLog []string
	}{
		{
			// What etcd prints when its port was taken between our probe and its bind.
			name: "etcd cannot bind",
			fakes: map[string]*string{"etcd": ptr(`[ "$1" = --version ] && exec REAL --version
echo '{"level":"info","msg":"configuring peer listeners"}'
echo '{"level":"fatal","msg":"discovery failed","error":"listen tcp 127.0.0.1:2380: bind: address already in use"}' >&2
exit 1
`)},
			wantLog: []string{"etcd exited (exit status 1)", "bind: address already in use", "configuring peer listeners"},
		},
		{
			name:    "kube-apiserver rejects a flag",
			opts:    testenv.Options{APIServerFlags: []string{"--no-such-flag=1"}},
			wantLog: []string{"kube-apiserver exited", "unknown flag: --no-such-flag"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.BinDir = binDirWith(t, tt.fakes)
			_, err := testenv.Start(t.Context(), opts)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			msg := err.Error()
			for _, w := range tt.wantLog {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}

			m := envDirInLog.FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("error names no log file:\n%s", msg)
			}
			if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
				t.Errorf("environment directory %s left behind (stat: %v)", m[1], err)
			}
			if procs := processesMentioning(t, m[1]); len(procs) > 0 {
				t.Errorf("processes of the failed environment still running: %v", procs)
			}
			kept := regexp.MustCompile(`component logs kept in (\S+)\)`).FindStringSubmatch(msg)
			if kept == nil {
				t.Fatalf("error does not say where the logs were kept:\n%s", msg)
			}
			defer os.RemoveAll(filepath.Dir(kept[1]))
			name := strings.Fields(tt.wantLog[0])[0]
			if _, err := os.Stat(filepath.Join(kept[1], name+".log")); err != nil {
				t.Errorf("kept logs lack %s.log: %v", name, err)
			}
		})
	}
}
