package envoystats

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// DefaultBuckets are Envoy's supported histogram buckets when the bootstrap sets no
// histogram_bucket_settings (source/common/stats/histogram_impl.h,
// HistogramSettingsImpl::defaultBuckets), in milliseconds for the *_time histograms.
var DefaultBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// Series is one Prometheus series a proxy's /stats/prometheus exposes: the metric name
// and its labels as `name="value"` pairs sorted by name (the identity Prometheus gives
// a series), without the target labels a scrape adds.
type Series struct {
	Name   string
	Labels string
	// Tags are the labels, sorted by name (le included for a bucket).
	Tags []Tag
	// Stat is the Envoy stat the series renders; Family the tag-extracted name the
	// series' metric family is named after.
	Stat   string
	Family string
}

// Render is what /stats/prometheus shows for stats (source/server/admin/
// prometheus_stats.cc, PrometheusStatsFormatter): every stat the rules keep, named
// "envoy_" + its tag-extracted name with every character outside [a-zA-Z0-9_] as "_",
// its tags as labels; a counter or gauge is one series, a histogram one _bucket series
// per supported bucket and +Inf, plus _sum and _count. Text readouts are shown only
// when asked for (text_readouts), which a scrape does not. Two stats that render to
// the same series are one series, as Prometheus stores them.
func Render(stats []Stat, rules *Rules) []Series {
	seen := map[[2]string]bool{}
	var out []Series
	add := func(name string, tags []Tag, st Stat, family string) {
		tags = sortedTags(tags)
		s := Series{Name: name, Labels: labelText(tags), Tags: tags, Stat: st.Name, Family: family}
		if k := [2]string{s.Name, s.Labels}; !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	for _, st := range stats {
		if !rules.Keeps(st.Name) {
			continue
		}
		family, tags := rules.Extract(st.Name)
		name := MetricName(family)
		if st.Type != Histogram {
			add(name, tags, st, family)
			continue
		}
		for _, le := range DefaultBuckets {
			add(name+"_bucket", append(slices.Clone(tags), Tag{"le", formatBound(le)}), st, family)
		}
		add(name+"_bucket", append(slices.Clone(tags), Tag{"le", "+Inf"}), st, family)
		add(name+"_sum", tags, st, family)
		add(name+"_count", tags, st, family)
	}
	slices.SortFunc(out, func(a, b Series) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Labels, b.Labels)) })
	return out
}

// MetricName is Envoy's Prometheus name for a tag-extracted stat name
// (PrometheusStatsFormatter::metricName and sanitizeName).
func MetricName(extracted string) string {
	return "envoy_" + sanitize(extracted)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// sortedTags are tags as Prometheus stores a series' labels: sanitised names, sorted.
func sortedTags(tags []Tag) []Tag {
	out := make([]Tag, len(tags))
	for i, t := range tags {
		out[i] = Tag{sanitize(t.Name), t.Value}
	}
	slices.SortFunc(out, func(a, b Tag) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func labelText(tags []Tag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = t.Name + "=" + strconv.Quote(t.Value)
	}
	return strings.Join(parts, ",")
}

// formatBound writes a bucket bound as Envoy does ("{:.32g}": 0.5, 1, 3600000).
func formatBound(le float64) string { return strconv.FormatFloat(le, 'f', -1, 64) }
