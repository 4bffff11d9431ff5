package translate

import (
	"math/rand/v2"
	"testing"

	"github.com/weftmesh/weft/mesh"
)

// statusMatches is the reference: Linkerd's meaning of a response condition
// for one status (inclusive bounds, 0 open).
func statusMatches(m mesh.ResponseMatch, s uint32) bool {
	if m.Status != nil && ((m.Status.Min != 0 && s < m.Status.Min) || (m.Status.Max != 0 && s > m.Status.Max)) {
		return false
	}
	for _, c := range m.All {
		if !statusMatches(c, s) {
			return false
		}
	}
	if len(m.Any) > 0 {
		ok := false
		for _, c := range m.Any {
			ok = ok || statusMatches(c, s)
		}
		if !ok {
			return false
		}
	}
	return m.Not == nil || !statusMatches(*m.Not, s)
}

func randomResponseMatch(r *rand.Rand, depth int) mesh.ResponseMatch {
	var m mesh.ResponseMatch
	switch k := r.IntN(4); {
	case k == 0 || depth == 0:
		bound := func() uint32 {
			if r.IntN(4) == 0 {
				return 0
			}
			return uint32(100 + r.IntN(500))
		}
		m.Status = &mesh.StatusRange{Min: bound(), Max: bound()}
	case k == 1:
		for range 1 + r.IntN(3) {
			m.All = append(m.All, randomResponseMatch(r, depth-1))
		}
	case k == 2:
		for range 1 + r.IntN(3) {
			m.Any = append(m.Any, randomResponseMatch(r, depth-1))
		}
	default:
		n := randomResponseMatch(r, depth-1)
		m.Not = &n
	}
	return m
}

// TestClassificationMatchesFirstClassWins: the flattened ranges and the
// failure set agree, status by status, with evaluating the classes in order
// (first match wins, unmatched 5xx are failures).
func TestClassificationMatchesFirstClassWins(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		var classes []mesh.ResponseClass
		for range r.IntN(4) {
			classes = append(classes, mesh.ResponseClass{Match: randomResponseMatch(r, 3), IsFailure: r.IntN(2) == 0})
		}
		c := classify(classes)
		ranges := c.ranges()
		failures := c.failures()
		for s := uint32(minStatus); s <= maxStatus; s++ {
			matched, failure := false, false
			for _, rc := range classes {
				if statusMatches(rc.Match, s) {
					matched, failure = true, rc.IsFailure
					break
				}
			}
			inRange, rangeFailure := false, false
			for _, rg := range ranges {
				if s >= rg.min && s <= rg.max {
					inRange, rangeFailure = true, rg.isFailure
				}
			}
			if inRange != matched || rangeFailure != failure {
				t.Fatalf("status %d: ranges say matched=%v failure=%v, classes say %v %v (%+v)", s, inRange, rangeFailure, matched, failure, ranges)
			}
			wantFailure := failure || (!matched && s >= 500)
			if failures.has(s) != wantFailure {
				t.Fatalf("status %d: failures()=%v, want %v", s, failures.has(s), wantFailure)
			}
		}
		for i := 1; i < len(ranges); i++ {
			if ranges[i].min <= ranges[i-1].max {
				t.Fatalf("ranges overlap or are unsorted: %+v", ranges)
			}
		}
	}
}
