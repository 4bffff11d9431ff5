package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
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

// newAnchorAndIssuer is trust material as `weft identity generate` makes it.
func newAnchorAndIssuer(t *testing.T, now time.Time) (anchor, issuer *sds.CertKey) {
	t.Helper()
	anchor, err := sds.NewAnchor("cluster.local", now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err = sds.NewIssuer("cluster.local", anchor, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return anchor, issuer
}

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
	anchor, issuer := newAnchorAndIssuer(t, now)
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

// TestExternalIssuerFlags: --external-issuer gives the controller a leaf
// source that has cert-manager (its own controllers, testenv) sign through
// a CertificateRequest in --identity-namespace; without it the CA signs.
func TestExternalIssuerFlags(t *testing.T) {
	testenv.RequireEnv(t, env)
	ctx := t.Context()
	const ns = "weft-external"
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.StartCertManager(t, ns)
	now := time.Now()
	anchor, issuer := newAnchorAndIssuer(t, now)
	if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, sds.IssuerSecret(ns, "issuer", issuer, anchor), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := cmclient.NewForConfigOrDie(env.Config)
	if _, err := cm.CertmanagerV1().Issuers(ns).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "weft"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "issuer"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca, err := sds.New(sds.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sds.NewMaterial("Secret "+ns+"/issuer", []*x509.Certificate{issuer.Cert}, issuer.Key, []*x509.Certificate{anchor.Cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	ca.SetMaterial(m, nil)
	o := identityOptions{enabled: true, namespace: ns, leafTTL: time.Hour, externalTimeout: time.Minute}

	none, err := externalLeaves(env.Config, o, ca, nil, slog.New(slog.DiscardHandler))
	if err != nil || none != nil {
		t.Fatalf("without --external-issuer: %v, %v; want no source (the CA signs)", none, err)
	}
	o.externalIssuer = "Issuer/weft"
	leaves, err := externalLeaves(env.Config, o, ca, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := leaves.IssueLeaf(ctx, sds.Workload{Namespace: "x", ServiceAccount: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if leaf.ID.String() != "spiffe://cluster.local/ns/x/sa/a" {
		t.Errorf("leaf for %s", leaf.ID)
	}
	left, err := cm.CertmanagerV1().CertificateRequests(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 0 {
		t.Errorf("%d CertificateRequests left in %s", len(left.Items), ns)
	}
}
