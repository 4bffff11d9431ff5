package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Component names double as binary names in bin/ and as log file names.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kwok                  = "kwok"
)

// components lists every binary the environment runs, in start order.
var components = []string{Etcd, KubeAPIServer, KubeControllerManager, KubeScheduler, Kwok}

// binarySpec says which tools-module requirement pins a binary and how to read the version
// the binary reports about itself.
type binarySpec struct {
	module string
	// versionLine matches the output of `<binary> --version`; group 1 is the version
	// without a leading "v".
	versionLine *regexp.Regexp
}

var binarySpecs = map[string]binarySpec{
	Etcd:                  {"go.etcd.io/etcd/server/v3", regexp.MustCompile(`etcd Version: v?(\S+)`)},
	KubeAPIServer:         {"k8s.io/kubernetes", regexp.MustCompile(`Kubernetes v?(\S+)`)},
	KubeControllerManager: {"k8s.io/kubernetes", regexp.MustCompile(`Kubernetes v?(\S+)`)},
	KubeScheduler:         {"k8s.io/kubernetes", regexp.MustCompile(`Kubernetes v?(\S+)`)},
	Kwok:                  {"sigs.k8s.io/kwok", regexp.MustCompile(`kwok version v?(\S+)`)},
}

// repoRoot finds the Weft checkout by walking up from the working directory to the
// directory that holds testenv/tools/go.mod. Tests run in their package directory and
// `go run` runs wherever it was started, so the working directory is the only anchor both share.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the Weft checkout: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "testenv", "tools", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the Weft checkout: no testenv/tools/go.mod above the working directory")
		}
		dir = parent
	}
}

// DefaultBinDir is where `make bins` puts the binaries: $WEFT_BIN_DIR if set, else bin/ at
// the root of the checkout.
func DefaultBinDir() (string, error) {
	if dir := os.Getenv("WEFT_BIN_DIR"); dir != "" {
		return dir, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// pinnedVersions reads the versions the tools module pins, keyed by module path.
// The tools go.mod is the single place they are written down; the Makefile reads it too.
func pinnedVersions(toolsGoMod string) (map[string]string, error) {
	var modules []string
	for _, s := range binarySpecs {
		modules = append(modules, s.module)
	}
	return readPins(toolsGoMod, modules...)
}

// readPins reads from a go.mod the version it requires of each of modules, keyed by module
// path; every one must be there.
func readPins(goMod string, modules ...string) (map[string]string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return nil, fmt.Errorf("reading pinned versions: %w", err)
	}
	defer f.Close()
	want := map[string]bool{}
	for _, m := range modules {
		want[m] = true
	}
	versions := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		// Replace directives ("a => b v") have "=>" second and are not what a binary is built at.
		if len(fields) >= 2 && want[fields[0]] && strings.HasPrefix(fields[1], "v") {
			versions[fields[0]] = fields[1]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading pinned versions from %s: %w", goMod, err)
	}
	for m := range want {
		if versions[m] == "" {
			return nil, fmt.Errorf("reading pinned versions: %s has no requirement on %s", goMod, m)
		}
	}
	return versions, nil
}

// checkBinaries makes sure every component binary exists in binDir and, when the pinned
// versions are known, reports that version. Every problem comes back as one line that names
// the binary and the make target that fixes it.
func checkBinaries(ctx context.Context, binDir string, pinned map[string]string) error {
	var missing []string
	for _, c := range components {
		fi, err := os.Stat(filepath.Join(binDir, c))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not found in %s: run make bins", strings.Join(missing, ", "), binDir)
	}
	if pinned == nil {
		return nil
	}

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	errs := make([]error, len(components))
	var wg sync.WaitGroup
	for i, c := range components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = checkVersion(ctx, binDir, c, pinned[binarySpecs[c].module])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func checkVersion(ctx context.Context, binDir, name, want string) error {
	return checkVersionAt(ctx, filepath.Join(binDir, name), binarySpecs[name].versionLine, want)
}

// checkVersionAt runs the binary at path with --version and compares what versionLine reads
// from its output with want.
func checkVersionAt(ctx context.Context, path string, versionLine *regexp.Regexp, want string) error {
	name, binDir := filepath.Base(path), filepath.Dir(path)
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s in %s does not run (%v): run make bins", name, binDir, err)
	}
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("%s in %s reports no version, want %s: run make bins", name, binDir, want)
	}
	if got := "v" + string(m[1]); got != want {
		return fmt.Errorf("%s in %s is %s, want %s: run make bins", name, binDir, got, want)
	}
	return nil
}
