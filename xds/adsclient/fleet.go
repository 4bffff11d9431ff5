package adsclient

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A Fleet is many simulated proxies in one process, each an ADS stream that
// subscribes like Envoy (listeners and clusters by wildcard, then the route
// configurations and load assignments they name) and ACKs every response.
//
// Client keeps every decoded resource per stream, which is what tests that
// read a proxy's config want and what 10,000 streams cannot afford (each
// would hold its own copy of 2,000 clusters). A fleet stream keeps no
// resource: responses are read at the wire level (see codec), each resource
// is identified by a hash of its bytes, and what a resource implies (its
// name, the names it makes a proxy subscribe to) is computed once per
// distinct content and shared by every stream that receives it. What one
// stream holds is a few pointers into shared, interned sets, so its cost is
// its gRPC connection and one goroutine.
//
// Under delta xDS a proxy keeps what it holds across streams, as Envoy
// does: name -> version per type (pointers to the shared entries, in sets
// interned like the wildcard ones), listed as initial_resource_versions on
// the first request of each type of a new stream, so a control plane whose
// versions survive its restart need send nothing back. ColdReconnect makes
// reconnecting proxies drop it instead.
//
// A fleet measures rather than inspects: Watch registers a change the
// caller is about to make (a marker that will appear in, or vanish from, a
// named resource) and records when each affected stream ACKs the response
// that carries it.
type Fleet struct {
	addr  string
	delta bool
	// connsPer streams share one gRPC connection; 1 is what Envoy does.
	connsPer int
	ping     keepalive.ClientParameters

	seed    maphash.Seed
	entries sync.Map // uint64 -> *entry
	sets    sync.Map // uint64 -> *resourceSet

	// cold: reconnecting streams drop what they hold (see ColdReconnect).
	cold atomic.Bool

	mu      sync.Mutex
	streams []*Stream
	conns   []*grpc.ClientConn
	watches atomic.Pointer[[]*Watch]

	// Responses and Bytes count every response received by any stream and
	// the size of its encoded message, Resources the resources they carry.
	Responses atomic.Int64
	Bytes     atomic.Int64
	Resources atomic.Int64
	synced    atomic.Int64
}

// FleetOptions configure a Fleet.
type FleetOptions struct {
	// Delta selects incremental xDS (DeltaAggregatedResources) instead of
	// state of the world.
	Delta bool
	// StreamsPerConn is how many streams share a gRPC connection. 0 or 1:
	// one connection per stream, as Envoy sidecars have; larger values make
	// the load generator cheaper but hide the control plane's per-connection
	// cost.
	StreamsPerConn int
	// KeepaliveTime is how long a connection may be silent before the
	// proxy pings the control plane, and KeepaliveTimeout how long it
	// then waits for the answer before it drops the connection and
	// reconnects, as an Envoy does whose xDS cluster sets
	// http2_protocol_options.connection_keepalive (interval, timeout;
	// Envoy 1.40 sends no pings without it). Without them a connection
	// the control plane's kernel aborted without a reset (a
	// TCP_USER_TIMEOUT abort under memory pressure) is never noticed by a
	// proxy that has nothing to send, and the proxy waits for a response
	// forever. 0: 30 s and 20 s (gRPC pings no more often than every
	// 10 s).
	KeepaliveTime, KeepaliveTimeout time.Duration
}

// NewFleet returns an empty fleet for the ADS server at addr (plaintext).
func NewFleet(addr string, o FleetOptions) *Fleet {
	ping := keepalive.ClientParameters{Time: o.KeepaliveTime, Timeout: o.KeepaliveTimeout, PermitWithoutStream: true}
	if ping.Time <= 0 {
		ping.Time = 30 * time.Second
	}
	if ping.Timeout <= 0 {
		ping.Timeout = 20 * time.Second
	}
	return &Fleet{addr: addr, delta: o.Delta, connsPer: max(o.StreamsPerConn, 1), ping: ping, seed: maphash.MakeSeed()}
}

// entry is what one distinct resource content implies; shared by all
// streams that receive those bytes.
type entry struct {
	hash uint64
	name string
	// version is the server's version of the resource (delta only; part
	// of the entry's identity): what a reconnecting proxy says it holds.
	version string
	subs    []string // names an Envoy subscribes to because of it
}

