package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/xds"
)

// Identity turns on workload identity: the xDS port speaks TLS with a
// serving certificate from CA, every stream is authenticated (a projected
// ServiceAccount token, sds/tokenauth) and bound to its pod, and each
// Envoy node is sent, by SDS on its own stream, a certificate for the
// identity that stream proved, renewed before it expires and re-issued when
// the issuer changes.
type Identity struct {
	// CA issues the leaves and the serving certificate; the caller feeds it
	// (sds.Watcher) and runs whatever else it needs (sds.Leader).
	CA *sds.CA
	// Authenticator proves who opened a stream (tokenauth.Authenticator's
	// Authenticate). Required: secrets are only ever issued for an
	// authenticated identity.
	Authenticator xds.Authenticator
	// Leaves issues the workload certificates delivered by SDS: nil is CA
	// itself; an sds.CertificateRequests has cert-manager sign them (external
	// PKI mode). Renewal timing and re-issue on a change of CA's issuer or
	// bundle are the same either way.
	Leaves sds.LeafSource
	// Serving is the control plane's own workload and the DNS names proxies
	// dial it by (its Service), for the xDS serving certificate.
	Serving         sds.Workload
	ServingDNSNames []string
}

func (id *Identity) check() error {
	switch {
	case id.CA == nil:
		return errors.New("controller config: Identity.CA is required")
	case id.Authenticator == nil:
		return errors.New("controller config: Identity.Authenticator is required (secrets go only to authenticated streams)")
	case id.Serving.Namespace == "" || id.Serving.ServiceAccount == "":
		return errors.New("controller config: Identity.Serving names the control plane's own namespace and ServiceAccount")
	}
	return nil
}

// serverOptions is the xDS port's TLS.
func (id *Identity) serverOptions() []grpc.ServerOption {
	sc := id.CA.NewServingCertificate(id.Serving, id.ServingDNSNames...)
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(id.CA.ServerTLSConfig(sc)))}
}

// nodeSecrets keeps, per connected Envoy node, the SDS secrets of the
// identity its stream authenticated as. Each node has its own key and leaf
// (one sds.CA.RotateFrom loop per node): a key never serves two pods, so one
// pod's compromise does not outlive its own leaf elsewhere.
type nodeSecrets struct {
	ca     *sds.CA
	leaves sds.LeafSource
	log    *slog.Logger
	// repush recomputes a connected node with its new secrets.
	repush func(ctx context.Context, nodeID string)

	mu    sync.Mutex
	base  context.Context
	nodes map[string]*secretEntry
	loops sync.WaitGroup
}

type secretEntry struct {
	workload sds.Workload
	cancel   context.CancelFunc
	// first is closed once the first leaf is in secrets.
	first     chan struct{}
	firstOnce sync.Once
	secrets   []types.Resource
}

func newNodeSecrets(id *Identity, log *slog.Logger) *nodeSecrets {
	leaves := id.Leaves
	if leaves == nil {
		leaves = id.CA
	}
	return &nodeSecrets{ca: id.CA, leaves: leaves, log: log, nodes: map[string]*secretEntry{}}
}

// run sets the context every rotation loop lives in; call it before the
// xDS server accepts streams.
func (s *nodeSecrets) run(ctx context.Context) {
	s.mu.Lock()
	s.base = ctx
	s.mu.Unlock()
}

// wait returns once every rotation loop has ended (after run's context).
func (s *nodeSecrets) wait() { s.loops.Wait() }

// start makes sure nodeID has a rotation loop for w and returns a channel
// closed once its first leaf is ready.
func (s *nodeSecrets) start(nodeID string, w sds.Workload) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.nodes[nodeID]; e != nil {
		if e.workload == w {
			return e.first
		}
		e.cancel() // not reachable while streams are bound to a pod, whose ServiceAccount is immutable
	}
	if s.base == nil || s.base.Err() != nil {
		never := make(chan struct{})
		return never
	}
	ctx, cancel := context.WithCancel(s.base)
	e := &secretEntry{workload: w, cancel: cancel, first: make(chan struct{})}
	s.nodes[nodeID] = e
	s.loops.Go(func() {
		s.ca.RotateFrom(ctx, s.leaves, w, func(leaf *sds.Leaf) {
			secrets, err := sds.EnvoySecrets(leaf, s.ca.Bundle())
			if err != nil {
				s.log.Error("identity: building SDS secrets", "node", nodeID, "workload", w.String(), "error", err)
				return
			}
			res := make([]types.Resource, len(secrets))
			for i, sec := range secrets {
				res[i] = sec
			}
			s.mu.Lock()
			if s.nodes[nodeID] != e {
				s.mu.Unlock()
				return
			}
			e.secrets = res
			s.mu.Unlock()
			s.log.Debug("identity: leaf issued", "node", nodeID, "id", leaf.ID.String(), "not_after", leaf.NotAfter, "renew_at", leaf.RenewAt)
			e.firstOnce.Do(func() { close(e.first) })
			s.repush(ctx, nodeID)
		})
	})
	return e.first
}

// get is the node's current secrets (nil when it has none).
func (s *nodeSecrets) get(nodeID string) []types.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.nodes[nodeID]; e != nil {
		return e.secrets
	}
	return nil
}

// stop ends the node's rotation loop and drops its key.
func (s *nodeSecrets) stop(nodeID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.nodes[nodeID]; e != nil {
		e.cancel()
		delete(s.nodes, nodeID)
	}
}

// streamWorkload is the workload a stream authenticated as, refusing a node
// id it may not claim before anything is pushed for that node (the xDS
// server binds the stream only after its validator returns).
func streamWorkload(ctx context.Context, info xds.NodeInfo) (sds.Workload, bool, error) {
	id, ok := xds.StreamIdentity(ctx)
	if !ok {
		return sds.Workload{}, false, nil
	}
	if err := xds.CheckIdentity(id, info); err != nil {
		return sds.Workload{}, false, err
	}
	if id.Namespace == "" || id.ServiceAccount == "" {
		return sds.Workload{}, false, status.Errorf(codes.PermissionDenied, "node %s: the stream's identity names no ServiceAccount; no certificate can be issued", info.ID)
	}
	return sds.Workload{Namespace: id.Namespace, ServiceAccount: id.ServiceAccount}, true, nil
}
