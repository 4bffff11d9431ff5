package translate

import (
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/mesh"
)

// ResponseClassesMetadataKey is the route filter_metadata key under which a
// profile route's responseClasses are recorded, for whoever classifies
// responses into success and failure in metrics.
//
// The value is a Struct {"classes": [{"min": m, "max": n, "isFailure": b}, ...]}:
// inclusive status ranges, disjoint and sorted by min. The profile's classes
// (a tree of all/any/not over status ranges, first matching class wins) are
// flattened by evaluating them on every status from 100 to 599, so a
// consumer needs no tree logic: a response whose status falls in a range
// takes that range's isFailure; any other response is classified by
// Linkerd's default — a failure when the status is 5xx, or for gRPC when
// grpc-status is not OK.
const ResponseClassesMetadataKey = "weft.io/response-classes"

const (
	minStatus = 100
	maxStatus = 599
)

// statusRange is an inclusive range of HTTP statuses.
type statusRange struct {
	min, max  uint32
	isFailure bool
}

// statusSet is a set of statuses from minStatus to maxStatus, one bit each:
// conditions are evaluated on whole sets (a few word operations per node)
// rather than status by status.
type statusSet [(maxStatus - minStatus + 64) / 64]uint64

func (s *statusSet) has(status uint32) bool {
	i := status - minStatus
	return s[i/64]&(1<<(i%64)) != 0
}

func (s *statusSet) add(status uint32) {
	i := status - minStatus
	s[i/64] |= 1 << (i % 64)
}

func rangeSet(lo, hi uint32) statusSet {
	var s statusSet
	for st := max(lo, minStatus); st <= min(hi, maxStatus); st++ {
		s.add(st)
	}
	return s
}

var allStatuses = rangeSet(minStatus, maxStatus)

func (s statusSet) and(o statusSet) statusSet {
	for i := range s {
		s[i] &= o[i]
	}
	return s
}

func (s statusSet) or(o statusSet) statusSet {
	for i := range s {
		s[i] |= o[i]
	}
	return s
}

func (s statusSet) not() statusSet {
	for i := range s {
		s[i] = ^s[i]
	}
	return s.and(allStatuses)
}

// matchingStatuses is the set of statuses a response condition matches.
func matchingStatuses(m mesh.ResponseMatch) statusSet {
	out := allStatuses
	if m.Status != nil {
		hi := m.Status.Max
		if hi == 0 {
			hi = maxStatus
		}
		out = out.and(rangeSet(m.Status.Min, hi))
	}
	for _, c := range m.All {
		out = out.and(matchingStatuses(c))
	}
	if len(m.Any) > 0 {
		var anyOf statusSet
		for _, c := range m.Any {
			anyOf = anyOf.or(matchingStatuses(c))
		}
		out = out.and(anyOf)
	}
	if m.Not != nil {
		out = out.and(matchingStatuses(*m.Not).not())
	}
	return out
}

// classification is what a route's response classes say of every status:
// which ones some class matched, and of those which are failures (the first
// matching class decides).
type classification struct {
	matched, failure statusSet
}

func classify(classes []mesh.ResponseClass) classification {
	var c classification
	for _, rc := range classes {
		fresh := matchingStatuses(rc.Match).and(c.matched.not())
		c.matched = c.matched.or(fresh)
		if rc.IsFailure {
			c.failure = c.failure.or(fresh)
		}
	}
	return c
}

// ranges flattens the classification into disjoint, sorted status ranges.
func (c classification) ranges() []statusRange {
	var out []statusRange
	for s := uint32(minStatus); s <= maxStatus; s++ {
		if !c.matched.has(s) {
			continue
		}
		failure := c.failure.has(s)
		if n := len(out); n > 0 && out[n-1].max == s-1 && out[n-1].isFailure == failure {
			out[n-1].max = s
			continue
		}
		out = append(out, statusRange{min: s, max: s, isFailure: failure})
	}
	return out
}

var serverErrors = rangeSet(500, 599)

// failures is the set of statuses the route treats as failures: those its
// classes call failures, plus unclassified 5xx (Linkerd's default).
func (c classification) failures() statusSet {
	return c.failure.or(serverErrors.and(c.matched.not()))
}

func responseClassesMetadata(ranges []statusRange) *structpb.Struct {
	list := make([]*structpb.Value, 0, len(ranges))
	for _, r := range ranges {
		list = append(list, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"min":       structpb.NewNumberValue(float64(r.min)),
			"max":       structpb.NewNumberValue(float64(r.max)),
			"isFailure": structpb.NewBoolValue(r.isFailure),
		}}))
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"classes": structpb.NewListValue(&structpb.ListValue{Values: list}),
	}}
}

// StatusRange is one flattened response class: an inclusive status range
// and whether a response in it is a failure.
type StatusRange struct {
	Min, Max  uint32
	IsFailure bool
}

// ResponseClassRanges flattens a route's responseClasses into the disjoint,
// sorted ranges the route metadata carries, for metrics that classify
// outside Envoy (the control plane's embedded path).
func ResponseClassRanges(classes []mesh.ResponseClass) []StatusRange {
	var out []StatusRange
	for _, r := range classify(classes).ranges() {
		out = append(out, StatusRange{Min: r.min, Max: r.max, IsFailure: r.isFailure})
	}
	return out
}
