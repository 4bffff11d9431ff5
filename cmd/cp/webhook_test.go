package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/injector"
	"github.com/weftmesh/weft/profiles/admission"
	"github.com/weftmesh/weft/testenv"
)

// runCommand runs cp with args until the test ends, then stops it and
// fails the test if it did not stop cleanly.
func runCommand(t *testing.T, args ...string) {
	t.Helper()
	cmd := newCommand()
	cmd.SetArgs(args)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("cp: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("cp did not stop within 30s")
		}
	})
}

// selfSignedPEM makes a certificate for 127.0.0.1 that is its own CA, so
// the same PEM is the webhook's certificate and its caBundle.
func selfSignedPEM(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "weft-webhook-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func writePair(t *testing.T, dir string, certPEM, keyPEM []byte, mod time.Time) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for file, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(file, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// The webhook serves a renewed certificate from the next handshake on, and
// keeps the last good one while the files on disk do not load.
func TestCertReloaderFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now()
	cert1, key1 := selfSignedPEM(t, 1)
	certFile, keyFile := writePair(t, dir, cert1, key1, now.Add(-time.Minute))
	r, err := newCertReloader(certFile, keyFile, log)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 {
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.Int64()
	}
	steps := []struct {
		name       string
		cert, key  []byte
		wantSerial int64
	}{
		{"renewed", nil, nil, 2},
		{"a key that does not match keeps the last good pair", nil, key1, 2},
		{"garbage keeps the last good pair", []byte("garbage"), []byte("garbage"), 2},
		{"renewed again", nil, nil, 3},
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d at start, want 1", got)
	}
	for i, s := range steps {
		c, k := selfSignedPEM(t, s.wantSerial)
		if s.cert != nil {
			c = s.cert
		}
		if s.key != nil {
			k = s.key
		}
		writePair(t, dir, c, k, now.Add(time.Duration(i)*time.Second))
		if got := serial(); got != s.wantSerial {
			t.Errorf("%s: serial %d, want %d", s.name, got, s.wantSerial)
		}
	}
	if _, err := newCertReloader(filepath.Join(dir, "missing.crt"), keyFile, log); err == nil {
		t.Error("a missing certificate file was accepted at start")
	}
}

// cp --webhook-listen serves the injection webhook the apiserver calls: a
// pod created in an annotated namespace comes back injected, with a
// bootstrap pointing at the xDS address the flags give; the same server
// refuses an invalid ServiceProfile on /validate.
func TestRunServesTheInjectionWebhook(t *testing.T) {
	testenv.RequireEnv(t, env)
	// Registered first, so it runs after cp has stopped: the webhook server,
	// its informer and its event broadcaster must all have ended.
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, baseline,
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
	})
	ctx := t.Context()
	const ns = "cp-inject"
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Annotations: map[string]string{"weft.io/inject": "enabled"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := selfSignedPEM(t, 1)
	certFile, keyFile := writePair(t, t.TempDir(), certPEM, keyPEM, time.Now())
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	whAddr := free()
	runCommand(t, "--kubeconfig", env.Kubeconfig, "--xds-addr", free(), "--admin-addr", "", "--log-level", "warn",
		"--webhook-listen", whAddr, "--webhook-cert", certFile, "--webhook-key", keyFile,
		"--proxy-xds-address", "xds.example:15010", "--proxy-image", "registry.example/envoy:v1.40.0",
		"--proxy-cpu-request", "150m", "--proxy-memory-limit", "300Mi")
	err := env.WaitFor(ctx, 30*time.Second, "the webhook port", func(context.Context) (bool, error) {
		conn, err := tls.Dial("tcp", whAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only probing that it listens
		if err != nil {
			return false, err
		}
		conn.Close()
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + whAddr + injector.InjectPath
	cfg := injector.WebhookConfiguration("cp-inject-test", "weft-system", admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: certPEM})
	// Only this test's namespace: other tests' pods stay as they are.
	cfg.Webhooks[0].NamespaceSelector.MatchLabels = map[string]string{corev1.LabelMetadataName: ns}
	if _, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	var pod *corev1.Pod
	err = env.WaitFor(ctx, 30*time.Second, "an injected pod", func(ctx context.Context) (bool, error) {
		p, err := env.Clientset.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "app-"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
		}, metav1.CreateOptions{})
		pod = p
		return err == nil && injector.Injected(p), err
	})
	if err != nil {
		t.Fatal(err)
	}
	proxy := pod.Spec.InitContainers[1]
	if proxy.Name != injector.ProxyContainerName || proxy.Image != "registry.example/envoy:v1.40.0" {
		t.Fatalf("proxy container %s image %s", proxy.Name, proxy.Image)
	}
	if cpu, mem := proxy.Resources.Requests[corev1.ResourceCPU], proxy.Resources.Limits[corev1.ResourceMemory]; cpu.String() != "150m" || mem.String() != "300Mi" {
		t.Errorf("proxy resources %v, want the flags' cpu request 150m and memory limit 300Mi", proxy.Resources)
	}
	boot := ""
	for i, a := range proxy.Args {
		if a == "--config-yaml" && i+1 < len(proxy.Args) {
			boot = proxy.Args[i+1]
		}
	}
	// Without identity the xDS cluster is a plain socket address: host and port apart.
	if !strings.Contains(boot, "address: xds.example") || !strings.Contains(boot, "port_value: 15010") {
		t.Errorf("bootstrap does not dial --proxy-xds-address:\n%s", boot)
	}

	// The same server validates ServiceProfiles on /validate.
	profile := `{"apiVersion":"linkerd.io/v1alpha2","kind":"ServiceProfile",
		"metadata":{"name":"web.cp-inject.svc.cluster.local","namespace":"cp-inject"},
		"spec":{"routes":[{"name":"books","condition":{"method":"GET","pathRegex":"/api/(?=books)"}}]}}`
	review := fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1",
		"kind":{"group":"linkerd.io","version":"v1alpha2","kind":"ServiceProfile"},
		"resource":{"group":"linkerd.io","version":"v1alpha2","resource":"serviceprofiles"},
		"name":"web.cp-inject.svc.cluster.local","namespace":"cp-inject","operation":"CREATE","object":%s}}`, profile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Post("https://"+whAddr+admission.Path, "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("decoding the /validate answer (status %s): %v", resp.Status, err)
	}
	if got.Response == nil || got.Response.Allowed || !strings.Contains(got.Response.Result.Message, "pathRegex") {
		t.Errorf("/validate answered %+v, want a refusal naming pathRegex", got.Response)
	}
}
