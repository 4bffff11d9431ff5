package translate

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate/check"
)

const testTrustDomain = "example.org"

// mtlsModel is seamModel with every endpoint a meshed pod of the given
// ServiceAccounts (in turn).
func mtlsModel(meshed bool, sas []string, ips ...string) *mesh.Model {
	m := seamModel(ips...)
	for k, eps := range m.Endpoints {
		for name, list := range eps.ByPort {
			for i := range list {
				list[i].Pod = "web-" + list[i].Address
				list[i].Identity = mesh.Identity{Namespace: k.Namespace, ServiceAccount: sas[i%len(sas)]}
				list[i].Meshed = meshed
			}
			eps.ByPort[name] = list
		}
		eps.Peers = mesh.PeersOf(eps.ByPort)
	}
	return m
}

func mtlsProxy(kind proxy.Kind, mode mesh.MTLSMode) *mesh.Proxy {
	return &mesh.Proxy{
		Kind: kind, Pod: "c", Namespace: "shop", MTLSMode: mode,
		Identity: mesh.Identity{Namespace: "shop", ServiceAccount: "client"},
		InboundPorts: []mesh.ProxyPort{
			{Name: "http", Port: 8080, Protocol: mesh.ProtocolHTTP1},
			{Name: "pg", Port: 5432, Protocol: mesh.ProtocolOpaque},
		},
	}
}

// checkWithoutSecrets runs the checker the way the goldens do: the
// secrets are the SDS server's, not in translate's output.
func checkWithoutSecrets(t *testing.T, kind proxy.Kind, res *Resources) {
	t.Helper()
	byType := res.ByType()
	delete(byType, resourcev3.SecretType)
	for _, prob := range check.Problems(kind, byType) {
		t.Errorf("%s: %v", kind, prob)
	}
}

// TestMTLSOffWithoutTrustDomain: without a trust domain the output is
// exactly that of a translator without the mTLS feature, whatever the
// model and proxy say.
func TestMTLSOffWithoutTrustDomain(t *testing.T) {
	bare, err := newFeatureTable(slices.DeleteFunc(slices.Clone(featureOrder), func(f feature) bool {
		return f.name == mtlsOrigination.name || f.name == mtlsTermination.name
	}))
	if err != nil {
		t.Fatal(err)
	}
	m := mtlsModel(true, []string{"web"}, "10.1.0.1")
	for _, p := range []*mesh.Proxy{mtlsProxy(proxy.Envoy, mesh.MTLSStrict), mtlsProxy(proxy.GRPC, mesh.MTLSPermissive)} {
		with, _ := NewTranslator(Options{}).ForProxy(m, p)
		without, _ := newTranslator(Options{}, bare).ForProxy(m, p)
		wb, wob := with.ByType(), without.ByType()
		for typ, list := range wb {
			if !slices.EqualFunc(list, wob[typ], func(a, b types.Resource) bool { return proto.Equal(a, b) }) {
				t.Errorf("%s: %s differ with the mTLS feature and no trust domain", p.Kind, typ)
			}
		}
	}
}

func upstreamTLS(t *testing.T, c *clusterv3.Cluster) *tlsv3.UpstreamTlsContext {
	t.Helper()
	if c.TransportSocket == nil {
		return nil
	}
	if c.TransportSocket.Name != wellknown.TransportSocketTLS {
		t.Fatalf("cluster %s: transport socket %q", c.Name, c.TransportSocket.Name)
	}
	var u tlsv3.UpstreamTlsContext
	if err := c.TransportSocket.GetTypedConfig().UnmarshalTo(&u); err != nil {
		t.Fatal(err)
	}
	return &u
}

// sansOf returns the exact SAN matchers of u, typed (Envoy) or not
// (grpc-go), and whether the certificate and bundle come by SDS.
func sansOf(u *tlsv3.UpstreamTlsContext) (sans []string, sds bool) {
	ct := u.GetCommonTlsContext()
	for _, m := range ct.GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		if m.GetSanType() == tlsv3.SubjectAltNameMatcher_URI {
			sans = append(sans, m.GetMatcher().GetExact())
		}
	}
	for _, m := range ct.GetValidationContext().GetMatchSubjectAltNames() {
		sans = append(sans, m.GetExact())
	}
	sds = len(ct.GetTlsCertificateSdsSecretConfigs()) == 1 &&
		ct.GetTlsCertificateSdsSecretConfigs()[0].GetName() == mesh.SDSCertificateSecret &&
		ct.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName() == mesh.SDSTrustBundleSecret
	return sans, sds
}

