package envoystats

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// Rules are a bootstrap's stats_config as Envoy applies it: which stats exist at all
// (stats_matcher), and how each name is split into a tag-extracted name and tags
// (stats_tags).
type Rules struct {
	keep func(string) bool
	tags []tagRule
}

// Tag is one extracted tag: a Prometheus label on /stats/prometheus.
type Tag struct {
	Name, Value string
}

type tagRule struct {
	name string
	re   *regexp.Regexp // nil: a fixed_value tag
	// groups is the regex's number of capture groups: Envoy takes the value from the
	// second when there is one, even if it did not participate.
	groups int
	fixed  string
}

// NewRules reads a bootstrap's stats_config. It refuses what this stand-in does not
// model rather than give a count that would be wrong: Envoy's default tag rules
// (use_all_default_tags unset or true) and custom histogram buckets.
func NewRules(sc *metricsv3.StatsConfig) (*Rules, error) {
	if sc == nil {
		return nil, errors.New("envoystats: no stats_config (Envoy's default tag rules are not modelled)")
	}
	if sc.GetUseAllDefaultTags() == nil || sc.GetUseAllDefaultTags().GetValue() {
		return nil, errors.New("envoystats: stats_config.use_all_default_tags is not false (Envoy's default tag rules are not modelled)")
	}
	if len(sc.GetHistogramBucketSettings()) > 0 {
		return nil, errors.New("envoystats: stats_config.histogram_bucket_settings is not modelled")
	}
	r := &Rules{keep: func(string) bool { return true }}
	for i, t := range sc.GetStatsTags() {
		switch {
		case t.GetRegex() != "":
			// Envoy runs tag regexes with std::regex (ECMAScript) searching anywhere in the
			// name (source/common/stats/tag_extractor_impl.cc, TagExtractorStdRegexImpl):
			// for the constructs Weft's rules use (groups, lazy quantifiers, alternation,
			// \d, anchors) Go's leftmost-first search finds the same submatches.
			re, err := regexp.Compile(t.GetRegex())
			if err != nil {
				return nil, fmt.Errorf("envoystats: stats_config.stats_tags[%d].regex: %w", i, err)
			}
			r.tags = append(r.tags, tagRule{name: t.GetTagName(), re: re, groups: re.NumSubexp()})
		case t.GetFixedValue() != "":
			r.tags = append(r.tags, tagRule{name: t.GetTagName(), fixed: t.GetFixedValue()})
		default:
			return nil, fmt.Errorf("envoystats: stats_config.stats_tags[%d] (%s): a default tag rule by name is not modelled", i, t.GetTagName())
		}
	}
	m := sc.GetStatsMatcher()
	switch {
	case m == nil:
	case m.GetRejectAll():
		r.keep = func(string) bool { return false }
	case m.GetInclusionList() != nil:
		match, err := anyOf(m.GetInclusionList().GetPatterns(), "stats_matcher.inclusion_list")
		if err != nil {
			return nil, err
		}
		r.keep = match
	case m.GetExclusionList() != nil:
		match, err := anyOf(m.GetExclusionList().GetPatterns(), "stats_matcher.exclusion_list")
		if err != nil {
			return nil, err
		}
		r.keep = func(name string) bool { return !match(name) }
	}
	return r, nil
}

// anyOf is StatsMatcherImpl's list (source/common/stats/stats_matcher_impl.cc): a name
// matches when one StringMatcher matches the whole stat name
// (source/common/common/matchers.cc, StringMatcherImpl::match).
func anyOf(patterns []*matcherv3.StringMatcher, field string) (func(string) bool, error) {
	var matchers []func(string) bool
	for i, p := range patterns {
		m, err := stringMatcher(p)
		if err != nil {
			return nil, fmt.Errorf("envoystats: stats_config.%s.patterns[%d]: %w", field, i, err)
		}
		matchers = append(matchers, m)
	}
	return func(name string) bool {
		for _, m := range matchers {
			if m(name) {
				return true
			}
		}
		return false
	}, nil
}

func stringMatcher(p *matcherv3.StringMatcher) (func(string) bool, error) {
	fold := func(s string) string { return s }
	if p.GetIgnoreCase() {
		fold = strings.ToLower
	}
	switch p.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		want := fold(p.GetExact())
		return func(s string) bool { return fold(s) == want }, nil
	case *matcherv3.StringMatcher_Prefix:
		want := fold(p.GetPrefix())
		return func(s string) bool { return strings.HasPrefix(fold(s), want) }, nil
	case *matcherv3.StringMatcher_Suffix:
		want := fold(p.GetSuffix())
		return func(s string) bool { return strings.HasSuffix(fold(s), want) }, nil
	case *matcherv3.StringMatcher_Contains:
		want := fold(p.GetContains())
		return func(s string) bool { return strings.Contains(fold(s), want) }, nil
	case *matcherv3.StringMatcher_SafeRegex:
		// RE2, matched against the whole string (Regex::CompiledGoogleReMatcher::match is
		// RE2::FullMatch); Go's regexp is RE2.
		re, err := regexp.Compile(`^(?:` + p.GetSafeRegex().GetRegex() + `)$`)
		if err != nil {
			return nil, fmt.Errorf("safe_regex: %w", err)
		}
		return re.MatchString, nil
	}
	return nil, fmt.Errorf("%T is not modelled", p.GetMatchPattern())
}

// Keeps reports whether Envoy creates the stat at all: a stat the matcher rejects is a
// null stat, which no sink and no admin endpoint shows.
func (r *Rules) Keeps(name string) bool { return r.keep(name) }

// Extract splits a stat name as Envoy's TagProducerImpl does
// (source/common/stats/tag_producer_impl.cc, tag_extractor_impl.cc): every rule runs on
// the original name; a rule whose regex matches names a tag whose value is the second
// capture group if the regex has one, else the first, and the characters of the first
// group are removed from the name.
func (r *Rules) Extract(name string) (string, []Tag) {
	var remove []bool
	var tags []Tag
	for _, t := range r.tags {
		if t.re == nil {
			tags = append(tags, Tag{t.name, t.fixed})
			continue
		}
		m := t.re.FindStringSubmatchIndex(name)
		if m == nil || t.groups == 0 || m[2] < 0 {
			continue
		}
		value := name[m[2]:m[3]]
		if t.groups >= 2 {
			value = ""
			if m[4] >= 0 {
				value = name[m[4]:m[5]]
			}
		}
		tags = append(tags, Tag{t.name, value})
		if remove == nil {
			remove = make([]bool, len(name))
		}
		for i := m[2]; i < m[3]; i++ {
			remove[i] = true
		}
	}
	if remove == nil {
		return name, tags
	}
	var b strings.Builder
	for i := range len(name) {
		if !remove[i] {
			b.WriteByte(name[i])
		}
	}
	return b.String(), tags
}
