package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/sds/tokenauth"
	"github.com/weftmesh/weft/translate"
)

// tapChannel is what a tapped proxy's access logger was told about the
// control plane (GrpcService.google_grpc of HttpGrpcAccessLogConfig, Envoy
// 1.40): the roots its channel verifies the server with, and the name.
type tapChannel struct {
	roots      string
	serverName string
}

// tapChannelOf reads the tap logger from the listeners node is served now;
// ok is false while it has none.
func tapChannelOf(t *testing.T, rc *runningController, node string) (ch tapChannel, ok bool) {
	t.Helper()
	res, _ := rc.XDS().NodeConfig(node)
	for _, r := range res[resourcev3.ListenerType] {
		err := translate.EachHTTPConnectionManager(r.(*listenerv3.Listener), func(h *hcmv3.HttpConnectionManager) bool {
			for _, al := range h.GetAccessLog() {
				var cfg grpclogv3.HttpGrpcAccessLogConfig
				if err := al.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
					t.Fatal(err)
				}
				g := cfg.GetCommonConfig().GetGrpcService().GetGoogleGrpc()
				ch = tapChannel{
					roots:      g.GetChannelCredentials().GetSslCredentials().GetRootCerts().GetInlineString(),
					serverName: g.GetChannelArgs().GetArgs()["grpc.ssl_target_name_override"].GetStringValue(),
				}
				ok = true
			}
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ch, ok
}

// logAs streams one access log entry of node to addr as Envoy's google_grpc
// client configured by ch would (TLS verified against ch's roots and name,
// the pod's token read from its file by the file-based metadata plugin):
// a stand-in for Envoy 1.40's http_grpc access logger
// (api/envoy/service/accesslog/v3/als.proto). It returns how the stream
// ended.
func logAs(t *testing.T, addr string, ch tapChannel, tokenFile, node, path string) error {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(ch.roots)) {
		t.Fatalf("the tap logger's root certs hold no certificate:\n%s", ch.roots)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: ch.serverName})),
		grpc.WithPerRPCCredentials(tokenauth.FileCredentials{Path: tokenFile}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		return err
	}
	err = s.Send(&accesslogv3.StreamAccessLogsMessage{
		Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: node}, LogName: translate.TapLogInbound},
		LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
			LogEntry: []*accesslogdatav3.HTTPAccessLogEntry{{
				CommonProperties: &accesslogdatav3.AccessLogCommon{TlsProperties: &accesslogdatav3.TLSProperties{}},
				Request:          &accesslogdatav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Authority: "a.itap-rot:80", Path: path},
				Response:         &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200)},
			}},
		}},
	})
	if err != nil {
		_, err = s.CloseAndRecv() // the reason the stream ended
		return err
	}
	_, err = s.CloseAndRecv()
	return err
}

func holds(roots string, anchor *x509.Certificate) bool {
	for rest := []byte(roots); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return false
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && c.Equal(anchor) {
			return true
		}
	}
}

// TestTapFollowsAnchorRotation: with identity, a tapped proxy's access logger
// reaches the control plane over TLS verified against the trust bundle in its
// config. The anchor is rotated (the issuer Secret now holds an issuer under a
// new anchor, and the bundle is that anchor) while a session runs: without a
// control plane restart the tapped proxy is pushed a logger that trusts the new
// anchor, the logger as it was before can no longer reach the control plane,
// and a stand-in Envoy with the new config reaches the session.
func TestTapFollowsAnchorRotation(t *testing.T) {
	m := setupIdentityMesh(t, "itap-rot", time.Hour)
	rc := startController(t, withIdentity(m.identity), func(c *Config) {
		c.TapLogService = func() (*corev3.GrpcService, error) {
			// What cmd/cp gives it: the bootstrap's channel with the CA's bundle now.
			return bootstrap.ControlPlaneService(bootstrap.Config{
				ControlPlaneAddress: "10.96.0.12:15012", ServerName: identityServerName,
				TrustBundlePEM: m.ca.Bundle(), TokenPath: "/var/run/secrets/weft/token",
			})
		}
	})
	const node = "pa.itap-rot"
	// A service for pa to call: its outbound listener gets an HTTP connection
	// manager, which is where the tap logger goes.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "itap-rot"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if _, err := env.Clientset.CoreV1().Services("itap-rot").Create(t.Context(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := podToken(t, m.pods["a"])
	tokenFile := writeTokenFile(t, token)
	// The proxy is connected (its SDS stream over TLS with its token).
	openSDS(t, rc.XDSAddr().String(), m.anchor.Cert, token, node).next(t, 30*time.Second)

	sessCtx, endSession := context.WithCancel(t.Context())
	defer endSession()
	next := openTapSession(sessCtx, t, rc, "namespace=itap-rot&target=pod/pa")
	if l := next(); !slices.Equal(l.Proxies, []string{node}) {
		t.Fatalf("session taps %v, want [%s]", l.Proxies, node)
	}

	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				ch, ok := tapChannelOf(t, rc, node)
				t.Fatalf("waited 30s for %s (logger %v, roots %d bytes)", what, ok, len(ch.roots))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var before tapChannel
	wait("the tap logger trusting the first anchor", func() bool {
		ch, ok := tapChannelOf(t, rc, node)
		before = ch
		return ok && holds(ch.roots, m.anchor.Cert)
	})
	if before.serverName != identityServerName {
		t.Fatalf("the logger verifies the name %q, want %q", before.serverName, identityServerName)
	}
	if err := logAs(t, rc.XDSAddr().String(), before, tokenFile, node, "/before"); err != nil {
		t.Fatalf("the logger's stream before the rotation: %v", err)
	}
	if l := next(); l.Event == nil || l.Event.Path != "/before" {
		t.Fatalf("line %+v, want the request to /before", l)
	}

	// The rotation: a new anchor, an issuer under it, and the bundle is the new anchor.
	anchor := newTestAnchor(t)
	sec := sds.IssuerSecret(m.sysNS, "issuer", newTestIssuer(t, anchor), anchor)
	if _, err := env.Clientset.CoreV1().Secrets(m.sysNS).Update(t.Context(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var after tapChannel
	wait("the tap logger trusting the new anchor", func() bool {
		ch, ok := tapChannelOf(t, rc, node)
		after = ch
		return ok && holds(ch.roots, anchor.Cert) && !holds(ch.roots, m.anchor.Cert)
	})
	// The serving certificate follows the issuer; once it has, the logger as
	// configured before cannot reach the control plane, and the pushed one can.
	var lastErr error
	wait("a stream with the new logger config", func() bool {
		lastErr = logAs(t, rc.XDSAddr().String(), after, tokenFile, node, "/after")
		return lastErr == nil
	})
	if l := next(); l.Event == nil || l.Event.Path != "/after" {
		t.Fatalf("line %+v, want the request to /after", l)
	}
	if err := logAs(t, rc.XDSAddr().String(), before, tokenFile, node, "/stale"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("the logger config from before the rotation still reached the control plane (%v): the test proves nothing", err)
	}
}
