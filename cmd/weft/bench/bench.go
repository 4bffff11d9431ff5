// Package bench is `weft bench`: a load generator that measures a Weft
// control plane holding many proxies, and what a change costs it.
//
// # What runs where
//
// Three kinds of process, so that each figure belongs to one of them:
//
//   - a real local Kubernetes (package testenv: etcd, kube-apiserver, ...),
//     into which the bench writes the mesh through the API (see cluster.go);
//   - the control plane under test, the cp binary, a child process started
//     against that apiserver's kubeconfig: its CPU seconds and memory are
//     read from /proc/<pid> and are its own;
//   - the bench itself, holding N simulated proxies as ADS streams
//     (adsclient.Fleet: one gRPC connection per proxy as with Envoy, one
//     goroutine each, no resource kept per stream).
//
// The objects come through the apiserver, not a fed store: a change is
// measured from the moment the apiserver acknowledged the write, so the
// figures include the informer's latency, as a user would see it.
//
// # What is measured
//
// Per change (see Change), from the write's acknowledgement to the ACK of
// the new config by the last affected proxy; which proxies are affected is
// decided before the change from what each proxy subscribes to (see
// adsclient.Watch and each scenario). Per proxy count: how long until all
// proxies are connected and synced, the control plane's resident memory
// before and after they connect (after a forced GC) and at its peak, and
// its CPU time per change.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/weftmesh/weft/testenv"
	"github.com/weftmesh/weft/xds/adsclient"
)

// Config is one bench invocation.
type Config struct {
	// Proxies are the proxy counts to run, each with a fresh control plane.
	Proxies    []int
	Services   int
	Namespaces int
	// Endpoints per service at rest.
	Endpoints int
	// Changes per scenario (namespace-add makes a fifth as many, restart
	// and restart-cold one).
	Changes   int
	Scenarios []string
	// Delta selects incremental xDS for every simulated proxy.
	Delta          bool
	StreamsPerConn int
	// Out is the directory for CSV files, the plot and the control plane's
	// logs.
	Out      string
	CPBinary string
	CPArgs   []string
	// ChangeTimeout bounds the wait for one change to converge.
	ChangeTimeout time.Duration
	// RestartTimeout bounds the wait for every proxy to be synced again
	// after a control plane restart, which at 10,000 proxies takes longer
	// than any other change.
	RestartTimeout time.Duration
	// CPUProfile, if at least a second, profiles the control plane's CPU
	// for that long from the start of each scenario (for a restart, from
	// the moment the new process's admin port answers).
	CPUProfile time.Duration
	// MaxCPRSS stops a proxy count (and the larger ones) when the control
	// plane's resident memory passes it: on a shared machine an
	// out-of-memory kill would take other processes with it. 0: no limit.
	MaxCPRSS int64
	// Settle is how long after a change's last ACK its window stays open
	// for CPU and push counts.
	Settle time.Duration
	Log    *slog.Logger
	Stdout io.Writer
}

// SizeResult is one proxy count's run.
type SizeResult struct {
	Proxies, Services int
	Mode              string // sotw or delta
	// Connect is the per-proxy time from the first dial to synced; its Max
	// is "all connected".
	Connect    Dist
	CPUConnect time.Duration
	// RSSBase is the control plane's resident memory with every object
	// loaded and no proxy; RSSConnected with every proxy synced (each after
	// a forced GC); PeakRSS the high-water mark over the whole run.
	RSSBase, RSSConnected, PeakRSS int64
	// LoadCPU and LoadRSS are the load generator's own cost of connecting
	// the proxies (CPU) and its resident memory with them connected: what
	// it takes away from the control plane on a shared machine.
	LoadCPU time.Duration
	LoadRSS int64
	Changes []Change
}

// RSSPerProxy is what each connected proxy added to the control plane's
// resident memory, in bytes.
func (s SizeResult) RSSPerProxy() float64 {
	if s.Proxies == 0 {
		return 0
	}
	return float64(s.RSSConnected-s.RSSBase) / float64(s.Proxies)
}

