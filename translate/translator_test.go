package translate_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
)

func routeNamed(t *testing.T, res *translate.Resources, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, r := range res.Routes {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no route configuration %q", name)
	return nil
}

func clusterNamed(t *testing.T, res *translate.Resources, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range res.Clusters {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

func listenerNamed(t *testing.T, res *translate.Resources, name string) *listenerv3.Listener {
	t.Helper()
	for _, l := range res.Listeners {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

func chainNames(l *listenerv3.Listener) []string {
	var out []string
	for _, c := range l.FilterChains {
		out = append(out, c.Name)
	}
	return out
}

func mustNoErrors(t *testing.T, errs []error) {
	t.Helper()
	if len(errs) > 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
}

func TestResourcesOrderAndTypes(t *testing.T) {
	m := modelBuilder{newModel()}
	m.add(httpService("shop", "web", "10.96.0.10", 80), "10.1.1.1")
	m.add(httpService("shop", "api", "10.96.0.11", 8080), "10.1.1.2")
	m.add(httpService("auth", "login", "10.96.0.12", 80), "10.1.1.3")
	res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, sidecar("shop", "client"))
	mustNoErrors(t, errs)

	var names []string
	for _, c := range res.Clusters {
		names = append(names, c.Name)
	}
	// The proxy's own, then by service namespace and name, then passthrough.
	want := []string{"inbound|8080", "outbound|80|login.auth.svc.cluster.local", "outbound|8080|api.shop.svc.cluster.local",
		"outbound|80|web.shop.svc.cluster.local", translate.PassthroughClusterName}
	if !slices.Equal(names, want) {
		t.Errorf("clusters = %q, want %q", names, want)
	}
	if len(res.Routes) != 3 || len(res.Endpoints) != 3 || len(res.Listeners) != 2 {
		t.Errorf("got %d routes, %d endpoints, %d listeners; want 3, 3, 2", len(res.Routes), len(res.Endpoints), len(res.Listeners))
	}
	byType := res.ByType()
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType} {
		if _, ok := byType[typ]; !ok {
			t.Errorf("ByType lacks %s", typ)
		}
	}
	if len(byType[resourcev3.ClusterType]) != len(res.Clusters) {
		t.Errorf("ByType has %d clusters, want %d", len(byType[resourcev3.ClusterType]), len(res.Clusters))
	}
}

func TestOutboundChainsPerClusterIPAndPort(t *testing.T) {
	m := modelBuilder{newModel()}
	svc := &mesh.Service{
		Key:        key("shop", "web"),
		ClusterIPs: []string{"10.96.0.10", "fd00::10"},
		Ports: []mesh.ServicePort{
			{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1},
			{Name: "db", Port: 5432, Protocol: mesh.ProtocolOpaque},
			{Name: "skipped", Port: 9999, Protocol: mesh.ProtocolHTTP1},
		},
	}
	m.add(svc, "10.1.1.1")
	p := sidecar("shop", "client")
	p.SkipOutboundPorts = []uint32{9999}
	res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, p)
	mustNoErrors(t, errs)
	checkResources(t, p, res)
	out := listenerNamed(t, res, translate.OutboundListenerName)
	got := chainNames(out)
	want := []string{
		"outbound|80|web.shop.svc.cluster.local|http", "outbound|80|web.shop.svc.cluster.local",
		"outbound|5432|web.shop.svc.cluster.local",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("chains = %q, want %q", got, want)
	}
	m0 := out.FilterChains[0].FilterChainMatch
	if m0.DestinationPort.GetValue() != 80 || len(m0.PrefixRanges) != 2 ||
		m0.PrefixRanges[0].AddressPrefix != "10.96.0.10" || m0.PrefixRanges[0].PrefixLen.GetValue() != 32 ||
		m0.PrefixRanges[1].AddressPrefix != "fd00::10" || m0.PrefixRanges[1].PrefixLen.GetValue() != 128 {
		t.Errorf("HTTP chain match = %v", m0)
	}
	if !slices.Equal(m0.ApplicationProtocols, []string{"http/1.0", "http/1.1", "h2c"}) {
		t.Errorf("HTTP chain application protocols = %q", m0.ApplicationProtocols)
	}
	if f := out.FilterChains[2].Filters[0]; f.Name != "envoy.filters.network.tcp_proxy" {
		t.Errorf("opaque chain filter = %s, want tcp_proxy", f.Name)
	}
	if out.DefaultFilterChain == nil || out.DefaultFilterChain.Filters[0].Name != "envoy.filters.network.tcp_proxy" {
		t.Errorf("outbound listener has no passthrough default chain")
	}
	// http_inspector runs only on port 80, the one HTTP destination.
	hi := out.ListenerFilters[1]
	if hi.Name != "envoy.filters.listener.http_inspector" {
		t.Fatalf("second listener filter is %s", hi.Name)
	}
	r := hi.FilterDisabled.GetNotMatch().GetDestinationPortRange()
	if r.GetStart() != 80 || r.GetEnd() != 81 {
		t.Errorf("http_inspector disabled outside %v, want [80,81)", r)
	}
	// The skipped port still has its cluster and routes: only the chain is gone.
	clusterNamed(t, res, "outbound|9999|web.shop.svc.cluster.local")
}

func TestRouteDomainsCoverEveryName(t *testing.T) {
	m := modelBuilder{newModel()}
	svc := &mesh.Service{Key: key("Shop", "Web"), ClusterIPs: []string{"10.96.0.10", "fd00::a"},
		Ports: []mesh.ServicePort{{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1}}}
	m.add(svc)
	res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, sidecar("shop", "client"))
	mustNoErrors(t, errs)
	rc := routeNamed(t, res, "outbound|80|Web.Shop.svc.cluster.local")
	if len(rc.VirtualHosts) != 1 {
		t.Fatalf("%d virtual hosts, want 1", len(rc.VirtualHosts))
	}
	got := rc.VirtualHosts[0].Domains
	want := []string{"web", "web:80", "web.shop", "web.shop:80", "web.shop.svc", "web.shop.svc:80",
		"web.shop.svc.cluster.local", "web.shop.svc.cluster.local:80", "10.96.0.10", "10.96.0.10:80",
		"[fd00::a]", "[fd00::a]:80", "*"}
	if !slices.Equal(got, want) {
		t.Errorf("domains = %q\nwant %q", got, want)
	}
}

func TestClientNamespaceProfileWins(t *testing.T) {
	m := modelBuilder{newModel()}
	web := httpService("shop", "web", "10.96.0.10", 80)
	m.add(web)
	own := &mesh.Profile{Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "web.shop.svc.cluster.local"},
		Service: web.Key, Routes: []mesh.Route{{Name: "server-side", Match: mesh.RequestMatch{PathRegex: "/a"}}}}
	client := &mesh.Profile{Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "front", Name: "web.shop.svc.cluster.local"},
		Service: web.Key, Routes: []mesh.Route{{Name: "client-side", Match: mesh.RequestMatch{PathRegex: "/b"}, Timeout: time.Second}},
		RetryBudget: &mesh.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 3, TTL: time.Second}}
	m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: web.Key}] = own
	m.Profiles[mesh.ProfileKey{Namespace: "front", Service: web.Key}] = client

	tr := translate.NewTranslator(translate.Options{})
	for _, tt := range []struct {
		ns, route string
		budget    float64
	}{
		{"front", "client-side", 50},
		{"shop", "server-side", 20},
		{"elsewhere", "server-side", 20},
	} {
		res, errs := tr.ForProxy(m.Model, sidecar(tt.ns, "client"))
		mustNoErrors(t, errs)
		rc := routeNamed(t, res, "outbound|80|web.shop.svc.cluster.local")
		if got := rc.VirtualHosts[0].Routes[0].Name; got != tt.route {
			t.Errorf("client in %s: first route %q, want %q", tt.ns, got, tt.route)
		}
		c := clusterNamed(t, res, "outbound|80|web.shop.svc.cluster.local")
		if got := c.CircuitBreakers.Thresholds[0].RetryBudget.BudgetPercent.Value; got != tt.budget {
			t.Errorf("client in %s: budget %v%%, want %v%%", tt.ns, got, tt.budget)
		}
	}
}

