package profiles

import (
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// RE2ProgramSize estimates what RE2's RE2::ProgramSize() reports for a
// regex, which is what Envoy compares with re2.max_program_size.error_level
// (source/common/common/regex.cc). Go's regexp/syntax parses the same
// language as RE2, but its compiled program is far smaller for character
// classes: Go matches runes, RE2 compiles every class into UTF-8 byte-range
// instructions (\p{L} is 3 Go instructions and about 1,200 RE2 ones). So the
// estimate walks the parsed regex and counts the way RE2's compiler does:
//
//   - 4 fixed instructions: fail, match and the unanchored `.*?` prefix;
//   - one instruction per ASCII byte range of a class (ranges inside A-Z are
//     free when the class folds ASCII case: RE2 marks the a-z range foldcase);
//   - the non-ASCII part of a class as a trie of UTF-8 byte ranges sharing
//     common prefixes and suffixes, with 0x80-0x10FFFF (as in `.` and
//     [^/]) a fixed 6 instructions;
//   - 2 per capture group, 1 per repetition (* + ?) and per empty-width
//     assertion (^ $ \b); alternation costs nothing once RE2 flattens it.
//
// Checked against libre2 on a corpus (see regexsize_test.go): exact for most
// regexes, otherwise slightly above RE2 (never below in that corpus), so a
// regex accepted here is accepted by Envoy; one refused here may, rarely, be
// a few instructions under Envoy's limit.
func RE2ProgramSize(re string) (int, error) {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return 0, err
	}
	simple := parsed.Simplify()
	if simple.Op == syntax.OpAlternate && allAnchored(simple.Sub) {
		// ^a|^b is anchored as a whole, like ^(?:a|b).
		n := 2
		for _, alt := range simple.Sub {
			if alt.Op == syntax.OpConcat {
				for _, sub := range alt.Sub[1:] {
					n += re2Cost(sub)
				}
			}
		}
		return n, nil
	}
	var subs []*syntax.Regexp
	switch simple.Op {
	case syntax.OpConcat:
		subs = simple.Sub
	default:
		subs = []*syntax.Regexp{simple}
	}
	if subs[0].Op != syntax.OpBeginText {
		// fail, match and the unanchored `.*?` prefix.
		return 4 + re2Cost(simple), nil
	}
	rest := subs[1:]
	if len(rest) > 0 && rest[0].Op == syntax.OpLiteral && rest[0].Flags&syntax.FoldCase == 0 {
		// RE2 matches a literal after ^ as a prefix and compiles only
		// the rest (RE2::Init, RequiredPrefix).
		rest = rest[1:]
		n := 4
		for _, sub := range rest {
			n += re2Cost(sub)
		}
		return n, nil
	}
	// Anchored: no unanchored prefix, and ^ becomes a flag.
	n := 2
	for _, sub := range rest {
		n += re2Cost(sub)
	}
	return n, nil
}

func allAnchored(alts []*syntax.Regexp) bool {
	for _, alt := range alts {
		if alt.Op != syntax.OpBeginText && (alt.Op != syntax.OpConcat || alt.Sub[0].Op != syntax.OpBeginText) {
			return false
		}
	}
	return true
}

func re2Cost(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase == 0 || !unicode.IsLetter(r) && unicode.SimpleFold(r) == r {
				// One byte range per UTF-8 byte of the rune.
				l := utf8.RuneLen(r)
				if l < 1 {
					l = 3 // a surrogate: RE2 encodes it as three bytes
				}
				n += l
				continue
			}
			class := []rune{r, r}
			if re.Flags&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					class = append(class, f, f)
				}
			}
			n += classCost(normalizeClass(class))
		}
		return n
	case syntax.OpCharClass:
		return classCost(re.Rune)
	case syntax.OpAnyCharNotNL:
		return classCost([]rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune})
	case syntax.OpAnyChar:
		return classCost([]rune{0, unicode.MaxRune})
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 1
	case syntax.OpCapture:
		return 2 + re2Cost(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		return 1 + re2Cost(re.Sub[0])
	case syntax.OpRepeat:
		// Simplify expands repeats; this is only reached for forms it keeps.
		n := re.Max
		if n < 0 {
			n = re.Min + 1
		}
		return n * (1 + re2Cost(re.Sub[0]))
	case syntax.OpConcat, syntax.OpAlternate:
		n := 0
		for _, sub := range re.Sub {
			n += re2Cost(sub)
		}
		return n
	case syntax.OpNoMatch:
		return 1
	default: // OpEmptyMatch
		return 0
	}
}

