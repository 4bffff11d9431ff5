package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	errGone := errors.New("object gone for good")
	tests := []struct {
		name      string
		trueAfter int // calls; -1 never
		condErr   func(call int) error
		timeout   time.Duration
		wantErr   []string // substrings; none: success
		maxCalls  int
	}{
		{name: "already true", trueAfter: 1, timeout: time.Second, maxCalls: 1},
		{name: "true on the third poll", trueAfter: 3, timeout: 5 * time.Second, maxCalls: 3},
		{
			name: "times out quoting the last reason", trueAfter: -1, timeout: 350 * time.Millisecond,
			condErr: func(call int) error { return fmt.Errorf("only %d of 3 ready", call) },
			wantErr: []string{"waiting for the thing", "gave up after 350ms", "of 3 ready"},
		},
		{
			name: "permanent error stops at once", trueAfter: -1, timeout: 5 * time.Second,
			condErr: func(int) error { return Permanent(errGone) },
			wantErr: []string{"waiting for the thing", "object gone for good"}, maxCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := WaitFor(t.Context(), tt.timeout, "the thing", func(context.Context) (bool, error) {
				calls++
				var err error
				if tt.condErr != nil {
					err = tt.condErr(calls)
				}
				return tt.trueAfter > 0 && calls >= tt.trueAfter, err
			})
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			} else {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			}
			if tt.maxCalls > 0 && calls > tt.maxCalls {
				t.Errorf("condition called %d times, want at most %d", calls, tt.maxCalls)
			}
		})
	}
}

func TestPinnedVersions(t *testing.T) {
	tests := []struct {
		name    string
		gomod   string
		want    map[string]string
		wantErr string
	}{
		{
			name: "require block, replaces ignored",
			gomod: `module x
replace (
	k8s.io/api => k8s.io/api v0.36.3
	sigs.k8s.io/kwok => sigs.k8s.io/kwok v9.9.9
)
require (
	go.etcd.io/etcd/server/v3 v3.6.8
	k8s.io/kubernetes v1.36.3
	sigs.k8s.io/kwok v0.8.0
)
`,
			want: map[string]string{"go.etcd.io/etcd/server/v3": "v3.6.8", "k8s.io/kubernetes": "v1.36.3", "sigs.k8s.io/kwok": "v0.8.0"},
		},
		{
			name:  "single-line requires",
			gomod: "module x\nrequire go.etcd.io/etcd/server/v3 v3.6.8\nrequire k8s.io/kubernetes v1.36.3 // indirect\nrequire sigs.k8s.io/kwok v0.8.0\n",
			want:  map[string]string{"go.etcd.io/etcd/server/v3": "v3.6.8", "k8s.io/kubernetes": "v1.36.3", "sigs.k8s.io/kwok": "v0.8.0"},
		},
		{
			name:    "kwok not pinned",
			gomod:   "module x\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.8\n\tk8s.io/kubernetes v1.36.3\n)\n",
			wantErr: "no requirement on sigs.k8s.io/kwok",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "go.mod")
			if err := os.WriteFile(path, []byte(tt.gomod), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := pinnedVersions(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for m, v := range tt.want {
				if got[m] != v {
					t.Errorf("%s = %q, want %q", m, got[m], v)
				}
			}
		})
	}
}

func TestTail(t *testing.T) {
	var lines []string
	for i := range 100 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	tests := []struct {
		name    string
		content string
		n       int
		want    string
	}{
		{"last lines only", strings.Join(lines, "\n") + "\n", 2, "    line 98\n    line 99\n"},
		{"shorter than n", "a\nb", 5, "    a\n    b\n"},
		{"empty", "", 5, "    (log is empty)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.log")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := tail(path, tt.n); got != tt.want {
				t.Errorf("tail = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRemoveStaleDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		owner    string // contents of owner.pid; empty: no file
		wantKept bool
	}{
		{"owner killed", strconv.Itoa(dead.Process.Pid), false},
		{"owner alive", strconv.Itoa(os.Getpid()), true},
		{"no owner file", "", true},
		{"garbage owner file", "not a pid", true},
	}
	for i, tt := range tests {
		dir := filepath.Join(tmp, fmt.Sprintf("%s%d", dirPattern, i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if tt.owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(tt.owner), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	removeStaleDirs(slog.New(slog.DiscardHandler))
	for i, tt := range tests {
		_, err := os.Stat(filepath.Join(tmp, fmt.Sprintf("%s%d", dirPattern, i)))
		if kept := err == nil; kept != tt.wantKept {
			t.Errorf("%s: kept = %v, want %v", tt.name, kept, tt.wantKept)
		}
	}
}
