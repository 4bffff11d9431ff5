package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	xdsbootstrap "google.golang.org/grpc/xds/bootstrap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/sds/tokenauth"
	"github.com/weftmesh/weft/testenv/netns"
	"github.com/weftmesh/weft/translate"
)

const mtlsApp = `
apiVersion: v1
kind: Namespace
metadata: {name: mtls, annotations: {weft.io/inject: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: backend, namespace: mtls}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: mtls}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: mtls}
spec:
  replicas: 1
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      serviceAccountName: backend
      containers:
      - {name: backend, image: example.invalid/backend:1, ports: [{name: grpc, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: mtls}
spec:
  selector: {app: backend}
  ports: [{name: grpc, port: 8080, targetPort: 8080, appProtocol: grpc}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: mtls
  annotations: {weft.io/proxy: grpc}
spec:
  serviceAccountName: client
  containers:
  - {name: client, image: example.invalid/client:1}
`

// tokenTLSCreds is the xDS channel credentials of grpc-go clients in these
// tests: TLS verified against the anchor and the control plane's name, and
// the pod's projected token read on every stream. It stands in for the
// bootstrap's "tls" channel creds plus gRFC A97's jwt_token_file call
// creds, which grpc-go reads behind an environment variable evaluated at
// package initialisation, before a test can set it.
type tokenTLSCreds struct{}

type tokenTLSConfig struct {
	CAFile    string `json:"ca_file"`
	TokenFile string `json:"token_file"`
}

func (tokenTLSCreds) Name() string { return "weft-test-token-tls" }

func (tokenTLSCreds) Build(cfg json.RawMessage) (credentials.Bundle, func(), error) {
	var c tokenTLSConfig
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, nil, fmt.Errorf("weft-test-token-tls config: %w", err)
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("no certificate in %s", c.CAFile)
	}
	return tokenTLSBundle{
		tls:   credentials.NewTLS(&tls.Config{RootCAs: roots}),
		token: tokenauth.FileCredentials{Path: c.TokenFile},
	}, func() {}, nil
}

type tokenTLSBundle struct {
	tls   credentials.TransportCredentials
	token credentials.PerRPCCredentials
}

func (b tokenTLSBundle) TransportCredentials() credentials.TransportCredentials { return b.tls }
func (b tokenTLSBundle) PerRPCCredentials() credentials.PerRPCCredentials       { return b.token }
func (b tokenTLSBundle) NewWithMode(string) (credentials.Bundle, error)         { return b, nil }

var registerTokenTLS sync.Once

// identityBackend answers with the SPIFFE id its TLS peer presented.
type identityBackend struct {
	testgrpc.UnimplementedTestServiceServer
	calls atomic.Int64
}

func (b *identityBackend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.calls.Add(1)
	id := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			if uris := ti.State.PeerCertificates[0].URIs; len(uris) == 1 {
				id = uris[0].String()
			}
		}
	}
	return &testgrpc.SimpleResponse{ServerId: id}, nil
}

// writeFiles writes name -> content into dir and returns the paths.
func writeFiles(t *testing.T, dir string, files map[string][]byte) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		paths[name] = p
	}
	return paths
}