// Machine says where the figures were taken.
type Machine struct {
	CPUs      int
	MemTotal  string
	GoVersion string
	Kernel    string
	Source    string
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Source: "testenv kube-apiserver (objects written through the API)"}
	if total := memTotal(); total > 0 {
		m.MemTotal = fmt.Sprintf("%.1f GiB", float64(total)/(1<<30))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// memTotal is the machine's memory in bytes (0 if unknown).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			if b, err := parseKB(v); err == nil {
				return b
			}
		}
	}
	return 0
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Proxies) == 0 {
		errs = append(errs, errors.New("--proxies: give at least one proxy count"))
	}
	for _, n := range c.Proxies {
		if n < 1 {
			errs = append(errs, fmt.Errorf("--proxies: %d is not a positive count", n))
		}
	}
	if c.Services < 3 {
		errs = append(errs, fmt.Errorf("--services %d: the scenarios use svc-0, svc-1 and svc-2, so at least 3", c.Services))
	}
	if c.Namespaces < 1 || c.Endpoints < 1 || c.Changes < 1 {
		errs = append(errs, fmt.Errorf("--namespaces %d, --endpoints %d, --changes %d: each must be at least 1", c.Namespaces, c.Endpoints, c.Changes))
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios, s) {
			errs = append(errs, fmt.Errorf("--scenarios: %q is not one of %s", s, strings.Join(Scenarios, ", ")))
		}
	}
	if slices.ContainsFunc(c.Scenarios, isRestart) && c.RestartTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--restart-timeout %v: a restart needs a positive timeout", c.RestartTimeout))
	}
	if c.CPBinary == "" {
		errs = append(errs, errors.New("--cp-binary: build the control plane first (go build -o bin/cp ./cmd/cp)"))
	} else if _, err := os.Stat(c.CPBinary); err != nil {
		errs = append(errs, fmt.Errorf("--cp-binary: %w", err))
	}
	return errors.Join(errs...)
}

// Run starts the cluster, writes the mesh and runs every proxy count in
// turn, writing results to cfg.Out as it goes (so a run cut short keeps the
// sizes it finished).
func Run(ctx context.Context, cfg Config) ([]SizeResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("creating the output directory: %w", err)
	}
	sizes := slices.Clone(cfg.Proxies)
	slices.Sort(sizes)
	log := cfg.Log

	start := time.Now()
	env, err := testenv.Start(ctx, testenv.Options{ServiceCIDR: serviceCIDR, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("starting the local Kubernetes: %w", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			log.Warn("stopping the local Kubernetes", "error", err)
		}
	}()
	log.Info("local Kubernetes started", "took", time.Since(start).Round(time.Millisecond))

	cl, err := newCluster(env, cfg.Namespaces, cfg.Services, cfg.Endpoints)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	if err := cl.setUp(ctx); err != nil {
		return nil, err
	}
	log.Info("services written", "services", cfg.Services, "namespaces", cfg.Namespaces, "took", time.Since(start).Round(time.Millisecond))

	var results []SizeResult
	m := machine()
	for _, n := range sizes {
		res, err := runSize(ctx, cfg, cl, env, n)
		if err != nil {
			return results, fmt.Errorf("%d proxies: %w", n, err)
		}
		results = append(results, res)
		if err := writeResults(cfg.Out, m, results); err != nil {
			return results, err
		}
		printSize(cfg.Stdout, res)
	}
	printSummary(cfg.Stdout, m, results)
	return results, nil
}

