package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy"
)

// Options configures a Server. Every field is optional.
type Options struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the weft_xds_* metrics; nil means a private registry
	// (metrics still work in tests through testutil, but nobody scrapes them).
	Registry prometheus.Registerer

	// Checker judges a node's resource set before it is pushed; a set it
	// refuses is not pushed and the last good one stays. Defaults to
	// check.Resources with the peer matching node.Kind, whose verdict is
	// kept per distinct set (see checkedSnapshots); a Checker given here
	// runs on every set of every node.
	Checker func(node NodeInfo, res map[string][]types.Resource) error
	// EndpointChecker judges each ClusterLoadAssignment before it enters the
	// shared cache. Endpoints are shared by Envoy and grpc-go nodes, so the
	// default checks them as the stricter peer, grpc-go.
	EndpointChecker func(cla *endpointv3.ClusterLoadAssignment) error

	// NodeValidator resolves node.id to a known pod on a stream's first
	// request. Defaults to ParsingNodeValidator (any well-formed id).
	NodeValidator NodeValidator
	// Authenticator runs when a stream opens, before any request is read.
	// nil allows unauthenticated (plaintext) streams. The identity it
	// returns is bound to the node id the stream then claims.
	Authenticator Authenticator
	// NackReporter is told of every NACK (the controller turns it into a
	// Kubernetes Event on the pod). It is called on the stream's goroutine
	// and must not block.
	NackReporter func(Nack)
	// OnDisconnect is called once the last stream that named nodeID in its
	// first request has closed, validated or not, so that whatever the
	// NodeValidator recorded about the node can be dropped. It runs on a
	// goroutine of its own, never on a stream's: a slow hook delays no
	// proxy. A node may have reconnected by the time it runs; check
	// Server.HasStreams under the same lock the NodeValidator records
	// connections with.
	OnDisconnect func(nodeID string)

	// MaxSyncingStreams bounds the streams served their initial
	// configuration at once; more wait, their node validated but nothing
	// served, until one of those has answered every response it was sent
	// (or for 10 s at most). It keeps a reconnect storm (a control plane
	// restart) from marshalling and queuing every proxy's configuration at
	// once. 0 means 32 per CPU; negative, no bound.
	MaxSyncingStreams int

	// ServerOptions are added to the gRPC server Serve builds (transport
	// credentials, for example).
	ServerOptions []grpc.ServerOption
	// Services are other gRPC services proxies reach over the xDS channel
	// (the metrics service their stats sink streams to, the access log
	// service of `weft tap`); Serve registers them next to ADS.
	Services []func(grpc.ServiceRegistrar)
	// ShutdownGrace bounds how long Serve waits for streams to end once its
	// context is done. Default 5s.
	ShutdownGrace time.Duration
}

// Server is an ADS server. Create it with New.
type Server struct {
	log     *slog.Logger
	metrics *metrics
	checker func(NodeInfo, map[string][]types.Resource) error
	// checked keeps the default checker's accepted snapshots; nil with a
	// checker of the caller's, which may judge by node.
	checked       *checkedSnapshots
	epChecker     func(*endpointv3.ClusterLoadAssignment) error
	validator     NodeValidator
	authenticator Authenticator
	nackReporter  func(Nack)
	onDisconnect  func(string)
	// hooks tracks running OnDisconnect calls; Serve waits for them.
	hooks         sync.WaitGroup
	serverOptions []grpc.ServerOption
	services      []func(grpc.ServiceRegistrar)
	grace         time.Duration
	// ackHook, when set (benchmarks), hears every ACK of a known response.
	ackHook func(nodeID, typeURL string, at time.Time)

	syncing syncing

	hashes   *resourceHashes
	typeSets *typeSets
	// checks counts the default checker's runs (tests: once per distinct
	// set, not per node).
	checks    atomic.Int64
	snapshots *nodeCache
	endpoints *endpointCache
	mux       *cachev3.MuxCache

	// setMu serializes snapshot updates so that "last good snapshot" and the
	// pending-change bookkeeping agree with what the cache holds.
	setMu   sync.Mutex
	current map[string]*nodeSnapshot

	ep endpointState

	// mu guards the stream and node tracking.
	mu      sync.Mutex
	streams map[streamKey]*streamState
	nodes   map[string]*nodeState
	// claims counts, by node id, the open streams that named it.
	claims  map[string]int
	handles map[*streamHandle]struct{}
	closing bool
}

