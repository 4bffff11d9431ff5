package xds

import (
	"slices"
	"testing"
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
