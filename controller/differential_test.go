package controller

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
)

// The differential test is the net under translate's caches and the
// dependency index: a missed cache key or index rule leaves a proxy with
// stale config and nothing else notices. Seeded random changes go into a
// real Store and through the production flush (planFor, pushEndpoints,
// pushNodes, forget) with a long-lived translator; after every flush,
//
//	(a) a warm translator's output for every proxy equals (proto.Equal,
//	    resource by resource, in emitted order) a fresh translator's on the
//	    same model, errors included;
//	(b) what the pipeline serves every connected proxy (its last push,
//	    however old) equals the fresh output, and the EDS it serves equals
//	    the fresh load assignments of every service: every output that
//	    changed was in the plan;
//	(c) the store holds what a store fed the same objects at once holds.
//
// Proxies also drop their streams and reconnect (validateNode's push), and
// a proxy sometimes connects from the snapshot before the last one, so the
// warm translator is asked about two models as in production. Recomputing
// a proxy whose output did not change is allowed; how often it happens is
// logged as a figure. Longer runs:
//
//	go test ./controller -short -run '^TestDifferential$' -v -diff.seeds 500 -diff.steps 200
//	go test ./controller -short -run '^$' -fuzz '^FuzzDifferential$' -parallel 1

var (
	diffSeeds = flag.Int("diff.seeds", 0, "differential test: number of seeds (0: the bounded default)")
	diffSteps = flag.Int("diff.steps", 0, "differential test: flushes per seed (0: the bounded default)")
	diffSeed  = flag.Uint64("diff.seed", 1, "differential test: first seed")
)

// The bounded default fits `make test` (race detector, busy two cores) in
// a few seconds; -diff.seeds and -diff.steps go further.
const (
	defaultDiffSeeds = 8
	defaultDiffSteps = 50
)

// diffOptions alternates by seed between a translator with mTLS (a trust
// domain: every feature on) and one without, whose index follows fewer
// inputs (translate.ReadsFor): both must serve what a fresh translator
// with the same options gives.
func diffOptions(seed uint64) translate.Options {
	if seed%2 == 1 {
		return translate.Options{ClusterDomain: "cluster.local"}
	}
	return translate.Options{ClusterDomain: "cluster.local", TrustDomain: "cluster.local"}
}

func TestDifferential(t *testing.T) {
	seeds, steps := cmp.Or(*diffSeeds, defaultDiffSeeds), cmp.Or(*diffSteps, defaultDiffSteps)
	var total diffStats
	for i := range seeds {
		seed := *diffSeed + uint64(i)
		r := newDiffRun(t, fmt.Sprintf("seed %d", seed), newSeededChooser(seed), diffOptions(seed), nil)
		if err := r.run(t.Context(), steps); err != nil {
			t.Fatalf("%v\nreproduce: go test ./controller -short -run '^TestDifferential$' -diff.seed %d -diff.seeds 1 -diff.steps %d", err, seed, r.step+1)
		}
		total.add(r.stats)
	}
	t.Logf("%d seeds x %d flushes: %s", seeds, steps, total)
}

// FuzzDifferential reads the generator's decisions from the fuzzer's bytes.
func FuzzDifferential(f *testing.F) {
	for _, seed := range []uint64{1, 2} {
		r := rand.New(rand.NewPCG(seed, seed))
		b := make([]byte, 3000)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newDiffRun(t, "fuzz input", &byteChooser{b: data}, diffOptions(uint64(len(data))), nil)
		if err := r.run(t.Context(), 200); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d flushes: %s", r.step, r.stats)
	})
}

// TestDifferentialCatchesStaleOutput checks the net itself: a translator
// that keeps serving a proxy what it computed first (a cache key that
// misses every change) must be caught.
func TestDifferentialCatchesStaleOutput(t *testing.T) {
	r := newDiffRun(t, "seed 1", newSeededChooser(1), diffOptions(0), func(tr Translator) Translator {
		return &stickyTranslator{Translator: tr, first: map[string]map[string][]types.Resource{}}
	})
	err := r.run(t.Context(), defaultDiffSteps)
	if err == nil || !strings.Contains(err.Error(), "served") {
		t.Fatalf("a translator serving stale output went unnoticed (error: %v)", err)
	}
}

