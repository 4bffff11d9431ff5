package controller

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/testenv/netns"
	"github.com/weftmesh/weft/translate"
)

// grpcServerApp: the same proxyless gRPC server (pod annotation
// weft.io/proxy: grpc) in a strict namespace and in a permissive one, and a
// proxyless client in the strict one.
var grpcServerApp = greeterApp("gsrv-strict", ", config.weft.io/mtls-mode: strict") + greeterApp("gsrv-open", "") + `
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: gsrv-strict}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: gsrv-strict
  annotations: {weft.io/proxy: grpc}
spec:
  serviceAccountName: client
  containers:
  - {name: client, image: example.invalid/client:1}
`

// greeterApp is a meshed namespace (more annotations after a comma) holding a
// proxyless gRPC server: Deployment greeter of one pod serving 8080, as
// ServiceAccount greeter, behind Service greeter.
func greeterApp(ns, annotations string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, annotations: {weft.io/inject: enabled%[2]s}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: greeter, namespace: %[1]s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: greeter, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: greeter}}
  template:
    metadata: {labels: {app: greeter}, annotations: {weft.io/proxy: grpc}}
    spec:
      serviceAccountName: greeter
      containers:
      - {name: greeter, image: example.invalid/greeter:1, ports: [{name: grpc, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: %[1]s}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 8080, targetPort: 8080, appProtocol: grpc}]
