package translate_test

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
)

// bigModel is the benchmark mesh: 2,000 services in 50 namespaces, 5
// endpoints each (10,000), and a 10-route profile per service (2,000).
func bigModel() *mesh.Model {
	m := modelBuilder{newModel()}
	for i := range 2000 {
		ns := fmt.Sprintf("ns%02d", i%50)
		s := httpService(ns, fmt.Sprintf("svc%04d", i), fmt.Sprintf("10.96.%d.%d", i/250, i%250), 80)
		var ips []string
		for j := range 5 {
			ips = append(ips, fmt.Sprintf("10.%d.%d.%d", 100+j, i/250, i%250))
		}
		m.add(s, ips...)
		m.Profiles[mesh.ProfileKey{Namespace: ns, Service: s.Key}] = profileWithRoutes(s.Key, ns, 10)
	}
	return m.Model
}

// withOneServiceChanged is the next model after an edit to one service.
func withOneServiceChanged(m *mesh.Model, i int) *mesh.Model {
	next := clone(m)
	k := key(fmt.Sprintf("ns%02d", i%50), fmt.Sprintf("svc%04d", i%2000))
	s := *next.Services[k]
	s.Ports = []mesh.ServicePort{{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1, TargetPort: uint32(8000 + i%1000)}}
	next.Services[k] = &s
	return next
}

func benchmarkCheckResources(b *testing.B, res *translate.Resources, errs []error) {
	b.Helper()
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	if len(res.Clusters) != 2002 || len(res.Routes) != 2000 || len(res.Endpoints) != 2000 {
		b.Fatalf("got %d clusters, %d routes, %d endpoints", len(res.Clusters), len(res.Routes), len(res.Endpoints))
	}
}

// BenchmarkForProxyCold: a fresh Translator translating the whole mesh for
// one proxy (what a control plane pays at start-up, once).
func BenchmarkForProxyCold(b *testing.B) {
	m := bigModel()
	p := sidecar("ns07", "client")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m, p)
		benchmarkCheckResources(b, res, errs)
	}
}

// BenchmarkForProxyWarm: the steady state: one service changed since the
// last model; only its resources are recomputed, the rest come from cache
// and the proxy's view is reassembled.
func BenchmarkForProxyWarm(b *testing.B) {
	m := bigModel()
	p := sidecar("ns07", "client")
	tr := translate.NewTranslator(translate.Options{})
	tr.ForProxy(m, p)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		m = withOneServiceChanged(m, i)
		b.StartTimer()
		res, errs := tr.ForProxy(m, p)
		benchmarkCheckResources(b, res, errs)
	}
}

// BenchmarkForProxySameNamespace: another proxy of a namespace whose view is
// already built for this model (the other 99 of 100 pushes after a change).
func BenchmarkForProxySameNamespace(b *testing.B) {
	m := bigModel()
	tr := translate.NewTranslator(translate.Options{})
	tr.ForProxy(m, sidecar("ns07", "first"))
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		res, errs := tr.ForProxy(m, sidecar("ns07", fmt.Sprintf("pod-%d", i%100)))
		benchmarkCheckResources(b, res, errs)
	}
}

// BenchmarkHundredProxiesShareClusters: 100 proxies of one namespace get the
// very same cluster objects; the metric cluster-objects/proxy is the number
// of distinct *Cluster values over all of them divided by the number a
// single proxy has (1 means fully shared, 100 would mean copied).
func BenchmarkHundredProxiesShareClusters(b *testing.B) {
	m := bigModel()
	b.ReportAllocs()
	b.ResetTimer()
	var ratio float64
	for b.Loop() {
		tr := translate.NewTranslator(translate.Options{})
		distinct := map[*clusterv3.Cluster]bool{}
		perProxy := 0
		for i := range 100 {
			res, errs := tr.ForProxy(m, sidecar("ns07", fmt.Sprintf("pod-%d", i)))
			benchmarkCheckResources(b, res, errs)
			perProxy = len(res.Clusters)
			for _, c := range res.Clusters {
				distinct[c] = true
			}
		}
		ratio = float64(len(distinct)) / float64(perProxy)
	}
	b.ReportMetric(ratio, "cluster-objects/proxy")
	if ratio != 1 {
		b.Errorf("100 proxies hold %.2f times one proxy's clusters, want 1 (shared)", ratio)
	}
}
