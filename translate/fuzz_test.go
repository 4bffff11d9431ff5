package translate_test

import (
	"math"
	"testing"
	"time"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/translate/check"
)

// fuzzBytes hands out values from the fuzzer's input; once it runs dry
// every value is zero, so any input is a complete model.
type fuzzBytes struct{ data []byte }

func (f *fuzzBytes) byte() byte {
	if len(f.data) == 0 {
		return 0
	}
	b := f.data[0]
	f.data = f.data[1:]
	return b
}

func (f *fuzzBytes) intn(n int) int { return int(f.byte()) % n }

func (f *fuzzBytes) uint32() uint32 {
	return uint32(f.byte())<<24 | uint32(f.byte())<<16 | uint32(f.byte())<<8 | uint32(f.byte())
}

func (f *fuzzBytes) pick(options []string) string { return options[f.intn(len(options))] }

// str builds a string of up to max bytes from an alphabet that makes regex
// syntax (and invalid UTF-8) likely.
func (f *fuzzBytes) str(alphabet string, max int) string {
	n := f.intn(max + 1)
	out := make([]byte, 0, n)
	for range n {
		b := f.byte()
		if b >= 0xf0 {
			out = append(out, b) // raw high byte: invalid UTF-8 on its own
			continue
		}
		out = append(out, alphabet[int(b)%len(alphabet)])
	}
	return string(out)
}

const regexAlphabet = `/ab.*+?()[]^$|\{}1,09-:_sdwSDW`

var (
	fuzzRegexes = []string{"/", "/api/.*", "/books/[^/]*", `/hello\.Greeter/SayHello`, "/a|/b", ".*", `/x\?y`, "(?i)/Admin/.*", "/(a+)+b"}
	fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "get", "", "BAD METHOD", "X-CUSTOM"}
)

func (f *fuzzBytes) requestMatch(depth int) mesh.RequestMatch {
	var m mesh.RequestMatch
	for range 1 + f.intn(2) {
		k := f.intn(7)
		if depth <= 0 {
			k %= 3
		}
		switch k {
		case 0:
			m.PathRegex = f.pick(fuzzRegexes)
		case 1:
			m.Method = f.pick(fuzzMethods)
		case 2:
			m.PathRegex = f.str(regexAlphabet, 12)
		case 3, 4:
			for range f.intn(4) {
				m.All = append(m.All, f.requestMatch(depth-1))
			}
		case 5:
			for range f.intn(4) {
				m.Any = append(m.Any, f.requestMatch(depth-1))
			}
		case 6:
			n := f.requestMatch(depth - 1)
			m.Not = &n
		}
	}
	return m
}

func (f *fuzzBytes) responseMatch(depth int) mesh.ResponseMatch {
	var m mesh.ResponseMatch
	switch k := f.intn(4); {
	case k == 0 || depth <= 0:
		m.Status = &mesh.StatusRange{Min: uint32(f.intn(700)), Max: uint32(f.intn(700))}
	case k == 1:
		for range f.intn(3) {
			m.All = append(m.All, f.responseMatch(depth-1))
		}
	case k == 2:
		for range f.intn(3) {
			m.Any = append(m.Any, f.responseMatch(depth-1))
		}
	default:
		n := f.responseMatch(depth - 1)
		m.Not = &n
	}
	return m
}

func (f *fuzzBytes) backends(services []mesh.ServiceKey) []mesh.WeightedBackend {
	var out []mesh.WeightedBackend
	for range f.intn(4) {
		b := mesh.WeightedBackend{Service: services[f.intn(len(services))]}
		switch f.intn(4) {
		case 0:
			b.Weight = 0
		case 1:
			b.Weight = math.MaxUint32 - uint32(f.byte())
		default:
			b.Weight = uint32(f.byte()) * 10
		}
		if f.intn(4) == 0 {
			b.Port = uint32(f.pick([]string{"80", "50051", "5432", "1"})[0]) // a port the backend may lack
		}
		out = append(out, b)
	}
	return out
}

