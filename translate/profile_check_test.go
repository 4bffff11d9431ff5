package translate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftmesh/weft/mesh"
)

func TestCheckProfile(t *testing.T) {
	path := func(re string) mesh.RequestMatch { return mesh.RequestMatch{PathRegex: re} }
	// seven `any` of two paths under one `all`: 2^7 conjuncts.
	var explode mesh.RequestMatch
	for i := range 7 {
		explode.All = append(explode.All, mesh.RequestMatch{Any: []mesh.RequestMatch{path(fmt.Sprintf("/a%d", i)), path(fmt.Sprintf("/b%d", i))}})
	}
	tests := []struct {
		name   string
		routes []mesh.Route
		want   []string // "route index, proxyless-only, error substring"
	}{
		{name: "plain routes", routes: []mesh.Route{{Name: "a", Match: mesh.RequestMatch{Method: "GET", PathRegex: "/a"}}, {Name: "b", Match: path("/b/.*")}}},
		{name: "too many Envoy routes, second route", routes: []mesh.Route{{Name: "a", Match: path("/a")}, {Name: "big", Match: explode}},
			want: []string{"1 false condition expands to more than 64 Envoy routes"}},
		{name: "negated path: proxyless clients only", routes: []mesh.Route{{Name: "n", Match: mesh.RequestMatch{Not: &mesh.RequestMatch{PathRegex: "/admin"}}}},
			want: []string{"0 true grpc-go cannot express"}},
		{name: "every bad route reported", routes: []mesh.Route{{Name: "big", Match: explode}, {Name: "ok", Match: path("/x")}, {Name: "big2", Match: explode}},
			want: []string{"0 false more than 64", "2 false more than 64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckProfile(&mesh.Profile{Routes: tt.routes})
			if len(got) != len(tt.want) {
				t.Fatalf("problems = %v, want %d", got, len(tt.want))
			}
			for i, p := range got {
				s := fmt.Sprintf("%d %v %v", p.Route, p.ProxylessOnly, p.Err)
				prefix, sub, _ := strings.Cut(tt.want[i], " ")
				kind, text, _ := strings.Cut(sub, " ")
				if !strings.HasPrefix(s, prefix+" "+kind+" ") || !strings.Contains(s, text) {
					t.Errorf("problem %d = %q, want %q", i, s, tt.want[i])
				}
				if strings.Contains(p.Err.Error(), "spec.routes[") {
					t.Errorf("problem %d %q carries a path; it must be relative to the condition", i, p.Err)
				}
			}
		})
	}
}
