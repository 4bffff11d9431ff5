package controller

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
)

// storeOp is one informer event.
type storeOp struct {
	desc string
	do   func(*Store)
}

func setOp(obj any) storeOp {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return storeOp{"set Namespace " + o.Name, func(s *Store) { s.SetNamespace(o) }}
	case *corev1.Service:
		return storeOp{"set Service " + o.Namespace + "/" + o.Name, func(s *Store) { s.SetService(o) }}
	case *discoveryv1.EndpointSlice:
		return storeOp{"set EndpointSlice " + o.Namespace + "/" + o.Name, func(s *Store) { s.SetEndpointSlice(o) }}
	case *corev1.Pod:
		return storeOp{"set Pod " + o.Namespace + "/" + o.Name, func(s *Store) { s.SetPod(o) }}
	case *profiles.ServiceProfile:
		return storeOp{"set ServiceProfile " + o.Namespace + "/" + o.Name, func(s *Store) { s.SetServiceProfile(o) }}
	case *profiles.TrafficSplit:
		return storeOp{"set TrafficSplit " + o.Namespace + "/" + o.Name, func(s *Store) { s.SetTrafficSplit(o) }}
	}
	panic(fmt.Sprintf("setOp: %T", obj))
}

func deleteOp(obj any) storeOp {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return storeOp{"delete Namespace " + o.Name, func(s *Store) { s.DeleteNamespace(o.Name) }}
	case *corev1.Service:
		return storeOp{"delete Service " + o.Namespace + "/" + o.Name, func(s *Store) { s.DeleteService(o.Namespace, o.Name) }}
	case *discoveryv1.EndpointSlice:
		return storeOp{"delete EndpointSlice " + o.Namespace + "/" + o.Name, func(s *Store) { s.DeleteEndpointSlice(o.Namespace, o.Name) }}
	case *corev1.Pod:
		return storeOp{"delete Pod " + o.Namespace + "/" + o.Name, func(s *Store) { s.DeletePod(o.Namespace, o.Name) }}
	case *profiles.ServiceProfile:
		return storeOp{"delete ServiceProfile " + o.Namespace + "/" + o.Name, func(s *Store) { s.DeleteServiceProfile(o.Namespace, o.Name) }}
	case *profiles.TrafficSplit:
		return storeOp{"delete TrafficSplit " + o.Namespace + "/" + o.Name, func(s *Store) { s.DeleteTrafficSplit(o.Namespace, o.Name) }}
	}
	panic(fmt.Sprintf("deleteOp: %T", obj))
}

