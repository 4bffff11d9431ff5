package xds

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/proxy"
)

// snapshotTypes are the per-node types. EDS is not among them: it lives in
// one endpointCache shared by every node.
var snapshotTypes = []string{
	resourcev3.ListenerType,
	resourcev3.RouteType,
	resourcev3.ClusterType,
	resourcev3.SecretType,
}

func isSnapshotType(typeURL string) bool { return slices.Contains(snapshotTypes, typeURL) }

// typeSet is one resource type of a node snapshot.
type typeSet struct {
	version string
	plain   map[string]types.Resource
	// encoded holds what is sent, by name: marshalled once per resource
	// and shared by every response of every node carrying it. Its hashes
	// are the delta versions.
	encoded map[string]*encoded
	// sorted is encoded's values by name: a wildcard SotW response's
	// resources, ordered once per set rather than once per push.
	sorted []*encoded
	// input is the resource list, in the order given, this set was last
	// built from (see typeSets.byInput). Guarded by typeSets.inputMu.
	input []types.Resource
	// diffs memoizes diffFrom, by the set diffed from.
	diffMu sync.Mutex
	diffs  map[weak.Pointer[typeSet]]*setDiff
}

// setDiff is what a client holding one set lacks of another: resources
// whose content changed or that are new, by name, and names removed.
type setDiff struct {
	changed []*encoded
	removed []string
}

// maxDiffs bounds a set's memoized diffs: the streams of a view move from
// one or two sets (the last and, for the slower ones, the one before).
const maxDiffs = 8

// diffFrom returns what a client holding held lacks of set. The streams of
// one view hold the same set and move to the same next one, so this is
// computed once per pair of sets, not once per stream (a wildcard CDS
// stream compared 2,000 clusters per change). The slices are shared by
// every response carrying them: read only.
func (set *typeSet) diffFrom(held *typeSet) *setDiff {
	key := weak.Make(held)
	set.diffMu.Lock()
	defer set.diffMu.Unlock()
	if d := set.diffs[key]; d != nil {
		return d
	}
	d := &setDiff{}
	for name, e := range set.encoded {
		if h := held.encoded[name]; h == nil || h.hash != e.hash {
			d.changed = append(d.changed, e)
		}
	}
	for name := range held.encoded {
		if set.encoded[name] == nil {
			d.removed = append(d.removed, name)
		}
	}
	slices.SortFunc(d.changed, func(a, b *encoded) int { return strings.Compare(a.name, b.name) })
	slices.Sort(d.removed)
	d.changed, d.removed = slices.Clip(d.changed), slices.Clip(d.removed)
	if set.diffs == nil || len(set.diffs) >= maxDiffs {
		set.diffs = make(map[weak.Pointer[typeSet]]*setDiff)
	}
	set.diffs[key] = d
	return d
}

// nodeSnapshot is what nodeCache serves a node. It is immutable once built,
// so its maps are handed out without copying, and built from the
// per-pointer encodings, so no resource is marshalled twice.
type nodeSnapshot struct {
	sets map[string]*typeSet
}

// typeSets shares typeSet values between nodes: proxies with the same
// configuration get the same maps, not 1,000 copies of 500-entry maps. The
// key is the type version, a hash of names and content, so equal keys mean
// equal content. Entries are weak and vanish with the last snapshot using
// them.
type typeSets struct {
	byVersion weakValues[string, typeSet]
	// byInput finds a set by the resource pointers it was built from: the
	// nodes of one view are given the same pointers, in the same order,
	// and their set is then found without hashing, sorting or versioning
	// each of them again (that was 30% of a profile edit's CPU at 1,000
	// proxies, once per node). The key is a hash of the pointers; a hit
	// is confirmed against the set's input.
	byInput weakValues[inputKey, typeSet]
	// inputMu guards every set's input.
	inputMu sync.Mutex
	seed    maphash.Seed
}

type inputKey struct {
	typeURL string
	n       int
	hash    uint64
}

func newTypeSets() *typeSets {
	return &typeSets{seed: maphash.MakeSeed()}
}

// inputKeyOf returns the key of items' pointers, or false when an item is
// not one of the resource types served (whose identity is not a pointer,
// so it cannot be hashed safely): those sets are always built.
func (ts *typeSets) inputKeyOf(typeURL string, items []types.Resource) (inputKey, bool) {
	h := uint64(len(items))
	for _, r := range items {
		switch r.(type) {
		case *listenerv3.Listener, *routev3.RouteConfiguration, *clusterv3.Cluster, *tlsv3.Secret:
		default:
			return inputKey{}, false
		}
		// Order matters: a set keeps the order it was given in input.
		h = (h ^ maphash.Comparable(ts.seed, r)) * 0x100000001b3
	}
	return inputKey{typeURL: typeURL, n: len(items), hash: h}, true
}

