// Package envoystatstest builds the meshes whose proxies' series telemetry/envoystats
// measures, and what tests elsewhere (the Grafana lint, the Prometheus stand-in) check
// their series against: translate's output for a mesh model and the injector's
// bootstrap, as one Envoy holds them.
package envoystatstest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/telemetry/envoystats"
	"github.com/weftmesh/weft/translate"
)

// Shape is a mesh: Services in 10 namespaces (ns0..ns9), every fourth serving gRPC on
// 8080 and the rest HTTP on 80, each with 2 meshed endpoints; with Routes > 0 a
// ServiceProfile of that many routes on every service; a TrafficSplit of svc0000 across
// svc0001 and svc0002 (from 3 services); with MTLS a trust domain, so clusters
// originate mTLS and the inbound listener terminates it.
type Shape struct {
	Services, Routes int
	MTLS             bool
}

func (s Shape) String() string {
	tls := "plaintext"
	if s.MTLS {
		tls = "mtls"
	}
	return fmt.Sprintf("services=%d/routes=%d/%s", s.Services, s.Routes, tls)
}

// ServiceName is the i-th service's name; it lives in namespace ns<i%10>.
func ServiceName(i int) string { return fmt.Sprintf("svc%04d", i) }

// EmptyModel is a mesh model of the cluster domain cluster.local with nothing in it.
func EmptyModel() *mesh.Model {
	return &mesh.Model{
		ClusterDomain: "cluster.local",
		Services:      map[mesh.ServiceKey]*mesh.Service{},
		Endpoints:     map[mesh.ServiceKey]*mesh.ServiceEndpoints{},
		Profiles:      map[mesh.ProfileKey]*mesh.Profile{},
		Splits:        map[mesh.ServiceKey]*mesh.Split{},
	}
}

// Model is the shape as the mesh model.
func (s Shape) Model() *mesh.Model {
	m := EmptyModel()
	for i := range s.Services {
		key := mesh.ServiceKey{Namespace: fmt.Sprintf("ns%d", i%10), Name: ServiceName(i)}
		port := mesh.ServicePort{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1, TargetPort: 8080}
		if i%4 == 3 {
			port = mesh.ServicePort{Name: "grpc", Port: 8080, Protocol: mesh.ProtocolGRPC, TargetPort: 8080}
		}
		m.Services[key] = &mesh.Service{Key: key, ClusterIPs: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250)}, Ports: []mesh.ServicePort{port}}
		eps := &mesh.ServiceEndpoints{Service: key, ByPort: map[string][]mesh.Endpoint{}}
		for j := range 2 {
			eps.ByPort[port.Name] = append(eps.ByPort[port.Name], mesh.Endpoint{
				Address: fmt.Sprintf("10.%d.%d.%d", 100+j, i/250, i%250), Port: port.TargetPort,
				Ready: true, Serving: true, Zone: "zone-a", Pod: fmt.Sprintf("%s-%d", key.Name, j),
				Identity: mesh.Identity{Namespace: key.Namespace, ServiceAccount: key.Name}, Meshed: true,
			})
		}
		eps.Peers = mesh.PeersOf(eps.ByPort)
		m.Endpoints[key] = eps
		if s.Routes > 0 {
			p := &mesh.Profile{Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: key.Namespace, Name: key.FQDN("cluster.local")}, Service: key}
			for r := range s.Routes {
				p.Routes = append(p.Routes, mesh.Route{
					Name:        fmt.Sprintf("GET /api/items%d/{id}", r),
					Match:       mesh.RequestMatch{Method: "GET", PathRegex: fmt.Sprintf("/api/items%d/[^/]*", r)},
					IsRetryable: r%2 == 0,
					Timeout:     time.Second,
				})
			}
			m.Profiles[mesh.ProfileKey{Namespace: key.Namespace, Service: key}] = p
		}
	}
	if s.Services >= 3 {
		apex := mesh.ServiceKey{Namespace: "ns0", Name: ServiceName(0)}
		m.Splits[apex] = &mesh.Split{
			Source: mesh.ObjectRef{Kind: "TrafficSplit", Namespace: "ns0", Name: "canary"},
			Apex:   apex,
			Backends: []mesh.WeightedBackend{
				{Service: mesh.ServiceKey{Namespace: "ns1", Name: ServiceName(1)}, Weight: 90},
				{Service: mesh.ServiceKey{Namespace: "ns2", Name: ServiceName(2)}, Weight: 10},
			},
		}
	}
	return m
}

