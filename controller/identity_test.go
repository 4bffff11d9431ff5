package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/sds/tokenauth"
)

// identityMesh is a meshed namespace with one pod per ServiceAccount, the
// namespace of the control plane's trust material, and a running identity
// (CA fed by a Watcher from the issuer Secret, token authenticator).
type identityMesh struct {
	ns, sysNS string
	pods      map[string]*corev1.Pod // by ServiceAccount
	*trust
}

// trust is the control plane's identity in a test: an anchor, the issuer
// Secret in sysNS, a CA fed by a Watcher from it, a token authenticator.
type trust struct {
	sysNS    string
	anchor   *sds.CertKey
	ca       *sds.CA
	identity *Identity
}

func startTestIdentity(t *testing.T, sysNS string, leafTTL time.Duration) *trust {
	t.Helper()
	ctx := t.Context()
	cs := env.Clientset
	m := &trust{sysNS: sysNS}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sysNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m.anchor = newTestAnchor(t)
	issuer := m.newIssuer(t)
	if _, err := cs.CoreV1().Secrets(m.sysNS).Create(ctx, sds.IssuerSecret(m.sysNS, "issuer", issuer, m.anchor), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var err error
	m.ca, err = sds.New(sds.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), LeafTTL: leafTTL, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := sds.NewWatcher(sds.WatcherConfig{Client: cs, Namespace: m.sysNS, IssuerSecret: "issuer", CA: m.ca, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-w.Synced()
	if st := m.ca.Status(); !st.Ready {
		t.Fatalf("CA not ready: %s", st.Problem)
	}
	auth, err := tokenauth.New(tokenauth.Config{Client: cs, Registry: prometheus.NewRegistry(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	m.identity = &Identity{
		CA: m.ca, Authenticator: auth.Authenticate,
		Serving:         sds.Workload{Namespace: m.sysNS, ServiceAccount: "weft-cp"},
		ServingDNSNames: []string{identityServerName},
	}
	return m
}

// identityServerName is the name clients verify the xDS serving
// certificate against.
const identityServerName = "weft-cp.weft-system.svc"

func setupIdentityMesh(t *testing.T, ns string, leafTTL time.Duration) *identityMesh {
	t.Helper()
	requireEnv(t)
	ctx := t.Context()
	cs := env.Clientset
	m := &identityMesh{ns: ns, sysNS: ns + "-sys", pods: map[string]*corev1.Pod{}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.ns, Annotations: meshedNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"a", "b"} {
		if _, err := cs.CoreV1().ServiceAccounts(m.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p" + sa},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		p, err := cs.CoreV1().Pods(m.ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m.pods[sa] = p
	}

	m.trust = startTestIdentity(t, m.sysNS, leafTTL)
	return m
}

func (m *trust) newIssuer(t *testing.T) *sds.CertKey { return newTestIssuer(t, m.anchor) }

func newTestAnchor(t *testing.T) *sds.CertKey {
	t.Helper()
	anchor, err := sds.NewAnchor("cluster.local", time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return anchor
}

func newTestIssuer(t *testing.T, anchor *sds.CertKey) *sds.CertKey {
	t.Helper()
	issuer, err := sds.NewIssuer("cluster.local", anchor, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return issuer
}

func withIdentity(id *Identity) cfgOption { return func(c *Config) { c.Identity = id } }

// podToken is what kubelet projects into pod for the control plane: a
// token of the pod's ServiceAccount, bound to the pod, audience weft.
func podToken(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	secs := int64(3600)
	tr, err := env.Clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.Spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{tokenauth.DefaultAudience}, ExpirationSeconds: &secs,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return tr.Status.Token
}

// writeTokenFile writes token where a test's proxy reads it per stream
// (tokenauth.FileCredentials, kubelet's projected file) and returns the path.
func writeTokenFile(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sdsStream is an Envoy sidecar's ADS stream reduced to SDS: TLS verified
// against the anchor and the control plane's name, the token file read per
// stream (tokenauth.FileCredentials, as Envoy's file-based metadata plugin
// does), every response ACKed.
type sdsStream struct {
	leaves chan sdsLeaf
	err    chan error
}

type sdsLeaf struct {
	chain           []*x509.Certificate
	certPEM, keyPEM []byte
	bundle          []byte
	at              time.Time
}

func openSDS(t *testing.T, addr string, anchor *x509.Certificate, token, node string) *sdsStream {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: identityServerName})),
		grpc.WithPerRPCCredentials(tokenauth.FileCredentials{Path: writeTokenFile(t, token)}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); conn.Close() })
	s := &sdsStream{leaves: make(chan sdsLeaf, 16), err: make(chan error, 1)}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{sds.WorkloadSecretName, sds.BundleSecretName}
	req := &discoveryv3.DiscoveryRequest{
		Node:    &corev3.Node{Id: node, UserAgentName: "envoy"},
		TypeUrl: resourcev3.SecretType, ResourceNames: names,
	}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				s.err <- err
				return
			}
			var l sdsLeaf
			l.at = time.Now()
			for _, a := range resp.GetResources() {
				var sec tlsv3.Secret
				if err := a.UnmarshalTo(&sec); err != nil {
					s.err <- err
					return
				}
				if c := sec.GetTlsCertificate(); c != nil {
					l.certPEM, l.keyPEM = c.GetCertificateChain().GetInlineBytes(), c.GetPrivateKey().GetInlineBytes()
					for rest := c.GetCertificateChain().GetInlineBytes(); ; {
						var b *pem.Block
						if b, rest = pem.Decode(rest); b == nil {
							break
						}
						cert, err := x509.ParseCertificate(b.Bytes)
						if err != nil {
							s.err <- err
							return
						}
						l.chain = append(l.chain, cert)
					}
				}
				if v := sec.GetValidationContext(); v != nil {
					l.bundle = v.GetTrustedCa().GetInlineBytes()
				}
			}
			s.leaves <- l
			if err := stream.Send(&discoveryv3.DiscoveryRequest{
				TypeUrl: resourcev3.SecretType, ResourceNames: names,
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
			}); err != nil {
				s.err <- err
				return
			}
		}
	})
	return s
}

func (s *sdsStream) next(t *testing.T, within time.Duration) sdsLeaf {
	t.Helper()
	select {
	case l := <-s.leaves:
		return l
	case err := <-s.err:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(within):
		t.Fatalf("no SDS response within %s", within)
	}
	return sdsLeaf{}
}

// verify checks that l is a leaf of exactly want, chaining to anchor through
// the intermediates sent with it, and returns its issuer.
func verifyLeaf(t *testing.T, l sdsLeaf, anchor *x509.Certificate, want string) *x509.Certificate {
	t.Helper()
	if len(l.chain) < 2 {
		t.Fatalf("chain of %d certificates, want the leaf and its issuer", len(l.chain))
	}
	leaf := l.chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Fatalf("leaf URI SANs %v, want exactly %s", leaf.URIs, want)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(anchor)
	for _, c := range l.chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not chain to the anchor: %v", err)
	}
	if !strings.Contains(string(l.bundle), "BEGIN CERTIFICATE") {
		t.Fatalf("bundle secret holds no certificate: %q", l.bundle)
	}
	return l.chain[1]
}

