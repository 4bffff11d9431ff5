package charts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
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

	"github.com/weftmesh/weft/healthcheck"
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

// localPodName is the POD_NAME the local control plane runs as.
const localPodName = "weft-cp-local"

// localCP is the control plane of the installed chart, run as its pod would
// run it but on this machine: the cp binary of this checkout, the installed
// Deployment's args (its listeners moved to loopback ports, the webhook
// certificate in files the test writes from Secret weft-webhook-tls as the
// kubelet would), and a token of the chart's ServiceAccount, so it has only
// the chart's RBAC.
type localCP struct {
	bin, dir          string
	args              []string
	adminAddr, whAddr string
	logs              syncBuffer
	cmd               *exec.Cmd
	exited            chan error
}

// installWithLocalCP installs the chart's default values and runs the
// control plane on them; the release is uninstalled when the test ends.
func installWithLocalCP(t *testing.T) *localCP {
	t.Helper()
	kube(t)
	if testing.Short() {
		t.Skip("builds the control plane")
	}
	t.Cleanup(func() { uninstall(t, Options{}) })
	install(t, Options{})
	return startLocalCP(t)
}

// startLocalCP builds cp and runs it against the installed release until it
// is ready; it is stopped when the test ends.
func startLocalCP(t *testing.T) *localCP {
	t.Helper()
	ctx := t.Context()
	c := &localCP{dir: t.TempDir()}
	c.bin = filepath.Join(c.dir, "cp")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", c.bin, "github.com/weftmesh/weft/cmd/cp").CombinedOutput(); err != nil {
		t.Fatalf("building the control plane: %v\n%s", err, out)
	}
	token, err := env.CreateToken(ctx, Namespace, "weft-cp", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(c.dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.CACertPEM}
	cfg.AuthInfos["weft-cp"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["weft-cp"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "weft-cp"}
	cfg.CurrentContext = "weft-cp"
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	c.syncWebhookSecret(t)

	ports, err := testenv.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	c.adminAddr, c.whAddr = fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	local := map[string]string{
		"--xds-addr":       fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--admin-addr":     c.adminAddr,
		"--webhook-listen": c.whAddr,
		"--webhook-cert":   filepath.Join(c.dir, "tls.crt"),
		"--webhook-key":    filepath.Join(c.dir, "tls.key"),
	}
	c.args = []string{"--kubeconfig=" + kubeconfig}
	for _, a := range deployment(t).Spec.Template.Spec.Containers[0].Args {
		flag, _, _ := strings.Cut(a, "=")
		if v, ok := local[flag]; ok {
			a = flag + "=" + v
		}
		c.args = append(c.args, a)
	}
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			t.Logf("cp args %q\ncp logs:\n%s", c.args, c.logs.String())
		}
	})
	c.start(t)
	return c
}

// syncWebhookSecret writes Secret weft-webhook-tls's pair where cp reads
// it, as the kubelet updates a mounted Secret; cp reloads it at the next
// handshake.
func (c *localCP) syncWebhookSecret(t *testing.T) {
	t.Helper()
	webhookTLS := secretData(t, "weft-webhook-tls")
	for _, f := range []string{"tls.key", "tls.crt"} {
		if err := os.WriteFile(filepath.Join(c.dir, f), webhookTLS[f], 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs cp and waits until its /readyz answers 200.
func (c *localCP) start(t *testing.T) {
	t.Helper()
	c.cmd = exec.Command(c.bin, c.args...)
	c.cmd.Env = append(os.Environ(), "POD_NAME="+localPodName)
	c.cmd.Stdout, c.cmd.Stderr = &c.logs, &c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	c.exited = exited
	go func() { exited <- c.cmd.Wait() }()
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			c.exited = nil
			return false, fmt.Errorf("cp exited: %v", err)
		default:
		}
		_, err := c.Get(ctx, "/readyz")
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("cp on the chart's RBAC never became ready: %v", err)
	}
}

// stop ends cp as the kubelet does, SIGTERM, and waits for it.
func (c *localCP) stop(t *testing.T) {
	t.Helper()
	if c.exited == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Error("cp did not stop within 20s of SIGTERM")
	}
	c.exited = nil
}

// Get reads cp's admin endpoint (healthcheck.Admin), as weft --cp does.
func (c *localCP) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.adminAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}

// TestControlPlaneRunsOnChartRBAC runs the cp binary of this checkout as
// the chart's Deployment would (localCP): with only the chart's RBAC it
// becomes ready (informers synced, trust material read), wins the Lease,
// and serves the webhook certificate that the webhook configurations'
// caBundle verifies. Nothing it logs is a refusal.
func TestControlPlaneRunsOnChartRBAC(t *testing.T) {
	cp := installWithLocalCP(t)

	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := env.Clientset.CoordinationV1().Leases(Namespace).Get(ctx, healthcheck.IdentityLeaseName, metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == localPodName, nil
	})
	if err != nil {
		t.Errorf("Lease weft-cp-identity not held by %s: %v", localPodName, err)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secretData(t, "weft-webhook-tls")["ca.crt"]) {
		t.Fatal("weft-webhook-tls: no ca.crt")
	}
	conn, err := tls.Dial("tcp", cp.whAddr, &tls.Config{RootCAs: roots, ServerName: "weft-cp." + Namespace + ".svc"})
	if err != nil {
		t.Errorf("the webhook server's certificate does not verify as the apiserver would check it: %v", err)
	} else {
		conn.Close()
	}

	for _, line := range strings.Split(cp.logs.String(), "\n") {
		if strings.Contains(line, "forbidden") || strings.Contains(line, "Forbidden") {
			t.Errorf("cp was refused something on the chart's RBAC: %s", line)
		}
	}
}
