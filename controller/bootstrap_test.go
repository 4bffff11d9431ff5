package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpccredv3 "github.com/envoyproxy/go-control-plane/envoy/config/grpc_credential/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/sds"
)

// TestEnvoyBootstrapReachesTheControlPlane: the xDS channel the sidecar's bootstrap
// describes (TLS against the bundle for the control plane's name, the projected token from a
// file on every stream, delta ADS, the node from --service-node) is one the control plane
// with --identity accepts, and the token is the file's current content on each new stream.
func TestEnvoyBootstrapReachesTheControlPlane(t *testing.T) {
	m := setupIdentityMesh(t, "boot", time.Hour)
	rc := startController(t, withIdentity(m.identity))
	tokenFile := filepath.Join(t.TempDir(), "token")
	b, err := bootstrap.Envoy(bootstrap.Config{
		ControlPlaneAddress: rc.XDSAddr().String(),
		ServerName:          identityServerName,
		TrustBundlePEM:      m.anchor.CertPEM,
		TokenPath:           tokenFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := dialAsEnvoy(t, b.GetDynamicResources().GetAdsConfig())

	cases := []struct {
		name, tokenOf, node string
		code                codes.Code
		want                string
	}{
		{"b's token for b's pod", "b", "pb.boot", codes.OK, "spiffe://cluster.local/ns/boot/sa/b"},
		{"b's token naming a's pod", "b", "pa.boot", codes.PermissionDenied, ""},
		// kubelet rewrote the file: the next stream carries the new token.
		{"a's token for a's pod", "a", "pa.boot", codes.OK, "spiffe://cluster.local/ns/boot/sa/a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(tokenFile, []byte(podToken(t, m.pods[tc.tokenOf])), 0o600); err != nil {
				t.Fatal(err)
			}
			leaf, err := firstSecrets(t.Context(), conn, tc.node)
			if status.Code(err) != tc.code {
				t.Fatalf("stream ended with %v, want %v", err, tc.code)
			}
			if tc.code == codes.OK {
				verifyLeaf(t, leaf, m.anchor.Cert, tc.want)
			}
		})
	}
}

// dialAsEnvoy is a stand-in for how Envoy 1.40 opens the xDS channel of a bootstrap's
// ads_config with the Google gRPC client (source/common/grpc/google_grpc_creds_impl.cc and
// source/extensions/grpc_credentials/file_based_metadata/config.cc): TLS with the inline
// root_certs, the grpc.ssl_target_name_override channel arg as the name checked, and the
// file-based-metadata plugin, which reads its file for every call. It is not Envoy; it reads
// only what the bootstrap says, so a bootstrap missing any of it fails here.
func dialAsEnvoy(t *testing.T, ads *corev3.ApiConfigSource) *grpc.ClientConn {
	t.Helper()
	if len(ads.GetGrpcServices()) != 1 || ads.GetGrpcServices()[0].GetGoogleGrpc() == nil {
		t.Fatalf("ads_config has no single google_grpc service: %v", ads)
	}
	gg := ads.GetGrpcServices()[0].GetGoogleGrpc()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(gg.GetChannelCredentials().GetSslCredentials().GetRootCerts().GetInlineString())) {
		t.Fatal("no root certificate in ssl_credentials.root_certs.inline_string")
	}
	serverName := gg.GetChannelArgs().GetArgs()["grpc.ssl_target_name_override"].GetStringValue()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: serverName}))}
	for _, cc := range gg.GetCallCredentials() {
		p := cc.GetFromPlugin()
		if p.GetName() != "envoy.grpc_credentials.file_based_metadata" || gg.GetCredentialsFactoryName() != p.GetName() {
			t.Fatalf("call credentials %v would not be installed by Envoy", cc)
		}
		cfg := &grpccredv3.FileBasedMetadataConfig{}
		if err := p.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(fileBasedMetadata{cfg}))
	}
	conn, err := grpc.NewClient(gg.GetTargetUri(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// fileBasedMetadata does what Envoy's FileBasedMetadataAuthenticator::GetMetadata does:
// header_key (default "authorization") = header_prefix + the file's content, read per call.
type fileBasedMetadata struct {
	cfg *grpccredv3.FileBasedMetadataConfig
}

func (f fileBasedMetadata) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	data, err := os.ReadFile(f.cfg.GetSecretData().GetFilename())
	if err != nil {
		return nil, err
	}
	key := f.cfg.GetHeaderKey()
	if key == "" {
		key = "authorization"
	}
	return map[string]string{key: f.cfg.GetHeaderPrefix() + string(data)}, nil
}

func (fileBasedMetadata) RequireTransportSecurity() bool { return true }

// firstSecrets opens a delta ADS stream as node, subscribes to the workload certificate and
// the bundle, and returns them once both have arrived.
func firstSecrets(ctx context.Context, conn *grpc.ClientConn, node string) (sdsLeaf, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var l sdsLeaf
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return l, err
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:                   &corev3.Node{Id: node, UserAgentName: "envoy"},
		TypeUrl:                resourcev3.SecretType,
		ResourceNamesSubscribe: []string{sds.WorkloadSecretName, sds.BundleSecretName},
	}); err != nil {
		return l, err
	}
	for len(l.chain) == 0 || len(l.bundle) == 0 {
		resp, err := stream.Recv()
		if err != nil {
			return l, err
		}
		for _, r := range resp.GetResources() {
			var sec tlsv3.Secret
			if err := r.GetResource().UnmarshalTo(&sec); err != nil {
				return l, err
			}
			if v := sec.GetValidationContext(); v != nil {
				l.bundle = v.GetTrustedCa().GetInlineBytes()
			}
			for rest := sec.GetTlsCertificate().GetCertificateChain().GetInlineBytes(); ; {
				var block *pem.Block
				if block, rest = pem.Decode(rest); block == nil {
					break
				}
				c, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					return l, fmt.Errorf("secret %s: %w", sec.GetName(), err)
				}
				l.chain = append(l.chain, c)
			}
		}
	}
	return l, nil
}