// New builds a Server. It fails only if the metrics cannot be registered.
func New(opts Options) (*Server, error) {
	s := &Server{
		log:           opts.Logger,
		checker:       opts.Checker,
		epChecker:     opts.EndpointChecker,
		validator:     opts.NodeValidator,
		authenticator: opts.Authenticator,
		nackReporter:  opts.NackReporter,
		onDisconnect:  opts.OnDisconnect,
		claims:        make(map[string]int),
		serverOptions: opts.ServerOptions,
		services:      opts.Services,
		grace:         opts.ShutdownGrace,
		hashes:        newResourceHashes(),
		typeSets:      newTypeSets(),
		current:       make(map[string]*nodeSnapshot),
		streams:       make(map[streamKey]*streamState),
		nodes:         make(map[string]*nodeState),
		handles:       make(map[*streamHandle]struct{}),
		syncing:       newSyncing(opts.MaxSyncingStreams),
	}
	s.ep.init()
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "xds")
	if s.checker == nil {
		s.checker = defaultChecker
		s.checked = new(checkedSnapshots)
	}
	if s.epChecker == nil {
		s.epChecker = defaultEndpointChecker
	}
	if s.validator == nil {
		s.validator = ParsingNodeValidator
	}
	if s.grace <= 0 {
		s.grace = 5 * time.Second
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s.metrics = m

	// The node cache answers a request with the subset of the snapshot it
	// names instead of holding it until it names everything (the
	// SnapshotCache's non-ADS mode; Contour does the same): per-node
	// snapshots are consistent by construction.
	s.snapshots = newNodeCache()
	s.endpoints = newEndpointCache()
	s.mux = &cachev3.MuxCache{
		Classify: func(r *cachev3.Request) string {
			return classify(r.GetTypeUrl())
		},
		ClassifyDelta: func(r *cachev3.DeltaRequest) string {
			return classify(r.GetTypeUrl())
		},
		Caches: map[string]cachev3.Cache{
			"snapshot":  s.snapshots,
			"endpoints": s.endpoints,
		},
	}
	return s, nil
}

func classify(typeURL string) string {
	if typeURL == resourcev3.EndpointType {
		return "endpoints"
	}
	return "snapshot"
}

// SetNodeResources replaces the listeners, routes, clusters and secrets
// (keyed by type URL: resourcev3.ListenerType, RouteType, ClusterType,
// SecretType) of one node. A type absent from res is served empty.
//
// The checker runs first: a set it refuses is not pushed, the node keeps
// its last good set, and the refusal is logged, counted
// (weft_xds_rejected_snapshots_total) and returned. changeSeen is when the
// controller saw the change that led here; it feeds
// weft_xds_convergence_seconds (zero: not measured).
//
// Resources must not be mutated after the call: they are hashed once per
// pointer and may be shared between nodes.
func (s *Server) SetNodeResources(ctx context.Context, nodeID string, kind proxy.Kind, res map[string][]types.Resource, changeSeen time.Time) error {
	start := time.Now()
	pod, ns, err := proxy.ParseNodeID(nodeID)
	if err != nil {
		return fmt.Errorf("setting resources of node: %w", err)
	}
	info := NodeInfo{ID: nodeID, Pod: pod, Namespace: ns, Kind: kind}

	snap, err := buildSnapshot(s.hashes, s.typeSets, res)
	if err == nil {
		snap, err = s.check(info, snap, res)
	}
	if err != nil {
		s.metrics.rejectedSnapshots.WithLabelValues(nodeID).Inc()
		s.log.Warn("refusing node resources: keeping the last good set", "node", nodeID, "kind", kind.String(), "problems", err.Error())
		return fmt.Errorf("node %s: resources refused, last good set kept: %w", nodeID, err)
	}

	s.setMu.Lock()
	defer s.setMu.Unlock()
	prev := s.current[nodeID]
	changed := changedTypes(prev, snap)
	if len(changed) == 0 {
		return nil
	}
	// Pending changes are recorded before the cache can answer a watch, so
	// the response carrying the change always finds them.
	s.notePending(nodeID, snap, changed, changeSeen)
	s.snapshots.set(nodeID, snap)
	s.current[nodeID] = snap
	s.metrics.cacheUpdate.WithLabelValues("snapshot").Observe(time.Since(start).Seconds())
	s.log.Debug("node resources set", "node", nodeID, "changed", changedLabels(changed), "versions", snap.versions())
	return nil
}

