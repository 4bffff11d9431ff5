package charts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftmesh/weft/testenv"
)

// syncBuffer is the control plane's stderr, read while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestControlPlaneRunsOnChartRBAC runs the cp binary of this checkout as
// the chart's Deployment would (its args, read back from the installed
// Deployment; the webhook certificate from the installed Secret), but
// local and with a token of the chart's ServiceAccount: with only the
// chart's RBAC it becomes ready (informers synced, trust material read),
// wins the Lease, and serves the webhook certificate that the webhook
// configurations' caBundle verifies. Nothing it logs is a refusal.
func TestControlPlaneRunsOnChartRBAC(t *testing.T) {
	kube(t)
	if testing.Short() {
		t.Skip("builds the control plane")
	}
	ctx := t.Context()
	t.Cleanup(func() { uninstall(t, Options{}) })
	install(t, Options{})
	dir := t.TempDir()

	cp := filepath.Join(dir, "cp")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", cp, "github.com/weftmesh/weft/cmd/cp").CombinedOutput(); err != nil {
		t.Fatalf("building the control plane: %v\n%s", err, out)
	}
	token, err := env.CreateToken(ctx, Namespace, "weft-cp", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.CACertPEM}
	cfg.AuthInfos["weft-cp"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["weft-cp"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "weft-cp"}
	cfg.CurrentContext = "weft-cp"
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	webhookTLS := secretData(t, "weft-webhook-tls")
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), webhookTLS[f], 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ports, err := testenv.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	local := map[string]string{
		"--xds-addr":       fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--admin-addr":     fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--webhook-listen": fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--webhook-cert":   filepath.Join(dir, "tls.crt"),
		"--webhook-key":    filepath.Join(dir, "tls.key"),
	}
	args := []string{"--kubeconfig=" + kubeconfig}
	for _, a := range deployment(t).Spec.Template.Spec.Containers[0].Args {
		flag, _, _ := strings.Cut(a, "=")
		if v, ok := local[flag]; ok {
			a = flag + "=" + v
		}
		args = append(args, a)
	}
	const podName = "weft-cp-local"
	run := exec.CommandContext(ctx, cp, args...)
	run.Env = append(os.Environ(), "POD_NAME="+podName)
	run.Cancel = func() error { return run.Process.Signal(syscall.SIGTERM) }
	run.WaitDelay = 10 * time.Second
	var logs syncBuffer
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	t.Cleanup(func() {
		_ = run.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("cp args %q\ncp logs:\n%s", args, logs.String())
		}
	})

	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("cp exited: %v", err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readyz, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("cp on the chart's RBAC never became ready: %v", err)
	}

	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := env.Clientset.CoordinationV1().Leases(Namespace).Get(ctx, "weft-cp-identity", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == podName, nil
	})
	if err != nil {
		t.Errorf("Lease weft-cp-identity not held by %s: %v", podName, err)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(webhookTLS["ca.crt"]) {
		t.Fatal("weft-webhook-tls: no ca.crt")
	}
	conn, err := tls.Dial("tcp", local["--webhook-listen"], &tls.Config{RootCAs: roots, ServerName: "weft-cp." + Namespace + ".svc"})
	if err != nil {
		t.Errorf("the webhook server's certificate does not verify as the apiserver would check it: %v", err)
	} else {
		conn.Close()
	}

	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "forbidden") || strings.Contains(line, "Forbidden") {
			t.Errorf("cp was refused something on the chart's RBAC: %s", line)
		}
	}
}