func TestRetryBudgetMapping(t *testing.T) {
	tests := []struct {
		name        string
		budget      *mesh.RetryBudget
		percent     float64
		concurrency uint32
	}{
		{"default when the profile says nothing", nil, 20, 10},
		{"float32 ratio rounds cleanly", &mesh.RetryBudget{RetryRatio: float64(float32(0.2)), MinRetriesPerSecond: 10, TTL: 10 * time.Second}, 20, 10},
		{"rate maps to concurrency at 1s per retry", &mesh.RetryBudget{RetryRatio: 0.05, MinRetriesPerSecond: 3, TTL: time.Second}, 5, 3},
		{"ratio above 1 is capped at Envoy's 100%", &mesh.RetryBudget{RetryRatio: 2.5, MinRetriesPerSecond: 0, TTL: time.Second}, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := modelBuilder{newModel()}
			web := httpService("shop", "web", "10.96.0.10", 80)
			m.add(web)
			m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: web.Key}] = &mesh.Profile{
				Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "web"}, Service: web.Key, RetryBudget: tt.budget,
			}
			res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, sidecar("shop", "c"))
			mustNoErrors(t, errs)
			rb := clusterNamed(t, res, "outbound|80|web.shop.svc.cluster.local").CircuitBreakers.Thresholds[0].RetryBudget
			if rb.BudgetPercent.Value != tt.percent || rb.MinRetryConcurrency.GetValue() != tt.concurrency {
				t.Errorf("retry_budget = %v%% / %d, want %v%% / %d", rb.BudgetPercent.Value, rb.MinRetryConcurrency.GetValue(), tt.percent, tt.concurrency)
			}
		})
	}
}