// TestIdentitySDSFollowsTheStreamsIdentity: each sidecar gets, over its own
// TLS, token-authenticated stream, a certificate for exactly the identity
// its token proved, chaining to the anchor; a token naming another pod gets
// nothing.
func TestIdentitySDSFollowsTheStreamsIdentity(t *testing.T) {
	m := setupIdentityMesh(t, "ident", time.Hour)
	rc := startController(t, withIdentity(m.identity))
	addr := rc.XDSAddr().String()

	cases := []struct {
		name, sa, node string
		code           codes.Code
		want           string
	}{
		{"a's token as a's pod", "a", "pa.ident", codes.OK, "spiffe://cluster.local/ns/ident/sa/a"},
		{"b's token as b's pod", "b", "pb.ident", codes.OK, "spiffe://cluster.local/ns/ident/sa/b"},
		{"b's token naming a's pod", "b", "pa.ident", codes.PermissionDenied, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openSDS(t, addr, m.anchor.Cert, podToken(t, m.pods[c.sa]), c.node)
			if c.code != codes.OK {
				select {
				case err := <-s.err:
					if status.Code(err) != c.code {
						t.Fatalf("stream ended with %v, want %v", err, c.code)
					}
				case l := <-s.leaves:
					t.Fatalf("refused stream was sent secrets: %d certificates", len(l.chain))
				case <-time.After(10 * time.Second):
					t.Fatalf("stream not refused")
				}
				return
			}
			verifyLeaf(t, s.next(t, 10*time.Second), m.anchor.Cert, c.want)
		})
	}
	// Each subtest's stream closed with it: the nodes' keys and rotation
	// loops go with their last stream.
	waitUntil(t, 10*time.Second, "no node holding secrets", func() bool {
		rc.pipe.secrets.mu.Lock()
		defer rc.pipe.secrets.mu.Unlock()
		return len(rc.pipe.secrets.nodes) == 0
	})
}

