package translate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/weftmesh/weft/mesh"
)

// A ServiceProfile condition is a boolean tree (all / any / not over
// pathRegex and method tests); an Envoy RouteMatch is a flat conjunction: one
// path specifier plus header matchers, each of which may be inverted. So every
// condition is brought into disjunctive normal form (an OR of ANDs of possibly
// negated tests) and each AND becomes one Envoy route. Because every route
// produced from one profile route carries the same name and action, and they
// sit next to each other in the route list, "first matching route wins" still
// picks the profile route Linkerd would pick.
//
// The rewriting rules:
//
//	leaf pathRegex P        -> { [P] }
//	leaf method M           -> { [M] }
//	several fields set      -> AND of the fields (Linkerd's implicit all)
//	all [a, b, ...]         -> AND: the cross product of the children's conjuncts
//	any [a, b, ...]         -> OR: the union of the children's conjuncts
//	not x                   -> De Morgan: not (C1 or C2 ...) = (not C1) and (not C2) ...
//	                           and not (l1 and l2 ...) = (not l1) or (not l2) ...
//
// A conjunct then maps onto Envoy as:
//
//	first positive path P   -> path specifier safe_regex ^(?:P)$ (Envoy matches it
//	                           against the path without the query, like Linkerd)
//	no positive path        -> path specifier prefix "/"
//	other positive paths    -> header matcher :path safe_regex (query tolerated)
//	negated path            -> the same header matcher with invert_match
//	method M                -> header matcher :method exact M (inverted when negated)
//
// grpc-go (proxyless clients) sees neither :path nor :method as headers, so
// for it method tests are decided statically (a gRPC call is always a POST)
// and a conjunct that still needs a :path header matcher cannot be expressed:
// the profile is then skipped for proxyless clients with an error.

// maxConjunctsPerRoute bounds the DNF expansion: a `not` over an `any` of
// `all`s grows multiplicatively, and a profile should not be able to make one
// route config arbitrarily large.
const maxConjunctsPerRoute = 64

type literalKind uint8

const (
	literalPath literalKind = iota
	literalMethod
)

// literal is one test Envoy can express directly, possibly negated.
type literal struct {
	kind    literalKind
	value   string // the path regex as written (unanchored) or the method
	negated bool
}

func (l literal) String() string {
	var b strings.Builder
	if l.negated {
		b.WriteString("!")
	}
	if l.kind == literalPath {
		b.WriteString("path~")
	} else {
		b.WriteString("method=")
	}
	b.WriteString(l.value)
	return b.String()
}

func compareLiterals(a, b literal) int {
	if a.kind != b.kind {
		return int(a.kind) - int(b.kind)
	}
	if a.negated != b.negated {
		if a.negated {
			return 1
		}
		return -1
	}
	return strings.Compare(a.value, b.value)
}

// conjunct is an AND of literals, sorted and without duplicates. The empty
// conjunct is true.
type conjunct []literal

// dnf is an OR of conjuncts. The empty dnf is false; a dnf holding the empty
// conjunct is true.
type dnf []conjunct

var errTooManyConjuncts = fmt.Errorf("condition expands to more than %d Envoy routes", maxConjunctsPerRoute)

