// Package promsourcetest stands in for what a Prometheus would hold after scraping a
// mesh's Envoy proxies, for tests of promsource and of what shows its tables (the
// dashboard): stand-in proxies render Envoy's Prometheus text format, a scrape loop
// parses it as Prometheus does, and Prometheus' own PromQL engine and TSDB answer.
package promsourcetest

import (
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	promclient "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/telemetry/envoystats"
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
var envoyBuckets = envoystats.DefaultBuckets

// series is one stat, by its tag-extracted Envoy name ("http.downstream_rq"), and its
// tags in Envoy's Prometheus rendering, sorted.
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
				fmt.Fprintf(w, "# TYPE %s %s\n", envoystats.MetricName(s.name), typ)
				last = s.name
			}
			fmt.Fprintf(w, "%s{%s} %g\n", envoystats.MetricName(s.name), s.labels, m[s])
		}
	}
	byName(p.counters, "counter")
	byName(p.gauges, "gauge")
	var last string
	for _, s := range slices.SortedFunc(maps.Keys(p.histograms), compareSeries) {
		if s.name != last {
			fmt.Fprintf(w, "# TYPE %s histogram\n", envoystats.MetricName(s.name))
			last = s.name
		}
		name := envoystats.MetricName(s.name)
		h := p.histograms[s]
		for i, le := range envoyBuckets {
			fmt.Fprintf(w, "%s_bucket{%s,le=\"%g\"} %g\n", name, s.labels, le, h[i])
		}
		fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %g\n", name, s.labels, h[len(envoyBuckets)])
		fmt.Fprintf(w, "%s_sum{%s} %g\n", name, s.labels, h[len(envoyBuckets)+1])
		fmt.Fprintf(w, "%s_count{%s} %g\n", name, s.labels, h[len(envoyBuckets)])
	}
}

// families renders the same stats as Envoy 1.40's metrics_service sink streams them
// (envoy.service.metrics.v3.StreamMetricsMessage, emit_tags_as_labels: the tag-extracted
// name, the tags as labels; cumulative counters; histograms with Envoy's supported
// buckets, no +Inf bucket; source/extensions/stat_sinks/metrics_service/grpc_metrics_service_impl.cc),
// stamped at.
func (p *standInProxy) families(at time.Time) []*promclient.MetricFamily {
	ts := proto.Int64(at.UnixMilli())
	byName := map[string]*promclient.MetricFamily{}
	family := func(name string, typ promclient.MetricType) *promclient.MetricFamily {
		f := byName[name]
		if f == nil {
			f = &promclient.MetricFamily{Name: proto.String(name), Type: typ.Enum()}
			byName[name] = f
		}
		return f
	}
	for s, v := range p.counters {
		f := family(s.name, promclient.MetricType_COUNTER)
		f.Metric = append(f.Metric, &promclient.Metric{Label: labelPairs(s.labels), Counter: &promclient.Counter{Value: proto.Float64(v)}, TimestampMs: ts})
	}
	for s, v := range p.gauges {
		f := family(s.name, promclient.MetricType_GAUGE)
		f.Metric = append(f.Metric, &promclient.Metric{Label: labelPairs(s.labels), Gauge: &promclient.Gauge{Value: proto.Float64(v)}, TimestampMs: ts})
	}
	for s, h := range p.histograms {
		f := family(s.name, promclient.MetricType_HISTOGRAM)
		hist := &promclient.Histogram{SampleCount: proto.Uint64(uint64(h[len(envoyBuckets)])), SampleSum: proto.Float64(h[len(envoyBuckets)+1])}
		for i, le := range envoyBuckets {
			hist.Bucket = append(hist.Bucket, &promclient.Bucket{UpperBound: proto.Float64(le), CumulativeCount: proto.Uint64(uint64(h[i]))})
		}
		f.Metric = append(f.Metric, &promclient.Metric{Label: labelPairs(s.labels), Histogram: hist, TimestampMs: ts})
	}
	var out []*promclient.MetricFamily
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[name])
	}
	return out
}

var labelPair = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*")`)

func labelPairs(labels string) []*promclient.LabelPair {
	var out []*promclient.LabelPair
	for _, m := range labelPair.FindAllStringSubmatch(labels, -1) {
		v, err := strconv.Unquote(m[2])
		if err != nil {
			panic(fmt.Sprintf("stand-in label %s: %v", m[0], err)) // labels are written by newSeries with %q
		}
		out = append(out, &promclient.LabelPair{Name: proto.String(m[1]), Value: proto.String(v)})
	}
	return out
}

func compareSeries(a, b series) int {
	return strings.Compare(a.name+"{"+a.labels, b.name+"{"+b.labels)
}