// byItems returns the live set last built from exactly items (the same
// pointers in the same order), if any.
func (ts *typeSets) byItems(k inputKey, items []types.Resource) *typeSet {
	set := ts.byInput.get(k)
	if set == nil {
		return nil
	}
	ts.inputMu.Lock()
	defer ts.inputMu.Unlock()
	if !slices.Equal(set.input, items) {
		return nil
	}
	return set
}

// remember records that set is what items build. A set reached from other
// pointers with equal content (a view rebuilt for a new model) is re-keyed
// to the newest ones: those are what the next nodes will be given.
func (ts *typeSets) remember(k inputKey, items []types.Resource, set *typeSet) {
	ts.inputMu.Lock()
	if !slices.Equal(set.input, items) {
		set.input = slices.Clone(items)
	}
	ts.inputMu.Unlock()
	ts.byInput.store(k, set)
}

func (ts *typeSets) get(typeURL, version string) *typeSet {
	return ts.byVersion.get(typeURL + "\x00" + version)
}

// put stores set unless an equal one is already live, and returns the one
// to use.
func (ts *typeSets) put(typeURL string, set *typeSet) *typeSet {
	return ts.byVersion.putIfAbsent(typeURL+"\x00"+set.version, set)
}

func (ts *typeSets) len() int { return ts.byVersion.len() }

// weakValues maps keys to values it does not keep alive: an entry goes
// once its value is collected. The zero value is empty and ready.
type weakValues[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]weak.Pointer[V]
}

func (w *weakValues[K, V]) get(k K) *V {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[k].Value()
}

func (w *weakValues[K, V]) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

// putIfAbsent stores v under k unless a live value is there already, and
// returns the one to use.
func (w *weakValues[K, V]) putIfAbsent(k K, v *V) *V {
	w.mu.Lock()
	defer w.mu.Unlock()
	if live := w.m[k].Value(); live != nil {
		return live
	}
	w.storeLocked(k, v)
	return v
}

// store stores v under k, replacing what is there.
func (w *weakValues[K, V]) store(k K, v *V) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.storeLocked(k, v)
}

func (w *weakValues[K, V]) storeLocked(k K, v *V) {
	wp := weak.Make(v)
	if w.m[k] == wp {
		return
	}
	if w.m == nil {
		w.m = make(map[K]weak.Pointer[V])
	}
	w.m[k] = wp
	runtime.AddCleanup(v, func(k K) {
		w.mu.Lock()
		defer w.mu.Unlock()
		// A newer value may have taken the key since.
		if w.m[k] == wp {
			delete(w.m, k)
		}
	}, k)
}

type namedResource struct {
	name string
	res  types.Resource
	hash string
	enc  *encoded
	// index is the resource's position in what the caller gave, for errors.
	index int
}

// sortedByName orders named by name, the later of two duplicates after the
// earlier (as a stable sort would, so the later one is reported). Every
// node's set is rebuilt on a change that touches it, and translate's order
// is not by name: sorting the 2,000 structs themselves, stably, was 16% of
// a profile edit's CPU at 1,000 proxies, most of it moving them (each move
// a write barrier while the collector runs). Positions are sorted instead,
// and each struct moved once.
func sortedByName(named []namedResource) []namedResource {
	byName := func(a, b namedResource) int { return strings.Compare(a.name, b.name) }
	if slices.IsSortedFunc(named, byName) {
		return named
	}
	order := make([]int32, len(named))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		return cmp.Or(strings.Compare(named[a].name, named[b].name), cmp.Compare(a, b))
	})
	out := make([]namedResource, len(named))
	for i, k := range order {
		out[i] = named[k]
	}
	return out
}

