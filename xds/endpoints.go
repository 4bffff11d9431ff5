package xds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// endpointState mirrors what the shared endpoint cache holds, so unchanged
// ClusterLoadAssignments are not re-set (each set bumps the cache version
// and wakes every watch on that name), and remembers when each one last
// changed, for convergence latency.
type endpointState struct {
	mu      sync.Mutex
	current map[string]*endpointv3.ClusterLoadAssignment
	hashes  map[string]string
	changed map[string]time.Time
	// latest is the newest changeSeen of any CLA: streams whose last
	// observed change is newer skip looking at response contents.
	latest time.Time
}

func (e *endpointState) init() {
	e.current = make(map[string]*endpointv3.ClusterLoadAssignment)
	e.hashes = make(map[string]string)
	e.changed = make(map[string]time.Time)
}

// SetEndpoints upserts ClusterLoadAssignments into the cache shared by all
// nodes, keyed by cluster_name (the EDS service name); a nil value deletes.
// Only CLAs whose content changed are set, so only proxies subscribed to
// them hear about it, and only EDS moves.
//
// Each CLA goes through the endpoint checker on its own: a refused one
// keeps its previous content (or stays absent), the others are applied, and
// the refusals are returned together. changeSeen feeds convergence latency
// (zero: not measured).
func (s *Server) SetEndpoints(ctx context.Context, clas map[string]*endpointv3.ClusterLoadAssignment, changeSeen time.Time) error {
	start := time.Now()
	var errs []error
	type candidate struct {
		cla *endpointv3.ClusterLoadAssignment
		enc *encoded
	}
	candidates := make(map[string]candidate, len(clas))
	var deletes []string
	for _, name := range slices.Sorted(maps.Keys(clas)) {
		cla := clas[name]
		if cla == nil {
			deletes = append(deletes, name)
			continue
		}
		if cla.GetClusterName() != name {
			// Envoy and grpc-go refuse a CLA whose name is not the one they
			// subscribed to.
			errs = append(errs, fmt.Errorf("endpoints %q: cluster_name is %q", name, cla.GetClusterName()))
			continue
		}
		if err := s.epChecker(cla); err != nil {
			errs = append(errs, fmt.Errorf("endpoints %q: %w", name, err))
			continue
		}
		enc, err := s.hashes.encode(cla)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoints %q: %w", name, err))
			continue
		}
		candidates[name] = candidate{cla, enc}
	}
	if len(errs) > 0 {
		s.metrics.rejectedEndpoints.Add(float64(len(errs)))
		s.log.Warn("refusing endpoints: keeping the previous ones", "problems", errors.Join(errs...).Error())
	}

	s.ep.mu.Lock()
	defer s.ep.mu.Unlock()
	update := make(map[string]candidate, len(candidates))
	for name, c := range candidates {
		if s.ep.hashes[name] == c.enc.hash {
			continue
		}
		update[name] = c
	}
	var remove []string
	for _, name := range deletes {
		if _, ok := s.ep.current[name]; ok {
			remove = append(remove, name)
		}
	}
	if len(update) == 0 && len(remove) == 0 {
		return joinEndpointErrors(errs)
	}
	for name := range update {
		if !changeSeen.IsZero() {
			s.ep.changed[name] = changeSeen
		}
	}
	if !changeSeen.IsZero() && changeSeen.After(s.ep.latest) {
		s.ep.latest = changeSeen
	}
	set := make([]*encoded, 0, len(update))
	for name, c := range update {
		set = append(set, c.enc)
		s.ep.current[name] = c.cla
		s.ep.hashes[name] = c.enc.hash
	}
	s.endpoints.update(set, remove)
	for _, name := range remove {
		delete(s.ep.current, name)
		delete(s.ep.hashes, name)
		delete(s.ep.changed, name)
	}
	s.metrics.cacheUpdate.WithLabelValues("endpoints").Observe(time.Since(start).Seconds())
	return joinEndpointErrors(errs)
}

// DeleteEndpoints removes ClusterLoadAssignments from the shared cache.
func (s *Server) DeleteEndpoints(names ...string) {
	clas := make(map[string]*endpointv3.ClusterLoadAssignment, len(names))
	for _, n := range names {
		clas[n] = nil
	}
	// Deletes cannot be refused, so there is no error to return.
	_ = s.SetEndpoints(context.Background(), clas, time.Time{})
}

// Endpoints returns the CLAs the shared cache holds, by name.
func (s *Server) Endpoints() map[string]*endpointv3.ClusterLoadAssignment {
	s.ep.mu.Lock()
	defer s.ep.mu.Unlock()
	return maps.Clone(s.ep.current)
}

func joinEndpointErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("endpoints refused, previous ones kept: %w", errors.Join(errs...))
}

// changeSeenOf returns, for the named CLAs, the oldest and newest change
// times later than after (zero if none).
func (e *endpointState) changeSeenOf(names []string, after time.Time) (oldest, newest time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range names {
		c, ok := e.changed[n]
		if !ok || !c.After(after) {
			continue
		}
		if oldest.IsZero() || c.Before(oldest) {
			oldest = c
		}
		if c.After(newest) {
			newest = c
		}
	}
	return oldest, newest
}

func (e *endpointState) latestChange() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.latest
}