// agreementWorld is an object set full of resolution cases, and per object
// the events that lead a store to it: the final version, or earlier
// versions first (updates, a delete and re-create), and extra objects that
// are created and deleted again. Each track's events keep their order; the
// tracks are interleaved at random.
func agreementWorld() (final mesh.Objects, tracks [][]storeOp) {
	at := func(sec int64) time.Time { return time.Unix(1_700_000_000+sec, 0) }
	add := func(obj any, earlier ...any) {
		var track []storeOp
		for _, e := range earlier {
			op, ok := e.(storeOp)
			if !ok {
				op = setOp(e)
			}
			track = append(track, op)
		}
		tracks = append(tracks, append(track, setOp(obj)))
		switch o := obj.(type) {
		case *corev1.Namespace:
			final.Namespaces = append(final.Namespaces, o)
		case *corev1.Service:
			final.Services = append(final.Services, o)
		case *discoveryv1.EndpointSlice:
			final.EndpointSlices = append(final.EndpointSlices, o)
		case *corev1.Pod:
			final.Pods = append(final.Pods, o)
		case *profiles.ServiceProfile:
			final.ServiceProfiles = append(final.ServiceProfiles, o)
		case *profiles.TrafficSplit:
			final.TrafficSplits = append(final.TrafficSplits, o)
		}
	}
	extra := func(obj any) { tracks = append(tracks, []storeOp{setOp(obj), deleteOp(obj)}) }

	// Namespaces: one with a bad annotation (a config error), one whose
	// injection and opaque ports change on the way.
	add(testNamespace("shop", meshedNS), testNamespace("shop", map[string]string{mesh.AnnotationOpaquePorts: "80"}))
	add(testNamespace("front", map[string]string{AnnotationInject: InjectEnabled, mesh.AnnotationOpaquePorts: "nope"}))
	add(testNamespace("back", nil))
	extra(testNamespace("gone", meshedNS))

	// Services: web splits over web-v1/web-v2, web's profile overrides to
	// web-v3; api has a bad annotation; temp comes and goes.
	add(testService("shop", "web", 80))
	add(testService("shop", "web-v1", 80), testService("shop", "web-v1", 81))
	add(testService("shop", "web-v2", 80))
	add(testService("shop", "web-v3", 80))
	badAnnotation := testService("shop", "api", 9090)
	badAnnotation.Annotations = map[string]string{mesh.AnnotationOpaquePorts: "x-y"}
	add(badAnnotation, testService("shop", "api", 9090))
	add(testService("front", "gateway", 8080))
	temp := testService("shop", "temp", 80)
	extra(temp)
	extra(testService("gone", "x", 80))

	// Pods and their slices: web-v2-1's identity changes on the way; an
	// extra pod backs web-v1 for a while.
	add(testPod("shop", "web-v1-1", "10.1.0.1", "web-v1", nil, 80))
	add(testPod("shop", "web-v2-1", "10.1.0.2", "web-v2", nil, 80), testPod("shop", "web-v2-1", "10.1.0.2", "other", nil, 80))
	add(testPod("shop", "api-1", "10.1.0.3", "api", nil, 9090))
	add(testPod("front", "client-1", "10.2.0.1", "client", nil, 8080))
	add(testSlice("shop", "web-v1-a", "web-v1", 80, map[string]string{"web-v1-1": "10.1.0.1"}))
	add(testSlice("shop", "web-v2-a", "web-v2", 80, map[string]string{"web-v2-1": "10.1.0.2"}),
		testSlice("shop", "web-v2-a", "web-v2", 80, map[string]string{"web-v2-1": "10.1.0.2", "web-v2-2": "10.1.0.4"}))
	add(testSlice("shop", "api-a", "api", 9090, map[string]string{"api-1": "10.1.0.3"}))
	add(testSlice("shop", "api-b", "api", 9090, map[string]string{"api-1": "10.1.0.3"}))
	add(testSlice("shop", "ghost-a", "ghost", 80, map[string]string{"g": "10.1.0.8"}))
	extra(testPod("shop", "extra-1", "10.1.0.9", "web-v1", nil, 80))
	extra(testSlice("shop", "web-v1-b", "web-v1", 80, map[string]string{"extra-1": "10.1.0.9"}))

	// Profiles: web's own (invalid first, then fixed, with dstOverrides),
	// a client-side one in front and one in back, an invalid one for api.
	webProfile := testProfile("shop", "shop", "web", at(0), "/books")
	webProfile.Spec.DstOverrides = []*profiles.WeightedDst{{Authority: "web-v3.shop.svc.cluster.local:80", Weight: resource.MustParse("1")}}
	add(webProfile, testProfile("shop", "shop", "web", at(0), "/books/("))
	add(testProfile("front", "shop", "web", at(50), "/front"))
	add(testProfile("shop", "shop", "api", at(0), "/users/("))
	add(testProfile("back", "shop", "api", at(0), "/back"))
	extra(testProfile("shop", "shop", "temp", at(0), "/temp"))
	recreatedProfile := testProfile("back", "shop", "web", at(60), "/again")
	add(recreatedProfile, testProfile("back", "shop", "web", at(0), "/gone"), deleteOp(recreatedProfile))

	// Splits on web: the older (z-old) wins though a-new sorts first; an
	// extra, even older split wins while it exists. z-old first splits api.
	// On api, two splits of the same second: the first by name wins (tie-b
	// first splits web). On web-v3, splits naming a backend that does not
	// exist (web-v9 never, temp at the end) are invalid.
	add(testSplit("shop", "a-new", "web", at(20), map[string]int64{"web-v1": 1, "web-v2": 1}))
	add(testSplit("shop", "z-old", "web", at(10), map[string]int64{"web-v1": 9, "web-v2": 1}),
		testSplit("shop", "z-old", "api", at(10), map[string]int64{"api": 1}))
	add(testSplit("shop", "tie-b", "api", at(30), map[string]int64{"api": 1, "web": 1}),
		testSplit("shop", "tie-b", "web", at(30), map[string]int64{"web": 1}))
	add(testSplit("shop", "tie-a", "api", at(30), map[string]int64{"api": 2}))
	add(testSplit("shop", "missing", "web-v3", at(5), map[string]int64{"web-v9": 1}))
	add(testSplit("shop", "needs-temp", "web-v3", at(6), map[string]int64{"temp": 1}))
	extra(testSplit("shop", "extra-oldest", "web", at(1), map[string]int64{"web-v2": 1}))
	return final, tracks
}

// TestStoreAgreesWithBuild: the control plane's incremental store and
// mesh.Build (what the golden cases run) give the same model and the same
// config errors for the same objects, whatever order the events come in,
// with updates, deletes and flushes on the way.
func TestStoreAgreesWithBuild(t *testing.T) {
	final, allTracks := agreementWorld()
	want, wantErrs := mesh.Build("cluster.local", final)
	if len(wantErrs) == 0 || len(want.Splits) == 0 || len(want.Profiles) == 0 {
		t.Fatalf("the world exercises nothing: %d errors, %d splits, %d profiles", len(wantErrs), len(want.Splits), len(want.Profiles))
	}
	for seed := range uint64(100) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			tracks := slices.Clone(allTracks)
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			s := NewStore("cluster.local", nil)
			var log []string
			for len(tracks) > 0 {
				i := rng.IntN(len(tracks))
				op := tracks[i][0]
				op.do(s)
				log = append(log, op.desc)
				if tracks[i] = tracks[i][1:]; len(tracks[i]) == 0 {
					tracks = append(tracks[:i], tracks[i+1:]...)
				}
				if rng.IntN(8) == 0 {
					s.Flush()
					log = append(log, "flush")
				}
			}
			s.Flush()
			got := s.Published().Model
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the store's model differs from mesh.Build's\nstore: %s\nbuild: %s\nevents: %v", describeModel(got), describeModel(want), log)
			}
			gotErrs := s.ConfigErrors()
			if len(gotErrs) != len(wantErrs) {
				t.Errorf("store errors %v\nbuild errors %v\nevents: %v", gotErrs, wantErrs, log)
				return
			}
			for i := range wantErrs {
				if gotErrs[i].Object != wantErrs[i].Object || gotErrs[i].Error() != wantErrs[i].Error() {
					t.Errorf("error %d: store %q, build %q\nevents: %v", i, gotErrs[i], wantErrs[i], log)
				}
			}
		})
	}
}

// describeModel names which object each profile and split came from, the
// part of a model a resolution mistake changes.
func describeModel(m *mesh.Model) string {
	out := fmt.Sprintf("%d services, %d endpoint sets;", len(m.Services), len(m.Endpoints))
	for k, p := range m.Profiles {
		out += fmt.Sprintf(" profile %s:%s from %s;", k.Namespace, k.Service, p.Source)
	}
	for k, sp := range m.Splits {
		out += fmt.Sprintf(" split %s from %s %v;", k, sp.Source, sp.Backends)
	}
	return out
}
