// Package promsourcetest stands in for what a Prometheus would hold after scraping a
// mesh's Envoy proxies, for tests of promsource and of what shows its tables (the
// dashboard): stand-in proxies render Envoy's Prometheus text format, a scrape loop
// parses it as Prometheus does, and Prometheus' own PromQL engine and TSDB answer.
package promsourcetest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// standInProxy stands in for one Envoy 1.40 proxy's admin endpoint /stats/prometheus:
// it renders Envoy's Prometheus text format (source/server/admin/prometheus_stats.cc:
// "envoy_" + the tag-extracted stat name with dots as underscores, tags as labels,
// counters without a _total suffix, histograms in milliseconds with Envoy's default
// supported buckets from source/common/stats/histogram_impl.h) for the stats
// injector/bootstrap/stats.go keeps. There is no Envoy here; this is a stand-in.
type standInProxy struct {
	counters map[series]float64
	gauges   map[series]float64
	// histograms hold cumulative bucket counts per le, in the order of envoyBuckets.
	histograms map[series][]float64
}

// envoyBuckets are Envoy's default histogram buckets (histogram_bucket_settings unset).
var envoyBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// series is one metric name and its labels in Envoy's rendering, sorted.
type series struct {
	name   string
	labels string // `a="x",b="y"`
}

func newSeries(name string, labels map[string]string) series {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return series{name, strings.Join(parts, ",")}
}

func newStandInProxy() *standInProxy {
	return &standInProxy{counters: map[series]float64{}, gauges: map[series]float64{}, histograms: map[series][]float64{}}
}

// observe adds n requests of latency ms to a histogram.
func (p *standInProxy) observe(s series, ms float64, n float64) {
	h := p.histograms[s]
	if h == nil {
		h = make([]float64, len(envoyBuckets)+2) // buckets, +Inf, sum
		p.histograms[s] = h
	}
	for i, le := range envoyBuckets {
		if ms <= le {
			h[i] += n
		}
	}
	h[len(envoyBuckets)] += n
	h[len(envoyBuckets)+1] += ms * n
}

func (p *standInProxy) render(w io.Writer) {
	byName := func(m map[series]float64, typ string) {
		var last string
		for _, s := range slices.SortedFunc(maps.Keys(m), compareSeries) {
			if s.name != last {
				fmt.Fprintf(w, "# TYPE %s %s\n", s.name, typ)
				last = s.name
			}
			fmt.Fprintf(w, "%s{%s} %g\n", s.name, s.labels, m[s])
		}
	}
	byName(p.counters, "counter")
	byName(p.gauges, "gauge")
	var last string
	for _, s := range slices.SortedFunc(maps.Keys(p.histograms), compareSeries) {
		if s.name != last {
			fmt.Fprintf(w, "# TYPE %s histogram\n", s.name)
			last = s.name
		}
		h := p.histograms[s]
		for i, le := range envoyBuckets {
			fmt.Fprintf(w, "%s_bucket{%s,le=\"%g\"} %g\n", s.name, s.labels, le, h[i])
		}
		fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %g\n", s.name, s.labels, h[len(envoyBuckets)])
		fmt.Fprintf(w, "%s_sum{%s} %g\n", s.name, s.labels, h[len(envoyBuckets)+1])
		fmt.Fprintf(w, "%s_count{%s} %g\n", s.name, s.labels, h[len(envoyBuckets)])
	}
}

func compareSeries(a, b series) int {
	return strings.Compare(a.name+"{"+a.labels, b.name+"{"+b.labels)
}
