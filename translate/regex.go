package translate

import (
	"fmt"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"

	"github.com/weftmesh/weft/profiles"
)

// anchoredPathRegex is Linkerd's reading of pathRegex: the whole path must
// match. The group keeps an alternation (a|b) inside the anchors.
func anchoredPathRegex(re string) string { return "^(?:" + re + ")$" }

// pathHeaderRegex matches the :path header (which, unlike the path Envoy's
// path specifier sees, still carries the query string) exactly when the path
// before the query matches re. A path never holds a raw '?', so every part of
// re that could match a '?' is narrowed to exclude it; otherwise `.*x` would
// match "/a?x" through the query although the path "/a" does not match.
func pathHeaderRegex(re string) (string, error) {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return "", err
	}
	body := re
	if excludeQuestionMark(parsed) {
		// syntax.Regexp.String is slow on large classes such as [^/]
		// (it checks case folding rune by rune); printRegex is linear.
		var b strings.Builder
		printRegex(&b, parsed)
		body = b.String()
	}
	return "^(?:" + body + `)(?:\?.*)?$`, nil
}

// excludeQuestionMark rewrites re in place so it cannot match '?' and reports
// whether anything changed.
func excludeQuestionMark(re *syntax.Regexp) bool {
	changed := false
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r == '?' {
				*re = syntax.Regexp{Op: syntax.OpNoMatch}
				return true
			}
		}
	case syntax.OpCharClass:
		if out, removed := removeRune(re.Rune, '?'); removed {
			changed = true
			if len(out) == 0 {
				*re = syntax.Regexp{Op: syntax.OpNoMatch}
			} else {
				re.Rune = out
			}
		}
	case syntax.OpAnyChar:
		*re = syntax.Regexp{Op: syntax.OpCharClass, Rune: []rune{0, '?' - 1, '?' + 1, unicode.MaxRune}}
		return true
	case syntax.OpAnyCharNotNL:
		*re = syntax.Regexp{Op: syntax.OpCharClass, Rune: []rune{0, '\n' - 1, '\n' + 1, '?' - 1, '?' + 1, unicode.MaxRune}}
		return true
	}
	for _, sub := range re.Sub {
		if excludeQuestionMark(sub) {
			changed = true
		}
	}
	return changed
}

// removeRune takes r out of a sorted list of inclusive rune ranges.
func removeRune(ranges []rune, r rune) ([]rune, bool) {
	out := make([]rune, 0, len(ranges)+2)
	removed := false
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if r < lo || r > hi {
			out = append(out, lo, hi)
			continue
		}
		removed = true
		if lo <= r-1 {
			out = append(out, lo, r-1)
		}
		if r+1 <= hi {
			out = append(out, r+1, hi)
		}
	}
	return out, removed
}

// checkRegex reports a regex Envoy (RE2) would refuse: one that does not
// parse, or whose RE2 program (estimated as profiles validation does) is
// over the bound profiles validation applies to pathRegex as written.
// Translation anchors regexes and widens them for the :path header, which
// makes them a little larger than what validation saw, so the emitted form
// is checked again and a profile whose regex outgrew the bound is skipped
// with an error instead of NACKed (Envoy refuses the whole
// RouteConfiguration).
func checkRegex(re string) error {
	size, err := profiles.RE2ProgramSize(re)
	if err != nil {
		return err
	}
	if size > profiles.MaxRegexProgramSize {
		return fmt.Errorf("regex %q has an RE2 program size of %d, more than Envoy's limit of %d", re, size, profiles.MaxRegexProgramSize)
	}
	return nil
}