// normalizeClass sorts and merges rune ranges.
func normalizeClass(class []rune) []rune {
	type rr struct{ lo, hi rune }
	ranges := make([]rr, 0, len(class)/2)
	for i := 0; i+1 < len(class); i += 2 {
		ranges = append(ranges, rr{class[i], class[i+1]})
	}
	for i := 1; i < len(ranges); i++ {
		for j := i; j > 0 && ranges[j].lo < ranges[j-1].lo; j-- {
			ranges[j], ranges[j-1] = ranges[j-1], ranges[j]
		}
	}
	var out []rune
	for _, r := range ranges {
		if n := len(out); n > 0 && r.lo <= out[n-1]+1 {
			if r.hi > out[n-1] {
				out[n-1] = r.hi
			}
			continue
		}
		out = append(out, r.lo, r.hi)
	}
	return out
}

func classContains(class []rune, r rune) bool {
	for i := 0; i+1 < len(class); i += 2 {
		if class[i] <= r && r <= class[i+1] {
			return true
		}
	}
	return false
}

// classCost counts RE2 instructions for a sorted, merged rune class.
func classCost(class []rune) int {
	foldsASCII := true
	for c := 'a'; c <= 'z'; c++ {
		if classContains(class, c) != classContains(class, c-'a'+'A') {
			foldsASCII = false
			break
		}
	}
	n := 0
	var nonASCII [][2]rune
	for i := 0; i+1 < len(class); i += 2 {
		lo, hi := class[i], class[i+1]
		if lo < 0x80 {
			top := min(hi, 0x7f)
			if !(foldsASCII && 'A' <= lo && top <= 'Z') {
				n++
			}
			lo = 0x80
		}
		if lo <= hi {
			nonASCII = append(nonASCII, [2]rune{lo, hi})
		}
	}
	if len(nonASCII) == 1 && nonASCII[0] == [2]rune{0x80, unicode.MaxRune} {
		return n + 6
	}
	return n + utf8TrieSize(nonASCII)
}

// utf8TrieSize counts the byte-range instructions RE2's compiler emits for
// non-ASCII rune ranges in UTF-8 mode (Compiler::AddRuneRangeUTF8 and
// AddSuffixRecursive in re2/compile.cc): each range becomes byte-range
// sequences built back to front, where the last byte and the in-between
// byte ranges are shared through a cache, and each sequence is merged into
// the trie of those before it when its leading byte range equals the last
// one added (cached nodes are cloned, not changed). The count is of the
// byte ranges reachable at the end, which is what survives Prog::Flatten.
func utf8TrieSize(ranges [][2]rune) int {
	c := &runeCompiler{cache: map[runeCacheKey]int{}}
	c.insts = append(c.insts, byteInst{}) // index 0: "the rest of the regex"
	for _, r := range ranges {
		splitUTF8(r[0], r[1], c.addSequence)
	}
	if c.root == 0 {
		return 0
	}
	// Prog::Flatten turns every tree of alternations into a list of its
	// leaves, one list per "root" (the start and the target of every byte
	// range), so a byte range reachable from several roots is copied into
	// each of their lists.
	roots := map[int]bool{c.root: true}
	visited := map[int]bool{}
	var mark func(id int)
	mark = func(id int) {
		if id == 0 || visited[id] {
			return
		}
		visited[id] = true
		in := c.insts[id]
		if in.alt {
			mark(in.out)
			mark(in.out1)
			return
		}
		if in.out != 0 {
			roots[in.out] = true
		}
		mark(in.out)
	}
	mark(c.root)
	size := 0
	for r := range roots {
		leaves := map[int]bool{}
		var collect func(id int)
		collect = func(id int) {
			if id == 0 || leaves[id] {
				return
			}
			if in := c.insts[id]; in.alt {
				collect(in.out)
				collect(in.out1)
				return
			}
			leaves[id] = true
		}
		collect(r)
		size += len(leaves)
	}
	// The model undercounts RE2 by up to ~8% on large Unicode classes
	// (\p{L}); the margin keeps the estimate at or above RE2's count there.
	return size + size/10
}

