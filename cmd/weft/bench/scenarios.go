package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/xds/adsclient"
)

// Change is one measured change.
type Change struct {
	Proxies  int
	Scenario string
	Index    int
	// Affected is how many proxies the change was decided to reach (see
	// each scenario); ACKed how many did within the timeout.
	Affected, ACKed int
	// Convergence is from the change (API write acknowledged) to the last
	// affected ACK; Complete is false when some affected proxy never ACKed.
	Convergence time.Duration
	Complete    bool
	// PerProxy are the affected proxies' latencies, change to ACK.
	PerProxy []time.Duration
	// Pushes and Bytes are the responses every simulated proxy received
	// (affected or not) from the change until the window closed, and
	// Resources the resources they carried.
	Pushes, Bytes, Resources int64
	// CPU is the control plane's CPU time in the same window.
	CPU time.Duration
}

// Scenario names, in the order the standard set runs them.
const (
	ScenarioEndpointFlap = "endpoint-flap"
	ScenarioRollout      = "rollout"
	ScenarioProfileEdit  = "profile-edit"
	ScenarioNamespaceAdd = "namespace-add"
	ScenarioRestart      = "restart"
	ScenarioRestartCold  = "restart-cold"
)

// Scenarios is the standard set.
var Scenarios = []string{ScenarioEndpointFlap, ScenarioRollout, ScenarioProfileEdit, ScenarioNamespaceAdd, ScenarioRestart, ScenarioRestartCold}

func isRestart(scenario string) bool {
	return scenario == ScenarioRestart || scenario == ScenarioRestartCold
}

// run is one proxy count's run: one control plane process, one fleet.
type run struct {
	cfg     Config
	cluster *cluster
	cp      *controlPlane
	fleet   *adsclient.Fleet
	fleetCx context.Context
	proxies int
	peakRSS int64 // of control plane processes killed during the run
	// fleetMu guards fleet for the memory guard, which may run before the
	// fleet exists; everything else runs after it is set.
	fleetMu sync.Mutex
	// settle is the quiet time after the last ACK that still belongs to the
	// change's window: work the change caused after its last ACK (a late
	// push to an unaffected proxy) counts against it.
	settle time.Duration
}

func (r *run) setFleet(f *adsclient.Fleet) {
	r.fleetMu.Lock()
	defer r.fleetMu.Unlock()
	r.fleet = f
}

func (r *run) fleetNow() *adsclient.Fleet {
	r.fleetMu.Lock()
	defer r.fleetMu.Unlock()
	return r.fleet
}

// measure makes one change: it registers what the change will look like,
// calls write (which returns once the apiserver acknowledged the last
// write), then waits for every affected proxy. extra, if set, runs right
// after write and returns more per-proxy latencies to wait for (proxies that
// join with the change).
func (r *run) measure(ctx context.Context, scenario string, index int, specs []adsclient.WatchSpec,
	write func(context.Context) error, extra func(context.Context, time.Time) ([]time.Duration, int, error)) (Change, error) {
	ch := Change{Proxies: r.proxies, Scenario: scenario, Index: index}
	watches := make([]*adsclient.Watch, len(specs))
	for i, s := range specs {
		watches[i] = r.fleet.Watch(s)
		ch.Affected += watches[i].Affected()
	}
	defer func() {
		for _, w := range watches {
			r.fleet.Unwatch(w)
		}
	}()
	pushes0, bytes0, res0 := r.fleet.Responses.Load(), r.fleet.Bytes.Load(), r.fleet.Resources.Load()
	cpu0, err := r.cp.cpu()
	if err != nil {
		return ch, err
	}
	// The clock starts before the write: the control plane's watch can see the change before
	// the write's own response reaches us, so starting after it could leave out part of the
	// debounce (an endpoint flap once "converged" in 57ms under a 60ms debounce).
	t0 := time.Now()
	if err := write(ctx); err != nil {
		return ch, err
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.ChangeTimeout)
	defer cancel()
	var waitErr error
	for _, w := range watches {
		if _, err := w.Wait(wctx); err != nil && waitErr == nil {
			waitErr = err
		}
		ch.PerProxy = append(ch.PerProxy, Latencies(t0, w.ACKs())...)
	}
	if extra != nil {
		lat, affected, err := extra(wctx, t0)
		ch.Affected += affected
		ch.PerProxy = append(ch.PerProxy, lat...)
		if err != nil && waitErr == nil {
			waitErr = err
		}
	}
	ch.ACKed = len(ch.PerProxy)
	ch.Convergence, ch.Complete = Convergence(ch.PerProxy, ch.Affected)
	time.Sleep(r.settle)
	cpu1, err := r.cp.cpu()
	if err != nil {
		return ch, err
	}
	ch.CPU = cpu1 - cpu0
	ch.Pushes, ch.Bytes, ch.Resources = r.fleet.Responses.Load()-pushes0, r.fleet.Bytes.Load()-bytes0, r.fleet.Resources.Load()-res0
	if waitErr != nil {
		r.cfg.Log.Warn("change not converged", "scenario", scenario, "change", index, "error", waitErr)
	}
	return ch, nil
}