func runSize(ctx context.Context, cfg Config, cl *cluster, env *testenv.Env, n int) (res SizeResult, err error) {
	log := cfg.Log.With("proxies", n)
	res = SizeResult{Proxies: n, Services: cfg.Services, Mode: "sotw"}
	if cfg.Delta {
		res.Mode = "delta"
	}
	start := time.Now()
	if err := cl.ensurePods(ctx, n); err != nil {
		return res, err
	}
	log.Info("pods written", "took", time.Since(start).Round(time.Millisecond))

	cp, err := newControlPlane(cfg.CPBinary, env.Kubeconfig, filepath.Join(cfg.Out, fmt.Sprintf("cp-%d.log", n)), cfg.CPArgs)
	if err != nil {
		return res, err
	}
	if err := cp.start(ctx, nil); err != nil {
		return res, err
	}
	r := &run{cfg: cfg, cluster: cl, cp: cp, proxies: n, settle: cfg.Settle}
	defer func() { r.cp.stop() }()
	ctx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	defer func() {
		// Whatever failed after the guard stopped the run failed because of it.
		if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrMemoryLimit) {
			err = cause
		}
	}()
	go r.guardMemory(ctx, cancelRun)

	// The first model is published a debounce after the caches sync.
	time.Sleep(2 * time.Second)
	if res.RSSBase, err = r.settledRSS(ctx, ""); err != nil {
		return res, err
	}
	cpu0, err := cp.cpu()
	if err != nil {
		return res, err
	}
	loadCPU0, err := procCPU("self")
	if err != nil {
		return res, err
	}

	fleetCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.setFleet(adsclient.NewFleet(cp.xdsAddr, adsclient.FleetOptions{Delta: cfg.Delta, StreamsPerConn: cfg.StreamsPerConn}))
	r.fleetCx = fleetCtx
	defer r.fleet.Close()
	t0 := time.Now()
	for i := range n {
		if _, err := r.fleet.Add(fleetCtx, cl.podNode(i)); err != nil {
			return res, err
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	lat, err := r.waitSynced(wctx, t0)
	wcancel()
	if err != nil {
		r.dumpStacks(ctx, "connect")
		return res, fmt.Errorf("connecting %d proxies: %w", n, err)
	}
	res.Connect = Summarise(lat)
	cpu1, err := cp.cpu()
	if err != nil {
		return res, err
	}
	res.CPUConnect = cpu1 - cpu0
	loadCPU1, err := procCPU("self")
	if err != nil {
		return res, err
	}
	res.LoadCPU = loadCPU1 - loadCPU0
	// Settled like the control plane's figure: live memory, not garbage.
	debug.FreeOSMemory()
	if res.LoadRSS, _, err = procMemory("self"); err != nil {
		return res, err
	}
	log.Info("all proxies synced", "took", res.Connect.Max.Round(time.Millisecond), "cpu", res.CPUConnect)
	time.Sleep(2 * time.Second)
	// The heap with every proxy connected is what a memory profile wants.
	if res.RSSConnected, err = r.settledRSS(ctx, filepath.Join(cfg.Out, fmt.Sprintf("cp-%d-heap-connected.pb.gz", n))); err != nil {
		return res, err
	}

	for _, s := range cfg.Scenarios {
		stopProfile := r.cpuProfile(ctx, s)
		var chs []Change
		switch s {
		case ScenarioEndpointFlap:
			chs, err = r.endpointFlap(ctx)
		case ScenarioRollout:
			chs, err = r.rollout(ctx)
		case ScenarioProfileEdit:
			chs, err = r.profileEdit(ctx)
		case ScenarioNamespaceAdd:
			chs, err = r.namespaceAdd(ctx)
		case ScenarioRestart:
			chs, err = r.restart(ctx, false)
		case ScenarioRestartCold:
			chs, err = r.restart(ctx, true)
		}
		res.Changes = append(res.Changes, chs...)
		stopProfile()
		if err != nil {
			return res, fmt.Errorf("scenario %s: %w", s, err)
		}
		log.Info("scenario done", "scenario", s, "changes", len(chs))
	}
	_, peak, err := r.cp.memory()
	if err != nil {
		return res, err
	}
	res.PeakRSS = max(peak, r.peakRSS)
	return res, nil
}

// cpuProfile starts a CPU profile of the control plane for the first
// cfg.CPUProfile of a scenario and returns what waits for it to be saved.
// A restart kills the process profiled: it profiles the new process
// itself (restartProfile).
func (r *run) cpuProfile(ctx context.Context, scenario string) (wait func()) {
	secs := int(r.cfg.CPUProfile.Seconds())
	if secs < 1 || isRestart(scenario) {
		return func() {}
	}
	path := filepath.Join(r.cfg.Out, fmt.Sprintf("cp-%d-%s.cpu.pb.gz", r.proxies, scenario))
	done := make(chan struct{})
	go func() {
		defer close(done)
		endpoint := fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)
		if err := r.cp.profile(ctx, endpoint, path, r.cfg.CPUProfile+time.Minute); err != nil {
			r.cfg.Log.Warn("no CPU profile", "scenario", scenario, "error", err)
		}
	}()
	return func() { <-done }
}