type byteInst struct {
	alt       bool
	lo, hi    byte
	out, out1 int
}

type runeCacheKey struct {
	lo, hi byte
	next   int
}

type runeCompiler struct {
	insts []byteInst
	cache map[runeCacheKey]int
	root  int
}

func (c *runeCompiler) alloc(in byteInst) int {
	c.insts = append(c.insts, in)
	return len(c.insts) - 1
}

func (c *runeCompiler) cached(lo, hi byte, next int) int {
	k := runeCacheKey{lo, hi, next}
	if id, ok := c.cache[k]; ok {
		return id
	}
	id := c.alloc(byteInst{lo: lo, hi: hi, out: next})
	c.cache[k] = id
	return id
}

func (c *runeCompiler) isCached(id int) bool {
	in := c.insts[id]
	cid, ok := c.cache[runeCacheKey{in.lo, in.hi, in.out}]
	return ok && cid == id
}

func (c *runeCompiler) addSequence(seq [][2]byte) {
	id := 0
	n := len(seq)
	for i := n - 1; i >= 0; i-- {
		lo, hi := seq[i][0], seq[i][1]
		if i == n-1 || (lo < hi && i != 0) {
			id = c.cached(lo, hi, id)
		} else {
			id = c.alloc(byteInst{lo: lo, hi: hi, out: id})
		}
	}
	if c.root == 0 {
		c.root = id
		return
	}
	c.root = c.addSuffix(c.root, id)
}

func (c *runeCompiler) addSuffix(root, id int) int {
	if root == 0 {
		return id
	}
	// Only the most recent alternative can match: ranges come in order.
	parent, viaOut1, br := 0, false, 0
	switch r := c.insts[root]; {
	case !r.alt && r.lo == c.insts[id].lo && r.hi == c.insts[id].hi:
		br = root
	case r.alt && !c.insts[r.out1].alt && c.insts[r.out1].lo == c.insts[id].lo && c.insts[r.out1].hi == c.insts[id].hi:
		parent, viaOut1, br = root, true, r.out1
	default:
		return c.alloc(byteInst{alt: true, out: root, out1: id})
	}
	if c.isCached(br) {
		clone := c.alloc(byteInst{lo: c.insts[br].lo, hi: c.insts[br].hi, out: c.insts[br].out})
		br = clone
		switch {
		case parent == 0:
			root = br
		case viaOut1:
			c.insts[parent].out1 = br
		}
	}
	out := c.insts[id].out
	c.insts[br].out = c.addSuffix(c.insts[br].out, out)
	return root
}

// splitUTF8 splits [lo, hi] (all >= 0x80) into runs whose UTF-8 encodings
// are a fixed sequence of byte ranges.
func splitUTF8(lo, hi rune, emit func([][2]byte)) {
	if lo > hi {
		return
	}
	for _, max := range []rune{0x7ff, 0xffff} {
		if lo <= max && max < hi {
			splitUTF8(lo, max, emit)
			splitUTF8(max+1, hi, emit)
			return
		}
	}
	n := utf8Len(lo)
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				splitUTF8(lo, lo|m, emit)
				splitUTF8((lo|m)+1, hi, emit)
				return
			}
			if hi&m != m {
				splitUTF8(lo, (hi&^m)-1, emit)
				splitUTF8(hi&^m, hi, emit)
				return
			}
		}
	}
	a, b := encodeUTF8(lo), encodeUTF8(hi)
	seq := make([][2]byte, len(a))
	for i := range a {
		seq[i] = [2]byte{a[i], b[i]}
	}
	emit(seq)
}

func utf8Len(r rune) int {
	switch {
	case r < 0x800:
		return 2
	case r < 0x10000:
		return 3
	default:
		return 4
	}
}

// encodeUTF8 encodes without rejecting surrogates (classes may span them).
func encodeUTF8(r rune) []byte {
	switch utf8Len(r) {
	case 2:
		return []byte{0xc0 | byte(r>>6), 0x80 | byte(r)&0x3f}
	case 3:
		return []byte{0xe0 | byte(r>>12), 0x80 | byte(r>>6)&0x3f, 0x80 | byte(r)&0x3f}
	default:
		return []byte{0xf0 | byte(r>>18), 0x80 | byte(r>>12)&0x3f, 0x80 | byte(r>>6)&0x3f, 0x80 | byte(r)&0x3f}
	}
}
