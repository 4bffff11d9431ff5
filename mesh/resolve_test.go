package mesh

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/profiles"
)

func splitClaim(name string, created int64) Claim {
	return Claim{Object: ObjectRef{Kind: "TrafficSplit", Namespace: "shop", Name: name}, Created: time.Unix(created, 0)}
}

func TestResolveSplitClaims(t *testing.T) {
	apex := ServiceKey{Namespace: "shop", Name: "web"}
	cases := []struct {
		name   string
		claims []Claim
		winner string
		// why is the reason every loser's error gives.
		why string
	}{
		{"one claim", []Claim{splitClaim("only", 5)}, "only", ""},
		{"oldest wins though its name sorts last", []Claim{splitClaim("a-new", 20), splitClaim("z-old", 10)}, "z-old", "created earlier"},
		{"oldest wins given first", []Claim{splitClaim("z-old", 10), splitClaim("a-new", 20)}, "z-old", "created earlier"},
		{"same second: first by name", []Claim{splitClaim("b", 10), splitClaim("a", 10)}, "a", "created at the same time and first by name"},
		{"three claims", []Claim{splitClaim("m", 30), splitClaim("z", 10), splitClaim("a", 20)}, "z", "created earlier"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			winner, errs := ResolveSplitClaims(apex, tc.claims)
			if got := tc.claims[winner].Object.Name; got != tc.winner {
				t.Errorf("winner %s, want %s", got, tc.winner)
			}
			if len(errs) != len(tc.claims) {
				t.Fatalf("%d errors for %d claims", len(errs), len(tc.claims))
			}
			for i, err := range errs {
				if i == winner {
					if err != nil {
						t.Errorf("the winner is reported: %v", err)
					}
					continue
				}
				want := `spec.service: Duplicate value: "web": TrafficSplit shop/` + tc.winner + ", " + tc.why + ", already splits service shop/web; this one is ignored"
				if err == nil || err.Error() != want {
					t.Errorf("loser %s: error %v, want %s", tc.claims[i].Object.Name, err, want)
				}
				var fe *field.Error
				if !errors.As(err, &fe) || fe.Type != field.ErrorTypeDuplicate {
					t.Errorf("loser %s: error does not carry a Duplicate *field.Error", tc.claims[i].Object.Name)
				}
			}
		})
	}
}

func TestResolveProfileClaims(t *testing.T) {
	svc := ServiceKey{Namespace: "shop", Name: "web"}
	claim := func(ns string, created int64) Claim {
		return Claim{Object: ObjectRef{Kind: "ServiceProfile", Namespace: ns, Name: "web.shop.svc.cluster.local"}, Created: time.Unix(created, 0)}
	}
	cases := []struct {
		name string
		key  ProfileKey
		ns   string
		want string
	}{
		{"server side", ProfileKey{Namespace: "shop", Service: svc}, "shop",
			`metadata.name: Duplicate value: "web.shop.svc.cluster.local": ServiceProfile shop/web.shop.svc.cluster.local, created earlier, already describes service shop/web; this one is ignored`},
		{"client side", ProfileKey{Namespace: "front", Service: svc}, "front",
			`metadata.name: Duplicate value: "web.shop.svc.cluster.local": ServiceProfile front/web.shop.svc.cluster.local, created earlier, already describes service shop/web for clients in namespace front; this one is ignored`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			winner, errs := ResolveProfileClaims(tc.key, []Claim{claim(tc.ns, 2), claim(tc.ns, 1)})
			if winner != 1 || errs[1] != nil {
				t.Fatalf("winner %d (errors %v), want the older, 1", winner, errs)
			}
			if errs[0] == nil || errs[0].Error() != tc.want {
				t.Errorf("loser's error %v, want %s", errs[0], tc.want)
			}
		})
	}
}

// TestBuildOldestClaimWins: Build resolves conflicting splits as the
// control plane does, by creationTimestamp and not by name, whatever the
// input order; an object given twice keeps the first copy.
func TestBuildOldestClaimWins(t *testing.T) {
	split := func(name string, created int64, backend string) *profiles.TrafficSplit {
		ts := trafficSplit("shop", name, "web", profiles.SplitBackend{Service: backend, Weight: 1})
		ts.CreationTimestamp = metav1.NewTime(time.Unix(created, 0))
		return ts
	}
	port := svcPort("http", 80, intstr.FromInt32(8080))
	services := []*corev1.Service{service("shop", "web", nil, port), service("shop", "web-v1", nil, port), service("shop", "web-v2", nil, port)}
	inOrder := []*profiles.TrafficSplit{split("a-new", 20, "web-v2"), split("z-old", 10, "web-v1"), split("z-old", 5, "web-v2")}
	reversed := []*profiles.TrafficSplit{inOrder[1], inOrder[2], inOrder[0]}
	for name, splits := range map[string][]*profiles.TrafficSplit{"in order": inOrder, "reversed": reversed} {
		t.Run(name, func(t *testing.T) {
			m, errs := Build("cluster.local", Objects{Services: services, TrafficSplits: splits})
			got := m.Splits[ServiceKey{"shop", "web"}]
			if got == nil || got.Source.Name != "z-old" || got.Backends[0].Service.Name != "web-v1" {
				t.Fatalf("split for shop/web: %+v, want z-old to web-v1 (the older, and the first copy)", got)
			}
			want := []string{
				`TrafficSplit shop/a-new: spec.service: Duplicate value: "web": TrafficSplit shop/z-old, created earlier, already splits service shop/web; this one is ignored`,
				`TrafficSplit shop/z-old: metadata.name: Duplicate value: "z-old"`,
			}
			if len(errs) != len(want) {
				t.Fatalf("errors %v, want %d", errs, len(want))
			}
			for i := range want {
				if errs[i].Error() != want[i] {
					t.Errorf("error %d: %s\nwant %s", i, errs[i], want[i])
				}
			}
		})
	}
}

