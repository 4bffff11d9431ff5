package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds"
)

// Translator turns the model into Envoy resources. translate.Translator is
// the production one (see translatorAdapter); it must be safe for
// concurrent use.
type Translator interface {
	// ForProxy returns the per-node resources keyed by type URL (LDS, RDS,
	// CDS, SDS) and the problems met; what could be built is returned even
	// with errors.
	ForProxy(m *mesh.Model, p *mesh.Proxy) (map[string][]types.Resource, []error)
	// Endpoints returns the load assignments of one service's clusters.
	Endpoints(m *mesh.Model, svc mesh.ServiceKey) []*endpointv3.ClusterLoadAssignment
}

// XDS is the part of xds.Server the pipeline drives.
type XDS interface {
	SetNodeResources(ctx context.Context, nodeID string, kind proxy.Kind, res map[string][]types.Resource, changeSeen time.Time) error
	SetEndpoints(ctx context.Context, clas map[string]*endpointv3.ClusterLoadAssignment, changeSeen time.Time) error
	DeleteEndpoints(names ...string)
	ClearNode(nodeID string)
	// HasStreams reports whether a stream of the node is open (or being
	// validated).
	HasStreams(nodeID string) bool
}

// pipeline is everything between the store and the xds server: on each
// debounced flush it publishes a snapshot, asks the dependency index which
// proxies and endpoints moved, and recomputes those on a bounded pool of
// workers. It also answers proxies as they connect.
type pipeline struct {
	log        *slog.Logger
	store      *Store
	translator Translator
	// index follows what translator reads: a translator without a trust
	// domain reads no identities, so endpoint churn that changes who backs
	// a service stays an EDS update.
	index    index
	xds      XDS
	workers  int
	metrics  *controllerMetrics
	problems *translateProblems
	// secrets is nil without identity: no node gets SDS secrets.
	secrets *nodeSecrets
	// synced is closed once the informers have listed everything: before
	// that a connecting proxy cannot be told "no such pod".
	synced <-chan struct{}
	// podWait is how long a connecting proxy whose pod is not known yet
	// waits for the informer to deliver it before being refused.
	podWait time.Duration

	// connectSlots bounds the pushes made for connecting proxies: after a
	// control-plane restart every proxy reconnects at once, and unbounded
	// concurrent translations and checks only add memory, not throughput.
	connectSlots chan struct{}

	mu        sync.Mutex
	connected map[string]struct{}
	nodes     map[string]*nodeState
	// edsNames remembers the CLA names set per service, to delete the
	// ones a change makes stale.
	edsNames map[mesh.ServiceKey][]string
}

// nodeState serializes pushes to one node and keeps an older snapshot from
// overwriting a newer one (a flush and a connecting stream may race).
type nodeState struct {
	mu     sync.Mutex
	gen    uint64
	pushed bool
	// problems are translate's last problems for this node (counted across
	// nodes by translateProblems); refused is the last checker refusal,
	// logged once per distinct message.
	problems map[problem]struct{}
	refused  string
}

func newPipeline(log *slog.Logger, store *Store, tr Translator, x XDS, workers int, m *controllerMetrics, problems *translateProblems, synced <-chan struct{}) *pipeline {
	if workers < 1 {
		workers = 1
	}
	idx := defaultIndex
	if r, ok := tr.(interface{ Reads() translate.Reads }); ok {
		idx = newIndex(r.Reads())
	}
	return &pipeline{
		log:          log,
		store:        store,
		translator:   tr,
		index:        idx,
		xds:          x,
		workers:      workers,
		metrics:      m,
		problems:     problems,
		synced:       synced,
		podWait:      2 * time.Second,
		connectSlots: make(chan struct{}, workers),
		connected:    map[string]struct{}{},
		nodes:        map[string]*nodeState{},
		edsNames:     map[mesh.ServiceKey][]string{},
	}
}

// flush is one debounced round. Rounds never overlap (the debouncer runs
// them on one goroutine).
func (p *pipeline) flush(ctx context.Context) {
	start := time.Now()
	prev, cur, changes, ok := p.store.Flush()
	if !ok {
		return
	}
	pl := p.index.plan(prev, cur, changes, p.connectedNodes())

	// Endpoints first: a cluster added by the node pushes below finds its
	// load assignment already in the cache.
	stale := p.pushEndpoints(ctx, cur, pl.eds)
	p.pushNodes(ctx, cur, pl.nodes)
	if len(stale) > 0 {
		p.xds.DeleteEndpoints(stale...)
	}
	for _, id := range pl.clear {
		p.forget(id)
	}

	p.metrics.flushes.Inc()
	p.metrics.flushSeconds.Observe(time.Since(start).Seconds())
	p.metrics.proxiesPerFlush.Observe(float64(len(pl.nodes)))
	p.log.Debug("flushed model", "gen", cur.Gen,
		"services", len(changes.Services), "endpoints", len(changes.Endpoints),
		"profiles", len(changes.Profiles), "splits", len(changes.Splits), "proxies", len(changes.Proxies),
		"recomputed", len(pl.nodes), "cleared", len(pl.clear), "took", time.Since(start))
}

