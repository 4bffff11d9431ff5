package controller

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

type sinkCall struct {
	set bool
	obj mesh.ObjectRef
	msg string
}

type recordingSink struct {
	mu    sync.Mutex
	calls []sinkCall
}

func (r *recordingSink) ConfigErrorSet(e mesh.ConfigError, ref *corev1.ObjectReference) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, sinkCall{set: true, obj: e.Object, msg: e.Err.Error()})
}

func (r *recordingSink) ConfigErrorCleared(obj mesh.ObjectRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, sinkCall{obj: obj})
}

func (r *recordingSink) take() []sinkCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// baseStore holds a meshed namespace "app" with services web (8080) and
// api (9090), api's endpoints on pods api-1 and api-2, and those pods plus
// a client pod web-1, all flushed.
func baseStore(t *testing.T) (*Store, *recordingSink) {
	t.Helper()
	sink := &recordingSink{}
	s := NewStore("cluster.local", sink)
	feedBase(s)
	if _, _, _, ok := s.Flush(); !ok {
		t.Fatal("initial flush published nothing")
	}
	if errs := sink.take(); len(errs) != 0 {
		t.Fatalf("config errors on valid input: %+v", errs)
	}
	return s, sink
}

func feedBase(s *Store) {
	s.SetNamespace(testNamespace("app", meshedNS))
	s.SetService(testService("app", "web", 8080))
	s.SetService(testService("app", "api", 9090))
	s.SetPod(testPod("app", "api-1", "10.1.0.1", "api", nil, 9090))
	s.SetPod(testPod("app", "api-2", "10.1.0.2", "api", nil, 9090))
	s.SetPod(testPod("app", "web-1", "10.1.0.3", "web", nil, 8080))
	s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1", "api-2": "10.1.0.2"}))
}

func TestStoreDropsNoOps(t *testing.T) {
	cases := []struct {
		name string
		op   func(s *Store) bool
	}{
		{"service resync", func(s *Store) bool { return s.SetService(testService("app", "web", 8080)) }},
		{"service status and resourceVersion only", func(s *Store) bool {
			svc := testService("app", "web", 8080)
			svc.ResourceVersion = "2"
			svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}
			return s.SetService(svc)
		}},
		{"pod condition change", func(s *Store) bool {
			pod := testPod("app", "api-1", "10.1.0.1", "api", nil, 9090)
			pod.ResourceVersion = "7"
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			return s.SetPod(pod)
		}},
		{"endpoint slice rewritten unchanged", func(s *Store) bool {
			es := testSlice("app", "api-abc", "api", 9090, map[string]string{"api-2": "10.1.0.2", "api-1": "10.1.0.1"})
			es.ResourceVersion = "9"
			return s.SetEndpointSlice(es)
		}},
		{"namespace label only", func(s *Store) bool {
			ns := testNamespace("app", meshedNS)
			ns.Labels = map[string]string{"team": "x"}
			return s.SetNamespace(ns)
		}},
		{"unmeshed pod that backs nothing", func(s *Store) bool {
			return s.SetPod(testPod("other", "lonely", "10.2.0.1", "default", nil, 80))
		}},
		{"delete of an unknown pod", func(s *Store) bool { return s.DeletePod("app", "nope") }},
		{"slice of an unknown service", func(s *Store) bool {
			return s.SetEndpointSlice(testSlice("app", "ghost-1", "ghost", 80, map[string]string{"g": "10.1.0.9"}))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := baseStore(t)
			kicks := 0
			s.SetOnChange(func() { kicks++ })
			if tc.op(s) {
				t.Error("the operation reported a model change")
			}
			if kicks != 0 {
				t.Errorf("debouncer kicked %d times for a no-op", kicks)
			}
			if _, _, ch, ok := s.Flush(); ok {
				t.Errorf("flush published a snapshot for a no-op: %+v", ch)
			}
		})
	}
}

func keys[K comparable, V any](m map[K]V) []K { return slices.Collect(maps.Keys(m)) }