// expandMatch turns a profile condition into DNF.
func expandMatch(m mesh.RequestMatch) (dnf, error) {
	parts := make([]dnf, 0, 4)
	if m.PathRegex != "" {
		parts = append(parts, dnf{{{kind: literalPath, value: m.PathRegex}}})
	}
	if m.Method != "" {
		parts = append(parts, dnf{{{kind: literalMethod, value: m.Method}}})
	}
	if len(m.All) > 0 {
		all := dnf{{}}
		for _, c := range m.All {
			d, err := expandMatch(c)
			if err != nil {
				return nil, err
			}
			if all, err = andDNF(all, d); err != nil {
				return nil, err
			}
		}
		parts = append(parts, all)
	}
	if len(m.Any) > 0 {
		var anyOf dnf
		for _, c := range m.Any {
			d, err := expandMatch(c)
			if err != nil {
				return nil, err
			}
			anyOf = append(anyOf, d...)
		}
		anyOf = absorb(anyOf)
		if len(anyOf) > maxConjunctsPerRoute {
			return nil, errTooManyConjuncts
		}
		parts = append(parts, anyOf)
	}
	if m.Not != nil {
		d, err := expandMatch(*m.Not)
		if err != nil {
			return nil, err
		}
		n, err := negateDNF(d)
		if err != nil {
			return nil, err
		}
		parts = append(parts, n)
	}
	out := dnf{{}}
	for _, p := range parts {
		var err error
		if out, err = andDNF(out, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// andDNF is the cross product of two DNFs with contradictions dropped.
func andDNF(a, b dnf) (dnf, error) {
	out := make(dnf, 0, len(a)*len(b))
	for _, ca := range a {
		for _, cb := range b {
			c, ok := joinConjuncts(ca, cb)
			if !ok {
				continue
			}
			out = append(out, c)
		}
	}
	out = absorb(out)
	if len(out) > maxConjunctsPerRoute {
		return nil, errTooManyConjuncts
	}
	return out, nil
}

// negateDNF applies De Morgan: not (C1 or ... or Cn) = AND over i of
// (OR over the literals l of Ci of not l).
func negateDNF(d dnf) (dnf, error) {
	out := dnf{{}} // not false = true
	for _, c := range d {
		if len(c) == 0 {
			return dnf{}, nil // not true = false
		}
		negated := make(dnf, 0, len(c))
		for _, l := range c {
			l.negated = !l.negated
			negated = append(negated, conjunct{l})
		}
		var err error
		if out, err = andDNF(out, negated); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// joinConjuncts ANDs two conjuncts; ok is false when the result can never
// hold (method=GET and method=POST; P and not P).
func joinConjuncts(a, b conjunct) (conjunct, bool) {
	merged := make(conjunct, 0, len(a)+len(b))
	merged = append(merged, a...)
	merged = append(merged, b...)
	return simplifyConjunct(merged)
}

func simplifyConjunct(c conjunct) (conjunct, bool) {
	slices.SortFunc(c, compareLiterals)
	c = slices.Compact(c)
	var method string
	for _, l := range c {
		if l.kind == literalMethod && !l.negated {
			if method != "" && method != l.value {
				return nil, false // one request has one method
			}
			method = l.value
		}
	}
	out := c[:0]
	for _, l := range c {
		if l.negated {
			pos := l
			pos.negated = false
			if _, found := slices.BinarySearchFunc(c, pos, compareLiterals); found {
				return nil, false // x and not x
			}
			if l.kind == literalMethod && method != "" {
				continue // method=GET already implies method!=POST
			}
		}
		out = append(out, l)
	}
	return out, true
}

// absorb removes duplicate conjuncts and conjuncts implied by a shorter one
// (A or (A and B) = A), keeping the first occurrence's order.
func absorb(d dnf) dnf {
	out := make(dnf, 0, len(d))
next:
	for i, c := range d {
		for j, o := range d {
			if i == j {
				continue
			}
			if isSubset(o, c) && (len(o) < len(c) || j < i) {
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}

// isSubset reports whether every literal of a is in b (both sorted).
func isSubset(a, b conjunct) bool {
	for _, l := range a {
		if _, found := slices.BinarySearchFunc(b, l, compareLiterals); !found {
			return false
		}
	}
	return true
}

// grpcMethod is the HTTP method of every gRPC call.
const grpcMethod = "POST"

var errNeedsPathHeader = errors.New("condition needs a negated or second path test, which grpc-go cannot express (it matches only one path regex per route and sees no :path header)")

// forProxyless decides method tests statically for gRPC calls and rejects
// conjuncts grpc-go cannot express.
func forProxyless(d dnf) (dnf, error) {
	out := make(dnf, 0, len(d))
next:
	for _, c := range d {
		kept := make(conjunct, 0, len(c))
		positivePaths := 0
		for _, l := range c {
			if l.kind == literalMethod {
				if (l.value == grpcMethod) == l.negated {
					continue next // never true for a gRPC call
				}
				continue // always true for a gRPC call
			}
			if l.negated {
				return nil, errNeedsPathHeader
			}
			positivePaths++
			kept = append(kept, l)
		}
		if positivePaths > 1 {
			return nil, errNeedsPathHeader
		}
		out = append(out, kept)
	}
	return absorb(out), nil
}