// buildSnapshot validates the resource map's shape (the checker judges
// content) and computes versions. Every snapshot type gets a version even
// when it has no resources: an empty version would equal the empty
// version_info of a proxy's first request, and the node cache would then
// never answer it, leaving the proxy's initial fetch hanging.
func buildSnapshot(hashes *resourceHashes, shared *typeSets, res map[string][]types.Resource) (*nodeSnapshot, error) {
	var errs []error
	for typeURL := range res {
		if !isSnapshotType(typeURL) {
			if typeURL == resourcev3.EndpointType {
				errs = append(errs, fmt.Errorf("type %s: endpoints are set with SetEndpoints, not per node", typeURL))
			} else {
				errs = append(errs, fmt.Errorf("type %s: not served per node (want one of %v)", typeURL, snapshotTypes))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	snap := &nodeSnapshot{sets: make(map[string]*typeSet, len(snapshotTypes))}
	for _, typeURL := range snapshotTypes {
		items := res[typeURL]
		key, keyed := shared.inputKeyOf(typeURL, items)
		if keyed {
			if set := shared.byItems(key, items); set != nil {
				snap.sets[typeURL] = set
				continue
			}
		}
		named := make([]namedResource, 0, len(items))
		for i, r := range items {
			if r == nil || !r.ProtoReflect().IsValid() {
				errs = append(errs, fmt.Errorf("type %s: resources[%d]: nil resource", typeURL, i))
				continue
			}
			if got := r.ProtoReflect().Descriptor().FullName(); resourcev3.APITypePrefix+string(got) != typeURL {
				errs = append(errs, fmt.Errorf("type %s: resources[%d]: is a %s", typeURL, i, got))
				continue
			}
			name := cachev3.GetResourceName(r)
			if name == "" {
				errs = append(errs, fmt.Errorf("type %s: resources[%d]: empty name", typeURL, i))
				continue
			}
			e, err := hashes.encode(r)
			if err != nil {
				errs = append(errs, fmt.Errorf("type %s: resources[%d] (%q): %w", typeURL, i, name, err))
				continue
			}
			named = append(named, namedResource{name: name, res: r, hash: e.hash, enc: e, index: i})
		}
		// Sorted, duplicates are neighbours: no set of names per node and
		// type is needed to find them.
		named = sortedByName(named)
		for k := 1; k < len(named); k++ {
			if named[k].name == named[k-1].name {
				errs = append(errs, fmt.Errorf("type %s: resources[%d]: duplicate name %q", typeURL, named[k].index, named[k].name))
			}
		}
		if len(errs) > 0 {
			continue
		}
		version := typeVersion(named)
		set := shared.get(typeURL, version)
		if set == nil {
			set = shared.put(typeURL, newTypeSet(version, named))
		}
		if keyed {
			shared.remember(key, items, set)
		}
		snap.sets[typeURL] = set
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return snap, nil
}

func newTypeSet(version string, named []namedResource) *typeSet {
	set := &typeSet{
		version: version,
		plain:   make(map[string]types.Resource, len(named)),
		encoded: make(map[string]*encoded, len(named)),
		sorted:  make([]*encoded, 0, len(named)),
	}
	for _, n := range named {
		set.plain[n.name] = n.res
		set.encoded[n.name] = n.enc
		set.sorted = append(set.sorted, n.enc)
	}
	return set
}

func (s *nodeSnapshot) GetVersion(typeURL string) string {
	if set := s.sets[typeURL]; set != nil {
		return set.version
	}
	return ""
}

func (s *nodeSnapshot) GetResources(typeURL string) map[string]types.Resource {
	if set := s.sets[typeURL]; set != nil {
		return set.plain
	}
	return nil
}

func (s *nodeSnapshot) versions() map[string]string {
	out := make(map[string]string, len(s.sets))
	for t, set := range s.sets {
		out[t] = set.version
	}
	return out
}

// checkedSnapshots keeps the snapshots the default checker accepted, by
// peer kind and type sets: the checker's verdict depends on nothing else,
// and since typeSets shares equal sets, the nodes of one view (same
// namespace, kind and inbound ports) arrive with the same sets. Their
// snapshot is then checked once per change, not once per node (the
// checker was 36% (SotW) to 47% (delta) of a profile edit's CPU at
// 1,000 proxies), and shared.
// A node whose own resources differ (its inbound listener) has other sets,
// so it is checked on its own. Refusals are not kept: a refused set is
// checked again on every push (it is rare, and its log is per node
// anyway).
type checkedSnapshots = weakValues[checkedKey, nodeSnapshot]

type checkedKey struct {
	kind proxy.Kind
	sets [4]weak.Pointer[typeSet] // in snapshotTypes' order
}

func checkedKeyOf(kind proxy.Kind, snap *nodeSnapshot) checkedKey {
	k := checkedKey{kind: kind}
	for i, t := range snapshotTypes {
		k.sets[i] = weak.Make(snap.sets[t])
	}
	return k
}