func TestStoreChanges(t *testing.T) {
	api := mesh.ServiceKey{Namespace: "app", Name: "api"}
	web := mesh.ServiceKey{Namespace: "app", Name: "web"}
	cases := []struct {
		name          string
		op            func(s *Store) bool
		services      []mesh.ServiceKey
		endpoints     []mesh.ServiceKey
		profiles      []mesh.ProfileKey
		splits        []mesh.ServiceKey
		proxies       []string
		wantUnchanged bool
	}{
		{
			name: "slice gains an endpoint",
			op: func(s *Store) bool {
				return s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1", "api-2": "10.1.0.2", "api-3": "10.1.0.4"}))
			},
			endpoints: []mesh.ServiceKey{api},
		},
		{
			name:      "endpoint pod changes service account",
			op:        func(s *Store) bool { return s.SetPod(testPod("app", "api-1", "10.1.0.1", "api-v2", nil, 9090)) },
			endpoints: []mesh.ServiceKey{api},
			proxies:   []string{"api-1.app"},
		},
		{
			name:    "client pod gets a new IP",
			op:      func(s *Store) bool { return s.SetPod(testPod("app", "web-1", "10.1.0.30", "web", nil, 8080)) },
			proxies: []string{"web-1.app"},
		},
		{
			name: "namespace opaque ports re-derive its services",
			op: func(s *Store) bool {
				return s.SetNamespace(testNamespace("app", map[string]string{AnnotationInject: InjectEnabled, mesh.AnnotationOpaquePorts: "8080,9090"}))
			},
			services: []mesh.ServiceKey{api, web},
			// The proxies' opaque ports come from the namespace too.
			proxies:   []string{"api-1.app", "api-2.app", "web-1.app"},
			endpoints: nil,
		},
		{
			// api's endpoints are no longer meshed pods: its clients must
			// stop originating mTLS to it.
			name:      "namespace stops injection: every proxy goes, endpoints are re-derived",
			op:        func(s *Store) bool { return s.SetNamespace(testNamespace("app", nil)) },
			proxies:   []string{"api-1.app", "api-2.app", "web-1.app"},
			endpoints: []mesh.ServiceKey{api},
		},
		{
			// The slice only lists port http-9090, which the service no longer has.
			name:      "service port renumbered re-derives its endpoints",
			op:        func(s *Store) bool { return s.SetService(testService("app", "api", 9091)) },
			services:  []mesh.ServiceKey{api},
			endpoints: []mesh.ServiceKey{api},
		},
		{
			name:      "service deleted takes its endpoints",
			op:        func(s *Store) bool { return s.DeleteService("app", "api") },
			services:  []mesh.ServiceKey{api},
			endpoints: []mesh.ServiceKey{api},
		},
		{
			name: "client-side profile",
			op: func(s *Store) bool {
				return s.SetServiceProfile(testProfile("web-ns", "app", "api", time.Unix(1, 0), "/users"))
			},
			profiles: []mesh.ProfileKey{{Namespace: "web-ns", Service: api}},
		},
		{
			name: "split",
			op: func(s *Store) bool {
				return s.SetTrafficSplit(testSplit("app", "canary", "api", time.Unix(1, 0), map[string]int64{"api": 80, "web": 20}))
			},
			splits: []mesh.ServiceKey{api},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := baseStore(t)
			if !tc.op(s) {
				t.Fatal("the operation reported no change")
			}
			// The debouncer's fast lane is for changes to endpoints alone.
			wantFast := len(tc.endpoints) > 0 && len(tc.services)+len(tc.profiles)+len(tc.splits)+len(tc.proxies) == 0
			if got := s.PendingEndpointsOnly(); got != wantFast {
				t.Errorf("PendingEndpointsOnly = %v before the flush, want %v", got, wantFast)
			}
			_, _, ch, ok := s.Flush()
			if !ok {
				t.Fatal("nothing published")
			}
			if s.PendingEndpointsOnly() {
				t.Error("PendingEndpointsOnly with nothing pending")
			}
			check := func(what string, got, want []string) {
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s changed: got %v, want %v", what, got, want)
				}
			}
			str := func(ks []mesh.ServiceKey) []string {
				out := []string{}
				for _, k := range ks {
					out = append(out, k.String())
				}
				return out
			}
			check("services", str(keys(ch.Services)), str(tc.services))
			check("endpoints", str(keys(ch.Endpoints)), str(tc.endpoints))
			check("splits", str(keys(ch.Splits)), str(tc.splits))
			var gotP, wantP []string
			for _, k := range keys(ch.Profiles) {
				gotP = append(gotP, k.Namespace+":"+k.Service.String())
			}
			for _, k := range tc.profiles {
				wantP = append(wantP, k.Namespace+":"+k.Service.String())
			}
			check("profiles", gotP, wantP)
			check("proxies", keys(ch.Proxies), append([]string{}, tc.proxies...))
		})
	}
}