// check runs the checker on res, built into snap, and returns the snapshot
// to serve: an equal one already accepted for another node when there is
// one (the default checker's verdict is the same for equal sets).
func (s *Server) check(info NodeInfo, snap *nodeSnapshot, res map[string][]types.Resource) (*nodeSnapshot, error) {
	if s.checked == nil {
		return snap, s.checker(info, res)
	}
	k := checkedKeyOf(info.Kind, snap)
	if live := s.checked.get(k); live != nil {
		return live, nil
	}
	s.checks.Add(1)
	if err := s.checker(info, res); err != nil {
		return nil, err
	}
	return s.checked.putIfAbsent(k, snap), nil
}

func changedTypes(prev, next *nodeSnapshot) []string {
	var out []string
	for _, t := range snapshotTypes {
		if prev == nil || prev.GetVersion(t) != next.GetVersion(t) {
			out = append(out, t)
		}
	}
	return out
}

func changedLabels(typeURLs []string) []string {
	out := make([]string, len(typeURLs))
	for i, t := range typeURLs {
		out[i] = TypeLabel(t)
	}
	return out
}

// NodeVersions returns the per-type versions of the node's current (last
// good) resource set, keyed by type URL, or nil if none was set.
func (s *Server) NodeVersions(nodeID string) map[string]string {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	if snap := s.current[nodeID]; snap != nil {
		return snap.versions()
	}
	return nil
}

// ClearNode forgets a node (its pod is gone): its resources, its metric
// series, and any stream it still has open, which ends with
// codes.Unavailable so a proxy that is in fact alive reconnects and is
// validated again.
func (s *Server) ClearNode(nodeID string) {
	s.mu.Lock()
	var ending []*streamHandle
	if n := s.nodes[nodeID]; n != nil {
		for _, st := range n.streams {
			ending = append(ending, st.handle)
		}
	}
	s.mu.Unlock()
	for _, h := range ending {
		h.end(status.Newf(codes.Unavailable, "node %s was removed from the control plane", nodeID))
	}

	s.setMu.Lock()
	delete(s.current, nodeID)
	s.snapshots.clear(nodeID)
	s.setMu.Unlock()

	s.metrics.rejectedSnapshots.DeleteLabelValues(nodeID)
	s.metrics.forgetProxy(nodeID)
}

// Register adds the ADS service to a gRPC server. Authentication and node
// validation happen inside the service, so no interceptor is needed. xDS
// streams never end by themselves: call Shutdown before GracefulStop.
func (s *Server) Register(gs grpc.ServiceRegistrar) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, &adsService{s: s})
}