// guardMemory samples the control plane's resident memory and ends the
// run (cancelling ctx with the reason) if it passes cfg.MaxCPRSS.
func (r *run) guardMemory(ctx context.Context, cancel context.CancelCauseFunc) {
	if r.cfg.MaxCPRSS <= 0 {
		return
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rss, _, err := r.cp.memory()
		who := "the control plane"
		// The load generator holds what 10,000 Envoys would hold between
		// them (a reconnect storm's requests waiting for admission): it is
		// held to the same bound.
		if self, _, serr := procMemory("self"); err == nil && serr == nil && self > rss {
			rss, who = self, "the load generator"
		}
		if err == nil && rss > r.cfg.MaxCPRSS {
			synced := 0
			if f := r.fleetNow(); f != nil {
				synced = f.Synced()
			}
			err := fmt.Errorf("%w: %s's RSS reached %s MiB, over --max-cp-rss %s MiB, with %d of %d proxies synced",
				ErrMemoryLimit, who, mib(rss), mib(r.cfg.MaxCPRSS), synced, r.proxies)
			r.cfg.Log.Error("stopping this proxy count", "proxies", r.proxies, "error", err)
			cancel(err)
			r.cp.kill()
			return
		}
	}
}

// ErrMemoryLimit ends a proxy count whose control plane grew past
// Config.MaxCPRSS.
var ErrMemoryLimit = errors.New("memory limit")

// settledRSS is the control plane's resident memory right after a GC;
// the heap profile that forced the GC goes to heapPath if not empty.
func (r *run) settledRSS(ctx context.Context, heapPath string) (int64, error) {
	if err := r.cp.gc(ctx, heapPath); err != nil {
		return 0, fmt.Errorf("asking the control plane to collect garbage: %w", err)
	}
	time.Sleep(200 * time.Millisecond)
	rss, _, err := r.cp.memory()
	return rss, err
}

// waitSynced waits until every proxy's current stream has been synced
// since `since`, and returns each proxy's latency from since.
func (r *run) waitSynced(ctx context.Context, since time.Time) ([]time.Duration, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.fleet.Synced() == r.fleet.Len() {
			at := r.fleet.SyncedAt()
			lat := make([]time.Duration, 0, len(at))
			for _, t := range at {
				if t.After(since) {
					lat = append(lat, t.Sub(since))
				}
			}
			if len(lat) == len(at) {
				return lat, nil
			}
		}
		select {
		case <-ctx.Done():
			var lat []time.Duration
			for _, t := range r.fleet.SyncedAt() {
				if t.After(since) {
					lat = append(lat, t.Sub(since))
				}
			}
			return lat, fmt.Errorf("%d of %d proxies synced (some that are not, with their last stream error: %v): %w",
				len(lat), r.fleet.Len(), r.fleet.Unsynced(3), ctx.Err())
		case <-tick.C:
		}
	}
}
