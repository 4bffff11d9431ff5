package profiles

import "testing"

// re2Measured are RE2::ProgramSize() values measured with libre2
// 20220601 (Debian bookworm's libre2-dev) by this program, which compiles
// each line the way Envoy does (default options, RE2::Quiet):
//
//	#include <re2/re2.h>
//	#include <iostream>
//	int main() {
//	  std::string line;
//	  while (std::getline(std::cin, line)) {
//	    re2::RE2 re(line, re2::RE2::Quiet);
//	    std::cout << (re.ok() ? re.ProgramSize() : -1) << "\t" << line << "\n";
//	  }
//	}
//
// (g++ ps.cc -lre2). Newer RE2 releases compile the same way; if Envoy's
// RE2 ever diverges, re-measure and the test below says by how much.
var re2Measured = []struct {
	size int
	re   string
}{
	{6, `[a-zA-Z0-9]`},
	{5, `[a-z]`},
	{5, `[a-zA-Z]`},
	{9, `[a-zA-Z0-9_-]+`},
	{5, `[ab]`},
	{5, `[abc]`},
	{7, `[ace]`},
	{8, `\w+`},
	{7, `\s`},
	{14, `\S`},
	{12, `[^a-z]`},
	{12, `[^/]`},
	{12, `.`},
	{11, `(?s).`},
	{7, `(?i)abc`},
	{8, `(?i)k`},
	{7, `(?i)s`},
	{14, `(?i)books`},
	{17, `(?i)/api/k8s`},
	{6, `é`},
	{6, `[à-ÿ]`},
	{8, `[\x{100}-\x{200}]`},
	{1197, `\p{L}`},
	{237, `\pN`},
	{9, `[α-ω]+`},
	{13, `/books/\d+`},
	{18, `/books/[0-9]+/edit`},
	{4, `^/books$`},
	{29, `/(books|authors)/[^/]+`},
	{11, `/v1/(?:a|b|c|d)/x`},
	{12, `(a|bc|def)`},
	{10, `a*b+c?`},
	{12, `a{2,5}`},
	{22, `/books/(\d+)/(\w+)`},
	{5, `x|y|z`},
	{11, `foo|bar|baz`},
	{45, `/api/v[0-9]+/(users|orders)/[^/]+(/items)?`},
	{13, `[^/]+`},
	{33, `[^/]+/[^/]+/[^/]+`},
	{17, `.*\.json`},
	{66, `\p{Greek}`},
	{81, `\p{Han}`},
	{794, `\p{Lu}`},
	{38, `\p{Cyrillic}+`},
	{6, `[\x{80}-\x{7FF}]`},
	{9, `[\x{800}-\x{FFFF}]`},
	{12, `[\x{10000}-\x{10FFFF}]`},
	{5, `[^\x{80}-\x{10FFFF}]`},
	{20, `[^\x{100}]`},
	{8, `[\x{100}\x{200}\x{300}]`},
	{6, `[éèêë]`},
	{16, `(?i)straße`},
	{11, `(?i)[a-z]+`},
	{6, `(?i)ǅ`},
	{90, `\p{Nd}`},
	{1201, `[^\p{L}]`},
	{1206, `/books/[\p{L}\d]+`},
	{19, `/café/[^/]*`},
	{9, `[\x{4E00}-\x{9FFF}]`},
	{6, `[\x{0400}-\x{04FF}]`},
	{7, `[☃-☕]`},
	{13, `^/books/[^/]+$`},
	{4, `^/api`},
	{11, `(?i)^/books`},
	{15, `^/books|^/authors`},
	{4, `^a`},
	{6, `^/books/\d+`},
	{10, `^(/books)`},
	{10, `/books$`},
	{5, `/`},
	{17, `/api/.*`},
	{13, `/api/list`},
	{13, `/api/vote`},
	{12, `/authors`},
	{21, `/authors/[^/]*`},
	{28, `/authors/[^/]*/delete`},
	{26, `/authors/[^/]*/edit`},
	{26, `/authors/[^/]*\.json`},
	{17, `/authors\.json`},
	{10, `/books`},
	{19, `/books/[^/]*`},
	{26, `/books/[^/]*/delete`},
	{24, `/books/[^/]*/edit`},
	{24, `/books/[^/]*\.json`},
	{15, `/books\.json`},
	{46, `/emojivoto\.v1\.EmojiService/FindByShortcode`},
	{38, `/emojivoto\.v1\.EmojiService/ListAll`},
	{39, `/emojivoto\.v1\.VotingService/Results`},
	{44, `/emojivoto\.v1\.VotingService/VoteDoughnut`},
	{40, `/emojivoto\.v1\.VotingService/VotePoop`},
	{51, `/api/v1/namespaces/[^/]+/pods/[^/]+/log`},
	{34, `/[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+`},
	{71, `/users/[^/]+/orders/[^/]+/items/[^/]+/reviews/[^/]+`},
	{86, `/emojivoto\.v1\.VotingService/VoteManInBusinessSuitLevitatingWithAVeryLongNameIndeed`},
}

func TestRE2ProgramSizeAgainstRE2(t *testing.T) {
	exact := 0
	for _, m := range re2Measured {
		got, err := RE2ProgramSize(m.re)
		if err != nil {
			t.Errorf("%s: %v", m.re, err)
			continue
		}
		// Never below RE2 (a regex we accept must compile in Envoy), and
		// not far above it (we must not refuse much that Envoy accepts).
		if got < m.size {
			t.Errorf("RE2ProgramSize(%s) = %d, below RE2's %d: Envoy could refuse what we accept", m.re, got, m.size)
		}
		if limit := m.size + m.size/8 + 1; got > limit {
			t.Errorf("RE2ProgramSize(%s) = %d, RE2 says %d: more than %d is too pessimistic", m.re, got, m.size, limit)
		}
		if got == m.size {
			exact++
		}
	}
	t.Logf("%d of %d estimates exact", exact, len(re2Measured))
}

func TestRE2ProgramSizeLimit(t *testing.T) {
	tests := []struct {
		re string
		ok bool
	}{
		// 86 in RE2: a long gRPC method name still fits.
		{`/emojivoto\.v1\.VotingService/VoteManInBusinessSuitLevitatingWithAVeryLongNameIndeed`, true},
		// 1197 in RE2: Unicode letter classes are huge in UTF-8.
		{`/books/\p{L}+`, false},
		{`/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+`, false},
		{`/a{200}`, false},
	}
	for _, tt := range tests {
		err := checkPathRegex(tt.re)
		if (err == nil) != tt.ok {
			t.Errorf("checkPathRegex(%s) = %v, want ok=%v", tt.re, err, tt.ok)
		}
	}
}

// FuzzRE2ProgramSize: any regex Go parses gets an estimate, without panics,
// at least RE2's fixed instructions, and regexes that differ only by a
// literal suffix are ordered (a longer literal never costs less).
func FuzzRE2ProgramSize(f *testing.F) {
	for _, m := range re2Measured {
		f.Add(m.re)
	}
	f.Fuzz(func(t *testing.T, re string) {
		n, err := RE2ProgramSize(re)
		if err != nil {
			return
		}
		if n < 2 {
			t.Fatalf("RE2ProgramSize(%q) = %d", re, n)
		}
		if m, err := RE2ProgramSize("(?:" + re + ")x"); err == nil && m < n {
			t.Fatalf("appending a literal made %q cheaper: %d < %d", re, m, n)
		}
	})
}
