package translate_test

import (
	"fmt"
	"time"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// Hand-built models for unit tests and benchmarks.

func key(ns, name string) mesh.ServiceKey { return mesh.ServiceKey{Namespace: ns, Name: name} }

func httpService(ns, name, ip string, port uint32) *mesh.Service {
	return &mesh.Service{
		Key:        key(ns, name),
		ClusterIPs: []string{ip},
		Ports:      []mesh.ServicePort{{Name: "http", Port: port, Protocol: mesh.ProtocolHTTP1, TargetPort: 8080}},
	}
}

func readyEndpoints(svc *mesh.Service, ips ...string) *mesh.ServiceEndpoints {
	eps := &mesh.ServiceEndpoints{Service: svc.Key, ByPort: map[string][]mesh.Endpoint{}}
	for _, sp := range svc.Ports {
		for i, ip := range ips {
			eps.ByPort[sp.Name] = append(eps.ByPort[sp.Name], mesh.Endpoint{
				Address: ip, Port: sp.TargetPort, Ready: true, Serving: true, Zone: "zone-a",
				Pod:      fmt.Sprintf("%s-%d", svc.Key.Name, i),
				Identity: mesh.Identity{Namespace: svc.Key.Namespace, ServiceAccount: svc.Key.Name},
			})
		}
	}
	return eps
}

func newModel() *mesh.Model {
	return &mesh.Model{
		ClusterDomain: "cluster.local",
		Services:      map[mesh.ServiceKey]*mesh.Service{},
		Endpoints:     map[mesh.ServiceKey]*mesh.ServiceEndpoints{},
		Profiles:      map[mesh.ProfileKey]*mesh.Profile{},
		Splits:        map[mesh.ServiceKey]*mesh.Split{},
	}
}

func (mb modelBuilder) add(svc *mesh.Service, ips ...string) {
	mb.Services[svc.Key] = svc
	mb.Endpoints[svc.Key] = readyEndpoints(svc, ips...)
}

type modelBuilder struct{ *mesh.Model }

// clone copies the maps (not the values): the way a control plane derives
// the next immutable model from the last.
func clone(m *mesh.Model) *mesh.Model {
	c := *m
	c.Services = make(map[mesh.ServiceKey]*mesh.Service, len(m.Services))
	for k, v := range m.Services {
		c.Services[k] = v
	}
	c.Endpoints = make(map[mesh.ServiceKey]*mesh.ServiceEndpoints, len(m.Endpoints))
	for k, v := range m.Endpoints {
		c.Endpoints[k] = v
	}
	c.Profiles = make(map[mesh.ProfileKey]*mesh.Profile, len(m.Profiles))
	for k, v := range m.Profiles {
		c.Profiles[k] = v
	}
	c.Splits = make(map[mesh.ServiceKey]*mesh.Split, len(m.Splits))
	for k, v := range m.Splits {
		c.Splits[k] = v
	}
	return &c
}

func sidecar(ns, pod string) *mesh.Proxy {
	return &mesh.Proxy{
		Kind: proxy.Envoy, Pod: pod, Namespace: ns, IP: "10.1.0.1",
		Identity:     mesh.Identity{Namespace: ns, ServiceAccount: "default"},
		InboundPorts: []mesh.ProxyPort{{Name: "http", Port: 8080, Protocol: mesh.ProtocolHTTP1}},
		OpaquePorts:  mesh.DefaultOpaquePorts,
	}
}

// profileWithRoutes is a profile of n routes in the shape `linkerd profile
// --open-api` generates.
func profileWithRoutes(svc mesh.ServiceKey, ns string, n int) *mesh.Profile {
	p := &mesh.Profile{
		Source:  mesh.ObjectRef{Kind: "ServiceProfile", Namespace: ns, Name: svc.FQDN("cluster.local")},
		Service: svc,
	}
	for i := range n {
		p.Routes = append(p.Routes, mesh.Route{
			Name:        fmt.Sprintf("GET /api/v1/items%d/{id}", i),
			Match:       mesh.RequestMatch{Method: "GET", PathRegex: fmt.Sprintf("/api/v1/items%d/[^/]*", i)},
			IsRetryable: i%2 == 0,
			Timeout:     time.Duration(i+1) * 100 * time.Millisecond,
			ResponseClasses: []mesh.ResponseClass{{
				Match: mesh.ResponseMatch{Status: &mesh.StatusRange{Min: 500, Max: 599}}, IsFailure: true,
			}},
		})
	}
	return p
}