type stickyTranslator struct {
	Translator
	mu    sync.Mutex
	first map[string]map[string][]types.Resource
}

func (s *stickyTranslator) ForProxy(m *mesh.Model, p *mesh.Proxy) (map[string][]types.Resource, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if res, ok := s.first[p.NodeID()]; ok {
		return res, nil
	}
	res, errs := s.Translator.ForProxy(m, p)
	s.first[p.NodeID()] = res
	return res, errs
}

// diffRun is one random sequence of changes and its checks.
type diffRun struct {
	name  string
	opts  translate.Options
	c     chooser
	w     *world
	store *Store
	x     *recordingXDS
	pipe  *pipeline
	// warm is the pipeline's translator: it sees what production sees
	// (planned proxies, EDS of planned services, connecting proxies).
	warm *translate.Translator
	// every translates every proxy after every flush.
	every *translate.Translator
	// prev and prevFresh are the snapshot before the last flush and a
	// fresh translator that translated it.
	prev      *Snapshot
	prevFresh *translate.Translator
	// offline are proxies without a stream: the index skips them and
	// what they were last served may be stale until they reconnect.
	offline map[string]bool
	ops     []string
	step    int
	// eq is the equality memo of the current flush.
	eq    equalMemo
	stats diffStats
}

func newDiffRun(tb testing.TB, name string, c chooser, opts translate.Options, wrap func(Translator) Translator) *diffRun {
	tb.Helper()
	log := testLogger()
	store := NewStore("cluster.local", nil)
	m, err := newControllerMetrics(prometheus.NewRegistry(), store.Counts)
	if err != nil {
		tb.Fatal(err)
	}
	reporter := newConfigErrorReporter(log)
	reporter.metrics = m
	warm := translate.NewTranslator(opts)
	var tr Translator = translatorAdapter{warm}
	if wrap != nil {
		tr = wrap(tr)
	}
	x := &recordingXDS{nodes: map[string]servedNode{}, eds: map[string]*endpointv3.ClusterLoadAssignment{}}
	synced := make(chan struct{})
	close(synced)
	return &diffRun{
		name:      name,
		opts:      opts,
		c:         c,
		w:         newWorld(c),
		store:     store,
		x:         x,
		pipe:      newPipeline(log, store, tr, x, 2, m, newTranslateProblems(reporter, store.ObjectReference, log), synced),
		warm:      warm,
		every:     translate.NewTranslator(opts),
		prev:      store.Published(),
		prevFresh: translate.NewTranslator(opts),
		offline:   map[string]bool{},
	}
}

