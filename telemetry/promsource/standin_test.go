package promsource_test

import (
	"maps"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/telemetry/envoystats"
	"github.com/weftmesh/weft/telemetry/envoystats/envoystatstest"
	"github.com/weftmesh/weft/telemetry/promsource"
	"github.com/weftmesh/weft/telemetry/promsource/promsourcetest"
	"github.com/weftmesh/weft/translate"
)

// shopModel is the mesh promsourcetest.ShopTraffic's proxies live in: web and api in
// shop (HTTP on 80 to 8080), api described by a profile with the route "GET /items",
// and db-0 in other serving HTTP on 8080.
func shopModel() *mesh.Model {
	m := envoystatstest.EmptyModel()
	for i, k := range []mesh.ServiceKey{{Namespace: "shop", Name: "web"}, {Namespace: "shop", Name: "api"}} {
		m.Services[k] = &mesh.Service{Key: k, ClusterIPs: []string{"10.96.0." + strconv.Itoa(10+i)},
			Ports: []mesh.ServicePort{{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP1, TargetPort: 8080}}}
		m.Endpoints[k] = &mesh.ServiceEndpoints{Service: k, ByPort: map[string][]mesh.Endpoint{"http": {{
			Address: "10.0.0." + strconv.Itoa(10+i), Port: 8080, Ready: true, Serving: true, Zone: "a", Pod: k.Name + "-0",
		}}}}
	}
	api := mesh.ServiceKey{Namespace: "shop", Name: "api"}
	m.Profiles[mesh.ProfileKey{Namespace: "shop", Service: api}] = &mesh.Profile{
		Source: mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: api.FQDN("cluster.local")}, Service: api,
		Routes: []mesh.Route{{Name: "GET /items", Match: mesh.RequestMatch{Method: "GET", PathRegex: "/items"}}},
	}
	return m
}

// TestStandInSeriesAreEnvoys: every series the stand-in proxies serve as /stats/prometheus
// is one Envoy would serve for the same configuration, as telemetry/envoystats derives it
// from translate's output and the bootstrap's stats rules: the stand-in that
// TestRealPrometheus and TestSameTablesAsEmbedded scrape invents no name, label or bucket.
func TestStandInSeriesAreEnvoys(t *testing.T) {
	m := shopModel()
	for _, tg := range promsourcetest.ShopTraffic() {
		lbls := tg.Labels()
		t.Run(lbls[promsource.LabelPod], func(t *testing.T) {
			series := envoystatstest.ProxySeries(t, m, &mesh.Proxy{
				Kind: proxy.Envoy, Pod: lbls[promsource.LabelPod], Namespace: lbls[promsource.LabelNamespace], IP: "10.0.1.1",
				InboundPorts: []mesh.ProxyPort{{Name: "http", Port: 8080, Protocol: mesh.ProtocolHTTP1}},
				OpaquePorts:  mesh.DefaultOpaquePorts,
			}, translate.Options{}, envoystatstest.InUse)
			envoy := map[string]bool{}
			for _, s := range series {
				envoy[seriesKey(s.Name, s.Tags)] = true
			}

			rec := httptest.NewRecorder()
			tg.Handler(time.Now()).ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
			parser := expfmt.NewTextParser(model.UTF8Validation)
			families, err := parser.TextToMetricFamilies(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			served := 0
			for _, name := range slices.Sorted(maps.Keys(families)) {
				for _, metric := range families[name].GetMetric() {
					var tags []envoystats.Tag
					for _, lp := range metric.GetLabel() {
						tags = append(tags, envoystats.Tag{Name: lp.GetName(), Value: lp.GetValue()})
					}
					keys := []string{seriesKey(name, tags)}
					if h := metric.GetHistogram(); h != nil {
						keys = []string{seriesKey(name+"_sum", tags), seriesKey(name+"_count", tags), seriesKey(name+"_bucket", append(tags, envoystats.Tag{Name: "le", Value: "+Inf"}))}
						for _, bk := range h.GetBucket() {
							keys = append(keys, seriesKey(name+"_bucket", append(slices.Clone(tags), envoystats.Tag{Name: "le", Value: strconv.FormatFloat(bk.GetUpperBound(), 'f', -1, 64)})))
						}
					}
					for _, k := range keys {
						served++
						if !envoy[k] {
							t.Errorf("the stand-in serves %s, which Envoy would not", k)
						}
					}
				}
			}
			if served == 0 {
				t.Fatal("the stand-in serves nothing")
			}
		})
	}
}

func seriesKey(name string, tags []envoystats.Tag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = t.Name + "=" + strconv.Quote(t.Value)
	}
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}