func (f *fuzzBytes) profile(svc mesh.ServiceKey, ns string, services []mesh.ServiceKey) *mesh.Profile {
	p := &mesh.Profile{
		Source:  mesh.ObjectRef{Kind: "ServiceProfile", Namespace: ns, Name: svc.FQDN("cluster.local")},
		Service: svc,
	}
	for range f.intn(6) {
		r := mesh.Route{
			Name:        f.pick([]string{"GET /books", "route", "[DEFAULT]", "", "a.b.c", "\xff"}),
			Match:       f.requestMatch(3),
			IsRetryable: f.intn(2) == 0,
			Timeout:     time.Duration(int64(f.uint32())-1<<20) * time.Microsecond,
		}
		for range f.intn(3) {
			r.ResponseClasses = append(r.ResponseClasses, mesh.ResponseClass{Match: f.responseMatch(2), IsFailure: f.intn(2) == 0})
		}
		p.Routes = append(p.Routes, r)
	}
	if f.intn(2) == 0 {
		p.RetryBudget = &mesh.RetryBudget{
			RetryRatio:          float64(f.uint32()) / float64(1<<28),
			MinRetriesPerSecond: f.uint32(),
			TTL:                 time.Duration(f.byte()) * time.Second,
		}
	}
	p.DstOverrides = f.backends(services)
	if f.intn(3) == 0 {
		p.OpaquePorts = []uint32{80}
	}
	return p
}

func fuzzModel(f *fuzzBytes) *mesh.Model {
	m := modelBuilder{newModel()}
	web := httpService("shop", "web", "10.96.0.10", 80)
	web2 := httpService("shop", "web-v2", "10.96.0.11", 80)
	greeter := &mesh.Service{Key: key("shop", "greeter"), ClusterIPs: []string{"10.96.0.12"},
		Ports: []mesh.ServicePort{{Name: "grpc", Port: 50051, Protocol: mesh.ProtocolGRPC}, {Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP2}}}
	db := &mesh.Service{Key: key("data", "db"), Headless: true,
		Ports: []mesh.ServicePort{{Name: "pg", Port: 5432, Protocol: mesh.ProtocolOpaque}, {Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1}}}
	for _, s := range []*mesh.Service{web, web2, greeter, db} {
		m.add(s, "10.1.0.1", "10.1.0.2")
	}
	services := []mesh.ServiceKey{web.Key, web2.Key, greeter.Key, db.Key, key("shop", "missing")}
	for _, s := range []*mesh.Service{web, greeter, db} {
		for _, ns := range []string{s.Key.Namespace, "client"} {
			if f.intn(3) != 0 {
				m.Profiles[mesh.ProfileKey{Namespace: ns, Service: s.Key}] = f.profile(s.Key, ns, services)
			}
		}
		if f.intn(2) == 0 {
			m.Splits[s.Key] = &mesh.Split{
				Source: mesh.ObjectRef{Kind: "TrafficSplit", Namespace: s.Key.Namespace, Name: s.Key.Name + "-split"},
				Apex:   s.Key, Backends: f.backends(services),
			}
		}
	}
	return m.Model
}

// FuzzTranslate: whatever profiles and splits say, translation does not
// panic and what it emits is accepted by the peer; unusable input is skipped
// with errors.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"))
	f.Add([]byte("profile-with-nested-any-not-all-and-weights-0123456789abcdef"))
	f.Add([]byte{3, 3, 4, 6, 5, 5, 0, 1, 2, 2, 2, 2, 2, 2, 6, 6, 6, 0, 0, 1, 1, 255, 255, 255, 255, 1, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := fuzzModel(&fuzzBytes{data: data})
		tr := translate.NewTranslator(translate.Options{})
		for _, p := range []*mesh.Proxy{
			sidecar("shop", "a"), sidecar("client", "b"),
			{Kind: proxy.GRPC, Pod: "g", Namespace: "client"},
		} {
			res, _ := tr.ForProxy(m, p)
			if err := check.Resources(p.Kind, res.ByType()); err != nil {
				t.Fatalf("%s proxy in %s: %v", p.Kind, p.Namespace, err)
			}
		}
	})
}