// resourceSet is an immutable set of resources of one type, as one proxy
// holds it; proxies holding equal sets share one value.
type resourceSet struct {
	hash   uint64 // sum of the entries' hashes: order-free, updatable
	byName map[string]*entry
	subs   []string // sorted union of the entries' subs
}

var emptySet = &resourceSet{byName: map[string]*entry{}, subs: []string{}}

// Stream is one simulated proxy.
type Stream struct {
	fleet *Fleet
	index int
	node  string
	conn  *grpc.ClientConn

	// subscribed are the RDS and EDS names of the current stream, read by
	// Watch from other goroutines.
	subscribed [2]atomic.Pointer[[]string]

	// held is what the proxy holds of each type (typeOrder's index; nil:
	// nothing), touched only by the stream's goroutine. It outlives a
	// stream under delta xDS, as Envoy's resources do; a SotW proxy (and
	// a cold reconnect) starts each stream from nothing.
	held [4]*resourceSet

	mu       sync.Mutex
	synced   bool
	syncedAt time.Time
	err      error // why the last stream ended
}

// Add dials a stream for nodeID. It keeps reconnecting (with jittered
// backoff, resubscribing as Envoy does: see session) until ctx ends.
func (f *Fleet) Add(ctx context.Context, nodeID string) (*Stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx := len(f.streams)
	if idx%f.connsPer == 0 {
		conn, err := grpc.NewClient("passthrough:///"+f.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Mostly idle streams: no per-connection write buffer, a small
			// read buffer; responses are copied out of it anyway.
			grpc.WithWriteBufferSize(0), grpc.WithSharedWriteBuffer(true), grpc.WithReadBufferSize(8<<10),
			grpc.WithKeepaliveParams(f.ping),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.ForceCodecV2(wireCodec{})))
		if err != nil {
			return nil, fmt.Errorf("dialing the ADS server at %s: %w", f.addr, err)
		}
		f.conns = append(f.conns, conn)
	}
	s := &Stream{fleet: f, index: idx, node: nodeID, conn: f.conns[len(f.conns)-1]}
	f.streams = append(f.streams, s)
	go s.run(ctx)
	return s, nil
}

// ColdReconnect sets whether streams that reconnect from now on drop what
// they hold and subscribe from nothing, as an Envoy restarted together
// with the control plane does, or a SotW client, which cannot say what it
// holds; otherwise (the default) a delta stream lists what it holds.
func (f *Fleet) ColdReconnect(cold bool) { f.cold.Store(cold) }

// Close closes every connection; streams end with their context.
func (f *Fleet) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

// Len is the number of streams added.
func (f *Fleet) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

// Synced counts the streams whose current stream has received and ACKed
// listeners, clusters and the routes and endpoints they name.
func (f *Fleet) Synced() int { return int(f.synced.Load()) }

// SyncedAt returns, per stream in the order added, when its current stream
// became synced (zero if it is not).
func (f *Fleet) SyncedAt() []time.Time {
	f.mu.Lock()
	streams := slices.Clone(f.streams)
	f.mu.Unlock()
	out := make([]time.Time, len(streams))
	for i, s := range streams {
		s.mu.Lock()
		if s.synced {
			out[i] = s.syncedAt
		}
		s.mu.Unlock()
	}
	return out
}

// SyncedAt says when the proxy's current stream became synced, and
// whether it is.
func (s *Stream) SyncedAt() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncedAt, s.synced
}

// Unsynced returns up to n proxies that are not synced, each with the
// error that ended its last stream (nil if the stream is open but not yet
// synced): what to print when a fleet does not converge.
func (f *Fleet) Unsynced(n int) map[string]error {
	f.mu.Lock()
	streams := slices.Clone(f.streams)
	f.mu.Unlock()
	out := map[string]error{}
	for _, s := range streams {
		if len(out) == n {
			break
		}
		s.mu.Lock()
		if !s.synced {
			out[s.node] = s.err
		}
		s.mu.Unlock()
	}
	return out
}

