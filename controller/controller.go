// Package controller is Weft's control-plane core: informers feed an
// incremental model store; a dependency index picks the proxies a change
// affects; after a debounce a bounded worker pool translates the model for
// each of them and hands the result to the xds server.
//
//	informers ──> Store (convert, drop no-ops, copy-on-write Snapshot)
//	                │ kick
//	                v
//	           debouncer (100 ms quiet, 1 s cap; endpoints only: 10 ms, 100 ms)
//	                │ flush
//	                v
//	           planFor (dependency index, see index.go)
//	                │ EDS: SetEndpoints        per proxy: translate.ForProxy
//	                v                          on N workers -> SetNodeResources
//	             xds.Server  <── proxies (ADS)
//
// Config is computed only for proxies that are connected; a proxy connecting
// gets its config computed and set before its first request is answered,
// and one whose last stream closed is no longer recomputed.
//
// Leader election: serving xDS needs none — every replica watches
// everything and serves every proxy that connects to it. It will be needed
// for the work that writes to shared state: the identity issuer's CA
// (creating/rotating the trust bundle) and anything else that writes to the
// apiserver on the cluster's behalf. Events are written by every replica
// (client-go's correlator deduplicates within a replica).
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds"
)

// Config configures a control plane. Zero values take the defaults noted.
type Config struct {
	// RestConfig reaches the apiserver (required).
	RestConfig *rest.Config

	// ClusterDomain is the services' DNS suffix. Default "cluster.local".
	ClusterDomain string
	// TrustDomain is the SPIFFE trust domain. Default "cluster.local".
	TrustDomain string
	// MTLS turns on mTLS between meshed proxies: clusters to meshed
	// services originate it, inbound listeners terminate it (translate's
	// mTLS feature, in TrustDomain). It requires Identity, which delivers
	// the certificates the config names: without them every meshed hop
	// would wait for secrets that never come. Off by default, so identity
	// can be rolled out first (proxies get and rotate certificates that no
	// hop requires yet) and mTLS switched on after.
	MTLS bool
	// Identity, when set, turns on TLS and token authentication on the xDS
	// port and SDS certificates per authenticated identity. nil: plaintext,
	// unauthenticated xDS and no certificates (today's behaviour).
	Identity *Identity

	// XDSListener, if set, is served instead of listening on XDSAddr.
	XDSListener net.Listener
	// XDSAddr is where ADS is served (TLS with Identity, else plaintext).
	// Default ":8086".
	XDSAddr string
	// AdminListener, if set, is served instead of listening on AdminAddr.
	AdminListener net.Listener
	// AdminAddr serves /healthz, /readyz, /metrics and /debug/. Empty and
	// no AdminListener: no admin server.
	AdminAddr string

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives every metric (controller's and xds's). Default: a
	// new registry with the Go and process collectors.
	Registry *prometheus.Registry

	// Debounce is the quiet time that ends a burst of changes (default
	// 100ms); DebounceMax caps how long a burst is held (default 1s).
	Debounce, DebounceMax time.Duration
	// EndpointDebounce is the quiet time that ends a burst of nothing but
	// endpoint changes (default 10ms); such a burst is held at most
	// Debounce.
	EndpointDebounce time.Duration
	// Workers bounds concurrent proxy recomputations. Default 4.
	Workers int
	// DiscoveryInterval is how often the discovery API is asked whether the
	// ServiceProfile and TrafficSplit CRDs are (still) served. Default 10s.
	DiscoveryInterval time.Duration
	// ShutdownGrace bounds the wait for xDS streams to end. Default 5s.
	ShutdownGrace time.Duration

	// TapLogService says how sidecars reach this control plane's access log
	// service (injector/bootstrap.ControlPlaneService): set, `weft tap`
	// sessions are served on /api/tap and the access log service on the
	// xDS port; nil, there is no tap. It is called once by New (an error
	// fails New) and, with Identity, again after every change of the CA's
	// issuer or bundle: the service carries the trust bundle, and a tapped
	// proxy's logger must trust the serving certificate of the moment.
	TapLogService func() (*corev3.GrpcService, error)

	// Translator overrides the default translate.Translator (tests).
	Translator Translator
	// XDSOptions are passed to xds.New; the controller sets Logger,
	// Registry, NodeValidator and NackReporter itself; an OnDisconnect set
	// here runs after the controller's own.
	XDSOptions xds.Options
}

