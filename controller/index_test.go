package controller

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
)

// indexStore is baseStore plus meshed namespaces "other" (with its own
// client-side profile for app/api) and "third", one client pod in each,
// and a headless service "db" in app with one endpoint.
func indexStore(t *testing.T) *Store {
	t.Helper()
	s, _ := baseStore(t)
	s.SetNamespace(testNamespace("other", meshedNS))
	s.SetNamespace(testNamespace("third", meshedNS))
	s.SetPod(testPod("other", "cli-1", "10.1.1.1", "cli", nil))
	s.SetPod(testPod("third", "cli-2", "10.1.2.1", "cli", nil))
	s.SetServiceProfile(testProfile("other", "app", "api", time.Unix(1, 0), "/other"))
	db := testService("app", "db", 5432)
	db.Spec.ClusterIP, db.Spec.ClusterIPs = corev1.ClusterIPNone, nil
	s.SetService(db)
	s.SetEndpointSlice(testSlice("app", "db-1", "db", 5432, map[string]string{"db-0": "10.1.0.50"}))
	if _, _, _, ok := s.Flush(); !ok {
		t.Fatal("nothing published")
	}
	return s
}

// connectedIDs leaves app/api-2 unconnected: it must never be recomputed.
var connectedIDs = []string{"web-1.app", "api-1.app", "cli-1.other", "cli-2.third"}

// flushAfter applies op to indexStore and returns what the flush publishes.
func flushAfter(t *testing.T, op func(s *Store)) (prev, cur *Snapshot, ch *Changes) {
	t.Helper()
	s := indexStore(t)
	op(s)
	prev, cur, ch, ok := s.Flush()
	if !ok {
		t.Fatal("the change published nothing")
	}
	return prev, cur, ch
}

// checkPlan compares a plan with the proxies, EDS services and cleared
// proxies it should hold.
func checkPlan(t *testing.T, p plan, wantNodes []string, wantEDS []mesh.ServiceKey, wantClear []string) {
	t.Helper()
	nodes := keys(p.nodes)
	slices.Sort(nodes)
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("nodes %v, want %v", nodes, wantNodes)
	}
	eds := []string{}
	for k := range p.eds {
		eds = append(eds, k.String())
	}
	want := []string{}
	for _, k := range wantEDS {
		want = append(want, k.String())
	}
	slices.Sort(eds)
	slices.Sort(want)
	if !slices.Equal(eds, want) {
		t.Errorf("eds %v, want %v", eds, want)
	}
	if !slices.Equal(p.clear, wantClear) {
		t.Errorf("clear %v, want %v", p.clear, wantClear)
	}
}

