package tokenauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/xds"
)

// tlsXDS is an xDS server speaking TLS with a certificate from a fresh CA
// and authenticating streams with a.
type tlsXDS struct {
	srv   *xds.Server
	addr  string
	roots *x509.CertPool
}

func startTLSXDS(t *testing.T, a *Authenticator) *tlsXDS {
	t.Helper()
	now := time.Now()
	anchor, err := sds.NewAnchor("cluster.local", now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := sds.NewIssuer("cluster.local", anchor, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sds.New(sds.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sds.NewMaterial("Secret test/issuer", []*x509.Certificate{issuer.Cert}, issuer.Key, []*x509.Certificate{anchor.Cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	ca.SetMaterial(m, nil)
	sc := ca.NewServingCertificate(sds.Workload{Namespace: "weft-system", ServiceAccount: "weft-cp"}, "weft-cp.weft-system.svc")
	srv, err := xds.New(xds.Options{
		Logger: quiet, Authenticator: a.Authenticate, ShutdownGrace: time.Second,
		ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(ca.ServerTLSConfig(sc)))},
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	roots := x509.NewCertPool()
	roots.AddCert(anchor.Cert)
	return &tlsXDS{srv: srv, addr: lis.Addr().String(), roots: roots}
}

// stream opens an ADS stream as node, with the token read from tokenFile,
// and returns the error that ended it, or nil if it is still open after a
// moment.
func (x *tlsXDS) stream(t *testing.T, node, tokenFile string) error {
	t.Helper()
	conn, err := grpc.NewClient(x.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: x.roots, ServerName: "weft-cp.weft-system.svc"})),
		grpc.WithPerRPCCredentials(FileCredentials{Path: tokenFile}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	// A stream the server has already refused fails Send with io.EOF; its
	// status comes from Recv (grpc.ClientStream's contract).
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resourcev3.ListenerType}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = s.Recv()
	if status.Code(err) == codes.DeadlineExceeded {
		return nil // nothing to serve yet, but admitted
	}
	return err
}

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	// Kubelet swaps the file atomically; so does this.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestXDSStreamsAreBoundToTheTokensPod(t *testing.T) {
	m := setupMesh(t)
	a := newAuth(t, nil)
	x := startTLSXDS(t, a)
	tokenFile := filepath.Join(t.TempDir(), "token")

	cases := []struct {
		name  string
		token string
		node  string
		code  codes.Code
		msg   string
	}{
		{"token of b naming a's pod", podToken(t, m.pods["b"], time.Hour, DefaultAudience), "pa.x", codes.PermissionDenied, "stream authenticated as pod pb may not act as node pa.x"},
		{"token of a for another audience", podToken(t, m.pods["a"], time.Hour, "other"), "pa.x", codes.Unauthenticated, "wrong_audience"},
		{"garbage", "garbage", "pa.x", codes.Unauthenticated, "garbage"},
		{"token of a naming its own pod", podToken(t, m.pods["a"], time.Hour, DefaultAudience), "pa.x", codes.OK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			writeToken(t, tokenFile, c.token)
			err := x.stream(t, c.node, tokenFile)
			if st := status.Convert(err); st.Code() != c.code || !strings.Contains(st.Message(), c.msg) {
				t.Fatalf("stream ended with %v %q, want %v containing %q", st.Code(), st.Message(), c.code, c.msg)
			}
		})
	}
}

// TestRotatedTokenIsReadOnReconnect: the proxy's token file is replaced (as
// kubelet rotates it); the next stream carries the new token.
func TestRotatedTokenIsReadOnReconnect(t *testing.T) {
	m := setupMesh(t)
	a := newAuth(t, nil)
	x := startTLSXDS(t, a)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, podToken(t, m.pods["a"], time.Hour, "stale-audience"))
	if err := x.stream(t, "pa.x", tokenFile); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("stale token: %v", err)
	}
	writeToken(t, tokenFile, podToken(t, m.pods["a"], time.Hour, DefaultAudience))
	if err := x.stream(t, "pa.x", tokenFile); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if a.Reviews() != 1 {
		t.Errorf("%d reviews, want 1 (the new token)", a.Reviews())
	}
}