func TestMTLSOrigination(t *testing.T) {
	idA := "spiffe://example.org/ns/shop/sa/web"
	idB := "spiffe://example.org/ns/shop/sa/web-canary"
	tests := []struct {
		name     string
		model    *mesh.Model
		kind     proxy.Kind
		wantTLS  bool
		wantSANs []string
	}{
		{"meshed, one ServiceAccount, sidecar", mtlsModel(true, []string{"web"}, "10.1.0.1", "10.1.0.2"), proxy.Envoy, true, []string{idA}},
		{"meshed, two ServiceAccounts, sorted", mtlsModel(true, []string{"web-canary", "web"}, "10.1.0.1", "10.1.0.2"), proxy.Envoy, true, []string{idA, idB}},
		{"meshed, proxyless client", mtlsModel(true, []string{"web"}, "10.1.0.1"), proxy.GRPC, true, []string{idA}},
		{"not meshed", mtlsModel(false, []string{"web"}, "10.1.0.1"), proxy.Envoy, false, nil},
		{"no endpoints", mtlsModel(true, []string{"web"}), proxy.Envoy, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, errs := NewTranslator(Options{TrustDomain: testTrustDomain}).ForProxy(tt.model, mtlsProxy(tt.kind, mesh.MTLSPermissive))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			checkWithoutSecrets(t, tt.kind, res)
			var found bool
			for _, c := range res.Clusters {
				if c.Name != OutboundClusterName(mesh.ServiceKey{Namespace: "shop", Name: "web"}, 50051, DefaultClusterDomain) {
					continue
				}
				found = true
				u := upstreamTLS(t, c)
				if (u != nil) != tt.wantTLS {
					t.Fatalf("TLS %v, want %v", u != nil, tt.wantTLS)
				}
				if u == nil {
					return
				}
				if u.GetSni() != "web.shop.svc.cluster.local" {
					t.Errorf("SNI %q, want the service FQDN", u.GetSni())
				}
				sans, sds := sansOf(u)
				if !slices.Equal(sans, tt.wantSANs) {
					t.Errorf("SANs %q, want %q", sans, tt.wantSANs)
				}
				if wantSDS := tt.kind == proxy.Envoy; sds != wantSDS {
					t.Errorf("SDS %v, want %v (grpc-go uses certificate provider instances)", sds, wantSDS)
				}
				if tt.kind == proxy.GRPC {
					ct := u.GetCommonTlsContext()
					if ct.GetTlsCertificateProviderInstance().GetInstanceName() != mesh.GRPCCertificateProviderInstance ||
						ct.GetValidationContext().GetCaCertificateProviderInstance().GetInstanceName() != mesh.GRPCCertificateProviderInstance {
						t.Errorf("grpc-go context does not name provider instance %q: %v", mesh.GRPCCertificateProviderInstance, ct)
					}
				}
			}
			if !found {
				t.Fatal("no cluster for web")
			}
		})
	}
}

// TestMTLSClusterCache: clusters are rebuilt when who backs the service
// changes, not when endpoints churn with the same peers; sidecars and
// proxyless clients each get their own form from one translator.
func TestMTLSClusterCache(t *testing.T) {
	tr := NewTranslator(Options{TrustDomain: testTrustDomain})
	webCluster := func(m *mesh.Model, kind proxy.Kind) *clusterv3.Cluster {
		res, _ := tr.ForProxy(m, mtlsProxy(kind, mesh.MTLSPermissive))
		for _, c := range res.Clusters {
			if c.Name == OutboundClusterName(mesh.ServiceKey{Namespace: "shop", Name: "web"}, 50051, DefaultClusterDomain) {
				return c
			}
		}
		t.Fatal("no cluster for web")
		return nil
	}
	m1 := mtlsModel(true, []string{"web"}, "10.1.0.1")
	m2 := mtlsModel(true, []string{"web"}, "10.1.0.1", "10.1.0.2") // churn, same peers
	m2.Services = m1.Services
	m3 := mtlsModel(true, []string{"web", "web-canary"}, "10.1.0.1", "10.1.0.2") // a new identity
	m3.Services = m1.Services

	c1 := webCluster(m1, proxy.Envoy)
	if c2 := webCluster(m2, proxy.Envoy); c2 != c1 {
		t.Error("endpoint churn with the same peers rebuilt the cluster")
	}
	c3 := webCluster(m3, proxy.Envoy)
	if c3 == c1 {
		t.Fatal("a new identity behind the service kept the old cluster")
	}
	if sans, _ := sansOf(upstreamTLS(t, c3)); len(sans) != 2 {
		t.Errorf("after the change: SANs %q, want two", sans)
	}
	g := webCluster(m3, proxy.GRPC)
	if _, sds := sansOf(upstreamTLS(t, g)); sds || g == c3 {
		t.Error("the proxyless client got the sidecar's cluster")
	}
}