// run makes steps flushes (fewer when a fuzzer's bytes run out) and
// returns the first failed check.
func (r *diffRun) run(ctx context.Context, steps int) error {
	for r.step = 0; r.step < steps && !r.c.exhausted(); r.step++ {
		// Mostly one event per flush: a flush that recomputes everyone
		// (any Service change does) hides what the other events needed.
		n := pick(r.c, 1, 1, 1, 1, 1, 1, 2, 2, 3)
		if r.step == 0 {
			n = 20 + r.c.intn(20)
		}
		var ops []diffOp
		if r.step == 0 {
			// Namespaces first: most pods are meshed by their namespace.
			for range len(diffNamespaces) {
				ops = append(ops, r.w.namespaceOp())
			}
		}
		for range n {
			ops = append(ops, r.w.op(r.step == 0))
		}
		if err := r.churnConnections(ctx); err != nil {
			return err
		}
		for _, op := range ops {
			r.ops = append(r.ops, fmt.Sprintf("step %d: %s", r.step, op.desc))
			op.apply(r.store)
		}
		if err := r.flushAndCheck(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (r *diffRun) failf(format string, args ...any) error {
	ops := r.ops
	elided := ""
	if len(ops) > 400 {
		elided = fmt.Sprintf("  (%d earlier ops not shown)\n", len(ops)-400)
		ops = ops[len(ops)-400:]
	}
	return fmt.Errorf("%s, step %d: %s\nops so far:\n%s  %s", r.name, r.step, fmt.Sprintf(format, args...), elided, strings.Join(ops, "\n  "))
}

// connectAll marks every proxy the next flush will publish as connected,
// unless it is offline: the pipeline recomputes only connected proxies.
func (r *diffRun) connectAll() {
	r.store.mu.Lock()
	ids := slices.Collect(maps.Keys(r.store.proxies))
	r.store.mu.Unlock()
	r.pipe.mu.Lock()
	r.pipe.connected = map[string]struct{}{}
	for _, id := range ids {
		if !r.offline[id] {
			r.pipe.connected[id] = struct{}{}
		}
	}
	r.pipe.mu.Unlock()
}

// churnConnections drops and restores streams between flushes. A proxy that
// reconnects is pushed from the published snapshot, as validateNode does,
// and must then be served what a fresh translator gives.
func (r *diffRun) churnConnections(ctx context.Context) error {
	snap := r.store.Published()
	for _, id := range slices.Sorted(maps.Keys(snap.Proxies)) {
		switch {
		case !chance(r.c, 4):
		case r.offline[id]:
			delete(r.offline, id)
			r.ops = append(r.ops, fmt.Sprintf("step %d: proxy %s reconnects", r.step, id))
			r.pipe.push(ctx, snap, id, time.Time{})
			want, _ := translate.NewTranslator(r.opts).ForProxy(snap.Model, snap.Proxies[id])
			byType := want.ByType()
			delete(byType, resourcev3.EndpointType)
			if d := (equalMemo{}).firstDifference(r.x.nodes[id].res, byType); d != "" {
				return r.failf("proxy %s: pushed on reconnection, its config is not what a fresh translator gives: %s", id, d)
			}
		default:
			r.offline[id] = true
			r.ops = append(r.ops, fmt.Sprintf("step %d: proxy %s disconnects", r.step, id))
		}
	}
	for id := range r.offline {
		if snap.Proxies[id] == nil {
			delete(r.offline, id)
		}
	}
	return nil
}

func (r *diffRun) flushAndCheck(ctx context.Context) error {
	r.connectAll()
	beforeNodes, beforeEDS := r.x.begin()
	r.eq = equalMemo{}
	r.pipe.flush(ctx)
	cur := r.store.Published()
	fresh := translate.NewTranslator(r.opts)

	ids := slices.Sorted(maps.Keys(cur.Proxies))
	wantEDS := map[string]*endpointv3.ClusterLoadAssignment{}
	owner := map[string]mesh.ServiceKey{}
	for _, k := range slices.SortedFunc(maps.Keys(cur.Model.Services), compareServiceKeys) {
		for _, cla := range fresh.Endpoints(cur.Model, k) {
			wantEDS[cla.GetClusterName()] = cla
			owner[cla.GetClusterName()] = k
		}
	}

	for _, id := range ids {
		px := cur.Proxies[id]
		want, wantErrs := fresh.ForProxy(cur.Model, px)
		wantByType := want.ByType()

		// (a) warm output equals fresh output, errors included.
		got, gotErrs := r.every.ForProxy(cur.Model, px)
		if d := r.eq.firstDifference(got.ByType(), wantByType); d != "" {
			return r.failf("proxy %s: warm translator output differs from a fresh translator's: %s", id, d)
		}
		if g, w := errorStrings(gotErrs), errorStrings(wantErrs); !slices.Equal(g, w) {
			return r.failf("proxy %s: warm translator errors differ from a fresh translator's:\ngot  %q\nwant %q", id, g, w)
		}
		// Every cluster's load assignment is in the fresh EDS set.
		gotEDS := map[string]types.Resource{}
		for _, cla := range want.Endpoints {
			gotEDS[cla.GetClusterName()] = cla
		}
		if !maps.EqualFunc(gotEDS, wantEDS, func(a types.Resource, b *endpointv3.ClusterLoadAssignment) bool { return r.eq.equal(a, b) }) {
			return r.failf("proxy %s: ForProxy's load assignments %v are not Endpoints' of every service %v", id, slices.Sorted(maps.Keys(gotEDS)), slices.Sorted(maps.Keys(wantEDS)))
		}

		// (b) what is served equals the fresh output.
		if r.offline[id] {
			continue
		}
		served, ok := r.x.nodes[id]
		recomputed := "it was recomputed this flush"
		if !r.x.pushed[id] {
			recomputed = "the dependency index did not plan it this flush"
		}
		if !ok {
			return r.failf("proxy %s: no config served (%s)", id, recomputed)
		}
		if served.kind != px.Kind {
			return r.failf("proxy %s: served as %s, is a %s proxy (%s)", id, served.kind, px.Kind, recomputed)
		}
		delete(wantByType, resourcev3.EndpointType)
		if d := r.eq.firstDifference(served.res, wantByType); d != "" {
			return r.failf("proxy %s: served config is not what a fresh translator gives (%s): %s", id, recomputed, d)
		}
	}
	for id := range r.x.nodes {
		if cur.Proxies[id] == nil {
			return r.failf("proxy %s: config still served, but the proxy is gone", id)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(wantEDS)) {
		got, ok := r.x.eds[name]
		planned := "its service was planned for EDS this flush"
		if !r.x.edsSet[name] {
			planned = "its service was not planned for EDS this flush"
		}
		switch {
		case !ok:
			return r.failf("load assignment %s of %s: not served (%s)", name, owner[name], planned)
		case !r.eq.equal(got, wantEDS[name]):
			return r.failf("load assignment %s of %s: served one differs from a fresh translator's (%s):\n%s", name, owner[name], planned, textDiff(got, wantEDS[name]))
		}
	}
	for name := range r.x.eds {
		if wantEDS[name] == nil {
			return r.failf("load assignment %s: still served, but no service produces it", name)
		}
	}

	if err := r.checkFromScratch(cur); err != nil {
		return err
	}
	r.count(cur, beforeNodes, beforeEDS)
	if err := r.connectRace(); err != nil {
		return err
	}
	r.prev, r.prevFresh = cur, fresh
	return nil
}

// checkFromScratch checks the store's own incremental derivation, which
// the checks above take on trust: a store fed every current object at once
// holds the same model, proxies and config errors.
func (r *diffRun) checkFromScratch(cur *Snapshot) error {
	scratch := NewStore("cluster.local", nil)
	for _, k := range slices.Sorted(maps.Keys(r.w.objects)) {
		r.w.objects[k](scratch)
	}
	_, want, _, _ := scratch.Flush()
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"services", cur.Model.Services, want.Model.Services},
		{"endpoints", cur.Model.Endpoints, want.Model.Endpoints},
		{"profiles", cur.Model.Profiles, want.Model.Profiles},
		{"splits", cur.Model.Splits, want.Model.Splits},
		{"proxies", cur.Proxies, want.Proxies},
		{"config errors", errorStrings(configErrors(r.store)), errorStrings(configErrors(scratch))},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			return r.failf("the store's %s differ from those of a store fed the same objects at once:\ngot  %s\nwant %s", c.what, dump(c.got), dump(c.want))
		}
	}
	return nil
}

func configErrors(s *Store) []error {
	var out []error
	for _, e := range s.ConfigErrors() {
		out = append(out, e)
	}
	return out
}

// dump prints a model map in key order, values dereferenced.
func dump(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Map {
		return fmt.Sprintf("%+v", v)
	}
	var lines []string
	for _, k := range rv.MapKeys() {
		val := rv.MapIndex(k)
		if val.Kind() == reflect.Pointer && !val.IsNil() {
			val = val.Elem()
		}
		lines = append(lines, fmt.Sprintf("%+v: %+v", k.Interface(), val.Interface()))
	}
	slices.Sort(lines)
	return "\n    " + strings.Join(lines, "\n    ")
}

// connectRace does what a connecting proxy may do in production: the warm
// translator translates it from the snapshot before the last one
// (validateNode read the published snapshot just before the flush).
func (r *diffRun) connectRace() error {
	if ids := slices.Sorted(maps.Keys(r.prev.Proxies)); len(ids) > 0 && chance(r.c, 25) {
		id := pick(r.c, ids...)
		px := r.prev.Proxies[id]
		got, _ := r.warm.ForProxy(r.prev.Model, px)
		want, _ := r.prevFresh.ForProxy(r.prev.Model, px)
		if d := r.eq.firstDifference(got.ByType(), want.ByType()); d != "" {
			return r.failf("proxy %s: on the previous snapshot, the warm translator's output differs from a fresh translator's: %s", id, d)
		}
	}
	return nil
}

func (r *diffRun) count(cur *Snapshot, beforeNodes map[string]servedNode, beforeEDS map[string]*endpointv3.ClusterLoadAssignment) {
	s := &r.stats
	s.flushes++
	s.proxyChecks += len(cur.Proxies)
	s.services += len(cur.Model.Services)
	s.profiles += len(cur.Model.Profiles)
	s.splits += len(cur.Model.Splits)
	for id := range r.x.pushed {
		s.recomputed++
		if before, ok := beforeNodes[id]; ok && r.eq.sameResources(r.x.nodes[id].res, before.res) {
			s.recomputedUnchanged++
		}
	}
	for name := range r.x.edsSet {
		s.claSets++
		if before, ok := beforeEDS[name]; ok && r.eq.equal(before, r.x.eds[name]) {
			s.claSetsUnchanged++
		}
	}
}

type diffStats struct {
	flushes, proxyChecks            int
	services, profiles, splits      int
	recomputed, recomputedUnchanged int
	claSets, claSetsUnchanged       int
}

func (s *diffStats) add(o diffStats) {
	s.flushes += o.flushes
	s.proxyChecks += o.proxyChecks
	s.services += o.services
	s.profiles += o.profiles
	s.splits += o.splits
	s.recomputed += o.recomputed
	s.recomputedUnchanged += o.recomputedUnchanged
	s.claSets += o.claSets
	s.claSetsUnchanged += o.claSetsUnchanged
}

func (s diffStats) String() string {
	pct := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	avg := func(n int) float64 { return float64(n) / float64(max(s.flushes, 1)) }
	return fmt.Sprintf("on average %.1f proxies, %.1f services, %.1f profiles, %.1f splits per flush; ", avg(s.proxyChecks), avg(s.services), avg(s.profiles), avg(s.splits)) +
		fmt.Sprintf("%d proxy checks; the index recomputed %d proxies (%.0f%% of checks), %d of them (%.0f%%) with unchanged output; %d load assignments set, %d of them (%.0f%%) unchanged",
			s.proxyChecks, s.recomputed, pct(s.recomputed, s.proxyChecks), s.recomputedUnchanged, pct(s.recomputedUnchanged, s.recomputed),
			s.claSets, s.claSetsUnchanged, pct(s.claSetsUnchanged, s.claSets))
}

func compareServiceKeys(a, b mesh.ServiceKey) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

func errorStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

var resourceTypes = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.SecretType, resourcev3.EndpointType}

