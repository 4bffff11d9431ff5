package translate

import (
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate/check"
)

// endpointCounter is a test-only feature: a fault filter (which Envoy and
// grpc-go both accept, inert without a fault configured) whose
// max_active_faults is the number of endpoints the feature sees on the
// port. It shows what the feature read.
func endpointCounter(reads Inputs) feature {
	return feature{
		name:  "envoy.filters.http.fault",
		reads: reads,
		on:    onOutboundChain | onProxylessListener,
		httpFilter: func(in featureInputs) *hcmv3.HttpFilter {
			n := 0
			if in.service.endpoints != nil {
				n = len(in.service.endpoints.ByPort[in.port.Name])
			}
			return &hcmv3.HttpFilter{
				Name:       "envoy.filters.http.fault",
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{MaxActiveFaults: wrapperspb.UInt32(uint32(n))})},
			}
		},
	}
}

func withRouter(list ...feature) []feature { return append(list, router) }

func TestFeatureTableOrderIsEnforced(t *testing.T) {
	network := feature{name: "network", on: onOutboundChain, networkFilter: func(featureInputs) *listenerv3.Filter { return nil }}
	socket := func(name string) feature {
		return feature{name: name, on: onOutboundCluster, transportSocket: func(featureInputs) *corev3.TransportSocket { return nil }}
	}
	tests := []struct {
		name    string
		list    []feature
		wantErr string // "" for a valid table
	}{
		{"the built-in order", featureOrder, ""},
		{"a filter before the router", withRouter(endpointCounter(0)), ""},
		{"a filter after the router", append([]feature{router}, endpointCounter(0)), `terminal HTTP filter "envoy.filters.http.router" must be the last`},
		{"no router", []feature{endpointCounter(0)}, "is last but not terminal"},
		{"no HTTP filter at all", nil, "without the router nothing is forwarded"},
		{"a name twice", withRouter(endpointCounter(0), endpointCounter(0)), "name empty or repeated"},
		{"a terminal network filter", withRouter(func() feature { f := network; f.terminal = true; return f }()), "only an HTTP filter can be terminal"},
		{"a network filter on clusters", withRouter(func() feature { f := network; f.on = onOutboundCluster; return f }()), "cannot be placed"},
		{"two transport sockets on one place", withRouter(socket("a"), socket("b")), "2 transport sockets"},
		{"a shared product reading the proxy", withRouter(endpointCounter(InputsOf(InputProxy))), "reads the proxy on outbound chains"},
		{"the inbound side reading a service", withRouter(func() feature {
			f := endpointCounter(InputsOf(InputProfile))
			f.on = onInboundChain
			return f
		}()), "keyed by the proxy's ports only"},
		{"two kinds in one feature", withRouter(func() feature { f := network; f.httpFilter = router.httpFilter; return f }()), "exactly one of"},
		{"inbound TLS on clusters", withRouter(feature{name: "tls", on: onOutboundCluster, inboundTLS: mtlsDownstream}), "cannot be placed on outbound clusters"},
		{"a cluster socket on inbound chains", withRouter(func() feature { f := socket("a"); f.on = onInboundChain; return f }()), "cannot be placed on inbound chains"},
		{"two TLS terminations on inbound chains", withRouter(mtlsTermination, func() feature { f := mtlsTermination; f.name = "again"; return f }()), "2 transport sockets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newFeatureTable(tt.list)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestDeclaredReads is the declaration the controller's index derives its
// rules from: a change here is a change of who gets recomputed.
func TestDeclaredReads(t *testing.T) {
	r := DeclaredReads()
	want := Reads{
		// mTLS: who backs a service decides its clusters' TLS.
		ServiceClusters:  InputsOf(InputService, InputProfile, InputEndpointIdentities),
		ServiceFrontend:  InputsOf(InputService, InputProfile, InputSplit, InputBackendServices, InputHeadlessEndpoints),
		ServiceEndpoints: InputsOf(InputService, InputEndpoints),
		ProxyOwn:         InputsOf(InputProxy, InputTap),
	}
	for p := range NumProducts {
		if r[p] != want[p] {
			t.Errorf("%v reads %v, want %v", p, r[p], want[p])
		}
	}
	scopes := map[Input]Scope{
		InputService:            ScopeViews | ScopeEDS,
		InputProfile:            ScopeViews,
		InputSplit:              ScopeViews,
		InputBackendServices:    ScopeViews,
		InputEndpoints:          ScopeEDS,
		InputHeadlessEndpoints:  ScopeViews,
		InputProxy:              ScopeProxy,
		InputEndpointIdentities: ScopeViews,
		InputTap:                ScopeProxy,
	}
	for in := range NumInputs {
		if got := r.Scope(in); got != scopes[in] {
			t.Errorf("Scope(%v) = %b, want %b", in, got, scopes[in])
		}
	}
	// A feature's reads become its products' inputs, and only theirs.
	ft, err := newFeatureTable(withRouter(endpointCounter(InputsOf(InputEndpoints))))
	if err != nil {
		t.Fatal(err)
	}
	if !ft.reads[ServiceFrontend].Has(InputEndpoints) || ft.reads[ServiceClusters].Has(InputEndpoints) {
		t.Errorf("reads with an endpoint-reading outbound feature: %v", ft.reads)
	}
	if ft.reads.Scope(InputEndpoints) != ScopeViews|ScopeEDS {
		t.Errorf("Scope(Endpoints) = %b, want views and EDS", ft.reads.Scope(InputEndpoints))
	}
}

func seamModel(ips ...string) *mesh.Model {
	svc := &mesh.Service{Key: mesh.ServiceKey{Namespace: "shop", Name: "web"}, ClusterIPs: []string{"10.96.0.10"},
		Ports: []mesh.ServicePort{{Name: "grpc", Port: 50051, Protocol: mesh.ProtocolGRPC, TargetPort: 8080}}}
	eps := &mesh.ServiceEndpoints{Service: svc.Key, ByPort: map[string][]mesh.Endpoint{}}
	for _, ip := range ips {
		eps.ByPort["grpc"] = append(eps.ByPort["grpc"], mesh.Endpoint{Address: ip, Port: 8080, Ready: true, Serving: true, Zone: "a"})
	}
	return &mesh.Model{
		Services:  map[mesh.ServiceKey]*mesh.Service{svc.Key: svc},
		Endpoints: map[mesh.ServiceKey]*mesh.ServiceEndpoints{svc.Key: eps},
		Profiles:  map[mesh.ProfileKey]*mesh.Profile{},
		Splits:    map[mesh.ServiceKey]*mesh.Split{},
	}
}

func outboundHTTPFilters(t *testing.T, res *Resources) []*hcmv3.HttpFilter {
	t.Helper()
	for _, l := range res.Listeners {
		var hcm hcmv3.HttpConnectionManager
		switch {
		case l.ApiListener != nil:
			if err := l.ApiListener.ApiListener.UnmarshalTo(&hcm); err != nil {
				t.Fatal(err)
			}
			return hcm.HttpFilters
		case l.Name == OutboundListenerName:
			for _, c := range l.FilterChains {
				f := c.Filters[len(c.Filters)-1]
				if f.Name != wellknown.HTTPConnectionManager {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					t.Fatal(err)
				}
				return hcm.HttpFilters
			}
		}
	}
	t.Fatal("no outbound HTTP connection manager")
	return nil
}

// TestFeatureFiltersAndInputs: a feature's filter sits where the table
// puts it, the checker stays clean, the feature sees only what it declares,
// and the caches key on what it declares: a warm translator's output after
// an endpoints-only change equals a fresh translator's.
func TestFeatureFiltersAndInputs(t *testing.T) {
	m1, m2 := seamModel("10.1.0.1"), seamModel("10.1.0.1", "10.1.0.2")
	m2.Services = m1.Services // only the endpoints differ
	proxies := []*mesh.Proxy{
		{Kind: proxy.Envoy, Pod: "c", Namespace: "shop"},
		{Kind: proxy.GRPC, Pod: "c", Namespace: "shop"},
	}
	tests := []struct {
		name  string
		reads Inputs
		want  [2]uint32 // max_active_faults under m1, m2
	}{
		{"declares endpoints", InputsOf(InputEndpoints), [2]uint32{1, 2}},
		{"declares nothing, sees nothing", 0, [2]uint32{0, 0}},
	}
	for _, tt := range tests {
		ft, err := newFeatureTable(withRouter(endpointCounter(tt.reads)))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range proxies {
			t.Run(tt.name+"/"+p.Kind.String(), func(t *testing.T) {
				warm := newTranslator(Options{}, ft)
				for i, m := range []*mesh.Model{m1, m2} {
					res, errs := warm.ForProxy(m, p)
					if len(errs) > 0 {
						t.Fatal(errs)
					}
					for _, prob := range check.Problems(p.Kind, res.ByType()) {
						t.Errorf("%s: %v", p.Kind, prob)
					}
					filters := outboundHTTPFilters(t, res)
					var names []string
					for _, f := range filters {
						names = append(names, f.Name)
					}
					if !slices.Equal(names, []string{"envoy.filters.http.fault", wellknown.Router}) {
						t.Fatalf("HTTP filters %q, want the fault filter then the router", names)
					}
					var fault faultv3.HTTPFault
					if err := filters[0].GetTypedConfig().UnmarshalTo(&fault); err != nil {
						t.Fatal(err)
					}
					if got := fault.MaxActiveFaults.GetValue(); got != tt.want[i] {
						t.Errorf("model %d: the feature saw %d endpoints, want %d", i+1, got, tt.want[i])
					}
					fresh, _ := newTranslator(Options{}, ft).ForProxy(m, p)
					freshByType := fresh.ByType()
					for typ, list := range res.ByType() {
						if !slices.EqualFunc(list, freshByType[typ], func(a, b types.Resource) bool { return proto.Equal(a, b) }) {
							t.Errorf("model %d: warm %s differ from fresh", i+1, typ)
						}
					}
				}
			})
		}
	}
}

// TestTransportSocketSeam: a transport socket feature on outbound clusters
// lands on every outbound cluster, and the inbound side is untouched.
func TestTransportSocketSeam(t *testing.T) {
	socket := feature{name: "raw", on: onOutboundCluster, transportSocket: func(featureInputs) *corev3.TransportSocket {
		return &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbufferv3.RawBuffer{})}}
	}}
	ft, err := newFeatureTable(withRouter(socket))
	if err != nil {
		t.Fatal(err)
	}
	p := &mesh.Proxy{Kind: proxy.Envoy, Pod: "c", Namespace: "shop", InboundPorts: []mesh.ProxyPort{{Name: "http", Port: 8080}}}
	res, _ := newTranslator(Options{}, ft).ForProxy(seamModel("10.1.0.1"), p)
	for _, prob := range check.Problems(proxy.Envoy, res.ByType()) {
		t.Errorf("envoy: %v", prob)
	}
	for _, c := range res.Clusters {
		outbound := strings.HasPrefix(c.Name, "outbound|")
		if got := c.TransportSocket != nil; got != outbound {
			t.Errorf("cluster %s: transport socket %v, want %v", c.Name, got, outbound)
		}
	}
}