func chainNames(l *listenerv3.Listener) []string {
	var out []string
	for _, c := range l.FilterChains {
		out = append(out, c.Name)
	}
	return out
}

func TestMTLSTermination(t *testing.T) {
	tests := []struct {
		name                string
		trustDomain         string
		mode                mesh.MTLSMode
		wantChains          []string
		detectTLS, detectHT []uint32
	}{
		{
			name: "off", mode: mesh.MTLSStrict,
			wantChains: []string{"inbound|5432", "inbound|8080|http", "inbound|8080"},
			detectTLS:  []uint32{8080}, detectHT: []uint32{8080},
		},
		{
			name: "permissive", trustDomain: testTrustDomain, mode: mesh.MTLSPermissive,
			wantChains: []string{
				"inbound|5432|tls", "inbound|5432",
				"inbound|8080|tls-http", "inbound|8080|tls", "inbound|8080|http", "inbound|8080",
			},
			// TLS is detected on the opaque port too; HTTP is not.
			detectTLS: []uint32{5432, 8080}, detectHT: []uint32{8080},
		},
		{
			name: "strict", trustDomain: testTrustDomain, mode: mesh.MTLSStrict,
			wantChains: []string{
				"inbound|5432|tls", "inbound|5432|plaintext-refused",
				"inbound|8080|tls-http", "inbound|8080|tls", "inbound|8080|plaintext-refused",
			},
			detectTLS: []uint32{5432, 8080},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mtlsProxy(proxy.Envoy, tt.mode)
			res, errs := NewTranslator(Options{TrustDomain: tt.trustDomain}).ForProxy(seamModel(), p)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			checkWithoutSecrets(t, proxy.Envoy, res)
			in := res.Listeners[0]
			if in.Name != InboundListenerName {
				t.Fatalf("first listener %q", in.Name)
			}
			if got := chainNames(in); !slices.Equal(got, tt.wantChains) {
				t.Errorf("chains %q, want %q", got, tt.wantChains)
			}
			for _, lf := range in.ListenerFilters {
				var want []uint32
				switch lf.Name {
				case wellknown.TLSInspector:
					want = tt.detectTLS
				case wellknown.HTTPInspector:
					want = tt.detectHT
				default:
					continue
				}
				if !proto.Equal(lf.FilterDisabled, onlyOnPorts(want)) {
					t.Errorf("%s runs on other ports than %v", lf.Name, want)
				}
			}
			for _, c := range in.FilterChains {
				tls := c.FilterChainMatch.GetTransportProtocol() == "tls"
				if (c.TransportSocket != nil) != tls {
					t.Errorf("chain %s: transport socket %v, matches TLS %v", c.Name, c.TransportSocket != nil, tls)
				}
				if !tls {
					continue
				}
				var d tlsv3.DownstreamTlsContext
				if err := c.TransportSocket.GetTypedConfig().UnmarshalTo(&d); err != nil {
					t.Fatal(err)
				}
				ct := d.GetCommonTlsContext()
				if !d.GetRequireClientCertificate().GetValue() ||
					ct.GetTlsCertificateSdsSecretConfigs()[0].GetName() != mesh.SDSCertificateSecret ||
					ct.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName() != mesh.SDSTrustBundleSecret {
					t.Errorf("chain %s: %v, want a client certificate required against the bundle, ours by SDS", c.Name, &d)
				}
			}
		})
	}
}

