package xds

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/proxy"
)

func newTestServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func compact(t testing.TB, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compacting %s: %v", raw, err)
	}
	return b.String()
}

func names(rs []types.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = cachev3.GetResourceName(r)
	}
	return out
}

func TestNodeConfigHoldsTheLastGoodSetAndItsEndpoints(t *testing.T) {
	refuse := false
	s := newTestServer(t, Options{Checker: func(n NodeInfo, res map[string][]types.Resource) error {
		if refuse {
			return errors.New("refused by the test")
		}
		return defaultChecker(n, res)
	}})
	if _, ok := s.NodeConfig(node1); ok {
		t.Fatal("NodeConfig of a node never set: ok")
	}

	set := nodeSet(t, "web")
	// A second EDS cluster without service_name (the CLA is named after the
	// cluster) and one whose CLA is never set; listed out of order.
	noService := edsCluster("api-cluster", "")
	noService.EdsClusterConfig.ServiceName = ""
	set[resourcev3.ClusterType] = append([]types.Resource{edsCluster("zz-cluster", "zz-cla"), noService}, set[resourcev3.ClusterType]...)
	set[resourcev3.RouteType] = append(set[resourcev3.RouteType], routeConfig("api-route", "api:80", "api-cluster"))
	mustSet(t, s, node1, set, time.Time{})
	webCLA := cla("web-cla", "10.0.0.1", 8080)
	mustSetEndpoints(t, s, time.Time{}, webCLA, cla("api-cluster", "10.0.0.2", 80), cla("unrelated-cla", "10.0.0.3", 80))

	got, ok := s.NodeConfig(node1)
	if !ok {
		t.Fatal("NodeConfig: not ok after a good set")
	}
	want := map[string][]string{
		resourcev3.ListenerType: {"web:8080"},
		resourcev3.RouteType:    {"api-route", "web-route"},
		resourcev3.ClusterType:  {"api-cluster", "web-cluster", "zz-cluster"},
		resourcev3.EndpointType: {"api-cluster", "web-cla"},
		resourcev3.SecretType:   {},
	}
	for _, typeURL := range ConfigTypes {
		rs, present := got[typeURL]
		if !present {
			t.Errorf("type %s missing", TypeLabel(typeURL))
		}
		if n := names(rs); !slices.Equal(n, want[typeURL]) {
			t.Errorf("%s names = %v, want %v", TypeLabel(typeURL), n, want[typeURL])
		}
	}
	if got[resourcev3.EndpointType][1] != types.Resource(webCLA) {
		t.Error("the web CLA is not the one set")
	}

	// A refused set leaves the last good one in place; an endpoint change
	// shows at once.
	refuse = true
	if err := s.SetNodeResources(context.Background(), node1, proxy.Envoy, nodeSet(t, "other"), time.Time{}); err == nil {
		t.Fatal("refusing checker: SetNodeResources succeeded")
	}
	newWeb := cla("web-cla", "10.0.0.9", 8080)
	mustSetEndpoints(t, s, time.Time{}, newWeb)
	got, _ = s.NodeConfig(node1)
	if n := names(got[resourcev3.ClusterType]); !slices.Equal(n, want[resourcev3.ClusterType]) {
		t.Errorf("after a refused set, clusters = %v, want the last good %v", n, want[resourcev3.ClusterType])
	}
	if got[resourcev3.EndpointType][1] != types.Resource(newWeb) {
		t.Error("NodeConfig does not show the new web CLA")
	}

	s.ClearNode(node1)
	if _, ok := s.NodeConfig(node1); ok {
		t.Error("NodeConfig of a cleared node: ok")
	}
}