// TestSweepKeepsWhatLookupFinds: the sweep's liveness is the lookup's own
// test, so an entry survives exactly while a live model would look it up.
func TestSweepKeepsWhatLookupFinds(t *testing.T) {
	m1, m2 := seamModel("10.1.0.1"), seamModel("10.1.0.1", "10.1.0.2")
	m2.Services = m1.Services
	k := serviceSubject{svc: mesh.ServiceKey{Namespace: "shop", Name: "web"}}
	dom := func(*mesh.Model) string { return DefaultClusterDomain }
	c := newServiceCache[int](ServiceEndpoints, DeclaredReads())
	e1 := c.lookupLocked(m1, DefaultClusterDomain, k)
	e2 := c.lookupLocked(m2, DefaultClusterDomain, k)
	if e1 == e2 {
		t.Fatal("an endpoints change did not make a new entry")
	}
	c.sweepLocked([]*mesh.Model{m2, m1}, dom)
	if c.lookupLocked(m1, DefaultClusterDomain, k) != e1 || c.lookupLocked(m2, DefaultClusterDomain, k) != e2 {
		t.Fatal("the sweep dropped an entry of a live model")
	}
	c.sweepLocked([]*mesh.Model{m2}, dom)
	if c.lookupLocked(m2, DefaultClusterDomain, k) != e2 {
		t.Fatal("the sweep dropped the live entry")
	}
	if c.entries[k].prev != nil {
		t.Fatal("the sweep kept the entry of a retired model")
	}
}

// Without a trust domain the identity features add nothing, so they are left
// out, and with them their reads: an endpoint that is not a meshed pod must
// not make the dependency index recompute every proxy for clusters that
// carry no TLS.
func TestReadsForFollowsTheTrustDomain(t *testing.T) {
	with := ReadsFor(Options{TrustDomain: "cluster.local"})
	without := ReadsFor(Options{})
	if with != DeclaredReads() {
		t.Errorf("with a trust domain: %v, want every feature's reads %v", with, DeclaredReads())
	}
	if !with[ServiceClusters].Has(InputEndpointIdentities) {
		t.Errorf("with a trust domain, clusters do not read endpoint identities: %v", with[ServiceClusters])
	}
	if without[ServiceClusters].Has(InputEndpointIdentities) {
		t.Errorf("without a trust domain, clusters read endpoint identities: %v", without[ServiceClusters])
	}
	if s := without.Scope(InputEndpointIdentities); s != 0 {
		t.Errorf("without a trust domain, an identity change reaches scope %v; want none", s)
	}
	if got := NewTranslator(Options{}).Reads(); got != without {
		t.Errorf("NewTranslator(no trust domain).Reads() = %v, want %v", got, without)
	}
}