// Serve serves ADS on lis until ctx is done, then ends every stream with
// codes.Unavailable (proxies reconnect to another replica) and stops the
// gRPC server, forcefully after Options.ShutdownGrace.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	gs := grpc.NewServer(append([]grpc.ServerOption{
		// Proxies keep one stream for their whole life; keepalives notice
		// a vanished peer (node gone, network partition) so its stream, its
		// watches and its metric series are released.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1 << 20),
		// Every proxy has a connection of its own, idle nearly always: an
		// unshared 32 KiB write buffer per connection was 320 MB at 10,000
		// proxies. Shared, a connection holds one only while it writes.
		grpc.SharedWriteBuffer(true),
		// No ReadBufferSize: gRPC v1.85 already lends an idle connection's
		// read buffer back to a pool (its HTTP framer read-buffer pooling,
		// on by default), and the heap with 5,000 delta proxies synced
		// holds no per-connection read buffer.
		grpc.ForceServerCodecV2(newXDSCodec(s.endpoints.intern)),
	}, s.serverOptions...)...)
	s.Register(gs)
	for _, register := range s.services {
		register(gs)
	}

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	select {
	case err := <-served:
		s.Shutdown()
		return fmt.Errorf("serving xDS on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}

	s.Shutdown()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.grace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.log.Warn("xDS streams did not end within the grace period; stopping hard", "grace", s.grace)
		gs.Stop()
		<-stopped
	}
	s.hooks.Wait()
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving xDS on %s: %w", lis.Addr(), err)
	}
	return nil
}

// HasStreams reports whether an open stream named nodeID in its first
// request, whether or not its validation has finished.
func (s *Server) HasStreams(nodeID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claims[nodeID] > 0
}

// disconnectedLocked runs the OnDisconnect hook off the caller's goroutine.
func (s *Server) disconnectedLocked(nodeID string) {
	if s.onDisconnect == nil {
		return
	}
	s.hooks.Add(1)
	go func() {
		defer s.hooks.Done()
		s.onDisconnect(nodeID)
	}()
}

// Shutdown refuses new streams and ends open ones with codes.Unavailable.
// Serve calls it; callers of Register call it before stopping their server.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.closing = true
	handles := make([]*streamHandle, 0, len(s.handles))
	for h := range s.handles {
		handles = append(handles, h)
	}
	s.mu.Unlock()
	for _, h := range handles {
		h.end(status.New(codes.Unavailable, "control plane shutting down"))
	}
}

// admit authenticates a new stream and gives it a context the server can
// end.
func (s *Server) admit(parent context.Context) (context.Context, *streamHandle, error) {
	h := &streamHandle{}
	if s.authenticator != nil {
		id, err := s.authenticator(parent)
		if err != nil {
			err = authStatus(err)
			s.refused(err, "", "authentication failed")
			return nil, nil, err
		}
		h.identity, h.authenticated = id, true
	}
	ctx, cancel := context.WithCancelCause(parent)
	h.cancel = cancel
	ctx = context.WithValue(ctx, handleKey{}, h)

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		cancel(nil)
		return nil, nil, status.Error(codes.Unavailable, "control plane shutting down")
	}
	s.handles[h] = struct{}{}
	s.mu.Unlock()
	s.metrics.openStreams.Inc()
	return ctx, h, nil
}

func (s *Server) release(h *streamHandle) {
	s.mu.Lock()
	delete(s.handles, h)
	s.mu.Unlock()
	h.settled()
	h.cancel(nil)
	s.metrics.openStreams.Dec()
}

func (s *Server) refused(err error, nodeID, why string) {
	st := status.Convert(err)
	s.metrics.refusedConnections.WithLabelValues(st.Code().String()).Inc()
	s.log.Warn("refusing xDS stream", "node", nodeID, "reason", why, "code", st.Code().String(), "error", st.Message())
}

// adsService wraps Weft's ADS stream loops (serveSotw, serveDelta) with
// admission, so that Register works on any gRPC server without an
// interceptor.
type adsService struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

func (a *adsService) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ctx, h, err := a.s.admit(stream.Context())
	if err != nil {
		return err
	}
	defer a.s.release(h)
	err = a.s.serveSotw(ctx, stream)
	return h.result(ctx, err)
}

func (a *adsService) DeltaAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx, h, err := a.s.admit(stream.Context())
	if err != nil {
		return err
	}
	defer a.s.release(h)
	err = a.s.serveDelta(ctx, stream)
	return h.result(ctx, err)
}

// nodeOf returns the node a request identifies itself as, or nil when it
// carries none (only a stream's first request must).
func nodeOf(n *corev3.Node) *corev3.Node {
	if n == nil || n.GetId() == "" {
		return nil
	}
	return n
}