func (c *Config) defaults() error {
	if c.RestConfig == nil {
		return errors.New("controller config: RestConfig is required")
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.XDSAddr == "" {
		c.XDSAddr = ":8086"
	}
	if c.MTLS && c.Identity == nil {
		return errors.New("controller config: MTLS requires Identity (the certificates mTLS names are delivered by the identity's SDS)")
	}
	if c.Identity != nil {
		if err := c.Identity.check(); err != nil {
			return err
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
		c.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if c.Debounce <= 0 {
		c.Debounce = 100 * time.Millisecond
	}
	if c.DebounceMax <= 0 {
		c.DebounceMax = time.Second
	}
	if c.EndpointDebounce <= 0 {
		c.EndpointDebounce = 10 * time.Millisecond
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.DiscoveryInterval <= 0 {
		c.DiscoveryInterval = 10 * time.Second
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	return nil
}

// Controller is one running control plane. Create with New, start with Run.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	client  kubernetes.Interface
	store   *Store
	xds     *xds.Server
	pipe    *pipeline
	metrics *controllerMetrics
	core    *coreInformers
	// tap is nil without Config.TapLogService; tapService is what the
	// tap loggers are given now (tapLogService).
	tap        *tap.Hub
	tapService atomic.Pointer[corev3.GrpcService]
	crds       *crdWatches
	debounc    *debouncer
	// golden is the embedded metrics path's store, fed by proxies'
	// metrics_service sinks over the xDS port.
	golden *telemetry.Store

	broadcaster record.EventBroadcaster
	configErrs  *configErrorReporter
	nacks       *nackReporter

	synced   chan struct{}
	syncOnce sync.Once

	addrMu    sync.Mutex
	xdsAddr   net.Addr
	adminAddr net.Addr
	serving   chan struct{}
}

// Run builds a control plane and runs it until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	c, err := New(cfg)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// New wires a control plane without starting anything.
func New(cfg Config) (*Controller, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "controller")
	client, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("creating the dynamic client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("creating the discovery client: %w", err)
	}

	c := &Controller{
		cfg:     cfg,
		log:     log,
		client:  client,
		synced:  make(chan struct{}),
		serving: make(chan struct{}),
	}
	c.configErrs = newConfigErrorReporter(log)
	c.store = NewStore(cfg.ClusterDomain, modelSink{c.configErrs})
	m, err := newControllerMetrics(cfg.Registry, c.store.Counts)
	if err != nil {
		return nil, err
	}
	c.metrics = m
	c.configErrs.metrics = m
	c.nacks = &nackReporter{store: c.store, metrics: m}

	tr := cfg.Translator
	if tr == nil {
		mtlsDomain := "" // translate's switch for mTLS: off without a trust domain
		if cfg.MTLS {
			mtlsDomain = cfg.TrustDomain
		}
		opts := translate.Options{ClusterDomain: cfg.ClusterDomain, TrustDomain: mtlsDomain}
		if cfg.TapLogService != nil {
			opts.TapLogService = c.tapService.Load
		}
		tr = newDefaultTranslator(opts)
	}
	if cfg.TapLogService != nil {
		svc, err := cfg.TapLogService()
		if err != nil {
			return nil, fmt.Errorf("configuring tap's access log service: %w", err)
		}
		c.tapService.Store(svc)
	}

	c.debounc = newDebouncer(cfg.Debounce, cfg.DebounceMax, clock.RealClock{})
	c.debounc.fastLane(cfg.EndpointDebounce, cfg.Debounce, c.store.PendingEndpointsOnly)
	c.store.SetOnChange(c.debounc.Kick)

	xo := cfg.XDSOptions
	xo.Logger = cfg.Logger
	xo.Registry = cfg.Registry
	xo.ShutdownGrace = cfg.ShutdownGrace
	xo.NackReporter = c.nacks.report
	if cfg.Identity != nil {
		xo.Authenticator = cfg.Identity.Authenticator
		xo.ServerOptions = append(append([]grpc.ServerOption(nil), xo.ServerOptions...), cfg.Identity.serverOptions()...)
	}
	if cfg.TapLogService != nil {
		c.tap = tap.NewHub(c.store, cfg.Logger.With("component", "tap"))
		c.tap.Authorize = c.authorizeAccessLog
		xo.Services = append(slices.Clip(xo.Services), c.tap.Register)
	}
	c.golden = telemetry.NewStore(nil)
	receiver := &telemetry.Receiver{Store: c.golden, Authenticate: xo.Authenticator, Log: cfg.Logger.With("component", "metrics")}
	xo.Services = append(slices.Clip(xo.Services), receiver.Register)
	// The validator is the pipeline's; it is set below once it exists.
	var pipe *pipeline
	xo.NodeValidator = func(ctx context.Context, node *corev3.Node) (xds.NodeInfo, error) {
		return pipe.validateNode(ctx, node)
	}
	userOnDisconnect := xo.OnDisconnect
	xo.OnDisconnect = func(nodeID string) {
		pipe.disconnected(nodeID)
		if userOnDisconnect != nil {
			userOnDisconnect(nodeID)
		}
	}
	x, err := xds.New(xo)
	if err != nil {
		return nil, fmt.Errorf("creating the xDS server: %w", err)
	}
	c.xds = x
	pipe = newPipeline(log, c.store, tr, x, cfg.Workers, m,
		newTranslateProblems(c.configErrs, c.store.ObjectReference, log), c.synced)
	c.pipe = pipe
	if cfg.Identity != nil {
		pipe.secrets = newNodeSecrets(cfg.Identity, log)
		pipe.secrets.repush = pipe.repushSecrets
	}

	c.core, err = newCoreInformers(client, c.store, m)
	if err != nil {
		return nil, err
	}
	c.crds = newCRDWatches(log, disco, dyn, m, crdKinds(c.store))
	return c, nil
}

// Store is the model store (tests and the demo feed or inspect it).
func (c *Controller) Store() *Store { return c.store }

// XDS is the xDS server.
func (c *Controller) XDS() *xds.Server { return c.xds }

// Synced is closed once the informers have delivered their initial lists.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Serving is closed once the xDS (and admin) listeners are open.
func (c *Controller) Serving() <-chan struct{} { return c.serving }

// XDSAddr is the address ADS is served on, once Serving is closed.
func (c *Controller) XDSAddr() net.Addr {
	c.addrMu.Lock()
	defer c.addrMu.Unlock()
	return c.xdsAddr
}

// AdminAddr is the admin server's address (nil without one).
func (c *Controller) AdminAddr() net.Addr {
	c.addrMu.Lock()
	defer c.addrMu.Unlock()
	return c.adminAddr
}

// Run serves until ctx ends, then stops everything it started and returns.
func (c *Controller) Run(ctx context.Context) error {
	xdsLis := c.cfg.XDSListener
	if xdsLis == nil {
		l, err := net.Listen("tcp", c.cfg.XDSAddr)
		if err != nil {
			return fmt.Errorf("listening for xDS on %s: %w", c.cfg.XDSAddr, err)
		}
		xdsLis = l
	}
	adminLis := c.cfg.AdminListener
	if adminLis == nil && c.cfg.AdminAddr != "" {
		l, err := net.Listen("tcp", c.cfg.AdminAddr)
		if err != nil {
			xdsLis.Close()
			return fmt.Errorf("listening for admin on %s: %w", c.cfg.AdminAddr, err)
		}
		adminLis = l
	}
	c.addrMu.Lock()
	c.xdsAddr = xdsLis.Addr()
	if adminLis != nil {
		c.adminAddr = adminLis.Addr()
	}
	c.addrMu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	c.broadcaster = record.NewBroadcaster(record.WithContext(ctx))
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	recorder := c.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "weft-controller"})
	c.configErrs.setRecorder(recorder)
	c.nacks.recorder = recorder
	defer c.broadcaster.Shutdown()

	if c.pipe.secrets != nil {
		c.pipe.secrets.run(ctx)
		defer c.pipe.secrets.wait()
	}
	var wg sync.WaitGroup
	if c.cfg.TapLogService != nil && c.cfg.Identity != nil {
		changed, unsubscribe := c.cfg.Identity.CA.Subscribe()
		defer unsubscribe()
		wg.Go(func() { c.followTrust(ctx, changed) })
	}
	errs := make(chan error, 2)

	wg.Go(func() {
		if err := c.xds.Serve(ctx, xdsLis); err != nil {
			errs <- err
			cancel()
		}
	})
	var admin *http.Server
	if adminLis != nil {
		admin = &http.Server{Handler: c.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := admin.Serve(adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serving admin on %s: %w", adminLis.Addr(), err)
				cancel()
			}
		})
	}
	close(c.serving)
	c.log.Info("control plane serving", "xds", xdsLis.Addr().String(), "admin", addrString(adminLis))

	c.core.factory.Start(ctx.Done())
	wg.Go(func() {
		if !cache.WaitForCacheSync(ctx.Done(), c.core.synced...) {
			return
		}
		// CRDs present at start-up are part of being synced: proxies must
		// not get config without their profiles and then again with them.
		if !cache.WaitForCacheSync(ctx.Done(), c.crds.sync(ctx)...) {
			return
		}
		// Publish what the caches hold before saying synced: a proxy that
		// connects right after must not be served a model still missing
		// what the debouncer has not flushed yet (profiles, say). The
		// debouncer starts only now, so the two flushes never overlap.
		c.pipe.flush(ctx)
		c.log.Info("caches synced", "objects", c.store.Counts())
		c.syncOnce.Do(func() { close(c.synced) })
		wg.Go(func() { c.debounc.Run(ctx, c.pipe.flush) })
		c.crds.run(ctx, c.cfg.DiscoveryInterval)
	})

	<-ctx.Done()
	if admin != nil {
		sctx, scancel := context.WithTimeout(context.Background(), c.cfg.ShutdownGrace)
		_ = admin.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	c.core.factory.Shutdown()
	c.log.Info("control plane stopped")
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// AdminHandler serves /healthz, /readyz, /metrics, /api/stat (golden metrics, telemetry.Table), /api/tap (with Config.TapLogService), /debug/proxies[/<node>], /debug/config/<node>,
// /debug/config-errors, /debug/identity (the CA's sds.Status) and /debug/pprof/.
func (c *Controller) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-c.synced:
			fmt.Fprintln(w, "ok")
		default:
			http.Error(w, "informer caches not synced yet", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.cfg.Registry, promhttp.HandlerOpts{Registry: c.cfg.Registry}))
	dbg := c.xds.DebugHandler()
	mux.Handle("/debug/proxies", dbg)
	mux.Handle("/debug/proxies/", dbg)
	mux.Handle("/debug/config/", dbg)
	mux.HandleFunc("GET /debug/config-errors", func(w http.ResponseWriter, _ *http.Request) {
		type entry struct {
			Kind      string `json:"kind"`
			Namespace string `json:"namespace,omitempty"`
			Name      string `json:"name"`
			Error     string `json:"error"`
		}
		out := []entry{}
		for _, e := range c.store.ConfigErrors() {
			out = append(out, entry{e.Object.Kind, e.Object.Namespace, e.Object.Name, e.Err.Error()})
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
	if c.cfg.Identity != nil {
		mux.Handle("GET /debug/identity", c.cfg.Identity.CA.StatusHandler())
	}
	mux.Handle("GET /api/stat", c.statHandler())
	if c.tap != nil {
		mux.Handle("GET "+tap.Path, c.tap.Handler(c.tapNodes))
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