func TestWeightedBackends(t *testing.T) {
	apex := httpService("shop", "web", "10.96.0.10", 80)
	v1 := httpService("shop", "web-v1", "10.96.0.11", 80)
	v2 := httpService("shop", "web-v2", "10.96.0.12", 80)
	other := httpService("shop", "other-port", "10.96.0.13", 9090)
	src := mesh.ObjectRef{Kind: "TrafficSplit", Namespace: "shop", Name: "web-split"}
	tests := []struct {
		name     string
		split    []mesh.WeightedBackend
		override []mesh.WeightedBackend
		want     string // "cluster" or "name=weight ..."
		errs     int
	}{
		{"weights kept exactly", []mesh.WeightedBackend{{Service: v1.Key, Weight: 500}, {Service: v2.Key, Weight: 500}}, nil,
			"outbound|80|web-v1.shop.svc.cluster.local=500 outbound|80|web-v2.shop.svc.cluster.local=500", 0},
		{"weight 0 dropped", []mesh.WeightedBackend{{Service: v1.Key, Weight: 90}, {Service: v2.Key, Weight: 0}}, nil,
			"outbound|80|web-v1.shop.svc.cluster.local=90", 0},
		{"all zero falls back to the apex", []mesh.WeightedBackend{{Service: v1.Key, Weight: 0}, {Service: v2.Key, Weight: 0}}, nil,
			"outbound|80|web.shop.svc.cluster.local", 0},
		{"backend without the port ignored", []mesh.WeightedBackend{{Service: v1.Key, Weight: 1}, {Service: other.Key, Weight: 1}}, nil,
			"outbound|80|web-v1.shop.svc.cluster.local=1", 1},
		{"missing backend ignored", []mesh.WeightedBackend{{Service: key("shop", "gone"), Weight: 1}}, nil,
			"outbound|80|web.shop.svc.cluster.local", 1},
		{"split replaces dstOverrides, as in Linkerd", []mesh.WeightedBackend{{Service: v1.Key, Weight: 1}},
			[]mesh.WeightedBackend{{Service: v2.Key, Weight: 1}}, "outbound|80|web-v1.shop.svc.cluster.local=1", 0},
		{"dstOverrides without a split", nil, []mesh.WeightedBackend{{Service: apex.Key, Weight: 9}, {Service: v2.Key, Weight: 1}},
			"outbound|80|web.shop.svc.cluster.local=9 outbound|80|web-v2.shop.svc.cluster.local=1", 0},
		{"overflowing sum scaled down", []mesh.WeightedBackend{{Service: v1.Key, Weight: math.MaxUint32}, {Service: v2.Key, Weight: math.MaxUint32}}, nil,
			"outbound|80|web-v1.shop.svc.cluster.local=2147483646 outbound|80|web-v2.shop.svc.cluster.local=2147483646", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := modelBuilder{newModel()}
			for _, s := range []*mesh.Service{apex, v1, v2, other} {
				m.add(s)
			}
			if tt.split != nil {
				m.Splits[apex.Key] = &mesh.Split{Source: src, Apex: apex.Key, Backends: tt.split}
			}
			if tt.override != nil {
				m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: apex.Key}] = &mesh.Profile{
					Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "web"}, Service: apex.Key, DstOverrides: tt.override,
				}
			}
			res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, sidecar("shop", "c"))
			checkResources(t, sidecar("shop", "c"), res)
			if len(errs) != tt.errs {
				t.Errorf("errors = %v, want %d", errs, tt.errs)
			}
			for _, err := range errs {
				var ce mesh.ConfigError
				if !errors.As(err, &ce) || ce.Object.Name == "" || !strings.Contains(err.Error(), "spec.") {
					t.Errorf("error %q does not name the object and field", err)
				}
			}
			rc := routeNamed(t, res, "outbound|80|web.shop.svc.cluster.local")
			for _, r := range rc.VirtualHosts[0].Routes {
				if got := describeAction(r.GetRoute()); got != tt.want {
					t.Errorf("route %s goes to %q, want %q", r.Name, got, tt.want)
				}
			}
		})
	}
}

func describeAction(a *routev3.RouteAction) string {
	if c := a.GetCluster(); c != "" {
		return c
	}
	var parts []string
	for _, w := range a.GetWeightedClusters().GetClusters() {
		parts = append(parts, fmt.Sprintf("%s=%d", w.Name, w.Weight.GetValue()))
	}
	return strings.Join(parts, " ")
}