func (s *Stream) setSynced(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == s.synced {
		return
	}
	s.synced = v
	if v {
		s.syncedAt = time.Now()
		s.fleet.synced.Add(1)
	} else {
		s.fleet.synced.Add(-1)
	}
}

const (
	adsSotW  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	adsDelta = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

var adsDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

func (s *Stream) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.session(ctx)
		s.setSynced(false)
		s.subscribed[0].Store(nil)
		s.subscribed[1].Store(nil)
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		// A stream that lived was not refused: start over quickly, as Envoy
		// does after a control plane restart; refusals back off to 2 s.
		if time.Since(start) > 5*time.Second {
			backoff = 100 * time.Millisecond
		}
		wait := backoff/2 + rand.N(backoff)
		backoff = min(2*backoff, 2*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// typeOrder is the order Envoy subscribes in.
var typeOrder = []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType, resourcev3.EndpointType}

// followType is the type a wildcard type's resources make a proxy subscribe to.
func followType(t string) string {
	switch t {
	case resourcev3.ListenerType:
		return resourcev3.RouteType
	case resourcev3.ClusterType:
		return resourcev3.EndpointType
	}
	return ""
}

func followIndex(t string) int {
	if t == resourcev3.RouteType {
		return 0
	}
	return 1
}

// heldIndex is t's index in Stream.held.
func heldIndex(t string) int { return slices.Index(typeOrder, t) }

// session runs one ADS stream until it fails.
func (s *Stream) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	method := adsSotW
	if s.fleet.delta {
		method = adsDelta
	}
	cs, err := s.conn.NewStream(sctx, adsDesc, method)
	if err != nil {
		return fmt.Errorf("opening an ADS stream as %s: %w", s.node, err)
	}
	st := &sessionState{subs: map[string][]string{}, acked: map[string]bool{}, current: map[string]bool{},
		versions: map[string]string{}, nonces: map[string]string{}}
	if !s.fleet.delta || s.fleet.cold.Load() {
		s.held = [4]*resourceSet{}
	}
	if err := s.sendFirstRequests(cs, st); err != nil {
		return err
	}
	for {
		resp := wireResponse{delta: s.fleet.delta}
		if err := cs.RecvMsg(&resp); err != nil {
			return fmt.Errorf("ADS stream of %s: %w", s.node, err)
		}
		err := s.handle(cs, st, &resp)
		resp.free()
		if err != nil {
			return err
		}
	}
}

// sendFirstRequests sends a new stream's first request of each type, as Envoy
// sends them when a stream is established (NewGrpcMuxImpl's
// onStreamEstablished marks every subscription fresh, and
// DeltaSubscriptionState::getNextRequestAckless, source/extensions/
// config_subscription/grpc/delta_subscription_state.cc, Envoy 1.40, fills
// the first request of each type): every name the proxy is interested in
// as resource_names_subscribe (none for a legacy wildcard type), and the
// version of every resource it holds of that type, wildcard or named, as
// initial_resource_versions; a name it is interested in but holds no
// version of is subscribed without one. A proxy holding nothing sends
// what a starting Envoy does: LDS and CDS by wildcard, and routes and
// endpoints once their names are known.
//
// Each request is encoded just before it is sent: SendMsg waits while the
// previous one is still queued (the control plane reads a stream's
// requests only once it is admitted), so a stream holds one encoded
// request at a time. Encoded all at once, 10,000 reconnecting proxies
// held about 500 KB each (versions of 2,000 clusters and 2,000 load
// assignments), 15 GiB in the load generator: what is spread over 10,000
// Envoys is in one process here.
func (s *Stream) sendFirstRequests(cs grpc.ClientStream, st *sessionState) error {
	f := s.fleet
	send := func(req any) error {
		if err := cs.SendMsg(req); err != nil {
			return fmt.Errorf("subscribing as %s: %w", s.node, err)
		}
		return nil
	}
	if !f.delta {
		if err := send(&discoveryv3.DiscoveryRequest{TypeUrl: typeOrder[0], Node: nodeFor(s.node)}); err != nil {
			return err
		}
		return send(&discoveryv3.DiscoveryRequest{TypeUrl: typeOrder[1]})
	}
	node, err := proto.Marshal(nodeFor(s.node))
	if err != nil {
		return fmt.Errorf("encoding the node of %s: %w", s.node, err)
	}
	for i, t := range typeOrder[:2] {
		held := s.held[i]
		if held == nil {
			held = emptySet
		}
		req, _ := encodeFirstDelta(node, t, nil, held)
		if err := send(req); err != nil {
			return err
		}
		node = nil
		follow := followType(t)
		if s.held[i] == nil {
			continue
		}
		// Routes and endpoints named by what the proxy holds are existing
		// subscriptions: Envoy resends them at once, not after the
		// listeners and clusters arrive again.
		names := held.subs
		st.subs[follow] = names
		if len(names) == 0 {
			continue
		}
		s.subscribed[followIndex(follow)].Store(&names)
		fheld := s.held[heldIndex(follow)]
		if fheld == nil {
			fheld = emptySet
		}
		req, all := encodeFirstDelta(nil, follow, names, fheld)
		// Holding every name, the proxy needs no answer: the server sends
		// one only if a version differs.
		st.current[follow] = all
		if err := send(req); err != nil {
			return err
		}
	}
	return nil
}