// TestIdentityMTLSGRPCGo: a proxyless grpc-go client fed by our xDS (over
// TLS, token-authenticated) calls a meshed service with mTLS, its security
// config (certificate provider, SAN matchers) from our clusters.
//
// The client's certificate reaches grpc-go through its file_watcher
// certificate provider from files this test writes from a leaf our CA
// issued for the client's ServiceAccount: a stand-in for the agent that
// would make the key in the pod and get it signed (not built yet). The
// backend is a TLS gRPC server on the kwok pod's IP standing in for the
// pod's Envoy sidecar inbound listener: it serves the certificate and
// trusts the bundle that our SDS sent the backend pod's node on its own
// authenticated stream, and requires a client certificate, as the
// sidecar's inbound TLS chain does. Strict and permissive inbound are that
// Envoy listener's behaviour (golden cases mtls-strict and mtls-permissive);
// TestIdentityMTLSGRPCGoServer runs them with grpc-go's own xDS server.
func TestIdentityMTLSGRPCGo(t *testing.T) {
	nsn, tr := setupGRPCGoMTLS(t, "mtls-sys", mtlsApp)
	ctx := t.Context()
	backendPod := runningPods(t, "mtls", "app=backend", 1)[0]
	rc, grpcXDSAddr := startMTLSController(t, tr)
	xdsAddr := rc.XDSAddr().String()

	// The backend's sidecar stand-in: certificate and bundle from our SDS,
	// on the stream the backend pod's token authenticated.
	sent := openSDS(t, xdsAddr, tr.anchor.Cert, podToken(t, &backendPod), backendPod.Name+".mtls").next(t, 10*time.Second)
	verifyLeaf(t, sent, tr.anchor.Cert, "spiffe://cluster.local/ns/mtls/sa/backend")
	backendCert, err := tls.X509KeyPair(sent.certPEM, sent.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(sent.bundle) {
		t.Fatal("SDS bundle holds no certificate")
	}
	var serving atomic.Pointer[tls.Certificate]
	b := &identityBackend{}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serving.Load(), nil },
		ClientCAs:      clientCAs,
		ClientAuth:     tls.RequireAndVerifyClientCert,
	})))
	testgrpc.RegisterTestServiceServer(srv, b)
	lis := listenOnPod(t, nsn, backendPod, 8080)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	apex := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "mtls", Name: "backend"}, 8080, "cluster.local")
	waitUntil(t, time.Minute, "the backend pod in the endpoints", func() bool {
		return len(claAddresses(rc.XDS().Endpoints()[apex])) == 1
	})

	// Certificates a server or client may present: ours for the right and
	// a wrong ServiceAccount, and one from a CA outside the mesh.
	issue := func(ca *sds.CA, sa string) *sds.Leaf {
		l, err := ca.IssueKeyPair(sds.Workload{Namespace: "mtls", ServiceAccount: sa})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	outsider := startOutsideCA(t)
	keyPair := func(l *sds.Leaf) *tls.Certificate {
		c, err := tls.X509KeyPair(l.CertChainPEM, l.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	clientToken := podTokenByName(t, "mtls", "client")

	cases := []struct {
		name   string
		server *tls.Certificate
		client *sds.Leaf
		// wantID is the client identity the server saw; "" wants the
		// call refused.
		wantID string
	}{
		{"each side sees the other's identity", &backendCert, issue(tr.ca, "client"), "spiffe://cluster.local/ns/mtls/sa/client"},
		{"the client refuses a server that is not the service's ServiceAccount", keyPair(issue(tr.ca, "impostor")), issue(tr.ca, "client"), ""},
		{"the server refuses a client certificate from outside the mesh", &backendCert, issue(outsider, "client"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			serving.Store(c.server)
			dir := t.TempDir()
			files := writeFiles(t, dir, map[string][]byte{
				"anchor.pem": tr.anchor.CertPEM, "token": []byte(clientToken),
				"cert.pem": c.client.CertChainPEM, "key.pem": c.client.KeyPEM, "bundle.pem": tr.ca.Bundle(),
			})
			client := grpcGoMTLSClient(t, grpcXDSAddr, "client.mtls", files)
			before := b.calls.Load()
			call := func() (string, error) {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{})
				return resp.GetServerId(), err
			}
			if c.wantID != "" {
				waitUntil(t, 30*time.Second, "a call over mTLS", func() bool {
					id, err := call()
					if err == nil && id != c.wantID {
						t.Fatalf("server saw client %q, want %q", id, c.wantID)
					}
					return err == nil
				})
				if rc.pipe.secrets.get("client.mtls") != nil {
					t.Error("the proxyless client was given SDS secrets; its certificates come from its certificate provider")
				}
				return
			}
			// Refused: no call reaches the backend, and the failure is the
			// TLS handshake's (not a missing config).
			deadline := time.Now().Add(5 * time.Second)
			var err error
			for time.Now().Before(deadline) {
				if _, err = call(); err == nil {
					t.Fatal("call succeeded; want it refused")
				}
			}
			if n := b.calls.Load() - before; n != 0 {
				t.Errorf("%d calls reached the backend", n)
			}
			t.Logf("refused with: %v", err)
			if !tlsFailure(err) {
				t.Errorf("call failed with %v, want a TLS handshake failure", err)
			}
		})
	}
}

// setupGRPCGoMTLS is what the grpc-go mTLS tests start from: a network
// namespace for the pod IPs, the control plane's identity (its system
// namespace sysNS) and app applied.
func setupGRPCGoMTLS(t *testing.T, sysNS, app string) (*netns.Namespace, *trust) {
	t.Helper()
	requireEnv(t)
	netns.Require(t)
	registerTokenTLS.Do(func() { xdsbootstrap.RegisterChannelCredentials(tokenTLSCreds{}) })
	nsn := podNetwork(t)
	tr := startTestIdentity(t, sysNS, time.Hour)
	if _, err := env.Apply(t.Context(), []byte(app)); err != nil {
		t.Fatal(err)
	}
	return nsn, tr
}

// startMTLSController runs the controller with identity and mTLS on, and
// returns it with the address grpc-go's xDS channel dials: localhost, since
// grpc-go verifies the name it dials and serving certificates carry DNS
// names only.
func startMTLSController(t *testing.T, tr *trust) (*runningController, string) {
	t.Helper()
	tr.identity.ServingDNSNames = append(tr.identity.ServingDNSNames, "localhost")
	rc := startController(t, withIdentity(tr.identity), func(c *Config) { c.MTLS = true })
	_, port, err := net.SplitHostPort(rc.XDSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return rc, net.JoinHostPort("localhost", port)
}

// tlsFailure tells a refused TLS handshake with the backend from any other
// failure (the xDS channel's own included).
func tlsFailure(err error) bool {
	msg := status.Convert(err).Message()
	if strings.Contains(msg, "resolver error") {
		return false
	}
	for _, s := range []string{"handshake", "tls:", "certificate", "SAN"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// grpcGoMTLSClient is a proxyless grpc-go client of backend.mtls:8080 whose
// xDS bootstrap points at our control plane (TLS, the pod's token) and
// defines the certificate provider instance our clusters name, reading the
// files given.
func grpcGoMTLSClient(t *testing.T, xdsAddr, node string, files map[string]string) testgrpc.TestServiceClient {
	t.Helper()
	return grpcGoXDSClient(t, "xds:///backend.mtls:8080", grpcGoBootstrap(t, xdsAddr, node, files, nil))
}

// grpcGoBootstrap is the xDS bootstrap of a proxyless grpc-go pod: our
// control plane over TLS with the pod's token (files "anchor.pem",
// "token"), its node id, and the certificate provider instance our
// clusters and server listeners name, a file_watcher of "cert.pem",
// "key.pem" and "bundle.pem". extra adds top-level fields.
func grpcGoBootstrap(t *testing.T, xdsAddr, node string, files map[string]string, extra map[string]any) []byte {
	t.Helper()
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": xdsAddr,
			"channel_creds": []any{map[string]any{"type": tokenTLSCreds{}.Name(), "config": tokenTLSConfig{
				CAFile: files["anchor.pem"], TokenFile: files["token"],
			}}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": node, "cluster": "mtls", "locality": map[string]string{"zone": "test"}},
		"certificate_providers": map[string]any{mesh.GRPCCertificateProviderInstance: map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]string{
				"certificate_file": files["cert.pem"], "private_key_file": files["key.pem"],
				"ca_certificate_file": files["bundle.pem"], "refresh_interval": "1s",
			},
		}},
	}
	maps.Copy(doc, extra)
	bootstrap, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return bootstrap
}

// grpcGoXDSClient dials target through grpc-go's xDS resolver with
// bootstrap, with xDS client credentials: the security config of our
// clusters, plaintext where they have none.
func grpcGoXDSClient(t *testing.T, target string, bootstrap []byte) testgrpc.TestServiceClient {
	t.Helper()
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// startOutsideCA is a CA of the same trust domain under an anchor the mesh
// does not trust.
func startOutsideCA(t *testing.T) *sds.CA {
	t.Helper()
	anchor := newTestAnchor(t)
	issuer := newTestIssuer(t, anchor)
	ca, err := sds.New(sds.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sds.NewMaterial("outside", []*x509.Certificate{issuer.Cert}, issuer.Key, []*x509.Certificate{anchor.Cert}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca.SetMaterial(m, nil)
	return ca
}

func podTokenByName(t *testing.T, ns, name string) string {
	t.Helper()
	return podToken(t, podByName(t, ns, name))
}

// podByName is the pod as the apiserver has it now.
func podByName(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	pod, err := env.Clientset.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}