func TestProfileFor(t *testing.T) {
	svc := ServiceKey{Namespace: "shop", Name: "web"}
	server := &Profile{Source: ObjectRef{Kind: "ServiceProfile", Namespace: "shop"}}
	client := &Profile{Source: ObjectRef{Kind: "ServiceProfile", Namespace: "front"}}
	other := &Profile{Source: ObjectRef{Kind: "ServiceProfile", Namespace: "back"}}
	cases := []struct {
		name     string
		profiles map[ProfileKey]*Profile
		clientNS string
		want     *Profile
		wantNS   string
	}{
		{"none", nil, "front", nil, ""},
		{"server's only", map[ProfileKey]*Profile{{"shop", svc}: server}, "front", server, "shop"},
		{"client's wins", map[ProfileKey]*Profile{{"shop", svc}: server, {"front", svc}: client}, "front", client, "front"},
		{"client's alone", map[ProfileKey]*Profile{{"front", svc}: client}, "front", client, "front"},
		{"another namespace's is not this client's", map[ProfileKey]*Profile{{"back", svc}: other, {"shop", svc}: server}, "front", server, "shop"},
		{"another namespace's and no server's", map[ProfileKey]*Profile{{"back", svc}: other}, "front", nil, ""},
		{"client in the service's namespace", map[ProfileKey]*Profile{{"shop", svc}: server, {"front", svc}: client}, "shop", server, "shop"},
		{"no client namespace", map[ProfileKey]*Profile{{"shop", svc}: server, {"front", svc}: client}, "", server, "shop"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &Model{Profiles: tc.profiles}
			got, ns := m.ProfileFor(tc.clientNS, svc)
			if got != tc.want || ns != tc.wantNS {
				t.Errorf("ProfileFor = %v in %q, want %v in %q", got, ns, tc.want, tc.wantNS)
			}
		})
	}
}

func TestBackendsFor(t *testing.T) {
	v1 := []WeightedBackend{{Service: ServiceKey{"shop", "web-v1"}, Weight: 1}}
	v2 := []WeightedBackend{{Service: ServiceKey{"shop", "web-v2"}, Weight: 1}}
	split := &Split{Source: ObjectRef{Kind: "TrafficSplit", Namespace: "shop", Name: "canary"}, Backends: v1}
	emptySplit := &Split{Source: ObjectRef{Kind: "TrafficSplit", Namespace: "shop", Name: "empty"}}
	withOverrides := &Profile{Source: ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "p"}, DstOverrides: v2}
	plain := &Profile{Source: ObjectRef{Kind: "ServiceProfile", Namespace: "shop", Name: "p"}}
	cases := []struct {
		name      string
		split     *Split
		profile   *Profile
		want      []WeightedBackend
		wantSrc   string
		wantField string
	}{
		{"nothing", nil, nil, nil, "", ""},
		{"profile without overrides", nil, plain, nil, "", ""},
		{"dstOverrides", nil, withOverrides, v2, "p", "spec.dstOverrides"},
		{"split alone", split, nil, v1, "canary", "spec.backends"},
		{"split replaces dstOverrides", split, withOverrides, v1, "canary", "spec.backends"},
		{"a split with no backends still replaces them", emptySplit, withOverrides, nil, "empty", "spec.backends"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := BackendsFor(tc.split, tc.profile)
			if len(got.List) != len(tc.want) || (len(tc.want) > 0 && got.List[0] != tc.want[0]) {
				t.Errorf("backends %v, want %v", got.List, tc.want)
			}
			if got.Source.Name != tc.wantSrc {
				t.Errorf("source %v, want %s", got.Source, tc.wantSrc)
			}
			if f := got.Field.String(); (tc.wantField != "" || got.Field != nil) && f != tc.wantField {
				t.Errorf("field %q, want %q", f, tc.wantField)
			}
		})
	}
}