// Client is the measured sidecar: a pod of ns0 serving HTTP on 8080.
func Client() *mesh.Proxy {
	return &mesh.Proxy{
		Kind: proxy.Envoy, Pod: "client-0", Namespace: "ns0", IP: "10.1.0.1",
		Identity:     mesh.Identity{Namespace: "ns0", ServiceAccount: "client"},
		InboundPorts: []mesh.ProxyPort{{Name: "http", Port: 8080, Protocol: mesh.ProtocolHTTP1}},
		OpaquePorts:  mesh.DefaultOpaquePorts,
	}
}

// ProxyConfig is what Client's Envoy holds in the shape's mesh: the injector's bootstrap
// and translate's resources, and the bootstrap's stats rules.
func (s Shape) ProxyConfig(t testing.TB) (envoystats.Proxy, *envoystats.Rules) {
	t.Helper()
	opts := translate.Options{}
	if s.MTLS {
		opts.TrustDomain = "cluster.local"
	}
	return ProxyConfig(t, s.Model(), Client(), opts)
}

// InUse is a mesh in use: successes and server errors on every object.
var InUse = &envoystats.Traffic{Classes: []string{"2xx", "5xx"}, Codes: []string{"200", "503"}, GRPCStatuses: []string{"0", "14"}}

// Series is what a Prometheus scraping the shape's client proxy stores (without the
// scrape's target labels), at rest (tr nil) or with traffic.
func (s Shape) Series(t testing.TB, tr *envoystats.Traffic) []envoystats.Series {
	t.Helper()
	p, rules := s.ProxyConfig(t)
	return series(t, p, rules, tr)
}

// ProxyConfig is what proxy p's Envoy holds in mesh m: the injector's bootstrap and
// translate's resources, and the bootstrap's stats rules.
func ProxyConfig(t testing.TB, m *mesh.Model, p *mesh.Proxy, opts translate.Options) (envoystats.Proxy, *envoystats.Rules) {
	t.Helper()
	b, err := bootstrap.Envoy(bootstrap.Config{ControlPlaneAddress: "weft-cp.weft-system.svc:8086"})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := envoystats.NewRules(b.GetStatsConfig())
	if err != nil {
		t.Fatal(err)
	}
	res, errs := translate.NewTranslator(opts).ForProxy(m, p)
	if len(errs) > 0 {
		t.Fatalf("%s: translate: %v", p.NodeID(), errs)
	}
	return envoystats.Proxy{Bootstrap: b, Listeners: res.Listeners, Routes: res.Routes, Clusters: res.Clusters}, rules
}

// ProxySeries is what a Prometheus scraping proxy p of mesh m stores, at rest (tr nil) or
// with traffic.
func ProxySeries(t testing.TB, m *mesh.Model, p *mesh.Proxy, opts translate.Options, tr *envoystats.Traffic) []envoystats.Series {
	t.Helper()
	cfg, rules := ProxyConfig(t, m, p, opts)
	return series(t, cfg, rules, tr)
}

func series(t testing.TB, p envoystats.Proxy, rules *envoystats.Rules, tr *envoystats.Traffic) []envoystats.Series {
	t.Helper()
	stats, err := envoystats.Enumerate(p, tr)
	if err != nil {
		t.Fatal(err)
	}
	return envoystats.Render(stats, rules)
}

// Exposition is series as Envoy's /stats/prometheus text (every value 0): what a
// Prometheus scraping a proxy that exposes them reads.
func Exposition(series []envoystats.Series) string {
	var b strings.Builder
	for _, s := range series {
		fmt.Fprintf(&b, "%s{%s} 0\n", s.Name, s.Labels)
	}
	return b.String()
}