// sessionState is what one stream of one proxy knows.
type sessionState struct {
	subs  map[string][]string // RDS and EDS names subscribed, shared slices
	acked map[string]bool     // ACKed since the last subscription change
	// current: the type's subscription was sent listing a version of every
	// name it subscribes to (a delta reconnect), and no change since.
	current  map[string]bool
	versions map[string]string // last ACKed, state of the world only
	nonces   map[string]string
}

// synced says the stream has what the proxy needs: a response of each
// wildcard type ACKed on this stream (the server answers a wildcard
// type's first request even when nothing differs), and for routes and
// endpoints a response ACKed since the subscription last changed, or a
// subscription that listed a version of every name it names (nothing to
// send unless the server's versions differ, and then a response comes
// and is ACKed like any other).
func (st *sessionState) synced() bool {
	for _, t := range typeOrder {
		// Only RDS and EDS have subscriptions: one naming nothing is never
		// requested, so never ACKed.
		if names, ok := st.subs[t]; ok && len(names) == 0 {
			continue
		}
		if !st.acked[t] && !st.current[t] {
			return false
		}
	}
	return true
}

func (s *Stream) handle(cs grpc.ClientStream, st *sessionState, resp *wireResponse) error {
	f := s.fleet
	f.Responses.Add(1)
	f.Bytes.Add(int64(resp.size))
	f.Resources.Add(int64(len(resp.resources)))
	t := resp.typeURL
	entries := make([]*entry, len(resp.resources))
	for i, r := range resp.resources {
		e, err := f.entryFor(t, r.value, r.version)
		if err != nil {
			return fmt.Errorf("%s: %w", s.node, err)
		}
		entries[i] = e
	}
	// Which watches this response satisfies, judged on the bytes now.
	var hits []*Watch
	if ws := f.watches.Load(); ws != nil {
		for _, w := range *ws {
			if w.typeURL == t && w.waiting(s.index) && w.satisfiedBy(entries, resp) {
				hits = append(hits, w)
			}
		}
	}

	var reqs []proto.Message
	follow := followType(t)
	if follow != "" || f.delta {
		hi := heldIndex(t)
		prev := s.held[hi]
		if prev == nil {
			prev = emptySet
		}
		var next *resourceSet
		if f.delta {
			next = f.applyDelta(prev, entries, resp.removed)
		} else {
			next = f.setOf(entries)
		}
		s.held[hi] = next
	}
	if follow != "" {
		next := s.held[heldIndex(t)]
		old, ok := st.subs[follow]
		switch {
		case !ok && len(next.subs) == 0:
			// Nothing named: Envoy sends no request (an empty first SotW
			// request would mean "everything").
			st.subs[follow] = next.subs
		case !ok || !slices.Equal(old, next.subs):
			st.subs[follow] = next.subs
			st.acked[follow], st.current[follow] = false, false
			s.subscribed[followIndex(follow)].Store(&next.subs)
			reqs = append(reqs, s.subscription(st, follow, old, next.subs))
		}
	}
	st.acked[t] = true
	st.versions[t], st.nonces[t] = resp.version, resp.nonce
	ack := s.ack(t, resp, st.subs[t])
	if err := cs.SendMsg(ack); err != nil {
		return fmt.Errorf("ACKing %s as %s: %w", t, s.node, err)
	}
	now := time.Now()
	for _, w := range hits {
		w.record(s.index, now)
	}
	for _, r := range reqs {
		if err := cs.SendMsg(r); err != nil {
			return fmt.Errorf("subscribing as %s: %w", s.node, err)
		}
	}
	s.setSynced(st.synced())
	return nil
}

