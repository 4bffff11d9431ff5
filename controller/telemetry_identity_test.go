package controller

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/sds/tokenauth"
)

// TestIdentityMetricsStreamsAreAuthenticated: with identity on, a proxy's metrics_service
// stream is authenticated as its ADS stream is (TLS to the control plane's name, the pod's
// projected token), and a token may not report another pod's stats.
func TestIdentityMetricsStreamsAreAuthenticated(t *testing.T) {
	m := setupIdentityMesh(t, "identm", time.Hour)
	rc := startController(t, withIdentity(m.identity))
	roots := x509.NewCertPool()
	roots.AddCert(m.anchor.Cert)
	cases := []struct {
		name, sa, node string
		token          bool
		code           codes.Code
	}{
		// Refused streams first: the store must stay empty until the accepted one.
		{"b's token naming a's pod", "b", "pa.identm", true, codes.PermissionDenied},
		{"no token", "a", "pa.identm", false, codes.Unauthenticated},
		{"a's token as a's pod", "a", "pa.identm", true, codes.OK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: identityServerName}))}
			if c.token {
				opts = append(opts, grpc.WithPerRPCCredentials(tokenauth.FileCredentials{Path: writeTokenFile(t, podToken(t, m.pods[c.sa]))}))
			}
			conn, err := grpc.NewClient(rc.XDSAddr().String(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			f := (&statFlush{ts: time.Now().UnixMilli()}).counter("http.downstream_rq", 5, "weft_http_prefix", "inbound", "weft_response_code_class", "2xx")
			err = streamFlushes(t, conn, c.node, []*statFlush{f})
			if status.Code(err) != c.code {
				t.Fatalf("stream ended with %v, want %v", err, c.code)
			}
			if got := rc.GoldenStore().Proxies(); (c.code == codes.OK) != (got == 1) {
				t.Errorf("%d proxies in the store after a stream ending %v", got, c.code)
			}
		})
	}
}
