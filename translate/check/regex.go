package check

import (
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weftmesh/weft/profiles"
)

// Envoy refuses a regex whose RE2 program is bigger than re2.max_program_size.error_level
// (runtime key, default 100) unless the deprecated google_re2.max_program_size is set
// (common/common/regex.cc). ServiceProfile validation applies the same bound.
const defaultMaxProgramSize = profiles.MaxRegexProgramSize

// regexResult is a pattern's outcome, cached within a run: profiles repeat the same
// patterns across many routes.
type regexResult struct {
	err  error
	size int
}

// checkRegex compiles r as Envoy would and estimates RE2's program size.
//
// The size is profiles.RE2ProgramSize, the estimate ServiceProfile validation already applies
// at admission: Go's regexp/syntax parses RE2's language, and the estimate counts
// instructions the way RE2 compiles them (UTF-8 byte ranges, captures, loops, the unanchored
// prefix, the "^literal" required prefix). It was measured against libre2 on a corpus and is
// exact for most regexes and otherwise a few instructions above RE2, never below (for the
// regex Envoy's documentation quotes at 106 it says 107). Using the same function at
// admission and before a push means a profile accepted by one is never refused by the other.
func (c *checker) checkRegex(r *matcherv3.RegexMatcher) {
	c.push("regex")
	defer c.pop()
	res, ok := c.regexes[r.GetRegex()]
	if !ok {
		res.size, res.err = profiles.RE2ProgramSize(r.GetRegex())
		c.regexes[r.GetRegex()] = res
	}
	if res.err != nil {
		// Go's regexp/syntax implements RE2's syntax; only the error wording differs.
		c.errorf("regex '%s' does not compile: %v", r.GetRegex(), res.err)
		return
	}
	size := res.size
	if g := r.GetGoogleRe2(); g.GetMaxProgramSize() != nil {
		if limit := int(g.GetMaxProgramSize().GetValue()); size > limit {
			c.errorf("regex '%s' RE2 program size of %d > max program size of %d. Increase configured max program size if necessary. (size estimated)",
				r.GetRegex(), size, limit)
		}
		return
	}
	switch {
	case size > defaultMaxProgramSize:
		c.errorf("regex '%s' RE2 program size of %d > max program size of %d set for the error level threshold. Increase configured max program size if necessary. (size estimated)",
			r.GetRegex(), size, defaultMaxProgramSize)
	case size > defaultMaxProgramSize*9/10:
		// The estimate may be a few instructions high: close to the limit, say so rather
		// than stay silent either way.
		c.warnf("regex '%s' has an estimated RE2 program size of %d, close to Envoy's limit of %d",
			r.GetRegex(), size, defaultMaxProgramSize)
	}
}