func (p *pipeline) connectedNodes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.connected))
	for id := range p.connected {
		out = append(out, id)
	}
	return out
}

// pushEndpoints sets the load assignments of changed services and returns
// the names no longer produced, to delete once no pushed cluster needs them.
func (p *pipeline) pushEndpoints(ctx context.Context, snap *Snapshot, svcs map[mesh.ServiceKey]time.Time) (stale []string) {
	for key, seen := range svcs {
		var clas []*endpointv3.ClusterLoadAssignment
		if snap.Model.Services[key] != nil {
			clas = p.translator.Endpoints(snap.Model, key)
		}
		set := make(map[string]*endpointv3.ClusterLoadAssignment, len(clas))
		names := make([]string, 0, len(clas))
		for _, cla := range clas {
			set[cla.GetClusterName()] = cla
			names = append(names, cla.GetClusterName())
		}
		if len(set) > 0 {
			if err := p.xds.SetEndpoints(ctx, set, seen); err != nil {
				p.log.Error("endpoints refused; the previous ones stay", "service", key.String(), "error", err)
			}
		}
		p.mu.Lock()
		for _, old := range p.edsNames[key] {
			if _, still := set[old]; !still {
				stale = append(stale, old)
			}
		}
		if len(names) > 0 {
			p.edsNames[key] = names
		} else {
			delete(p.edsNames, key)
		}
		p.mu.Unlock()
	}
	return stale
}

// pushNodes recomputes nodes on the worker pool and waits for all of them.
func (p *pipeline) pushNodes(ctx context.Context, snap *Snapshot, nodes map[string]time.Time) {
	if len(nodes) == 0 {
		return
	}
	type task struct {
		id   string
		seen time.Time
	}
	tasks := make(chan task)
	var wg sync.WaitGroup
	for range min(p.workers, len(nodes)) {
		wg.Go(func() {
			for t := range tasks {
				p.push(ctx, snap, t.id, t.seen)
			}
		})
	}
	for id, seen := range nodes {
		tasks <- task{id, seen}
	}
	close(tasks)
	wg.Wait()
}

func (p *pipeline) nodeState(id string) *nodeState {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.nodes[id]
	if n == nil {
		n = &nodeState{}
		p.nodes[id] = n
	}
	return n
}