func mapIdentity(m any) uintptr { return reflect.ValueOf(m).Pointer() }

// TestStoreCopyOnWrite checks that a change replaces only the changed
// values: translate's caches are keyed by these pointers.
func TestStoreCopyOnWrite(t *testing.T) {
	s, _ := baseStore(t)
	prev := s.Published()
	api := mesh.ServiceKey{Namespace: "app", Name: "api"}
	web := mesh.ServiceKey{Namespace: "app", Name: "web"}

	s.SetService(testService("app", "web", 8080, 8081))
	_, cur, _, ok := s.Flush()
	if !ok {
		t.Fatal("nothing published")
	}
	if cur.Gen != prev.Gen+1 {
		t.Errorf("generation %d after %d", cur.Gen, prev.Gen)
	}
	if cur.Model.Services[api] != prev.Model.Services[api] {
		t.Error("unchanged service api got a new pointer")
	}
	if cur.Model.Services[web] == prev.Model.Services[web] {
		t.Error("changed service web kept its pointer")
	}
	if cur.Model.Endpoints[api] != prev.Model.Endpoints[api] {
		t.Error("unchanged endpoints of api got a new pointer")
	}
	if mapIdentity(cur.Model.Profiles) != mapIdentity(prev.Model.Profiles) ||
		mapIdentity(cur.Model.Splits) != mapIdentity(prev.Model.Splits) ||
		mapIdentity(cur.Proxies) != mapIdentity(prev.Proxies) {
		t.Error("maps without changes were copied")
	}
	if mapIdentity(cur.Model.Services) == mapIdentity(prev.Model.Services) {
		t.Error("the services map was written in place: the previous snapshot changed")
	}
	if len(prev.Model.Services[web].Ports) != 1 {
		t.Error("the previous snapshot's service was mutated")
	}

	// A deep-equal value built from a new object keeps the old pointer.
	before := cur.Model.Services[web]
	s.SetService(testService("app", "web", 8080, 8081))
	if got := s.Published().Model.Services[web]; got != before {
		t.Error("re-setting an equal service replaced its pointer")
	}
}

func TestStoreConfigErrorsReportedOnce(t *testing.T) {
	s, sink := baseStore(t)
	bad := testProfile("app", "app", "api", time.Unix(1, 0), "/users/(")
	obj := mesh.ObjectRef{Kind: "ServiceProfile", Namespace: "app", Name: bad.Name}
	key := mesh.ProfileKey{Namespace: "app", Service: mesh.ServiceKey{Namespace: "app", Name: "api"}}

	if s.SetServiceProfile(bad) {
		t.Error("an invalid profile changed the model")
	}
	calls := sink.take()
	if len(calls) != 1 || !calls[0].set || calls[0].obj != obj {
		t.Fatalf("sink calls after an invalid profile: %+v", calls)
	}
	if !strings.Contains(calls[0].msg, "spec.routes[0].condition.pathRegex") {
		t.Errorf("error does not name the field path: %s", calls[0].msg)
	}
	// The same invalid object again (a resync) reports nothing new.
	s.SetServiceProfile(testProfile("app", "app", "api", time.Unix(1, 0), "/users/("))
	if calls := sink.take(); len(calls) != 0 {
		t.Errorf("a resync re-reported: %+v", calls)
	}
	if errs := s.ConfigErrors(); len(errs) != 1 || errs[0].Object != obj {
		t.Errorf("ConfigErrors() = %v", errs)
	}

	// Fixed: cleared once, and the profile enters the model.
	if !s.SetServiceProfile(testProfile("app", "app", "api", time.Unix(1, 0), "/users/[0-9]+")) {
		t.Error("fixing the profile changed nothing")
	}
	calls = sink.take()
	if len(calls) != 1 || calls[0].set || calls[0].obj != obj {
		t.Errorf("sink calls after the fix: %+v", calls)
	}
	_, cur, _, _ := s.Flush()
	if cur.Model.Profiles[key] == nil {
		t.Error("the fixed profile is not in the model")
	}

	// Broken again, then deleted: set once, cleared once.
	s.SetServiceProfile(bad)
	s.DeleteServiceProfile("app", bad.Name)
	calls = sink.take()
	if len(calls) != 2 || !calls[0].set || calls[1].set {
		t.Errorf("sink calls for break+delete: %+v", calls)
	}
	if len(s.ConfigErrors()) != 0 {
		t.Errorf("errors left after delete: %v", s.ConfigErrors())
	}
}