func TestEndpointSelection(t *testing.T) {
	svc := httpService("shop", "web", "10.96.0.10", 80)
	ep := func(ip string, ready, serving, terminating bool, zone string) mesh.Endpoint {
		return mesh.Endpoint{Address: ip, Port: 8080, Ready: ready, Serving: serving, Terminating: terminating, Zone: zone, Pod: "p-" + ip}
	}
	tests := []struct {
		name        string
		eps         []mesh.Endpoint
		want        string // zone:ip ... in order
		terminating bool
	}{
		{"ready only; terminating and starting left out",
			[]mesh.Endpoint{ep("10.0.0.3", true, true, false, "b"), ep("10.0.0.1", false, true, true, "a"), ep("10.0.0.2", false, false, false, "a"), ep("10.0.0.10", true, true, false, "a")},
			"a:10.0.0.10 b:10.0.0.3", false},
		{"no ready endpoint: serving terminating ones keep the service up",
			[]mesh.Endpoint{ep("10.0.0.1", false, true, true, "a"), ep("10.0.0.2", false, false, true, "a")},
			"a:10.0.0.1", true},
		{"zone defaults, addresses sorted numerically, duplicates dropped",
			[]mesh.Endpoint{ep("10.0.0.10", true, true, false, ""), ep("10.0.0.9", true, true, false, ""), ep("10.0.0.9", true, true, false, "")},
			"default:10.0.0.9 default:10.0.0.10", false},
		{"nothing usable", []mesh.Endpoint{ep("10.0.0.1", false, false, false, "a")}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := modelBuilder{newModel()}
			m.Services[svc.Key] = svc
			m.Endpoints[svc.Key] = &mesh.ServiceEndpoints{Service: svc.Key, ByPort: map[string][]mesh.Endpoint{"http": tt.eps}}
			clas := translate.NewTranslator(translate.Options{}).Endpoints(m.Model, svc.Key)
			if len(clas) != 1 || clas[0].ClusterName != "outbound|80|web.shop.svc.cluster.local" {
				t.Fatalf("got %d CLAs", len(clas))
			}
			var got []string
			for _, l := range clas[0].Endpoints {
				if l.LoadBalancingWeight.GetValue() != uint32(len(l.LbEndpoints)) {
					t.Errorf("locality %s weight %d, want %d", l.Locality.Zone, l.LoadBalancingWeight.GetValue(), len(l.LbEndpoints))
				}
				for _, e := range l.LbEndpoints {
					got = append(got, l.Locality.Zone+":"+e.GetEndpoint().Address.GetSocketAddress().Address)
					if e.HealthStatus != corev3.HealthStatus_HEALTHY {
						t.Errorf("endpoint health %v", e.HealthStatus)
					}
					term := e.Metadata.GetFilterMetadata()[translate.EndpointMetadataKey].GetFields()["terminating"].GetBoolValue()
					if term != tt.terminating {
						t.Errorf("terminating metadata = %v, want %v", term, tt.terminating)
					}
				}
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("endpoints = %q, want %q", strings.Join(got, " "), tt.want)
			}
		})
	}
}

func TestHeadlessChainsPerEndpointAndOverlaps(t *testing.T) {
	m := modelBuilder{newModel()}
	db := &mesh.Service{Key: key("data", "db"), Headless: true,
		Ports: []mesh.ServicePort{{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1}}}
	db2 := &mesh.Service{Key: key("data", "db2"), Headless: true,
		Ports: []mesh.ServicePort{{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1}}}
	m.Services[db.Key], m.Services[db2.Key] = db, db2
	eps := func(s *mesh.Service, ips ...string) *mesh.ServiceEndpoints {
		e := &mesh.ServiceEndpoints{Service: s.Key, ByPort: map[string][]mesh.Endpoint{}}
		for _, ip := range ips {
			e.ByPort["http"] = append(e.ByPort["http"], mesh.Endpoint{Address: ip, Port: 8080, Ready: true, Serving: true})
		}
		return e
	}
	m.Endpoints[db.Key] = eps(db, "10.1.0.2", "10.1.0.1")
	m.Endpoints[db2.Key] = eps(db2, "10.1.0.2", "10.1.0.3") // shares 10.1.0.2 with db
	res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, sidecar("data", "c"))
	checkResources(t, sidecar("data", "c"), res)
	got := chainNames(listenerNamed(t, res, translate.OutboundListenerName))
	want := []string{
		"outbound|80|db.data.svc.cluster.local|10.1.0.1:8080|http", "outbound|80|db.data.svc.cluster.local|10.1.0.1:8080",
		"outbound|80|db.data.svc.cluster.local|10.1.0.2:8080|http", "outbound|80|db.data.svc.cluster.local|10.1.0.2:8080",
		"outbound|80|db2.data.svc.cluster.local|10.1.0.3:8080|http", "outbound|80|db2.data.svc.cluster.local|10.1.0.3:8080",
	}
	if !slices.Equal(got, want) {
		t.Errorf("chains = %q\nwant %q", got, want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "10.1.0.2:8080 already belongs to service data/db") {
		t.Errorf("errors = %v, want one overlap error for 10.1.0.2:8080", errs)
	}
	// Headless routes go where the client dialled, whatever the Host.
	rc := routeNamed(t, res, "outbound|80|db.data.svc.cluster.local")
	if d := rc.VirtualHosts[0].Domains; !slices.Equal(d, []string{"*"}) {
		t.Errorf("headless domains = %q", d)
	}
	if c := rc.VirtualHosts[0].Routes[0].GetRoute().GetCluster(); c != translate.PassthroughClusterName {
		t.Errorf("headless route cluster = %q", c)
	}
	// The EDS cluster still exists, for splits and proxyless clients.
	clusterNamed(t, res, "outbound|80|db.data.svc.cluster.local")
}