// endpointFlap: one endpoint of svc-0 goes away and comes back, each a
// change. Affected: every proxy subscribed to svc-0's load assignment.
func (r *run) endpointFlap(ctx context.Context) ([]Change, error) {
	k := r.cluster.serviceKey(0)
	base := restingIPs(0, r.cluster.endpoints)
	var out []Change
	for i := range r.cfg.Changes {
		// A fresh address per flap, so no two changes look alike.
		flap := ipFrom("10.246", r.proxies+i/2)
		ips, present := base, false
		if i%2 == 0 {
			ips, present = append(append([]string(nil), base...), flap), true
		}
		ch, err := r.measure(ctx, ScenarioEndpointFlap, i,
			[]adsclient.WatchSpec{{TypeURL: resourcev3.EndpointType, Name: edsName(k), Marker: flap, Present: present}},
			func(ctx context.Context) error { return r.cluster.setEndpoints(ctx, k, ips) }, nil)
		if err != nil {
			return out, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// rollout: svc-1's endpoints replaced one at a time by new addresses, as
// a rolling update replaces pods. Affected: svc-1's EDS subscribers.
func (r *run) rollout(ctx context.Context) ([]Change, error) {
	k := r.cluster.serviceKey(1 % r.cluster.services)
	ips := restingIPs(1, r.cluster.endpoints)
	var out []Change
	for i := range r.cfg.Changes {
		next := ipFrom("10.247", r.proxies+i)
		ips[i%len(ips)] = next
		snapshot := append([]string(nil), ips...)
		ch, err := r.measure(ctx, ScenarioRollout, i,
			[]adsclient.WatchSpec{{TypeURL: resourcev3.EndpointType, Name: edsName(k), Marker: next, Present: true}},
			func(ctx context.Context) error { return r.cluster.setEndpoints(ctx, k, snapshot) }, nil)
		if err != nil {
			return out, err
		}
		out = append(out, ch)
	}
	return out, r.cluster.setEndpoints(ctx, k, restingIPs(1, len(ips)))
}

func restingIPs(service, n int) []string {
	out := make([]string, n)
	for e := range out {
		out[e] = restingIP(service, e)
	}
	return out
}

// profileEdit: svc-2's ServiceProfile gets a new route name each time.
// Affected: every proxy subscribed to svc-2's route configuration.
func (r *run) profileEdit(ctx context.Context) ([]Change, error) {
	k := r.cluster.serviceKey(2 % r.cluster.services)
	var out []Change
	for i := range r.cfg.Changes {
		route := fmt.Sprintf("bench-edit-%d-%06d", r.proxies, i+1)
		ch, err := r.measure(ctx, ScenarioProfileEdit, i,
			[]adsclient.WatchSpec{{TypeURL: resourcev3.RouteType, Name: rdsName(k), Marker: route, Present: true}},
			func(ctx context.Context) error { return r.cluster.setProfile(ctx, k, route) }, nil)
		if err != nil {
			return out, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// Per added namespace.
const addedServices, addedPods = 5, 5

// namespaceAdd: a new meshed namespace with services and pods. Affected:
// every connected proxy (each can call the new services: its clusters gain
// the last service written) and the new namespace's proxies, which connect
// when their pods exist and count when they are synced.
func (r *run) namespaceAdd(ctx context.Context) ([]Change, error) {
	var out []Change
	changes := max(r.cfg.Changes/5, 1)
	for i := range changes {
		ns := fmt.Sprintf("bench-add-%d-%d", r.proxies, i)
		keys := make([]mesh.ServiceKey, addedServices)
		for j := range keys {
			keys[j] = mesh.ServiceKey{Namespace: ns, Name: fmt.Sprintf("add-%d", j)}
		}
		write := func(ctx context.Context) error {
			if err := r.cluster.createNamespace(ctx, ns); err != nil {
				return err
			}
			if err := parallel(ctx, addedServices, func(ctx context.Context, j int) error {
				return r.cluster.createService(ctx, keys[j], []string{ipFrom("10.248", (r.proxies+i)*addedServices+j)})
			}); err != nil {
				return err
			}
			return parallel(ctx, addedPods, func(ctx context.Context, p int) error {
				return r.cluster.createPod(ctx, ns, podName(p), ipFrom("10.249", (r.proxies+i)*addedPods+p))
			})
		}
		joined := func(ctx context.Context, t0 time.Time) ([]time.Duration, int, error) {
			var streams []*adsclient.Stream
			for p := range addedPods {
				s, err := r.fleet.Add(r.fleetCx, proxy.NodeID(podName(p), ns))
				if err != nil {
					return nil, addedPods, err
				}
				streams = append(streams, s)
			}
			for {
				var lat []time.Duration
				for _, s := range streams {
					if at, ok := s.SyncedAt(); ok {
						lat = append(lat, max(at.Sub(t0), 0))
					}
				}
				if len(lat) == len(streams) {
					return lat, addedPods, nil
				}
				select {
				case <-ctx.Done():
					return lat, addedPods, fmt.Errorf("%d of %d proxies of namespace %s synced: %w", len(lat), addedPods, ns, ctx.Err())
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
		last := keys[len(keys)-1]
		ch, err := r.measure(ctx, ScenarioNamespaceAdd, i,
			[]adsclient.WatchSpec{{TypeURL: resourcev3.ClusterType, Name: edsName(last)}}, write, joined)
		if err != nil {
			return out, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// restart: the control plane is killed (SIGKILL, as a crash or an OOM kill)
// and started again on the same addresses. Measured from the kill to the
// moment each proxy's new stream is synced again; every proxy is affected.
//
// Proxies reconnect as Envoy does: under delta xDS each lists what it
// holds (initial_resource_versions), and a control plane whose versions
// are content hashes sends back only what differs: the wildcard types'
// (empty) first responses. cold (restart-cold) makes them reconnect
// holding nothing, as an Envoy restarted with the control plane or any
// SotW client does, so every one is sent its whole configuration: the
// worst case. Under SotW the two are the same.
func (r *run) restart(ctx context.Context, cold bool) ([]Change, error) {
	scenario := ScenarioRestart
	if cold {
		scenario = ScenarioRestartCold
	}
	ch := Change{Proxies: r.proxies, Scenario: scenario, Affected: r.fleet.Len()}
	r.fleet.ColdReconnect(cold)
	defer r.fleet.ColdReconnect(false)
	old := r.cp
	_, peak, _ := old.memory()
	r.peakRSS = max(r.peakRSS, peak)
	pushes0, bytes0, res0 := r.fleet.Responses.Load(), r.fleet.Bytes.Load(), r.fleet.Resources.Load()
	t0 := time.Now()
	old.kill()
	stopProfile := func() {}
	adminUp := func() { stopProfile = r.cpuProfile(ctx, scenario+"-start") }
	err := r.cp.start(ctx, adminUp)
	defer func() { stopProfile() }()
	if err != nil {
		return nil, err
	}
	// Start-up (informers listing every object, the first translation)
	// is part of the restart: the log says how much.
	r.cfg.Log.Info("control plane ready again", "scenario", scenario, "after", time.Since(t0).Round(time.Millisecond))
	wctx, cancel := context.WithTimeout(ctx, r.cfg.RestartTimeout)
	defer cancel()
	lat, err := r.waitSynced(wctx, t0)
	ch.PerProxy, ch.ACKed = lat, len(lat)
	ch.Convergence, ch.Complete = Convergence(lat, ch.Affected)
	if err != nil {
		r.cfg.Log.Warn("restart not converged", "error", err)
		r.dumpStacks(ctx, scenario)
	}
	time.Sleep(r.settle)
	cpu, err := r.cp.cpu()
	if err != nil {
		return nil, err
	}
	ch.CPU = cpu
	ch.Pushes, ch.Bytes, ch.Resources = r.fleet.Responses.Load()-pushes0, r.fleet.Bytes.Load()-bytes0, r.fleet.Resources.Load()-res0
	return []Change{ch}, nil
}