func TestStoreConflictingSplits(t *testing.T) {
	s, sink := baseStore(t)
	api := mesh.ServiceKey{Namespace: "app", Name: "api"}
	old := testSplit("app", "first", "api", time.Unix(100, 0), map[string]int64{"api": 9, "web": 1})
	young := testSplit("app", "second", "api", time.Unix(200, 0), map[string]int64{"api": 1, "web": 1})
	s.SetTrafficSplit(young)
	s.SetTrafficSplit(old)
	_, cur, _, _ := s.Flush()
	if got := cur.Model.Splits[api]; got == nil || got.Source.Name != "first" {
		t.Fatalf("split in the model: %+v, want the older one", got)
	}
	errs := s.ConfigErrors()
	if len(errs) != 1 || errs[0].Object.Name != "second" || !strings.Contains(errs[0].Err.Error(), "first") {
		t.Fatalf("conflict errors: %v", errs)
	}
	sink.take()

	s.DeleteTrafficSplit("app", "first")
	_, cur, _, _ = s.Flush()
	if got := cur.Model.Splits[api]; got == nil || got.Source.Name != "second" {
		t.Fatalf("after deleting the winner: %+v", got)
	}
	if errs := s.ConfigErrors(); len(errs) != 0 {
		t.Errorf("errors left: %v", errs)
	}
}

func TestStoreSplitFollowsServiceExistence(t *testing.T) {
	s, _ := baseStore(t)
	api := mesh.ServiceKey{Namespace: "app", Name: "api"}
	s.SetTrafficSplit(testSplit("app", "canary", "api", time.Unix(1, 0), map[string]int64{"api": 80, "api-v2": 20}))
	_, cur, _, _ := s.Flush()
	if cur.Model.Splits[api] != nil {
		t.Fatal("a split naming a missing backend is in the model")
	}
	if errs := s.ConfigErrors(); len(errs) != 1 || !strings.Contains(errs[0].Err.Error(), "api-v2") {
		t.Fatalf("errors: %v", errs)
	}

	s.SetService(testService("app", "api-v2", 9090))
	_, cur, ch, _ := s.Flush()
	if cur.Model.Splits[api] == nil {
		t.Fatal("the split did not enter the model once its backend exists")
	}
	if _, ok := ch.Splits[api]; !ok {
		t.Error("split change not recorded")
	}
	if errs := s.ConfigErrors(); len(errs) != 0 {
		t.Errorf("errors left: %v", errs)
	}

	s.DeleteService("app", "api-v2")
	_, cur, _, _ = s.Flush()
	if cur.Model.Splits[api] != nil {
		t.Error("the split stayed after its backend was deleted")
	}
}