func TestPlanFor(t *testing.T) {
	all := []string{"api-1.app", "cli-1.other", "cli-2.third", "web-1.app"}
	api := mesh.ServiceKey{Namespace: "app", Name: "api"}
	db := mesh.ServiceKey{Namespace: "app", Name: "db"}
	cases := []struct {
		name      string
		op        func(s *Store)
		wantNodes []string
		wantEDS   []mesh.ServiceKey
		wantClear []string
	}{
		{
			name: "endpoints of a ClusterIP service: EDS only",
			op: func(s *Store) {
				s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1"}))
			},
			wantEDS: []mesh.ServiceKey{api},
		},
		{
			name: "endpoint churn keeping the same identities: EDS only",
			op: func(s *Store) {
				s.SetPod(testPod("app", "api-3", "10.1.0.4", "api", nil, 9090))
				s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1", "api-3": "10.1.0.4"}))
			},
			wantEDS: []mesh.ServiceKey{api},
		},
		{
			name: "an endpoint of another ServiceAccount: everyone (clusters check who backs api)",
			op: func(s *Store) {
				s.SetPod(testPod("app", "api-canary-1", "10.1.0.5", "api-canary", nil, 9090))
				s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1", "api-canary-1": "10.1.0.5"}))
			},
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{api},
		},
		{
			name:      "a backing pod's ServiceAccount changes: everyone",
			op:        func(s *Store) { s.SetPod(testPod("app", "api-2", "10.1.0.2", "api-v2", nil, 9090)) },
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{api},
		},
		{
			name: "a backing pod leaves the mesh: everyone (api is plaintext now)",
			op: func(s *Store) {
				s.SetPod(testPod("app", "api-2", "10.1.0.2", "api", map[string]string{AnnotationInject: InjectDisabled}, 9090))
			},
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{api},
			wantClear: []string{"api-2.app"},
		},
		{
			name: "endpoints of a headless service: everyone",
			op: func(s *Store) {
				s.SetEndpointSlice(testSlice("app", "db-1", "db", 5432, map[string]string{"db-0": "10.1.0.51"}))
			},
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{db},
		},
		{
			name:      "service: everyone plus its EDS",
			op:        func(s *Store) { s.SetService(testService("app", "api", 9090, 9091)) },
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{api},
		},
		{
			name: "server-side profile: every namespace without its own",
			op:   func(s *Store) { s.SetServiceProfile(testProfile("app", "app", "api", time.Unix(1, 0), "/x")) },
			// other has its own profile for api; api-1 and web-1 are app's clients.
			wantNodes: []string{"api-1.app", "cli-2.third", "web-1.app"},
		},
		{
			name:      "client-side profile: its namespace only",
			op:        func(s *Store) { s.SetServiceProfile(testProfile("other", "app", "api", time.Unix(1, 0), "/changed")) },
			wantNodes: []string{"cli-1.other"},
		},
		{
			name: "split: everyone",
			op: func(s *Store) {
				s.SetTrafficSplit(testSplit("app", "s", "api", time.Unix(1, 0), map[string]int64{"api": 1, "web": 1}))
			},
			wantNodes: all,
		},
		{
			name:      "one proxy changes",
			op:        func(s *Store) { s.SetPod(testPod("other", "cli-1", "10.1.1.2", "cli", nil)) },
			wantNodes: []string{"cli-1.other"},
		},
		{
			name:      "a tap starts on one proxy: that proxy only",
			op:        func(s *Store) { s.SetTapped("cli-1.other", true) },
			wantNodes: []string{"cli-1.other"},
		},
		{
			name: "a tap ends on one proxy: that proxy only",
			op: func(s *Store) {
				s.SetTapped("web-1.app", true)
				s.Flush()
				s.SetTapped("web-1.app", false)
			},
			wantNodes: []string{"web-1.app"},
		},
		{
			name: "a tap on an unconnected proxy: nobody",
			op:   func(s *Store) { s.SetTapped("api-2.app", true) },
		},
		{
			name: "an unconnected proxy changes",
			op:   func(s *Store) { s.SetPod(testPod("app", "api-2", "10.1.0.2", "api", nil, 9090, 9091)) },
		},
		{
			name:      "a pod is deleted",
			op:        func(s *Store) { s.DeletePod("third", "cli-2") },
			wantClear: []string{"cli-2.third"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prev, cur, ch := flushAfter(t, tc.op)
			checkPlan(t, planFor(prev, cur, ch, connectedIDs), tc.wantNodes, tc.wantEDS, tc.wantClear)
		})
	}
}