func TestInboundListener(t *testing.T) {
	m := modelBuilder{newModel()}
	p := sidecar("shop", "web-0")
	p.InboundPorts = []mesh.ProxyPort{
		{Name: "grpc", Port: 9090, Protocol: mesh.ProtocolGRPC},
		{Name: "http", Port: 8080, Protocol: mesh.ProtocolHTTP1},
		{Name: "pg", Port: 5432, Protocol: mesh.ProtocolHTTP1}, // opaque by the pod's list
		{Name: "skip", Port: 7000, Protocol: mesh.ProtocolHTTP1},
		{Name: "admin", Port: mesh.ProxyAdminPort, Protocol: mesh.ProtocolHTTP1},
	}
	p.SkipInboundPorts = []uint32{7000}
	res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, p)
	mustNoErrors(t, errs)
	checkResources(t, p, res)
	in := listenerNamed(t, res, translate.InboundListenerName)
	want := []string{"inbound|5432", "inbound|8080|http", "inbound|8080", "inbound|9090|http", "inbound|9090"}
	if got := chainNames(in); !slices.Equal(got, want) {
		t.Errorf("inbound chains = %q, want %q", got, want)
	}
	if in.ListenerFiltersTimeout.AsDuration() <= 0 || !in.ContinueOnListenerFiltersTimeout {
		t.Errorf("detection is not bounded: timeout %v continue %v", in.ListenerFiltersTimeout, in.ContinueOnListenerFiltersTimeout)
	}
	for _, f := range in.ListenerFilters[1:] {
		set := f.FilterDisabled.GetNotMatch().GetOrMatch().GetRules()
		var on []string
		for _, r := range set {
			on = append(on, fmt.Sprintf("%d-%d", r.GetDestinationPortRange().Start, r.GetDestinationPortRange().End))
		}
		if !slices.Equal(on, []string{"8080-8081", "9090-9091"}) {
			t.Errorf("%s runs on %q, want only the HTTP ports", f.Name, on)
		}
	}
	grpc := clusterNamed(t, res, "inbound|9090")
	if grpc.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address != "127.0.0.1" {
		t.Errorf("inbound cluster does not target loopback")
	}
	if _, ok := grpc.TypedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
		t.Errorf("gRPC inbound cluster lacks HTTP/2 options")
	}
}

func TestProxylessGRPC(t *testing.T) {
	m := modelBuilder{newModel()}
	svc := &mesh.Service{Key: key("shop", "greeter"), ClusterIPs: []string{"10.96.0.20"},
		Ports: []mesh.ServicePort{{Name: "grpc", Port: 50051, Protocol: mesh.ProtocolGRPC}, {Name: "pg", Port: 5432, Protocol: mesh.ProtocolOpaque}}}
	m.add(svc, "10.1.2.1")
	m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: svc.Key}] = &mesh.Profile{
		Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "greeter"}, Service: svc.Key,
		Routes: []mesh.Route{
			{Name: "SayHello", Match: mesh.RequestMatch{Method: "POST", PathRegex: `/hello\.Greeter/SayHello`}, IsRetryable: true, Timeout: 2 * time.Second},
			{Name: "never for gRPC", Match: mesh.RequestMatch{Method: "GET"}},
		},
	}
	p := &mesh.Proxy{Kind: proxy.GRPC, Pod: "client", Namespace: "shop"}
	res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m.Model, p)
	mustNoErrors(t, errs)
	checkResources(t, p, res)
	var names []string
	for _, l := range res.Listeners {
		names = append(names, l.Name)
		if l.ApiListener == nil || l.Address != nil {
			t.Errorf("listener %s is not a bare API listener", l.Name)
		}
	}
	if want := []string{"greeter.shop:50051", "greeter.shop.svc.cluster.local:50051"}; !slices.Equal(names, want) {
		t.Errorf("listeners = %q, want %q", names, want)
	}
	rc := routeNamed(t, res, "outbound|50051|greeter.shop.svc.cluster.local")
	routes := rc.VirtualHosts[0].Routes
	if len(routes) != 2 || routes[0].Name != "SayHello" || routes[1].Name != translate.DefaultRouteName {
		t.Fatalf("routes = %v", routes)
	}
	if len(routes[0].Match.Headers) != 0 {
		t.Errorf("proxyless route keeps header matchers grpc-go cannot see: %v", routes[0].Match.Headers)
	}
	a := routes[0].GetRoute()
	if a.MaxStreamDuration.GetMaxStreamDuration().AsDuration() != 2*time.Second {
		t.Errorf("max_stream_duration = %v, want 2s", a.MaxStreamDuration)
	}
	if a.RetryPolicy.RetryOn != "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable" || a.RetryPolicy.NumRetries.GetValue() < 1 {
		t.Errorf("retry policy = %v", a.RetryPolicy)
	}
	if !slices.Contains(rc.VirtualHosts[0].Domains, "greeter.shop:50051") || slices.Contains(rc.VirtualHosts[0].Domains, "*") {
		t.Errorf("domains = %q", rc.VirtualHosts[0].Domains)
	}
	for _, c := range res.Clusters {
		if c.Name == translate.PassthroughClusterName || c.GetType() != clusterv3.Cluster_EDS || c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN || c.LoadBalancingPolicy == nil {
			t.Errorf("cluster %s is not EDS with load_balancing_policy", c.Name)
		}
	}
}