func TestConfigHandler(t *testing.T) {
	s := newTestServer(t, Options{})
	mustSet(t, s, node1, nodeSet(t, "web"), time.Time{})
	mustSetEndpoints(t, s, time.Time{}, cla("web-cla", "10.0.0.1", 8080))
	h := s.DebugHandler()

	tests := []struct {
		name      string
		path      string
		wantCode  int
		wantError string
	}{
		{"known node", "/debug/config/" + node1, http.StatusOK, ""},
		{"unknown node", "/debug/config/web-2.demo", http.StatusNotFound, "no configuration for node web-2.demo: the control plane has accepted no resources"},
		{"malformed node id", "/debug/config/web", http.StatusNotFound, `node id "web" is not "<pod>.<namespace>"`},
		{"no node", "/debug/config/", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("GET %s: %d %s, want %d", tt.path, rec.Code, rec.Body.String(), tt.wantCode)
			}
			if tt.wantError != "" {
				var e map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
					t.Fatalf("decoding %s: %v", rec.Body.String(), err)
				}
				if !strings.Contains(e["error"], tt.wantError) {
					t.Errorf("error = %q, want it to contain %q", e["error"], tt.wantError)
				}
			}
		})
	}

	var doc NodeConfigDocument
	getJSON(t, h, "/debug/config/"+node1, http.StatusOK, &doc)
	if doc.Node != node1 {
		t.Errorf("node = %q, want %q", doc.Node, node1)
	}
	for typeURL, v := range s.NodeVersions(node1) {
		if doc.Versions[typeURL] != v {
			t.Errorf("version of %s = %q, want the node's %q", TypeLabel(typeURL), doc.Versions[typeURL], v)
		}
	}
	if doc.Versions[resourcev3.EndpointType] == "" {
		t.Error("no EDS version")
	}
	// protojson with Envoy's field names, typed configs expanded.
	lds := compact(t, doc.Resources[resourcev3.ListenerType][0])
	for _, want := range []string{`"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"`, `"route_config_name":"web-route"`} {
		if !strings.Contains(lds, want) {
			t.Errorf("listener JSON lacks %s:\n%s", want, lds)
		}
	}

	decoded, err := doc.DecodeResources()
	if err != nil {
		t.Fatalf("DecodeResources: %v", err)
	}
	orig, _ := s.NodeConfig(node1)
	for _, typeURL := range ConfigTypes {
		if len(decoded[typeURL]) != len(orig[typeURL]) {
			t.Fatalf("%s: %d decoded, %d served", TypeLabel(typeURL), len(decoded[typeURL]), len(orig[typeURL]))
		}
		for i := range orig[typeURL] {
			if !proto.Equal(decoded[typeURL][i], orig[typeURL][i]) {
				t.Errorf("%s[%d] does not round-trip:\n got %v\nwant %v", TypeLabel(typeURL), i, decoded[typeURL][i], orig[typeURL][i])
			}
		}
	}

	// Same content, same EDS version; other content, another.
	before := doc.Versions[resourcev3.EndpointType]
	mustSetEndpoints(t, s, time.Time{}, cla("web-cla", "10.0.0.1", 8080))
	getJSON(t, h, "/debug/config/"+node1, http.StatusOK, &doc)
	if doc.Versions[resourcev3.EndpointType] != before {
		t.Error("EDS version changed without a content change")
	}
	mustSetEndpoints(t, s, time.Time{}, cla("web-cla", "10.0.0.2", 8080))
	getJSON(t, h, "/debug/config/"+node1, http.StatusOK, &doc)
	if doc.Versions[resourcev3.EndpointType] == before {
		t.Error("EDS version unchanged after an endpoint change")
	}
}

// keyPair is a self-signed P-256 certificate and its PKCS#8 key, in PEM.
func keyPair(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "web"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
}