// equalMemo remembers proto.Equal per pair of resources: proxies share
// most of their resources (per namespace, per translator), so the same
// pairs come up again and again within a flush. Resources are immutable, so
// an answer stays true as long as both are referenced.
type equalMemo map[[2]types.Resource]bool

func (m equalMemo) equal(a, b types.Resource) bool {
	if a == b {
		return true
	}
	k := [2]types.Resource{a, b}
	eq, ok := m[k]
	if !ok {
		eq = proto.Equal(a, b)
		m[k] = eq
	}
	return eq
}

// sameResources is firstDifference(got, want) == "" without the diff.
func (m equalMemo) sameResources(got, want map[string][]types.Resource) bool {
	for _, typ := range resourceTypes {
		if !slices.EqualFunc(got[typ], want[typ], m.equal) {
			return false
		}
	}
	return true
}

// firstDifference names the first resource, in emitted order, where got and
// want differ, with a diff of its text form; "" when they are equal.
func (m equalMemo) firstDifference(got, want map[string][]types.Resource) string {
	if m.sameResources(got, want) {
		return ""
	}
	for _, typ := range resourceTypes {
		g, w := got[typ], want[typ]
		short := typ[strings.LastIndex(typ, ".")+1:]
		for i := range max(len(g), len(w)) {
			switch {
			case i >= len(g):
				return fmt.Sprintf("%s %q missing (got %d, want %d: %v)", short, cachev3.GetResourceName(w[i]), len(g), len(w), names(w))
			case i >= len(w):
				return fmt.Sprintf("%s %q not expected (got %d, want %d: %v)", short, cachev3.GetResourceName(g[i]), len(g), len(w), names(w))
			case cachev3.GetResourceName(g[i]) != cachev3.GetResourceName(w[i]):
				return fmt.Sprintf("%s #%d is %q, want %q (got %v, want %v)", short, i, cachev3.GetResourceName(g[i]), cachev3.GetResourceName(w[i]), names(g), names(w))
			case !m.equal(g[i], w[i]):
				return fmt.Sprintf("%s %q differs:\n%s", short, cachev3.GetResourceName(w[i]), textDiff(g[i], w[i]))
			}
		}
	}
	return ""
}

