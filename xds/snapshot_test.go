package xds

import (
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func TestSortedByName(t *testing.T) {
	cases := []struct {
		name string
		in   []namedResource
		// want is the (name, index) order expected.
		want []namedResource
	}{
		{"empty", nil, nil},
		{"already sorted", []namedResource{{name: "a", index: 0}, {name: "b", index: 1}}, []namedResource{{name: "a", index: 0}, {name: "b", index: 1}}},
		{"reversed", []namedResource{{name: "c", index: 0}, {name: "b", index: 1}, {name: "a", index: 2}}, []namedResource{{name: "a", index: 2}, {name: "b", index: 1}, {name: "c", index: 0}}},
		{"duplicates keep their given order", []namedResource{{name: "b", index: 0}, {name: "a", index: 1}, {name: "b", index: 2}, {name: "a", index: 3}}, []namedResource{{name: "a", index: 1}, {name: "a", index: 3}, {name: "b", index: 0}, {name: "b", index: 2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := sortedByName(slices.Clone(tc.in))
			if !slices.Equal(got, tc.want) {
				t.Errorf("sortedByName(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestDiffFrom: what a client holding one set lacks of another, and the
// same answer, shared, for every stream that asks about the same pair.
func TestDiffFrom(t *testing.T) {
	setOf := typeSetBuilder(resourcev3.ClusterType)
	a, b, c := edsCluster("a", "a"), edsCluster("b", "b"), edsCluster("c", "c")
	b2 := edsCluster("b", "b-moved")
	cases := []struct {
		name             string
		held, set        []types.Resource
		changed, removed []string
	}{
		{"equal", []types.Resource{a, b}, []types.Resource{b, a}, nil, nil},
		{"one added", []types.Resource{a}, []types.Resource{c, a}, []string{"c"}, nil},
		{"one removed", []types.Resource{a, b, c}, []types.Resource{a, c}, nil, []string{"b"}},
		{"one changed, one removed, one added", []types.Resource{c, b, a}, []types.Resource{edsCluster("d", "d"), b2, a}, []string{"b", "d"}, []string{"c"}},
		{"from nothing", nil, []types.Resource{b, a}, []string{"a", "b"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			held, set := setOf(t, tc.held...), setOf(t, tc.set...)
			d := set.diffFrom(held)
			var changed []string
			for _, e := range d.changed {
				changed = append(changed, e.name)
			}
			if !slices.Equal(changed, tc.changed) || !slices.Equal(d.removed, tc.removed) {
				t.Errorf("diff: changed %v removed %v, want changed %v removed %v", changed, d.removed, tc.changed, tc.removed)
			}
			if again := set.diffFrom(held); again != d {
				t.Error("the diff of the same pair was computed again")
			}
		})
	}
}

// typeSetBuilder builds sets of one type as a node's snapshot would, all
// sharing one server's hashes and sets.
func typeSetBuilder(typeURL string) func(t *testing.T, rs ...types.Resource) *typeSet {
	hashes, shared := newResourceHashes(), newTypeSets()
	return func(t *testing.T, rs ...types.Resource) *typeSet {
		t.Helper()
		snap, err := buildSnapshot(hashes, shared, map[string][]types.Resource{typeURL: rs})
		if err != nil {
			t.Fatal(err)
		}
		return snap.sets[typeURL]
	}
}