// TestIndexFollowsDeclaration: the index has no rules of its own; a
// product of translate (or a feature adding to it) that reads one more
// input makes the index react to that input, and one that reads one less
// stops it reacting.
func TestIndexFollowsDeclaration(t *testing.T) {
	all := []string{"api-1.app", "cli-1.other", "cli-2.third", "web-1.app"}
	api := mesh.ServiceKey{Namespace: "app", Name: "api"}
	web := mesh.ServiceKey{Namespace: "app", Name: "web"}
	db := mesh.ServiceKey{Namespace: "app", Name: "db"}
	declared := translate.DeclaredReads()
	with := func(p translate.Product, in translate.Input) translate.Reads {
		r := declared
		r[p] = r[p].With(in)
		return r
	}
	without := func(p translate.Product, in translate.Input) translate.Reads {
		r := declared
		r[p] &^= translate.InputsOf(in)
		return r
	}
	cases := []struct {
		name      string
		reads     translate.Reads
		op        func(s *Store)
		wantNodes []string
		wantEDS   []mesh.ServiceKey
	}{
		{
			name:  "frontend reads endpoints: a ClusterIP service's endpoints reach everyone",
			reads: with(translate.ServiceFrontend, translate.InputEndpoints),
			op: func(s *Store) {
				s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1"}))
			},
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{api},
		},
		{
			name:  "frontend does not read headless endpoints: EDS only",
			reads: without(translate.ServiceFrontend, translate.InputHeadlessEndpoints),
			op: func(s *Store) {
				s.SetEndpointSlice(testSlice("app", "db-1", "db", 5432, map[string]string{"db-0": "10.1.0.51"}))
			},
			wantEDS: []mesh.ServiceKey{db},
		},
		{
			name:  "clusters do not read identities: an endpoint of another ServiceAccount is EDS only",
			reads: without(translate.ServiceClusters, translate.InputEndpointIdentities),
			op: func(s *Store) {
				s.SetPod(testPod("app", "api-canary-1", "10.1.0.5", "api-canary", nil, 9090))
				s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1", "api-canary-1": "10.1.0.5"}))
			},
			wantEDS: []mesh.ServiceKey{api},
		},
		{
			name:  "the proxy's own side reads profiles: the pods backing the service too",
			reads: with(translate.ProxyOwn, translate.InputProfile),
			op:    func(s *Store) { s.SetServiceProfile(testProfile("other", "app", "api", time.Unix(1, 0), "/changed")) },
			// api-2 backs api but is not connected.
			wantNodes: []string{"api-1.app", "cli-1.other"},
		},
		{
			name:  "EDS reads the split",
			reads: with(translate.ServiceEndpoints, translate.InputSplit),
			op: func(s *Store) {
				s.SetTrafficSplit(testSplit("app", "s", "api", time.Unix(1, 0), map[string]int64{"api": 1, "web": 1}))
			},
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{api},
		},
		{
			name:  "EDS reads the backends: a backend's change reaches its apex",
			reads: with(translate.ServiceEndpoints, translate.InputBackendServices),
			op: func(s *Store) {
				s.SetTrafficSplit(testSplit("app", "s", "api", time.Unix(1, 0), map[string]int64{"api": 1, "web": 1}))
				s.SetService(testService("app", "web", 8080, 8081))
			},
			wantNodes: all,
			wantEDS:   []mesh.ServiceKey{api, web},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prev, cur, ch := flushAfter(t, tc.op)
			checkPlan(t, newIndex(tc.reads).plan(prev, cur, ch, connectedIDs), tc.wantNodes, tc.wantEDS, nil)
		})
	}
}

// TestPlanForChangeSeen checks that each node is stamped with the earliest
// change it answers, not the earliest of the batch.
func TestPlanForChangeSeen(t *testing.T) {
	s := indexStore(t)
	t0 := time.Unix(1000, 0)
	now := t0
	s.now = func() time.Time { return now }

	s.SetServiceProfile(testProfile("other", "app", "api", time.Unix(1, 0), "/v2")) // t0: other only
	now = t0.Add(time.Second)
	s.SetService(testService("app", "web", 8080, 8081)) // t0+1s: everyone

	prev, cur, ch, _ := s.Flush()
	p := planFor(prev, cur, ch, connectedIDs)
	if got := p.nodes["cli-1.other"]; !got.Equal(t0) {
		t.Errorf("cli-1.other stamped %v, want %v (its profile change)", got, t0)
	}
	if got := p.nodes["cli-2.third"]; !got.Equal(t0.Add(time.Second)) {
		t.Errorf("cli-2.third stamped %v, want %v (the service change)", got, t0.Add(time.Second))
	}
}

// TestPipelineIndexFollowsItsTranslator: a pipeline plans with what its own
// translator reads. Without a trust domain no cluster carries TLS, so an
// endpoint of another ServiceAccount is an EDS update only; with one, it
// changes every client's clusters. (The regression: with mTLS off, such a
// change once recomputed every proxy.)
func TestPipelineIndexFollowsItsTranslator(t *testing.T) {
	all := []string{"api-1.app", "cli-1.other", "cli-2.third", "web-1.app"}
	api := mesh.ServiceKey{Namespace: "app", Name: "api"}
	op := func(s *Store) {
		s.SetPod(testPod("app", "api-canary-1", "10.1.0.5", "api-canary", nil, 9090))
		s.SetEndpointSlice(testSlice("app", "api-abc", "api", 9090, map[string]string{"api-1": "10.1.0.1", "api-canary-1": "10.1.0.5"}))
	}
	for _, tc := range []struct {
		trustDomain string
		wantNodes   []string
	}{
		{trustDomain: "", wantNodes: nil},
		{trustDomain: "cluster.local", wantNodes: all},
	} {
		t.Run("trust domain "+tc.trustDomain, func(t *testing.T) {
			p := newPipeline(testLogger(), nil, newDefaultTranslator(translate.Options{ClusterDomain: "cluster.local", TrustDomain: tc.trustDomain}), nil, 1, nil, nil, nil)
			prev, cur, ch := flushAfter(t, op)
			checkPlan(t, p.index.plan(prev, cur, ch, connectedIDs), tc.wantNodes, []mesh.ServiceKey{api}, nil)
		})
	}
}