func (s *Stream) ack(t string, resp *wireResponse, names []string) proto.Message {
	if s.fleet.delta {
		return &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.nonce}
	}
	return &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: resp.version, ResponseNonce: resp.nonce, ResourceNames: names}
}

// subscription asks for names of type t, which replaced old.
func (s *Stream) subscription(st *sessionState, t string, old, names []string) proto.Message {
	if !s.fleet.delta {
		return &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: st.versions[t], ResponseNonce: st.nonces[t], ResourceNames: names}
	}
	r := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t}
	for _, n := range names {
		if _, found := slices.BinarySearch(old, n); !found {
			r.ResourceNamesSubscribe = append(r.ResourceNamesSubscribe, n)
		}
	}
	for _, n := range old {
		if _, found := slices.BinarySearch(names, n); !found {
			r.ResourceNamesUnsubscribe = append(r.ResourceNamesUnsubscribe, n)
		}
	}
	return r
}

// entryFor decodes a resource the first time its bytes are seen with that
// version.
func (f *Fleet) entryFor(typeURL string, value, version []byte) (*entry, error) {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(typeURL)
	h.WriteByte(0)
	h.Write(version)
	h.WriteByte(0)
	h.Write(value)
	sum := h.Sum64()
	if e, ok := f.entries.Load(sum); ok {
		return e.(*entry), nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("decoding a %s resource: %w", typeURL, err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(value, m); err != nil {
		return nil, fmt.Errorf("decoding a %s resource: %w", typeURL, err)
	}
	e := &entry{hash: sum, name: cachev3.GetResourceName(m), version: string(version), subs: Subscriptions(m)}
	got, _ := f.entries.LoadOrStore(sum, e)
	return got.(*entry), nil
}

// setOf interns the set a state-of-the-world response holds.
func (f *Fleet) setOf(entries []*entry) *resourceSet {
	var sum uint64
	for _, e := range entries {
		sum += e.hash
	}
	if s, ok := f.sets.Load(sum); ok {
		return s.(*resourceSet)
	}
	byName := make(map[string]*entry, len(entries))
	for _, e := range entries {
		byName[e.name] = e
	}
	return f.internSet(sum, byName)
}

// applyDelta interns prev with entries added or replaced and removed names
// dropped.
func (f *Fleet) applyDelta(prev *resourceSet, entries []*entry, removed []string) *resourceSet {
	sum := prev.hash
	for _, e := range entries {
		if old := prev.byName[e.name]; old != nil {
			sum -= old.hash
		}
		sum += e.hash
	}
	for _, n := range removed {
		if old := prev.byName[n]; old != nil {
			sum -= old.hash
		}
	}
	if s, ok := f.sets.Load(sum); ok {
		return s.(*resourceSet)
	}
	byName := make(map[string]*entry, len(prev.byName)+len(entries))
	for n, e := range prev.byName {
		byName[n] = e
	}
	for _, e := range entries {
		byName[e.name] = e
	}
	for _, n := range removed {
		delete(byName, n)
	}
	return f.internSet(sum, byName)
}

func (f *Fleet) internSet(sum uint64, byName map[string]*entry) *resourceSet {
	var subs []string
	for _, e := range byName {
		subs = append(subs, e.subs...)
	}
	slices.Sort(subs)
	subs = slices.Compact(subs)
	if subs == nil {
		subs = []string{}
	}
	// Sets are few (one per distinct view and change) and small next to
	// the connections; they are kept for the fleet's life.
	got, _ := f.sets.LoadOrStore(sum, &resourceSet{hash: sum, byName: byName, subs: subs})
	return got.(*resourceSet)
}