// printRegex writes re in RE2 syntax. Captures become plain groups (only
// matching matters here) and every class is written out as ranges.
func printRegex(b *strings.Builder, re *syntax.Regexp) {
	switch re.Op {
	case syntax.OpNoMatch:
		b.WriteString(`[^\x00-\x{10FFFF}]`)
	case syntax.OpEmptyMatch:
		b.WriteString(`(?:)`)
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			b.WriteString(`(?i:`)
		}
		for _, r := range re.Rune {
			writeRune(b, r, false)
		}
		if re.Flags&syntax.FoldCase != 0 {
			b.WriteString(`)`)
		}
	case syntax.OpCharClass:
		printClass(b, re.Rune)
	case syntax.OpAnyCharNotNL:
		b.WriteString(`[^\n]`)
	case syntax.OpAnyChar:
		b.WriteString(`(?s:.)`)
	case syntax.OpBeginLine:
		b.WriteString(`(?m:^)`)
	case syntax.OpEndLine:
		b.WriteString(`(?m:$)`)
	case syntax.OpBeginText:
		b.WriteString(`\A`)
	case syntax.OpEndText:
		b.WriteString(`\z`)
	case syntax.OpWordBoundary:
		b.WriteString(`\b`)
	case syntax.OpNoWordBoundary:
		b.WriteString(`\B`)
	case syntax.OpCapture:
		b.WriteString(`(?:`)
		printRegex(b, re.Sub[0])
		b.WriteString(`)`)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		printAtom(b, re.Sub[0])
		switch re.Op {
		case syntax.OpStar:
			b.WriteString(`*`)
		case syntax.OpPlus:
			b.WriteString(`+`)
		case syntax.OpQuest:
			b.WriteString(`?`)
		default:
			b.WriteString(`{` + strconv.Itoa(re.Min))
			switch {
			case re.Max == -1:
				b.WriteString(`,`)
			case re.Max != re.Min:
				b.WriteString(`,` + strconv.Itoa(re.Max))
			}
			b.WriteString(`}`)
		}
		if re.Flags&syntax.NonGreedy != 0 {
			b.WriteString(`?`)
		}
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if sub.Op == syntax.OpAlternate {
				b.WriteString(`(?:`)
				printRegex(b, sub)
				b.WriteString(`)`)
				continue
			}
			printRegex(b, sub)
		}
	case syntax.OpAlternate:
		for i, sub := range re.Sub {
			if i > 0 {
				b.WriteString(`|`)
			}
			printRegex(b, sub)
		}
	default:
		// Every op regexp/syntax produces is handled above; a new one must
		// not silently change meaning, so it matches nothing.
		b.WriteString(`[^\x00-\x{10FFFF}]`)
	}
}

// printAtom writes re so that a following quantifier applies to all of it.
func printAtom(b *strings.Builder, re *syntax.Regexp) {
	switch {
	case re.Op == syntax.OpLiteral && len(re.Rune) == 1 && re.Flags&syntax.FoldCase == 0,
		re.Op == syntax.OpCharClass, re.Op == syntax.OpAnyCharNotNL, re.Op == syntax.OpCapture:
		printRegex(b, re)
	default:
		b.WriteString(`(?:`)
		printRegex(b, re)
		b.WriteString(`)`)
	}
}

// printClass writes a class from its sorted ranges, negated when that is
// shorter ([^/?] rather than two ranges up to U+10FFFF).
func printClass(b *strings.Builder, ranges []rune) {
	if len(ranges) == 2 && ranges[0] == 0 && ranges[1] == unicode.MaxRune {
		b.WriteString(`(?s:.)`) // everything: [^] is not RE2
		return
	}
	if len(ranges) > 2 && ranges[0] == 0 && ranges[len(ranges)-1] == unicode.MaxRune {
		b.WriteString(`[^`)
		for i := 1; i+2 < len(ranges); i += 2 {
			writeRange(b, ranges[i]+1, ranges[i+1]-1)
		}
		b.WriteString(`]`)
		return
	}
	b.WriteString(`[`)
	for i := 0; i+1 < len(ranges); i += 2 {
		writeRange(b, ranges[i], ranges[i+1])
	}
	b.WriteString(`]`)
}

func writeRange(b *strings.Builder, lo, hi rune) {
	writeRune(b, lo, true)
	if hi > lo {
		if hi > lo+1 {
			b.WriteString(`-`)
		}
		writeRune(b, hi, true)
	}
}

// writeRune writes r escaped for RE2, inside a class or out of one.
func writeRune(b *strings.Builder, r rune, inClass bool) {
	switch {
	case r == '\n':
		b.WriteString(`\n`)
	case r == '\t':
		b.WriteString(`\t`)
	case r == '\r':
		b.WriteString(`\r`)
	case r < 0x20 || r == 0x7f || r > unicode.MaxASCII:
		b.WriteString(`\x{` + strconv.FormatInt(int64(r), 16) + `}`)
	case inClass && strings.ContainsRune(`\^-[]`, r):
		b.WriteString(`\` + string(r))
	case !inClass && strings.ContainsRune(`\.+*?()|[]{}^$`, r):
		b.WriteString(`\` + string(r))
	default:
		b.WriteRune(r)
	}
}