// TestIdentityRotation: with short leaves, a renewed leaf is pushed before
// the old one expires; an update of the issuer Secret (cert-manager
// renewing it) makes the next leaves chain to the new issuer, pushed at
// once, without a restart.
func TestIdentityRotation(t *testing.T) {
	const ttl = 3 * time.Second
	m := setupIdentityMesh(t, "ident-rot", ttl)
	rc := startController(t, withIdentity(m.identity))
	s := openSDS(t, rc.XDSAddr().String(), m.anchor.Cert, podToken(t, m.pods["a"]), "pa.ident-rot")
	const want = "spiffe://cluster.local/ns/ident-rot/sa/a"

	first := s.next(t, 10*time.Second)
	issuer := verifyLeaf(t, first, m.anchor.Cert, want)
	renewed := s.next(t, 2*ttl)
	t.Logf("first %s issued, not after %s; renewed pushed at %s (+%s)", first.at.Format(time.StampMilli), first.chain[0].NotAfter, renewed.at.Format(time.StampMilli), renewed.at.Sub(first.at))
	verifyLeaf(t, renewed, m.anchor.Cert, want)
	if renewed.chain[0].SerialNumber.Cmp(first.chain[0].SerialNumber) == 0 {
		t.Fatal("renewal pushed the same leaf")
	}
	if !renewed.at.Before(first.chain[0].NotAfter) {
		t.Fatalf("renewed leaf pushed at %s, after the old one expired at %s", renewed.at, first.chain[0].NotAfter)
	}

	next := m.newIssuer(t)
	sec := sds.IssuerSecret(m.sysNS, "issuer", next, m.anchor)
	if _, err := env.Clientset.CoreV1().Secrets(m.sysNS).Update(t.Context(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	updated := time.Now()
	for {
		l := s.next(t, 2*ttl)
		got := verifyLeaf(t, l, m.anchor.Cert, want)
		if got.SerialNumber.Cmp(next.Cert.SerialNumber) == 0 {
			if d := l.at.Sub(updated); d > ttl {
				t.Errorf("leaf from the new issuer pushed %s after the update, want it at once (before the renewal due)", d)
			}
			break
		}
		if got.SerialNumber.Cmp(issuer.SerialNumber) != 0 {
			t.Fatalf("leaf signed by issuer %s, neither the old nor the new one", got.SerialNumber)
		}
		if time.Since(updated) > 5*ttl {
			t.Fatal("no leaf from the new issuer")
		}
	}
}
