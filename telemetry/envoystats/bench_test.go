package envoystats_test

import (
	"fmt"
	"testing"

	"github.com/weftmesh/weft/telemetry/envoystats"
	"github.com/weftmesh/weft/telemetry/envoystats/envoystatstest"
)

// BenchmarkSeriesPerProxy measures the series one sidecar exposes to a Prometheus
// (`go test -bench SeriesPerProxy -run '^$' ./telemetry/envoystats`): for 10, 100 and
// 2,000 services, without and with mTLS and 3-route profiles, at rest and in use (2xx
// and 5xx seen everywhere), it reports series/proxy, the stats Envoy would create
// without the matcher (stats/proxy), and what one more service (series/service), one more
// route on every service's profile (series/route) and one more Envoy worker thread
// (series/worker) cost. The time per op is the stand-in's, not Envoy's.
func BenchmarkSeriesPerProxy(b *testing.B) {
	for _, services := range []int{10, 100, 2000} {
		for _, s := range []envoystatstest.Shape{{Services: services}, {Services: services, Routes: 3, MTLS: true}} {
			for _, use := range []struct {
				name string
				tr   *envoystats.Traffic
			}{{"at-rest", nil}, {"in-use", envoystatstest.InUse}} {
				b.Run(fmt.Sprintf("%s/%s", s, use.name), func(b *testing.B) {
					p, rules := s.ProxyConfig(b)
					count := func(p envoystats.Proxy) int {
						stats, err := envoystats.Enumerate(p, use.tr)
						if err != nil {
							b.Fatal(err)
						}
						return len(envoystats.Render(stats, rules))
					}
					moreServices, moreRoutes := s, s
					moreServices.Services++
					moreRoutes.Routes++
					withService, withRoutes := len(moreServices.Series(b, use.tr)), len(moreRoutes.Series(b, use.tr))
					moreWorkers := p
					moreWorkers.Workers = 3
					withWorker := count(moreWorkers)
					var stats []envoystats.Stat
					var series []envoystats.Series
					for b.Loop() {
						var err error
						if stats, err = envoystats.Enumerate(p, use.tr); err != nil {
							b.Fatal(err)
						}
						series = envoystats.Render(stats, rules)
					}
					b.ReportMetric(float64(len(series)), "series/proxy")
					b.ReportMetric(float64(len(stats)), "stats/proxy")
					b.ReportMetric(float64(withService-len(series)), "series/service")
					b.ReportMetric(float64(withRoutes-len(series))/float64(s.Services), "series/route")
					b.ReportMetric(float64(withWorker-len(series)), "series/worker")
				})
			}
		}
	}
}