func TestProxylessRefusesWhatGRPCGoCannotExpress(t *testing.T) {
	m := modelBuilder{newModel()}
	svc := &mesh.Service{Key: key("shop", "greeter"), ClusterIPs: []string{"10.96.0.20"},
		Ports: []mesh.ServicePort{{Name: "grpc", Port: 50051, Protocol: mesh.ProtocolGRPC}}}
	m.add(svc)
	m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: svc.Key}] = &mesh.Profile{
		Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "greeter.shop.svc.cluster.local"}, Service: svc.Key,
		Routes: []mesh.Route{
			{Name: "ok", Match: mesh.RequestMatch{PathRegex: "/a"}},
			{Name: "not health", Match: mesh.RequestMatch{Not: &mesh.RequestMatch{PathRegex: "/grpc.health.v1.Health/.*"}}, IsRetryable: true},
		},
	}
	tr := translate.NewTranslator(translate.Options{})
	res, errs := tr.ForProxy(m.Model, &mesh.Proxy{Kind: proxy.GRPC, Pod: "c", Namespace: "shop"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "spec.routes[1].condition") {
		t.Fatalf("errors = %v, want one naming spec.routes[1].condition", errs)
	}
	if routes := routeNamed(t, res, "outbound|50051|greeter.shop.svc.cluster.local").VirtualHosts[0].Routes; len(routes) != 1 {
		t.Errorf("proxyless routes = %d, want only [DEFAULT]", len(routes))
	}
	// Sidecars express the same profile fine.
	res, errs = tr.ForProxy(m.Model, sidecar("shop", "c"))
	mustNoErrors(t, errs)
	routes := routeNamed(t, res, "outbound|50051|greeter.shop.svc.cluster.local").VirtualHosts[0].Routes
	if len(routes) != 3 || !routes[1].Match.Headers[0].InvertMatch || routes[1].Match.Headers[0].Name != ":path" {
		t.Errorf("sidecar routes = %v", routes)
	}
}

func TestInvalidProfileIsSkippedAlone(t *testing.T) {
	build := func(withBad bool) *mesh.Model {
		m := modelBuilder{newModel()}
		web := httpService("shop", "web", "10.96.0.10", 80)
		api := httpService("shop", "api", "10.96.0.11", 80)
		m.add(web, "10.1.0.1")
		m.add(api, "10.1.0.2")
		m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: api.Key}] = profileWithRoutes(api.Key, "shop", 3)
		if withBad {
			m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: web.Key}] = &mesh.Profile{
				Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "web.shop.svc.cluster.local"}, Service: web.Key,
				Routes: []mesh.Route{
					{Name: "fine", Match: mesh.RequestMatch{PathRegex: "/fine"}},
					{Name: "broken", Match: mesh.RequestMatch{Any: []mesh.RequestMatch{{Method: "GET"}, {PathRegex: "(unclosed"}}}},
				},
				RetryBudget: &mesh.RetryBudget{RetryRatio: 0.9, MinRetriesPerSecond: 100, TTL: time.Second},
			}
		}
		return m.Model
	}
	good, errs := translate.NewTranslator(translate.Options{}).ForProxy(build(false), sidecar("shop", "c"))
	mustNoErrors(t, errs)
	bad, errs := translate.NewTranslator(translate.Options{}).ForProxy(build(true), sidecar("shop", "c"))
	if len(errs) != 1 {
		t.Fatalf("errors = %v, want 1", errs)
	}
	msg := errs[0].Error()
	for _, want := range []string{"ServiceProfile shop/web.shop.svc.cluster.local", "spec.routes[1].condition.any[1].pathRegex"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	// Everything, including the service whose profile was refused, is what
	// it would be without the profile.
	for _, pair := range [][2][]proto.Message{
		{msgs(good.Listeners), msgs(bad.Listeners)}, {msgs(good.Routes), msgs(bad.Routes)},
		{msgs(good.Clusters), msgs(bad.Clusters)}, {msgs(good.Endpoints), msgs(bad.Endpoints)},
	} {
		if len(pair[0]) != len(pair[1]) {
			t.Fatalf("resource counts differ: %d vs %d", len(pair[0]), len(pair[1]))
		}
		for i := range pair[0] {
			if !proto.Equal(pair[0][i], pair[1][i]) {
				t.Errorf("resource %d differs with the invalid profile present", i)
			}
		}
	}
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func TestDeterministicOutput(t *testing.T) {
	build := func() *mesh.Model {
		m := modelBuilder{newModel()}
		for i := range 30 {
			s := httpService(fmt.Sprintf("ns%d", i%4), fmt.Sprintf("svc%d", i), fmt.Sprintf("10.96.1.%d", i), 80)
			m.add(s, fmt.Sprintf("10.2.%d.1", i), fmt.Sprintf("10.2.%d.2", i))
			m.Profiles[mesh.ProfileKey{Namespace: s.Key.Namespace, Service: s.Key}] = profileWithRoutes(s.Key, s.Key.Namespace, 4)
		}
		return m.Model
	}
	marshal := func(res *translate.Resources) []byte {
		var out []byte
		byType := res.ByType()
		for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
			for _, r := range byType[typ] {
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b...)
			}
		}
		return out
	}
	a, _ := translate.NewTranslator(translate.Options{}).ForProxy(build(), sidecar("ns1", "c"))
	b, _ := translate.NewTranslator(translate.Options{}).ForProxy(build(), sidecar("ns1", "c"))
	if string(marshal(a)) != string(marshal(b)) {
		t.Error("two translations of equal models differ")
	}
}