func names(rs []types.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = cachev3.GetResourceName(r)
	}
	return out
}

// textDiff shows where two messages' text forms part: a few lines of
// common context, then the lines that differ ("-" want, "+" got).
func textDiff(got, want proto.Message) string {
	opts := prototext.MarshalOptions{Multiline: true, Indent: "  "}
	g := strings.Split(opts.Format(got), "\n")
	w := strings.Split(opts.Format(want), "\n")
	p := 0
	for p < len(g) && p < len(w) && g[p] == w[p] {
		p++
	}
	s := 0
	for s < len(g)-p && s < len(w)-p && g[len(g)-1-s] == w[len(w)-1-s] {
		s++
	}
	var b strings.Builder
	for _, l := range g[max(0, p-4):p] {
		b.WriteString("    " + l + "\n")
	}
	write := func(sign string, lines []string) {
		if len(lines) > 40 {
			lines = append(lines[:40:40], fmt.Sprintf("... (%d more lines)", len(lines)-40))
		}
		for _, l := range lines {
			b.WriteString("  " + sign + " " + l + "\n")
		}
	}
	write("-", w[p:len(w)-s])
	write("+", g[p:len(g)-s])
	return b.String()
}

// recordingXDS is the xds server as far as the checks need it: what each
// node and the shared EDS cache were last given.
type recordingXDS struct {
	mu    sync.Mutex
	nodes map[string]servedNode
	eds   map[string]*endpointv3.ClusterLoadAssignment
	// pushed and edsSet are what the current flush set.
	pushed map[string]bool
	edsSet map[string]bool
}

