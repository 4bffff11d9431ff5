package healthcheck_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/healthcheck"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/sds"
)

// standInProxy plays Envoy on one ADS stream (state-of-the-world, the
// protocol of Envoy 1.40's GrpcMuxImpl, source/extensions/config_subscription/
// grpc/grpc_mux_impl.cc): it asks for each type, then ACKs it, or NACKs it
// with error_detail and the previous version as Envoy does. It is a
// stand-in: there is no Envoy binary here.
func standInProxy(t *testing.T, addr, node string, nack map[string]bool) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		conn.Close()
	})
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := &corev3.Node{Id: node, UserAgentName: "envoy"}
	for _, req := range []*discoveryv3.DiscoveryRequest{
		{TypeUrl: resourcev3.SecretType, ResourceNames: []string{sds.WorkloadSecretName, sds.BundleSecretName}},
		{TypeUrl: resourcev3.ListenerType},
	} {
		req.Node = n
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		reply := &discoveryv3.DiscoveryRequest{TypeUrl: req.TypeUrl, ResourceNames: req.ResourceNames, ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo()}
		if nack[req.TypeUrl] {
			reply.VersionInfo = ""
			reply.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "Error adding/updating listener(s) virtual_inbound: stand-in refusal"}
		}
		if err := stream.Send(reply); err != nil {
			t.Fatal(err)
		}
	}
}

// leafSecrets are a proxy's SDS secrets with a leaf issued at issuedAt
// for 24h, by a CA of its own (freshness is judged on the leaf alone).
func leafSecrets(t *testing.T, ns string, issuedAt time.Time) []types.Resource {
	t.Helper()
	anchor, err := sds.NewAnchor(trustDomain, issuedAt.Add(-time.Hour), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := sds.NewIssuer(trustDomain, anchor, issuedAt.Add(-time.Hour), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sds.NewMaterial("test", []*x509.Certificate{issuer.Cert}, issuer.Key, []*x509.Certificate{anchor.Cert}, issuedAt)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sds.New(sds.Config{TrustDomain: spiffeid.RequireTrustDomainFromString(trustDomain), LeafTTL: 24 * time.Hour,
		Now: func() time.Time { return issuedAt }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ca.SetMaterial(m, nil)
	leaf, err := ca.IssueKeyPair(sds.Workload{Namespace: ns, ServiceAccount: "default"})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := sds.EnvoySecrets(leaf, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	var out []types.Resource
	for _, s := range secrets {
		out = append(out, s)
	}
	return out
}

// --proxy: of two meshed pods, one proxy connected and in sync passes; the
// other is first not connected, then connected with a NACKed listener set
// and a certificate past its renewal.
func TestDataPlane(t *testing.T) {
	in := install(t, installOptions{})
	ctx := t.Context()
	meshNS := in.ns + "-mesh"
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: meshNS, Annotations: map[string]string{mesh.AnnotationInject: mesh.InjectEnabled},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runDeployment(t, meshNS, "web", 2, map[string]string{"app": "web"})
	pods, err := env.RunningPods(ctx, time.Minute, meshNS, "app=web", 2)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := proxy.NodeID(pods[0].Name, meshNS), proxy.NodeID(pods[1].Name, meshNS)
	now := time.Now()
	for node, issuedAt := range map[string]time.Time{good: now, bad: now.Add(-20 * time.Hour)} {
		res := map[string][]types.Resource{resourcev3.SecretType: leafSecrets(t, meshNS, issuedAt)}
		if err := in.xds.SetNodeResources(ctx, node, proxy.Envoy, res, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := in.cfg
	cfg.Proxy = true

	standInProxy(t, in.adsAddr, good, nil)
	waitRecorded(t, in, good, func(lds, sds bool) bool { return lds && sds })
	expectLines(t, healthcheck.Run(ctx, cfg), []line{
		{"data plane proxies are connected to the control plane", healthcheck.StatusError, "dp-connected",
			"1 meshed pods have no proxy connected to this control plane replica: [" + bad + "]"},
	})

	standInProxy(t, in.adsAddr, bad, map[string]bool{resourcev3.ListenerType: true})
	waitRecorded(t, in, bad, func(ldsNacked, sds bool) bool { return ldsNacked && sds })
	p, _ := in.xds.Proxy(bad)
	rejected := p.Types["lds"].LastNack.Version
	expectLines(t, healthcheck.Run(ctx, cfg), []line{
		{"data plane proxies are on the current configuration", healthcheck.StatusError, "dp-current", bad + " lds (ACKed \"\", current"},
		{"data plane proxies have not rejected their configuration (no NACKs)", healthcheck.StatusError, "dp-nacks",
			fmt.Sprintf("%s rejected lds version %q at ", bad, rejected)},
		{"data plane proxies have fresh certificates", healthcheck.StatusError, "dp-certificates",
			bad + " secret \"" + sds.WorkloadSecretName + "\": certificate has used 8"},
	})
}

// waitRecorded waits until the xDS server has recorded a proxy's answers:
// done gets whether LDS was answered (ACK or NACK) and SDS ACKed.
func waitRecorded(t *testing.T, in *installation, node string, done func(lds, sds bool) bool) {
	t.Helper()
	err := env.WaitFor(t.Context(), 30*time.Second, "the answers of "+node, func(context.Context) (bool, error) {
		p, ok := in.xds.Proxy(node)
		if !ok {
			return false, nil
		}
		l := p.Types["lds"]
		return done(l.VersionAcked != "" || l.LastNack != nil, p.Types["sds"].VersionAcked != ""), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
