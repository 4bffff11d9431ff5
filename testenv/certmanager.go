package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// CertManagerController is cert-manager's controllers (the certificates pipeline, the
// CertificateRequest approver, and the self-signed and CA issuers), built by `make bins` from
// the tagged cert-manager module pinned in testenv/tools/certmanager/go.mod. Unlike the
// components above it is not started with the environment: only the tests of the external
// PKI mode need it, through StartCertManager.
const CertManagerController = "cert-manager-controller"

var certManagerVersion = regexp.MustCompile(`cert-manager-controller version v?(\S+)`)

// CertManagerCRDs is the directory holding cert-manager's cert-manager.io CRDs at the pinned
// version (its deploy/crds, unchanged), for InstallCRDs.
func CertManagerCRDs() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "testenv", "testdata", "cert-manager"), nil
}

// StartCertManager installs cert-manager's CRDs and runs its controllers, acting only in
// namespace (cert-manager's --namespace), until t ends. Scoping it to a namespace lets other
// tests of the package make CertificateRequests that nothing approves or signs. It returns
// once the process is up; what cert-manager does is for the test to wait for.
func (e *Env) StartCertManager(t testing.TB, namespace string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	bin := filepath.Join(e.binDir, CertManagerController)
	if err := e.checkCertManager(ctx, bin); err != nil {
		t.Fatal(err)
	}
	crds, err := CertManagerCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.InstallCRDs(ctx, crds); err != nil {
		t.Fatalf("installing cert-manager's CRDs: %v", err)
	}
	name := CertManagerController + "-" + namespace
	p, err := startProcess(name, bin, []string{"--kubeconfig", e.Kubeconfig, "--namespace", namespace}, e.logDir, e.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exited := p.exited()
		p.stop(5 * time.Second)
		if exited {
			t.Errorf("%v", p.exitError())
		}
	})
	// A bad flag or an unreachable apiserver ends it within moments; say so here rather than
	// as a timeout in the test.
	select {
	case <-p.done:
		t.Fatal(p.exitError())
	case <-time.After(time.Second):
	}
	e.log.Debug("testenv component started", "component", name, "pid", p.pid())
}

// checkCertManager is checkBinaries for the cert-manager binary, against the version of
// testenv/tools/certmanager/go.mod.
func (e *Env) checkCertManager(ctx context.Context, bin string) error {
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s not found in %s: run make bins", CertManagerController, filepath.Dir(bin))
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	const module = "github.com/cert-manager/cert-manager"
	pins, err := readPins(filepath.Join(root, "testenv", "tools", "certmanager", "go.mod"), module)
	if err != nil {
		return err
	}
	return checkVersionAt(ctx, bin, certManagerVersion, pins[module])
}
