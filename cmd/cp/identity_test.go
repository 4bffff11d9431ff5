package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/testenv"
)

// env is a real apiserver for the tests that run the command; with -short
// it is not started and those tests skip.
var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.MainUnlessShort(m, testenv.Options{}, &env)) }

// TestRunWithIdentity runs the command as deployed with --identity and
// --mtls against an issuer Secret in cert-manager's shape: the xDS port
// speaks TLS with a certificate of the control plane's own identity that
// chains to the anchor, the leader writes the missing trust bundle, and a
// stream without a token is refused.
func TestRunWithIdentity(t *testing.T) {
	testenv.RequireEnv(t, env)
	ctx := t.Context()
	cs := env.Clientset
	const ns = "weft-system"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	anchor, err := sds.NewAnchor("cluster.local", now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := sds.NewIssuer("cluster.local", anchor, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, sds.IssuerSecret(ns, "weft-identity-issuer", issuer, anchor), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	runCommand(t, "--kubeconfig", env.Kubeconfig, "--identity", "--mtls", "--xds-addr", addr,
		"--admin-addr", "", "--pod-name", "cp-0", "--log-level", "warn")

	roots := x509.NewCertPool()
	roots.AddCert(anchor.Cert)
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "weft-cp.weft-system.svc", NextProtos: []string{"h2"}}
	var state tls.ConnectionState
	err = env.WaitFor(ctx, 30*time.Second, "a TLS handshake with the xDS port", func(context.Context) (bool, error) {
		conn, err := tls.Dial("tcp", addr, tlsCfg)
		if err != nil {
			return false, err
		}
		state = conn.ConnectionState()
		conn.Close()
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if uris := state.PeerCertificates[0].URIs; len(uris) != 1 || uris[0].String() != "spiffe://cluster.local/ns/weft-system/sa/weft-cp" {
		t.Errorf("serving certificate URI SANs %v, want the control plane's identity", uris)
	}

	err = env.WaitFor(ctx, 30*time.Second, "the leader writing the trust bundle", func(ctx context.Context) (bool, error) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "weft-trust-bundle", metav1.GetOptions{})
		return err == nil && bytes.Contains([]byte(cm.Data[sds.DefaultBundleKey]), bytes.TrimSpace(anchor.CertPEM)), err
	})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err == nil {
		// A refused stream may already be closed on Send (io.EOF); Recv
		// gives its status.
		_ = stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "p.default"}, TypeUrl: resourcev3.ListenerType})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream without a token ended with %v, want Unauthenticated", err)
	}
}