func TestStoreProxies(t *testing.T) {
	cases := []struct {
		name     string
		ns       map[string]string
		pod      map[string]string
		phase    corev1.PodPhase
		want     bool
		wantKind proxy.Kind
		wantErr  bool
	}{
		{name: "namespace enabled", ns: meshedNS, want: true, wantKind: proxy.Envoy},
		{name: "namespace enabled, pod disabled", ns: meshedNS, pod: map[string]string{AnnotationInject: InjectDisabled}},
		{name: "pod enabled", pod: map[string]string{AnnotationInject: InjectEnabled}, want: true, wantKind: proxy.Envoy},
		{name: "linkerd annotation on namespace", ns: map[string]string{LinkerdAnnotationInject: InjectEnabled}, want: true, wantKind: proxy.Envoy},
		{name: "proxyless grpc", pod: map[string]string{mesh.AnnotationProxyKind: mesh.ProxyKindValueGRPC}, want: true, wantKind: proxy.GRPC},
		{name: "not annotated"},
		{name: "finished pod", ns: meshedNS, phase: corev1.PodSucceeded},
		// Served with that field at its default, and reported.
		{name: "bad annotation", ns: meshedNS, pod: map[string]string{mesh.AnnotationSkipInboundPorts: "eighty"}, want: true, wantKind: proxy.Envoy, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &recordingSink{}
			s := NewStore("cluster.local", sink)
			s.SetNamespace(testNamespace("ns", tc.ns))
			pod := testPod("ns", "p", "10.0.0.1", "sa", tc.pod, 80)
			if tc.phase != "" {
				pod.Status.Phase = tc.phase
			}
			s.SetPod(pod)
			px, exists := s.Proxy("p", "ns")
			if !exists {
				t.Fatal("the pod is unknown")
			}
			if (px != nil) != tc.want {
				t.Fatalf("proxy = %+v, want meshed=%v", px, tc.want)
			}
			if px != nil && px.Kind != tc.wantKind {
				t.Errorf("kind %s, want %s", px.Kind, tc.wantKind)
			}
			calls := sink.take()
			if tc.wantErr != (len(calls) == 1 && calls[0].set && calls[0].obj.Kind == "Pod") {
				t.Errorf("config error calls %+v, want error=%v", calls, tc.wantErr)
			}
		})
	}
}

// TestStoreTapSet: the tap set is published like any model input; setting
// what is already set is a no-op that wakes nobody.
func TestStoreTapSet(t *testing.T) {
	s := NewStore("cluster.local", nil)
	steps := []struct {
		node    string
		on      bool
		changed bool
		want    map[string]bool
	}{
		{"web-1.shop", true, true, map[string]bool{"web-1.shop": true}},
		{"web-1.shop", true, false, map[string]bool{"web-1.shop": true}},
		{"api-1.shop", true, true, map[string]bool{"web-1.shop": true, "api-1.shop": true}},
		{"web-1.shop", false, true, map[string]bool{"api-1.shop": true}},
		{"web-1.shop", false, false, map[string]bool{"api-1.shop": true}},
	}
	for i, st := range steps {
		if got := s.SetTapped(st.node, st.on); got != st.changed {
			t.Errorf("step %d: SetTapped(%s, %v) = %v, want %v", i, st.node, st.on, got, st.changed)
		}
		prev, cur, ch, ok := s.Flush()
		if ok != st.changed {
			t.Errorf("step %d: published %v, want %v", i, ok, st.changed)
		}
		if ok {
			if _, noted := ch.Taps[st.node]; !noted {
				t.Errorf("step %d: Changes.Taps %v lacks %s", i, ch.Taps, st.node)
			}
			if maps.Equal(prev.Model.Tapped, cur.Model.Tapped) {
				t.Errorf("step %d: the published tap set did not change", i)
			}
		}
		if !maps.Equal(cur.Model.Tapped, st.want) {
			t.Errorf("step %d: Tapped %v, want %v", i, cur.Model.Tapped, st.want)
		}
	}
}

// TestStoreRetranslateTapped: every proxy tapped now is noted as changed, and
// with none tapped nothing is published.
func TestStoreRetranslateTapped(t *testing.T) {
	tests := []struct {
		name   string
		tapped []string
	}{
		{"none tapped", nil},
		{"two tapped", []string{"api-1.shop", "web-1.shop"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore("cluster.local", nil)
			for _, n := range tc.tapped {
				s.SetTapped(n, true)
			}
			s.Flush()
			if got := s.RetranslateTapped(); got != len(tc.tapped) {
				t.Errorf("RetranslateTapped() = %d, want %d", got, len(tc.tapped))
			}
			_, cur, ch, ok := s.Flush()
			if ok != (len(tc.tapped) > 0) {
				t.Fatalf("published %v with %d tapped", ok, len(tc.tapped))
			}
			if got := slices.Sorted(maps.Keys(ch.Taps)); ok && !slices.Equal(got, tc.tapped) {
				t.Errorf("Changes.Taps %v, want %v", got, tc.tapped)
			}
			if ok && len(cur.Model.Tapped) != len(tc.tapped) {
				t.Errorf("the tap set changed: %v", cur.Model.Tapped)
			}
		})
	}
}