// TestGRPCServerListeners: a proxyless pod gets, beside its API listeners,
// the listener grpc-go's xDS server asks for on each port it serves, named
// and bound by the pod IP; TLS (certificate provider instances, client
// certificate required) in strict mode only, since grpc-go serves a port
// either plaintext or TLS. A pod without an IP gets none.
func TestGRPCServerListeners(t *testing.T) {
	tests := []struct {
		name        string
		trustDomain string
		mode        mesh.MTLSMode
		ip          string
		wantNames   []string
		wantTLS     bool
	}{
		{
			name: "mTLS off: plaintext even when strict", mode: mesh.MTLSStrict, ip: "10.1.0.9",
			wantNames: []string{"grpc/server?xds.resource.listening_address=10.1.0.9:5432", "grpc/server?xds.resource.listening_address=10.1.0.9:8080"},
		},
		{
			name: "permissive: plaintext", trustDomain: testTrustDomain, mode: mesh.MTLSPermissive, ip: "10.1.0.9",
			wantNames: []string{"grpc/server?xds.resource.listening_address=10.1.0.9:5432", "grpc/server?xds.resource.listening_address=10.1.0.9:8080"},
		},
		{
			name: "strict: mTLS only", trustDomain: testTrustDomain, mode: mesh.MTLSStrict, ip: "10.1.0.9",
			wantNames: []string{"grpc/server?xds.resource.listening_address=10.1.0.9:5432", "grpc/server?xds.resource.listening_address=10.1.0.9:8080"},
			wantTLS:   true,
		},
		{
			name: "IPv6, in brackets as grpc-go writes it", trustDomain: testTrustDomain, mode: mesh.MTLSStrict, ip: "fd00::9",
			wantNames: []string{"grpc/server?xds.resource.listening_address=[fd00::9]:5432", "grpc/server?xds.resource.listening_address=[fd00::9]:8080"},
			wantTLS:   true,
		},
		{name: "no IP yet: nothing to serve", trustDomain: testTrustDomain, mode: mesh.MTLSStrict},
	}
	m := mtlsModel(true, []string{"web"}, "10.1.0.1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mtlsProxy(proxy.GRPC, tt.mode)
			p.IP = tt.ip
			res, errs := NewTranslator(Options{TrustDomain: tt.trustDomain}).ForProxy(m, p)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			checkWithoutSecrets(t, proxy.GRPC, res)
			var names []string
			for _, l := range res.Listeners {
				if l.ApiListener != nil {
					continue
				}
				names = append(names, l.Name)
				if a := l.GetAddress().GetSocketAddress(); a.GetAddress() != tt.ip {
					t.Errorf("%s bound to %s, want the pod IP %s", l.Name, a.GetAddress(), tt.ip)
				}
				if len(l.FilterChains) != 1 {
					t.Fatalf("%s: %d chains, want 1", l.Name, len(l.FilterChains))
				}
				ts := l.FilterChains[0].TransportSocket
				if (ts != nil) != tt.wantTLS {
					t.Fatalf("%s: transport socket %v, want TLS %v", l.Name, ts != nil, tt.wantTLS)
				}
				if ts == nil {
					continue
				}
				var d tlsv3.DownstreamTlsContext
				if err := ts.GetTypedConfig().UnmarshalTo(&d); err != nil {
					t.Fatal(err)
				}
				ct := d.GetCommonTlsContext()
				if !d.GetRequireClientCertificate().GetValue() ||
					ct.GetTlsCertificateProviderInstance().GetInstanceName() != mesh.GRPCCertificateProviderInstance ||
					ct.GetValidationContext().GetCaCertificateProviderInstance().GetInstanceName() != mesh.GRPCCertificateProviderInstance ||
					len(ct.GetTlsCertificateSdsSecretConfigs()) > 0 {
					t.Errorf("%s: %v, want a client certificate required, both from certificate provider %q", l.Name, &d, mesh.GRPCCertificateProviderInstance)
				}
			}
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("server listeners %q, want %q", names, tt.wantNames)
			}
		})
	}
}

// TestGRPCServerListenersPerPod: replicas with the same ports share their
// view but not their server listeners, which name their own IPs; a proxy
// serving nothing gets its view's listener list itself.
func TestGRPCServerListenersPerPod(t *testing.T) {
	m := mtlsModel(true, []string{"web"}, "10.1.0.1")
	tr := NewTranslator(Options{TrustDomain: testTrustDomain})
	a, b := mtlsProxy(proxy.GRPC, mesh.MTLSStrict), mtlsProxy(proxy.GRPC, mesh.MTLSStrict)
	a.IP, b.IP = "10.1.0.8", "10.1.0.9"
	ra, _ := tr.ForProxy(m, a)
	rb, _ := tr.ForProxy(m, b)
	last := func(r *Resources) *listenerv3.Listener { return r.Listeners[len(r.Listeners)-1] }
	if last(ra).Name == last(rb).Name || last(ra) == last(rb) {
		t.Errorf("two pods share the server listener %s", last(ra).Name)
	}
	if &ra.Clusters[0] != &rb.Clusters[0] {
		t.Error("two pods of one namespace do not share their view's clusters")
	}
	client := mtlsProxy(proxy.GRPC, mesh.MTLSStrict)
	client.InboundPorts = nil
	rc, _ := tr.ForProxy(m, client)
	again, _ := tr.ForProxy(m, client)
	if len(rc.Listeners) == 0 || &rc.Listeners[0] != &again.Listeners[0] {
		t.Error("a proxyless client's listeners are rebuilt per call")
	}
	for _, l := range rc.Listeners {
		if l.ApiListener == nil {
			t.Errorf("a pod serving no port got listener %s", l.Name)
		}
	}
}