// push computes and sets one node's resources from snap unless a newer
// snapshot was already pushed to it.
func (p *pipeline) push(ctx context.Context, snap *Snapshot, id string, seen time.Time) {
	px := snap.Proxies[id]
	if px == nil {
		return
	}
	n := p.nodeState(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pushed && snap.Gen < n.gen {
		return
	}
	start := time.Now()
	res, problems := p.translator.ForProxy(snap.Model, px)
	p.metrics.translateSeconds.Observe(time.Since(start).Seconds())
	if p.secrets != nil {
		if sec := p.secrets.get(id); len(sec) > 0 {
			res[resourcev3.SecretType] = append(res[resourcev3.SecretType], sec...)
		}
	}
	err := p.xds.SetNodeResources(ctx, id, px.Kind, res, seen)
	n.gen, n.pushed = snap.Gen, true
	p.metrics.recomputes.Inc()

	cur := problemsOf(problems)
	p.problems.update(n.problems, cur)
	n.problems = cur

	refused := ""
	if err != nil {
		refused = err.Error()
	}
	if refused != n.refused {
		n.refused = refused
		if refused != "" {
			p.log.Error("proxy configuration refused by the checker; the proxy keeps its last good config", "node", id, "gen", snap.Gen, "error", refused)
		} else {
			p.log.Info("proxy configuration accepted again", "node", id, "gen", snap.Gen)
		}
	}
}

// disconnected is the xds OnDisconnect hook: a proxy without streams is no
// longer recomputed (its pod may well still exist); it is pushed afresh by
// validateNode when it reconnects. The check and the removal hold p.mu,
// which validateNode holds to mark a node connected, and xds counts a
// stream before validating it: a reconnect racing with the hook of the
// previous connection is therefore either seen here or marked after.
func (p *pipeline) disconnected(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.xds.HasStreams(id) {
		return
	}
	delete(p.connected, id)
	if p.secrets != nil {
		p.secrets.stop(id)
	}
}

// repushSecrets is nodeSecrets' hook: a connected node gets its new leaf
// (renewed, or from a new issuer) with the current model.
func (p *pipeline) repushSecrets(ctx context.Context, id string) {
	p.mu.Lock()
	_, connected := p.connected[id]
	p.mu.Unlock()
	if !connected {
		return // validateNode pushes the first leaf itself
	}
	p.push(ctx, p.store.Published(), id, time.Now())
}

// forget drops a proxy whose pod is gone: its xDS state and any stream.
func (p *pipeline) forget(id string) {
	p.mu.Lock()
	n := p.nodes[id]
	delete(p.connected, id)
	delete(p.nodes, id)
	p.mu.Unlock()
	if p.secrets != nil {
		p.secrets.stop(id)
	}
	if n != nil {
		n.mu.Lock()
		p.problems.update(n.problems, nil)
		n.problems = nil
		n.mu.Unlock()
	}
	p.xds.ClearNode(id)
}

// validateNode is the xds NodeValidator: node.id must name a meshed pod the
// store knows. The node's config is pushed before it returns, so its first
// request is answered at once.
func (p *pipeline) validateNode(ctx context.Context, node *corev3.Node) (xds.NodeInfo, error) {
	pod, ns, err := proxy.ParseNodeID(node.GetId())
	if err != nil {
		return xds.NodeInfo{}, status.Error(codes.InvalidArgument, err.Error())
	}
	id := node.GetId()

	select {
	case <-p.synced:
	case <-ctx.Done():
		return xds.NodeInfo{}, status.Errorf(codes.Unavailable, "node %s: control plane caches not synced yet", id)
	}

	// A pod the informer has not delivered yet (the proxy can start before
	// the watch event arrives) gets a moment before being refused.
	px, exists := p.store.Proxy(pod, ns)
	if !exists {
		deadline := time.NewTimer(p.podWait)
		tick := time.NewTicker(25 * time.Millisecond)
		for !exists {
			select {
			case <-ctx.Done():
				deadline.Stop()
				tick.Stop()
				return xds.NodeInfo{}, status.Errorf(codes.Unavailable, "node %s: %v", id, ctx.Err())
			case <-deadline.C:
				tick.Stop()
				return xds.NodeInfo{}, &xds.NodeNotFoundError{Pod: pod, Namespace: ns}
			case <-tick.C:
				px, exists = p.store.Proxy(pod, ns)
			}
		}
		deadline.Stop()
		tick.Stop()
	}
	if px == nil {
		return xds.NodeInfo{}, status.Errorf(codes.FailedPrecondition,
			"node %s: pod %s/%s is not meshed (annotate it or its namespace %s: %s, or the pod %s: %s)",
			id, ns, pod, AnnotationInject, InjectEnabled, mesh.AnnotationProxyKind, mesh.ProxyKindValueGRPC)
	}
	if got, want := proxy.KindOfUserAgent(node.GetUserAgentName()), px.Kind; got != want {
		return xds.NodeInfo{}, status.Errorf(codes.FailedPrecondition,
			"node %s connected as %s (user agent %q) but pod %s/%s is a %s proxy; set the pod annotation %s",
			id, got, node.GetUserAgentName(), ns, pod, want, mesh.AnnotationProxyKind)
	}

	info := xds.NodeInfo{
		ID:             id,
		Pod:            pod,
		Namespace:      ns,
		ServiceAccount: px.Identity.ServiceAccount,
		Kind:           px.Kind,
	}
	// The node's certificate is for the identity its stream proved, never
	// for what its node id claims; sidecars only (grpc-go reads its
	// certificates from its certificate providers, not SDS).
	if p.secrets != nil {
		w, ok, err := streamWorkload(ctx, info)
		if err != nil {
			return xds.NodeInfo{}, err
		}
		if ok && px.Kind == proxy.Envoy {
			// The first push should carry the certificate its listeners and
			// clusters name; a CA that cannot issue yet must not hold the
			// proxy's config back for long (the leaf is pushed when it comes).
			t := time.NewTimer(p.podWait)
			select {
			case <-p.secrets.start(id, w):
			case <-t.C:
				p.log.Warn("identity: no certificate for a connecting proxy yet; pushing without", "node", id, "workload", w.String())
			case <-ctx.Done():
			}
			t.Stop()
		}
	}

	// Mark first, then read the published snapshot: either this push or
	// the next flush (which publishes before listing connected nodes) sees
	// the proxy, so it is never left without config.
	p.mu.Lock()
	p.connected[id] = struct{}{}
	p.mu.Unlock()
	select {
	case p.connectSlots <- struct{}{}:
	case <-ctx.Done():
		return xds.NodeInfo{}, status.Errorf(codes.Unavailable, "node %s: %v", id, ctx.Err())
	}
	if snap := p.store.Published(); snap.Proxies[id] != nil {
		p.push(ctx, snap, id, time.Time{})
	}
	<-p.connectSlots
	return info, nil
}