func TestConfigNeverShowsPrivateKeys(t *testing.T) {
	certPEM, keyPEM := keyPair(t)
	secret := &tlsv3.Secret{Name: "web-cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
	}}}
	s := newTestServer(t, Options{})
	set := nodeSet(t, "web")
	set[resourcev3.SecretType] = []types.Resource{secret}
	mustSet(t, s, node1, set, time.Time{})

	// A key inside a typed config (a listener's transport socket), as a
	// string, and a session ticket key, packed in Any: the checker would
	// have its say on these, so they are encoded directly.
	tlsCtx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(certPEM)}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(keyPEM)}},
			Password:         &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "hunter2"}},
		}}},
		SessionTicketKeysType: &tlsv3.DownstreamTlsContext_SessionTicketKeys{SessionTicketKeys: &tlsv3.TlsSessionTicketKeys{
			Keys: []*corev3.DataSource{{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("0123456789abcdef-ticket-key-material-0123456789abcdef")}}},
		}},
	}
	lis := &listenerv3.Listener{
		Name: "tls",
		FilterChains: []*listenerv3.FilterChain{{
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, tlsCtx)}},
		}},
	}
	direct, err := EncodeNodeConfig("direct.demo", nil, map[string][]types.Resource{resourcev3.ListenerType: {lis}})
	if err != nil {
		t.Fatalf("EncodeNodeConfig: %v", err)
	}

	var served NodeConfigDocument
	getJSON(t, s.DebugHandler(), "/debug/config/"+node1, http.StatusOK, &served)

	tests := []struct {
		name    string
		doc     *NodeConfigDocument
		typeURL string
		// redactions is how many DataSources must read Redacted.
		redactions int
	}{
		{"secret", &served, resourcev3.SecretType, 1},
		{"listener transport socket", direct, resourcev3.ListenerType, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := compact(t, tt.doc.Resources[tt.typeURL][0])
			for _, secret := range []string{
				"PRIVATE KEY",
				base64.StdEncoding.EncodeToString(keyPEM),
				"hunter2",
				base64.StdEncoding.EncodeToString([]byte("0123456789abcdef-ticket-key-material-0123456789abcdef")),
			} {
				if strings.Contains(raw, secret) {
					t.Errorf("JSON shows key material %.30q...:\n%s", secret, raw)
				}
			}
			if n := strings.Count(raw, `"inline_string":"`+Redacted+`"`); n != tt.redactions {
				t.Errorf("%d redacted DataSources, want %d:\n%s", n, tt.redactions, raw)
			}
			// The certificate is public and stays.
			if !strings.Contains(raw, base64.StdEncoding.EncodeToString(certPEM)) && !strings.Contains(raw, "BEGIN CERTIFICATE") {
				t.Errorf("certificate chain missing:\n%s", raw)
			}
			// Redacted documents still decode.
			if _, err := tt.doc.DecodeResources(); err != nil {
				t.Errorf("DecodeResources: %v", err)
			}
		})
	}

	// The server's own resources are untouched by redaction.
	got, _ := s.NodeConfig(node1)
	if !proto.Equal(got[resourcev3.SecretType][0], secret) {
		t.Error("redaction changed the served secret")
	}
}

func TestConfigWithUnknownTypedConfig(t *testing.T) {
	unknown := &anypb.Any{TypeUrl: "type.googleapis.com/example.NotLinked", Value: []byte{0x0a, 0x03, 'a', 'b', 'c'}}
	lis := &listenerv3.Listener{
		Name:            "odd",
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: "example.not_linked", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: unknown}}},
	}
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}, LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "c"}}
	doc, err := EncodeNodeConfig("odd.demo", map[string]string{}, map[string][]types.Resource{
		resourcev3.ListenerType: {lis},
		resourcev3.ClusterType:  {c},
	})
	if err != nil {
		t.Fatalf("EncodeNodeConfig with an unlinked typed config: %v", err)
	}
	raw := compact(t, doc.Resources[resourcev3.ListenerType][0])
	if !strings.Contains(raw, `"@type":"type.googleapis.com/example.NotLinked"`) {
		t.Errorf("the unknown type is not named:\n%s", raw)
	}
	res, err := doc.DecodeResources()
	if err != nil {
		t.Fatalf("DecodeResources: %v", err)
	}
	got := res[resourcev3.ListenerType][0].(*listenerv3.Listener)
	if tc := got.GetListenerFilters()[0].GetTypedConfig(); tc.GetTypeUrl() != unknown.TypeUrl {
		t.Errorf("decoded typed config type = %q, want %q", tc.GetTypeUrl(), unknown.TypeUrl)
	}
	if !proto.Equal(res[resourcev3.ClusterType][0], c) {
		t.Error("the cluster beside it does not round-trip")
	}

	bad := &NodeConfigDocument{Resources: map[string][]json.RawMessage{resourcev3.ClusterType: {json.RawMessage(`{"name": 7}`)}}}
	if _, err := bad.DecodeResources(); err == nil || !strings.Contains(err.Error(), "cds[0]") {
		t.Errorf("decoding a malformed cluster: %v, want an error naming cds[0]", err)
	}
}
