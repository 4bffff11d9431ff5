package xds

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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
	mu sync.Mutex
	m  map[string]weak.Pointer[typeSet]
}

func newTypeSets() *typeSets { return &typeSets{m: make(map[string]weak.Pointer[typeSet])} }

func (ts *typeSets) get(typeURL, version string) *typeSet {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.m[typeURL+"\x00"+version].Value()
}

// put stores set unless an equal one is already live, and returns the one
// to use.
func (ts *typeSets) put(typeURL string, set *typeSet) *typeSet {
	key := typeURL + "\x00" + set.version
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if live := ts.m[key].Value(); live != nil {
		return live
	}
	wp := weak.Make(set)
	ts.m[key] = wp
	runtime.AddCleanup(set, func(k string) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		// A newer set may have taken the key since.
		if ts.m[k] == wp {
			delete(ts.m, k)
		}
	}, key)
	return set
}

func (ts *typeSets) len() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.m)
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
		if set := shared.get(typeURL, version); set != nil {
			snap.sets[typeURL] = set
			continue
		}
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
		snap.sets[typeURL] = shared.put(typeURL, set)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return snap, nil
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