func TestCachingSharesAndRecomputesOnlyChanges(t *testing.T) {
	m1 := modelBuilder{newModel()}
	for i := range 20 {
		s := httpService("shop", fmt.Sprintf("svc%d", i), fmt.Sprintf("10.96.1.%d", i), 80)
		m1.add(s, fmt.Sprintf("10.2.%d.1", i))
		m1.Profiles[mesh.ProfileKey{Namespace: "shop", Service: s.Key}] = profileWithRoutes(s.Key, "shop", 2)
	}
	tr := translate.NewTranslator(translate.Options{})
	a, _ := tr.ForProxy(m1.Model, sidecar("shop", "a"))
	b, _ := tr.ForProxy(m1.Model, sidecar("shop", "b"))
	c, _ := tr.ForProxy(m1.Model, sidecar("other", "c"))
	for i := range a.Routes {
		if a.Routes[i] != b.Routes[i] || a.Routes[i] != c.Routes[i] {
			t.Fatalf("route %s not shared between proxies", a.Routes[i].Name)
		}
	}
	for i := range a.Clusters {
		if a.Clusters[i] != b.Clusters[i] {
			t.Fatalf("cluster %s not shared between proxies", a.Clusters[i].Name)
		}
	}
	if a.Listeners[1] != b.Listeners[1] || a.Listeners[0] != b.Listeners[0] {
		t.Error("listeners of identical proxies are not shared")
	}

	// Change one service: only its resources are rebuilt.
	m2 := clone(m1.Model)
	changed := *m2.Services[key("shop", "svc3")]
	changed.Ports = []mesh.ServicePort{{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP2}}
	m2.Services[changed.Key] = &changed
	d, _ := tr.ForProxy(m2, sidecar("shop", "a"))
	for i := range a.Clusters {
		same := a.Clusters[i] == d.Clusters[i]
		isChanged := a.Clusters[i].Name == "outbound|80|svc3.shop.svc.cluster.local"
		if same == isChanged {
			t.Errorf("cluster %s: shared=%v after changing svc3", a.Clusters[i].Name, same)
		}
	}
	for i := range a.Endpoints {
		if a.Endpoints[i] != d.Endpoints[i] && a.Endpoints[i].ClusterName != "outbound|80|svc3.shop.svc.cluster.local" {
			t.Errorf("endpoints %s rebuilt although unchanged", a.Endpoints[i].ClusterName)
		}
	}
	// Endpoints() hands out the very CLAs ForProxy uses.
	if got := tr.Endpoints(m2, key("shop", "svc5")); len(got) != 1 || got[0] != d.Endpoints[indexOfCLA(d.Endpoints, "outbound|80|svc5.shop.svc.cluster.local")] {
		t.Error("Endpoints() does not share ForProxy's ClusterLoadAssignments")
	}
}

func indexOfCLA(list []*endpointv3.ClusterLoadAssignment, name string) int {
	for i, c := range list {
		if c.ClusterName == name {
			return i
		}
	}
	return -1
}

func TestConcurrentUse(t *testing.T) {
	models := make([]*mesh.Model, 4)
	base := modelBuilder{newModel()}
	for i := range 50 {
		s := httpService(fmt.Sprintf("ns%d", i%5), fmt.Sprintf("svc%d", i), fmt.Sprintf("10.96.1.%d", i), 80)
		base.add(s, fmt.Sprintf("10.2.%d.1", i))
		base.Profiles[mesh.ProfileKey{Namespace: s.Key.Namespace, Service: s.Key}] = profileWithRoutes(s.Key, s.Key.Namespace, 3)
	}
	models[0] = base.Model
	for i := 1; i < len(models); i++ {
		models[i] = clone(models[i-1])
		s := *models[i].Services[key(fmt.Sprintf("ns%d", i%5), fmt.Sprintf("svc%d", i))]
		s.ClusterIPs = []string{fmt.Sprintf("10.97.0.%d", i)}
		models[i].Services[s.Key] = &s
	}
	tr := translate.NewTranslator(translate.Options{})
	want := make([]*translate.Resources, len(models))
	for i, m := range models {
		want[i], _ = translate.NewTranslator(translate.Options{}).ForProxy(m, sidecar("ns1", "x"))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				mi := (w + i) % len(models)
				got, _ := tr.ForProxy(models[mi], sidecar("ns1", fmt.Sprintf("p%d", w)))
				for j := range got.Clusters {
					if !proto.Equal(got.Clusters[j], want[mi].Clusters[j]) {
						t.Errorf("worker %d model %d: cluster %d differs", w, mi, j)
						return
					}
				}
				for j := range got.Listeners {
					if !proto.Equal(got.Listeners[j], want[mi].Listeners[j]) {
						t.Errorf("worker %d model %d: listener %d differs", w, mi, j)
						return
					}
				}
				tr.Endpoints(models[mi], key("ns2", "svc2"))
			}
		}()
	}
	wg.Wait()
}

func TestBadCallsReturnErrors(t *testing.T) {
	tr := translate.NewTranslator(translate.Options{})
	m := modelBuilder{newModel()}
	m.add(httpService("shop", "web", "10.96.0.10", 80))
	for _, tt := range []struct {
		name string
		m    *mesh.Model
		p    *mesh.Proxy
	}{
		{"nil model", nil, sidecar("shop", "a")},
		{"nil proxy", m.Model, nil},
		{"unknown kind", m.Model, &mesh.Proxy{Kind: proxy.Kind(7), Pod: "a", Namespace: "shop"}},
	} {
		res, errs := tr.ForProxy(tt.m, tt.p)
		if res == nil || len(errs) == 0 || len(res.Listeners)+len(res.Clusters) != 0 {
			t.Errorf("%s: got %d listeners, %d clusters, errors %v; want nothing and an error", tt.name, len(res.Listeners), len(res.Clusters), errs)
		}
	}
	if got := tr.Endpoints(m.Model, key("shop", "missing")); got != nil {
		t.Errorf("Endpoints of a missing service = %v", got)
	}
	// A proxy without a kind is a sidecar.
	res, errs := tr.ForProxy(m.Model, &mesh.Proxy{Pod: "a", Namespace: "shop"})
	mustNoErrors(t, errs)
	listenerNamed(t, res, translate.OutboundListenerName)
}

