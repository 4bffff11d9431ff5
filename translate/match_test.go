package translate

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weftmesh/weft/mesh"
)

// request is a sample HTTP request for the equivalence tests.
type request struct {
	method, path, query string
}

func (r request) String() string {
	if r.query != "" {
		return r.method + " " + r.path + "?" + r.query
	}
	return r.method + " " + r.path
}

// linkerdMatches is the reference: Linkerd's meaning of a condition.
func linkerdMatches(m mesh.RequestMatch, r request) bool {
	if m.PathRegex != "" && !compiled("^(?:"+m.PathRegex+")$").MatchString(r.path) {
		return false
	}
	if m.Method != "" && m.Method != r.method {
		return false
	}
	for _, c := range m.All {
		if !linkerdMatches(c, r) {
			return false
		}
	}
	if len(m.Any) > 0 {
		ok := false
		for _, c := range m.Any {
			ok = ok || linkerdMatches(c, r)
		}
		if !ok {
			return false
		}
	}
	if m.Not != nil && linkerdMatches(*m.Not, r) {
		return false
	}
	return true
}

// envoyMatchesRequest evaluates a RouteMatch the way Envoy does: the path
// specifier sees the path without the query, header matchers see :path with
// it, an inverted matcher on a present header negates.
func envoyMatchesRequest(t testing.TB, m *routev3.RouteMatch, r request) bool {
	switch ps := m.PathSpecifier.(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(r.path, ps.Prefix) {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if !fullMatch(ps.SafeRegex.Regex, r.path) {
			return false
		}
	default:
		t.Fatalf("unexpected path specifier %T", ps)
	}
	headers := map[string]string{":method": r.method, ":path": r.path}
	if r.query != "" {
		headers[":path"] += "?" + r.query
	}
	for _, h := range m.Headers {
		v, present := headers[h.Name]
		if !present {
			t.Fatalf("header matcher on %q, which a request may lack", h.Name)
		}
		sm := h.GetStringMatch()
		var ok bool
		switch {
		case sm.GetSafeRegex() != nil:
			ok = fullMatch(sm.GetSafeRegex().Regex, v)
		case sm.GetExact() != "":
			ok = v == sm.GetExact()
		default:
			t.Fatalf("unexpected header matcher %v", h)
		}
		if ok == h.InvertMatch {
			return false
		}
	}
	return true
}

// grpcGoMatchesRequest evaluates a RouteMatch the way grpc-go does: the path
// regex is MatchString (unanchored) on the method path, and header matchers
// see only metadata, where neither :path nor :method is.
func grpcGoMatchesRequest(t testing.TB, m *routev3.RouteMatch, r request) bool {
	switch ps := m.PathSpecifier.(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(r.path, ps.Prefix) {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if !compiled(ps.SafeRegex.Regex).MatchString(r.path) {
			return false
		}
	}
	return len(m.Headers) == 0
}

var regexCache sync.Map

// compiled caches compiled regexes: the property tests match millions of
// times against a few dozen regexes.
func compiled(re string) *regexp.Regexp {
	if c, ok := regexCache.Load(re); ok {
		return c.(*regexp.Regexp)
	}
	c := regexp.MustCompile(re)
	regexCache.Store(re, c)
	return c
}

// fullMatch is RE2's FullMatch, which Envoy's safe_regex uses.
func fullMatch(re, s string) bool {
	return compiled("^(?:" + re + ")$").MatchString(s)
}

var (
	samplePathRegexes = []string{"/a", "/a.*", ".*b", "/a/[0-9]+", "/a|/b", `/a\?x`, ".*", "/c?", "/a/.*/x", "[^/]*"}
	sampleMethods     = []string{"GET", "POST", "PUT"}
	samplePaths       = []string{"/", "/a", "/a/1", "/a/x", "/a/y/x", "/b", "/ab", "/c", "/", "/x/b", "/a/12"}
	sampleQueries     = []string{"", "x", "b", "a=1&x"}
)

func sampleRequests() []request {
	var out []request
	for _, m := range append(sampleMethods, "DELETE") {
		for _, p := range samplePaths {
			for _, q := range sampleQueries {
				out = append(out, request{m, p, q})
			}
		}
	}
	return out
}

// randomMatch builds a random condition tree over the sample leaves.
func randomMatch(r *rand.Rand, depth int) mesh.RequestMatch {
	var m mesh.RequestMatch
	fields := 1 + r.IntN(2)
	for range fields {
		k := r.IntN(5)
		if depth <= 0 {
			k = r.IntN(2)
		}
		switch k {
		case 0:
			m.PathRegex = samplePathRegexes[r.IntN(len(samplePathRegexes))]
		case 1:
			m.Method = sampleMethods[r.IntN(len(sampleMethods))]
		case 2:
			for range 1 + r.IntN(3) {
				m.All = append(m.All, randomMatch(r, depth-1))
			}
		case 3:
			for range 1 + r.IntN(3) {
				m.Any = append(m.Any, randomMatch(r, depth-1))
			}
		case 4:
			n := randomMatch(r, depth-1)
			m.Not = &n
		}
	}
	return m
}

func describe(m mesh.RequestMatch) string {
	var parts []string
	if m.PathRegex != "" {
		parts = append(parts, fmt.Sprintf("path~%q", m.PathRegex))
	}
	if m.Method != "" {
		parts = append(parts, "method="+m.Method)
	}
	for _, list := range []struct {
		name string
		l    []mesh.RequestMatch
	}{{"all", m.All}, {"any", m.Any}} {
		if len(list.l) == 0 {
			continue
		}
		var sub []string
		for _, c := range list.l {
			sub = append(sub, describe(c))
		}
		parts = append(parts, list.name+"["+strings.Join(sub, ", ")+"]")
	}
	if m.Not != nil {
		parts = append(parts, "not("+describe(*m.Not)+")")
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func TestExpandMatchTable(t *testing.T) {
	get, post := mesh.RequestMatch{Method: "GET"}, mesh.RequestMatch{Method: "POST"}
	books := mesh.RequestMatch{PathRegex: "/books/[^/]*"}
	tests := []struct {
		name  string
		match mesh.RequestMatch
		want  []string // conjuncts, literals joined by " & "
	}{
		{"empty matches everything", mesh.RequestMatch{}, []string{""}},
		{"implicit all", mesh.RequestMatch{PathRegex: "/x", Method: "GET"}, []string{"path~/x & method=GET"}},
		{"any expands to one route per branch", mesh.RequestMatch{Any: []mesh.RequestMatch{get, post}},
			[]string{"method=GET", "method=POST"}},
		{"not of a path is a negated path", mesh.RequestMatch{Not: &books}, []string{"!path~/books/[^/]*"}},
		{"not of all is an any of nots (De Morgan)", mesh.RequestMatch{Not: &mesh.RequestMatch{All: []mesh.RequestMatch{books, get}}},
			[]string{"!path~/books/[^/]*", "!method=GET"}},
		{"not of any is an all of nots (De Morgan)", mesh.RequestMatch{Not: &mesh.RequestMatch{Any: []mesh.RequestMatch{get, post}}},
			[]string{"!method=GET & !method=POST"}},
		{"double negation cancels", mesh.RequestMatch{Not: &mesh.RequestMatch{Not: &books}}, []string{"path~/books/[^/]*"}},
		{"contradictory methods match nothing", mesh.RequestMatch{All: []mesh.RequestMatch{get, post}}, nil},
		{"x and not x matches nothing", mesh.RequestMatch{All: []mesh.RequestMatch{books, {Not: &books}}}, nil},
		{"a method implies every other method is absent", mesh.RequestMatch{Method: "GET", Not: &post}, []string{"method=GET"}},
		{"absorption drops implied branches", mesh.RequestMatch{Any: []mesh.RequestMatch{get, {All: []mesh.RequestMatch{get, books}}}},
			[]string{"method=GET"}},
		{"duplicate branches collapse", mesh.RequestMatch{Any: []mesh.RequestMatch{books, books}}, []string{"path~/books/[^/]*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := expandMatch(tt.match)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range d {
				var ls []string
				for _, l := range c {
					ls = append(ls, l.String())
				}
				got = append(got, strings.Join(ls, " & "))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("expandMatch(%s) = %q, want %q", describe(tt.match), got, tt.want)
			}
		})
	}
}

func TestExpandMatchBoundsGrowth(t *testing.T) {
	// not(any[all[a1,b1], all[a2,b2], ...]) has 2^n conjuncts.
	var branches []mesh.RequestMatch
	for i := range 8 {
		branches = append(branches, mesh.RequestMatch{All: []mesh.RequestMatch{
			{PathRegex: fmt.Sprintf("/a%d", i)}, {PathRegex: fmt.Sprintf("/b%d", i)},
		}})
	}
	_, err := expandMatch(mesh.RequestMatch{Not: &mesh.RequestMatch{Any: branches}})
	if err == nil {
		t.Fatal("expandMatch accepted a condition with 256 conjuncts")
	}
}

// TestExpansionAcceptsExactlyWhatLinkerdAccepts is the property test: for
// random condition trees, the Envoy routes produced accept exactly the
// sample requests the tree accepts, query strings included.
func TestExpansionAcceptsExactlyWhatLinkerdAccepts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	reqs := sampleRequests()
	checked := 0
	for range 3000 {
		m := randomMatch(r, 3)
		d, err := expandMatch(m)
		if err != nil {
			continue // too many conjuncts: the profile is refused, tested above
		}
		matches, err := envoyMatches(d)
		if err != nil {
			t.Fatalf("%s: %v", describe(m), err)
		}
		for _, req := range reqs {
			want := linkerdMatches(m, req)
			got := false
			for _, rm := range matches {
				if envoyMatchesRequest(t, rm, req) {
					got = true
					break
				}
			}
			if got != want {
				t.Fatalf("condition %s, request %s: Envoy routes match=%v, Linkerd match=%v\nconjuncts: %v", describe(m), req, got, want, d)
			}
		}
		checked++
	}
	if checked < 2000 {
		t.Fatalf("only %d trees were checked; the generator produces too many oversized trees", checked)
	}
}

// TestProxylessExpansionMatchesGRPCCalls checks the grpc-go form: for gRPC
// calls (always POST, no query), the routes accept exactly what the tree
// accepts, or the profile is refused for proxyless clients.
func TestProxylessExpansionMatchesGRPCCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	refused, checked := 0, 0
	for range 3000 {
		m := randomMatch(r, 3)
		d, err := expandMatch(m)
		if err != nil {
			continue
		}
		pd, err := forProxyless(d)
		if err != nil {
			refused++
			continue
		}
		matches, err := envoyMatches(pd)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range samplePaths {
			req := request{method: "POST", path: p}
			want := linkerdMatches(m, req)
			got := false
			for _, rm := range matches {
				if grpcGoMatchesRequest(t, rm, req) {
					got = true
					break
				}
			}
			if got != want {
				t.Fatalf("condition %s, call %s: grpc-go routes match=%v, Linkerd match=%v", describe(m), req, got, want)
			}
		}
		checked++
	}
	if checked < 1000 || refused == 0 {
		t.Fatalf("checked %d, refused %d: the generator does not exercise both outcomes", checked, refused)
	}
}

func TestPathHeaderRegexIgnoresQuery(t *testing.T) {
	tests := []struct {
		re    string
		value string // the :path header
		want  bool
	}{
		{".*x", "/a?x", false}, // the path "/a" does not end in x
		{".*x", "/ax?y", true},
		{"/a", "/a", true},
		{"/a", "/a?", true},
		{"/a", "/ab", false},
		{`/a\?x`, "/a?x", false}, // a path cannot hold a raw '?'
		{"/[^/]*", "/b?c/d", true},
		{"/[?a]", "/a", true},
		{"/[?a]", "/??", false},
		{"(?s:.)*", "/x?y", true},
	}
	for _, tt := range tests {
		re, err := pathHeaderRegex(tt.re)
		if err != nil {
			t.Fatal(err)
		}
		if got := regexp.MustCompile(re).MatchString(tt.value); got != tt.want {
			t.Errorf("pathHeaderRegex(%q) = %q on %q: %v, want %v", tt.re, re, tt.value, got, tt.want)
		}
	}
}

func TestPrintRegexKeepsMeaning(t *testing.T) {
	regexes := []string{
		`/books/[^/]*`, `(?i)abc`, `a{2,3}`, `a{2,}`, `a{2}`, `(a|b)*?c`, `\d+`, `[[:alpha:]]+`, `\pL+`,
		`x*y+z?`, `^a$`, `(?m)^a$`, `\bfoo\B`, `a.b`, `(?s)a.b`, `\Qa.b\E`, `[a-c-]`, `[\]\[^]`,
		`\x{263a}`, `(?U)a+b`, `(?:ab)+`, `(?P<x>ab|cd)e`, `[^a]`, `[\x00-\x{10FFFF}]`, `a|`, `()`,
		`\.\+\*\?\(\)\|\[\]\{\}\^\$\\`, "\t\n", `(?i)[a-z]+`, `[^\n]`, `a*?b`,
	}
	samples := []string{"", "a", "aa", "aaa", "ab", "abc", "ABC", "a.b", "a\nb", "/books/1", "/books/1/2", "foo",
		"foo bar", "☺", "cd", "cde", "abe", "xyyz", "b", "]", "[", "^", "-", "12", ".+*?()|[]{}^$\\", "\t\n", "Ab", "\n"}
	for _, re := range regexes {
		parsed, err := syntax.Parse(re, syntax.Perl)
		if err != nil {
			t.Fatalf("%q: %v", re, err)
		}
		var b strings.Builder
		printRegex(&b, parsed)
		printed, err := regexp.Compile(b.String())
		if err != nil {
			t.Fatalf("printRegex(%q) = %q, which does not compile: %v", re, b.String(), err)
		}
		orig := regexp.MustCompile(re)
		for _, s := range samples {
			if got, want := printed.FindStringIndex(s), orig.FindStringIndex(s); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("printRegex(%q) = %q finds %v in %q, original finds %v", re, b.String(), got, s, want)
			}
		}
	}
}