type servedNode struct {
	kind proxy.Kind
	res  map[string][]types.Resource
}

// begin starts a flush and returns copies of what is served before it.
func (x *recordingXDS) begin() (map[string]servedNode, map[string]*endpointv3.ClusterLoadAssignment) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pushed, x.edsSet = map[string]bool{}, map[string]bool{}
	return maps.Clone(x.nodes), maps.Clone(x.eds)
}

func (x *recordingXDS) SetNodeResources(_ context.Context, nodeID string, kind proxy.Kind, res map[string][]types.Resource, _ time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.nodes[nodeID] = servedNode{kind: kind, res: res}
	x.pushed[nodeID] = true
	return nil
}

func (x *recordingXDS) SetEndpoints(_ context.Context, clas map[string]*endpointv3.ClusterLoadAssignment, _ time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	for name, cla := range clas {
		if cla == nil {
			return errors.New("nil load assignment " + name)
		}
		x.eds[name] = cla
		x.edsSet[name] = true
	}
	return nil
}

func (x *recordingXDS) DeleteEndpoints(names ...string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, n := range names {
		delete(x.eds, n)
	}
}

func (x *recordingXDS) ClearNode(nodeID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.nodes, nodeID)
}

func (x *recordingXDS) HasStreams(string) bool { return true }