// TestByTypeSharesAnAssemblysLists: the proxies of one assembly are given
// one converted list per type (their sets are then recognised by pointer
// downstream), each equal to the typed list it stands for; a list swapped
// after translation is converted afresh, and appending to a shared list
// never shows in another proxy's.
func TestByTypeSharesAnAssemblysLists(t *testing.T) {
	mb := modelBuilder{newModel()}
	for i := range 5 {
		mb.add(httpService("shop", fmt.Sprintf("svc%d", i), fmt.Sprintf("10.96.1.%d", i), 80), fmt.Sprintf("10.2.%d.1", i))
	}
	tr := translate.NewTranslator(translate.Options{})
	a, errs := tr.ForProxy(mb.Model, sidecar("shop", "a"))
	mustNoErrors(t, errs)
	b, errs := tr.ForProxy(mb.Model, sidecar("shop", "b"))
	mustNoErrors(t, errs)
	swapped := *b
	swapped.Listeners = slices.Clone(b.Listeners)

	same := func(x, y []types.Resource) bool { return len(x) > 0 && len(x) == len(y) && &x[0] == &y[0] }
	cases := []struct {
		name    string
		res     *translate.Resources
		typeURL string
		want    []proto.Message
		// shared: the list must be a's very list.
		shared bool
	}{
		{"routes", b, resourcev3.RouteType, msgs(b.Routes), true},
		{"clusters", b, resourcev3.ClusterType, msgs(b.Clusters), true},
		{"listeners", b, resourcev3.ListenerType, msgs(b.Listeners), true},
		{"endpoints", b, resourcev3.EndpointType, msgs(b.Endpoints), true},
		{"swapped listeners", &swapped, resourcev3.ListenerType, msgs(swapped.Listeners), false},
		{"clusters beside swapped listeners", &swapped, resourcev3.ClusterType, msgs(b.Clusters), true},
	}
	aLists := a.ByType()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.res.ByType()[tc.typeURL]
			if len(got) != len(tc.want) {
				t.Fatalf("%d resources, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i].(types.Resource) {
					t.Errorf("[%d] is %s, want the typed list's", i, cachev3.GetResourceName(got[i]))
				}
			}
			if s := same(got, aLists[tc.typeURL]); s != tc.shared {
				t.Errorf("shares a's list: %v, want %v", s, tc.shared)
			}
			if cap(got) != len(got) {
				t.Errorf("capacity %d beyond length %d: an append would write into a list other proxies share", cap(got), len(got))
			}
		})
	}
}

// TestByTypeSharesAViewsListsBetweenProxylessPods: proxyless pods that
// serve have an assembly each (their server listeners name their IP), yet
// the lists that are their view's (routes, clusters, endpoints) are one
// converted list for all of them, not a copy per pod; their listeners are
// their own.
func TestByTypeSharesAViewsListsBetweenProxylessPods(t *testing.T) {
	mb := modelBuilder{newModel()}
	for i := range 5 {
		mb.add(httpService("shop", fmt.Sprintf("svc%d", i), fmt.Sprintf("10.96.1.%d", i), 80), fmt.Sprintf("10.2.%d.1", i))
	}
	tr := translate.NewTranslator(translate.Options{})
	pod := func(name, ip string) map[string][]types.Resource {
		p := &mesh.Proxy{Kind: proxy.GRPC, Pod: name, Namespace: "shop", IP: ip,
			Identity:     mesh.Identity{Namespace: "shop", ServiceAccount: "default"},
			InboundPorts: []mesh.ProxyPort{{Name: "grpc", Port: 9090, Protocol: mesh.ProtocolGRPC}}}
		res, errs := tr.ForProxy(mb.Model, p)
		mustNoErrors(t, errs)
		return res.ByType()
	}
	a, b := pod("a", "10.1.0.1"), pod("b", "10.1.0.2")
	same := func(x, y []types.Resource) bool { return len(x) > 0 && len(x) == len(y) && &x[0] == &y[0] }
	cases := []struct {
		typeURL string
		shared  bool
	}{
		{resourcev3.RouteType, true},
		{resourcev3.ClusterType, true},
		{resourcev3.EndpointType, true},
		{resourcev3.ListenerType, false},
	}
	for _, tc := range cases {
		if len(a[tc.typeURL]) == 0 {
			t.Errorf("%s: pod a has none", tc.typeURL)
			continue
		}
		if s := same(a[tc.typeURL], b[tc.typeURL]); s != tc.shared {
			t.Errorf("%s: pods a and b share one list: %v, want %v", tc.typeURL, s, tc.shared)
		}
	}
}