---
`, ns, annotations)
}

// TestIdentityMTLSGRPCGoServer: grpc-go's own xDS-enabled server
// (xds.NewGRPCServer), on a kwok pod IP in a network namespace, gets its
// listener and its security config from Weft, and so do its proxyless
// clients; no stand-in speaks for either side.
//
//   - strict namespace: the server presents its ServiceAccount's SPIFFE
//     certificate and requires a client certificate from the bundle; a
//     client configured by our cluster (SAN of the server's ServiceAccount)
//     gets through, and each side sees the other's SPIFFE ID;
//   - a server whose certificate is not the SAN the client was configured
//     with is refused by the client;
//   - a client certificate from outside the mesh is refused by the server;
//   - a plaintext client is refused by the strict server;
//   - permissive namespace: the server's listener is plaintext, so a
//     plaintext client and a proxyless client (whose cluster to it is
//     plaintext: a permissive proxyless pod is not a meshed destination)
//     are both served.
//
// Certificates reach grpc-go through its file_watcher certificate provider
// from files this test writes from leaves of our CA: the agent that would
// make the keys in the pod is not built (docs/identity.md).
func TestIdentityMTLSGRPCGoServer(t *testing.T) {
	nsn, tr := setupGRPCGoMTLS(t, "gsrv-sys", grpcServerApp)
	ctx := t.Context()
	strictPod := runningPods(t, "gsrv-strict", "app=greeter", 1)[0]
	openPod := runningPods(t, "gsrv-open", "app=greeter", 1)[0]
	for _, p := range []corev1.Pod{strictPod, openPod} {
		if err := nsn.AddAddr(ctx, netip.MustParseAddr(p.Status.PodIP)); err != nil {
			t.Fatal(err)
		}
	}
	rc, xdsAddr := startMTLSController(t, tr)
	for _, ns := range []string{"gsrv-strict", "gsrv-open"} {
		apex := translate.OutboundClusterName(mesh.ServiceKey{Namespace: ns, Name: "greeter"}, 8080, "cluster.local")
		waitUntil(t, time.Minute, "the greeter pod of "+ns+" in the endpoints", func() bool {
			return len(claAddresses(rc.XDS().Endpoints()[apex])) == 1
		})
	}

	issue := func(ca *sds.CA, ns, sa string) *sds.Leaf {
		l, err := ca.IssueKeyPair(sds.Workload{Namespace: ns, ServiceAccount: sa})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// files are a pod's bootstrap files: its token, the anchor its xDS
	// channel trusts, and what its certificate provider reads.
	files := func(t *testing.T, pod *corev1.Pod, leaf *sds.Leaf) map[string]string {
		return writeFiles(t, t.TempDir(), map[string][]byte{
			"anchor.pem": tr.anchor.CertPEM, "token": []byte(podToken(t, pod)),
			"cert.pem": leaf.CertChainPEM, "key.pem": leaf.KeyPEM, "bundle.pem": tr.ca.Bundle(),
		})
	}
	clientPod := podByName(t, "gsrv-strict", "client")
	xdsClient := func(t *testing.T, target string, leaf *sds.Leaf) testgrpc.TestServiceClient {
		return grpcGoXDSClient(t, target, grpcGoBootstrap(t, xdsAddr, clientPod.Name+"."+clientPod.Namespace, files(t, clientPod, leaf), nil))
	}
	plaintextClient := func(t *testing.T, pod corev1.Pod) testgrpc.TestServiceClient {
		conn, err := grpc.NewClient(net.JoinHostPort(pod.Status.PodIP, "8080"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return testgrpc.NewTestServiceClient(conn)
	}
	outsider := startOutsideCA(t)
	const strictTarget, openTarget = "xds:///greeter.gsrv-strict:8080", "xds:///greeter.gsrv-open:8080"
	clientID := "spiffe://cluster.local/ns/gsrv-strict/sa/client"
	serverID := "spiffe://cluster.local/ns/gsrv-strict/sa/greeter"

	cases := []struct {
		name   string
		pod    corev1.Pod
		server *sds.Leaf
		client func(*testing.T) testgrpc.TestServiceClient
		// wantClient is the client identity the server saw and wantServer
		// the server identity the client saw ("" for plaintext); refused
		// wants the call refused.
		wantClient, wantServer string
		refused                bool
	}{
		{
			name: "strict: each side sees the other's SPIFFE identity", pod: strictPod,
			server: issue(tr.ca, "gsrv-strict", "greeter"),
			client: func(t *testing.T) testgrpc.TestServiceClient {
				return xdsClient(t, strictTarget, issue(tr.ca, "gsrv-strict", "client"))
			},
			wantClient: clientID, wantServer: serverID,
		},
		{
			name: "strict: the client refuses a server that is not the SAN it was configured with", pod: strictPod,
			server: issue(tr.ca, "gsrv-strict", "impostor"),
			client: func(t *testing.T) testgrpc.TestServiceClient {
				return xdsClient(t, strictTarget, issue(tr.ca, "gsrv-strict", "client"))
			},
			refused: true,
		},
		{
			name: "strict: the server refuses a client certificate from outside the mesh", pod: strictPod,
			server: issue(tr.ca, "gsrv-strict", "greeter"),
			client: func(t *testing.T) testgrpc.TestServiceClient {
				return xdsClient(t, strictTarget, issue(outsider, "gsrv-strict", "client"))
			},
			refused: true,
		},
		{
			name: "strict: the server refuses a plaintext client", pod: strictPod,
			server:  issue(tr.ca, "gsrv-strict", "greeter"),
			client:  func(t *testing.T) testgrpc.TestServiceClient { return plaintextClient(t, strictPod) },
			refused: true,
		},
		{
			name: "permissive: the server accepts a plaintext client", pod: openPod,
			server: issue(tr.ca, "gsrv-open", "greeter"),
			client: func(t *testing.T) testgrpc.TestServiceClient { return plaintextClient(t, openPod) },
		},
		{
			name: "permissive: a proxyless client's cluster to the server is plaintext", pod: openPod,
			server: issue(tr.ca, "gsrv-open", "greeter"),
			client: func(t *testing.T) testgrpc.TestServiceClient {
				return xdsClient(t, openTarget, issue(tr.ca, "gsrv-strict", "client"))
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := startGRPCGoXDSServer(t, nsn, c.pod, grpcGoBootstrap(t, xdsAddr, c.pod.Name+"."+c.pod.Namespace, files(t, &c.pod, c.server),
				map[string]any{"server_listener_resource_name_template": proxy.GRPCServerListenerTemplate}))
			client := c.client(t)
			call := func() (clientSeen, serverSeen string, err error) {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				var p peer.Peer
				resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{}, grpc.Peer(&p))
				return resp.GetServerId(), peerSPIFFE(p.AuthInfo), err
			}
			if !c.refused {
				waitUntil(t, 30*time.Second, "a call", func() bool {
					gotClient, gotServer, err := call()
					if err == nil && (gotClient != c.wantClient || gotServer != c.wantServer) {
						t.Fatalf("the server saw client %q and the client saw server %q; want %q and %q", gotClient, gotServer, c.wantClient, c.wantServer)
					}
					return err == nil
				})
				return
			}
			// Refused: calls fail for a while, none reaches the server's
			// handler, and the server is serving all along (grpc-go closes
			// every connection while it is not, which would pass for a
			// refusal).
			deadline := time.Now().Add(5 * time.Second)
			var err error
			for time.Now().Before(deadline) {
				if _, _, err = call(); err == nil {
					t.Fatal("call succeeded; want it refused")
				}
			}
			t.Logf("refused with: %v", err)
			if n := srv.backend.calls.Load(); n != 0 {
				t.Errorf("%d calls reached the server", n)
			}
			if mode, modeErr := srv.mode(); mode != connectivity.ServingModeServing {
				t.Errorf("the server left serving mode (%v: %v): the refusal is not its TLS's", mode, modeErr)
			}
			if code := status.Code(err); code != codes.Unavailable {
				t.Errorf("call failed with %v, want Unavailable from a failed handshake", err)
			}
		})
	}
}

// peerSPIFFE is the URI SAN of a TLS peer's certificate; "" for a
// plaintext peer.
func peerSPIFFE(ai credentials.AuthInfo) string {
	ti, ok := ai.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	return leafURI(ti.State.PeerCertificates[0])
}

func leafURI(c *x509.Certificate) string {
	if len(c.URIs) != 1 {
		return ""
	}
	return c.URIs[0].String()
}

// grpcGoXDSServer is grpc-go's xDS-enabled server serving identityBackend.
type grpcGoXDSServer struct {
	backend *identityBackend
	mu      sync.Mutex
	last    connectivity.ServingMode
	lastErr error
	serving chan struct{}
}

func (s *grpcGoXDSServer) mode() (connectivity.ServingMode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.lastErr
}

// startGRPCGoXDSServer runs xds.NewGRPCServer with bootstrap on pod's IP
// (in nsn) at 8080, with xDS server credentials (plaintext where the
// listener has no TLS), and waits until it serves: until grpc-go has
// accepted the listener our control plane sent for that address.
func startGRPCGoXDSServer(t *testing.T, nsn *netns.Namespace, pod corev1.Pod, bootstrap []byte) *grpcGoXDSServer {
	t.Helper()
	s := &grpcGoXDSServer{backend: &identityBackend{}, serving: make(chan struct{})}
	var once sync.Once
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcxds.NewGRPCServer(grpc.Creds(creds), grpcxds.BootstrapContentsForTesting(bootstrap),
		grpcxds.ServingModeCallback(func(_ net.Addr, args grpcxds.ServingModeChangeArgs) {
			s.mu.Lock()
			s.last, s.lastErr = args.Mode, args.Err
			s.mu.Unlock()
			if args.Mode == connectivity.ServingModeServing {
				once.Do(func() { close(s.serving) })
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, s.backend)
	addr := net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(8080))
	lis, err := nsn.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	select {
	case <-s.serving:
	case <-time.After(30 * time.Second):
		mode, err := s.mode()
		t.Fatalf("grpc-go's xDS server on %s is not serving after 30s (mode %v: %v): listener %s", addr, mode, err,
			translate.GRPCServerListenerName(pod.Status.PodIP, 8080))
	}
	return s
}
