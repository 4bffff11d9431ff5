// Command cp is Weft's control plane: it watches Kubernetes and serves xDS
// to Envoy sidecars and proxyless gRPC clients. All the work is in package
// controller; this is flags, logging and signals.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/weftmesh/weft/controller"
	"github.com/weftmesh/weft/injector"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/sds/tokenauth"
)

// processLoggers is set by main only: slog's default and klog's logger are
// the process's, and tests that run cp in-process beside their own clients
// must not swap them under those clients (a data race on klog's global).
var processLoggers bool

func main() {
	processLoggers = true
	if err := newCommand().Execute(); err != nil {
		os.Exit(1)
	}
}

type options struct {
	kubeconfig        string
	xdsAddr           string
	adminAddr         string
	clusterDomain     string
	trustDomain       string
	logLevel          string
	logFormat         string
	debounce          time.Duration
	debounceMax       time.Duration
	endpointDebounce  time.Duration
	workers           int
	discoveryInterval time.Duration
	shutdownGrace     time.Duration
	identity          identityOptions
	webhook           webhookOptions
}

func newCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "cp",
		Short: "Weft control plane: Kubernetes in, xDS out",
		Long: `cp watches Services, EndpointSlices, Pods, Namespaces, ServiceProfiles
(linkerd.io/v1alpha2) and SMI TrafficSplits, and serves each meshed pod's
proxy its configuration over ADS. Every replica serves xDS; no leader
election is needed for that.

The admin address serves /healthz, /readyz (ready once caches are synced),
/metrics, /api/tap (weft tap and top), /debug/proxies, /debug/config-errors and, with --identity,
/debug/identity (what weft check reads of the CA).

With --webhook-listen it also serves the sidecar injection webhook over
HTTPS on /inject (docs/injection.md).`,
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: in-cluster config, else $KUBECONFIG or ~/.kube/config")
	f.StringVar(&o.xdsAddr, "xds-addr", ":8086", "address serving ADS (TLS with --identity, else plaintext)")
	f.StringVar(&o.adminAddr, "admin-addr", ":9990", "address serving health, readiness, metrics and debug endpoints; empty disables")
	f.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "DNS suffix of services")
	f.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "json", "json or text")
	f.DurationVar(&o.debounce, "debounce", 100*time.Millisecond, "quiet time that ends a burst of changes")
	f.DurationVar(&o.debounceMax, "debounce-max", time.Second, "longest a burst of changes is held before pushing")
	f.DurationVar(&o.endpointDebounce, "endpoint-debounce", 10*time.Millisecond, "quiet time that ends a burst of nothing but endpoint changes (held at most --debounce)")
	f.IntVar(&o.workers, "workers", 4, "proxies recomputed concurrently")
	f.DurationVar(&o.discoveryInterval, "discovery-interval", 10*time.Second, "how often to check whether the ServiceProfile/TrafficSplit CRDs are served")
	f.DurationVar(&o.shutdownGrace, "shutdown-grace", 5*time.Second, "how long to wait for xDS streams to end on shutdown")
	id := &o.identity
	f.BoolVar(&id.enabled, "identity", false, "workload identity: TLS on the xDS port, streams authenticated by projected ServiceAccount tokens, SDS certificates per identity")
	f.BoolVar(&id.mtls, "mtls", false, "mTLS between meshed proxies (requires --identity; off by default so certificates can be rolled out first)")
	f.StringVar(&id.namespace, "identity-namespace", "weft-system", "namespace of the issuer Secret, the trust bundle, the leader Lease and the control plane's ServiceAccount")
	f.StringVar(&id.issuerSecret, "issuer-secret", "weft-identity-issuer", "issuer Secret (kubernetes.io/tls with ca.crt, cert-manager's format)")
	f.StringVar(&id.trustBundle, "trust-bundle", "weft-trust-bundle", "ConfigMap of trust anchors (created from the Secret's ca.crt if missing); empty: the Secret's ca.crt only")
	f.StringVar(&id.bundleKey, "trust-bundle-key", sds.DefaultBundleKey, "key of the anchors in the trust bundle ConfigMap")
	f.DurationVar(&id.leafTTL, "leaf-ttl", sds.DefaultLeafTTL, "lifetime of workload certificates (cut to the issuer's; renewed at about 70%)")
	f.StringVar(&id.tokenAudience, "token-audience", tokenauth.DefaultAudience, "audience proxies' projected ServiceAccount tokens must carry")
	f.StringVar(&id.serviceAccount, "service-account", "weft-cp", "the control plane's own ServiceAccount (identity of the xDS serving certificate)")
	f.StringSliceVar(&id.serverNames, "xds-server-name", nil, "DNS names of the xDS serving certificate (default weft-cp.<identity-namespace>.svc[.cluster.local])")
	f.StringVar(&id.podName, "pod-name", os.Getenv("POD_NAME"), "this replica's name in leader election (default $POD_NAME, else the hostname)")
	f.StringVar(&id.externalIssuer, "external-issuer", "", "have cert-manager sign workload certificates: CertificateRequests in --identity-namespace to this issuer, <Kind>[.<group>]/<name> (e.g. ClusterIssuer/weft-ca); empty: the control plane signs with the issuer Secret")
	f.DurationVar(&id.externalTimeout, "external-issuer-timeout", sds.DefaultRequestTimeout, "how long a CertificateRequest may stay unapproved or unsigned before issuance fails (and is retried)")
	wh := &o.webhook
	f.StringVar(&wh.listen, "webhook-listen", "", "address serving the injection admission webhook over HTTPS (path /inject); empty disables")
	f.StringVar(&wh.certFile, "webhook-cert", "", "PEM certificate of the webhook server (reloaded when the file changes)")
	f.StringVar(&wh.keyFile, "webhook-key", "", "PEM private key of the webhook server (reloaded when the file changes)")
	f.StringVar(&wh.proxyImage, "proxy-image", injector.DefaultProxyImage, "Envoy image injected as the sidecar (config.weft.io/proxy-image and proxy-version override it per pod)")
	f.StringVar(&wh.captureImage, "capture-image", injector.DefaultCaptureImage, "image of the traffic capture init container (cmd/capture)")
	f.StringVar(&wh.logLevel, "proxy-log-level", injector.DefaultConfig().LogLevel, "Envoy log level of injected proxies (config.weft.io/proxy-log-level overrides it)")
	f.StringVar(&wh.cpuRequest, "proxy-cpu-request", "100m", "CPU request of injected proxies (config.weft.io/proxy-cpu-request overrides it; empty: none)")
	f.StringVar(&wh.memoryRequest, "proxy-memory-request", "64Mi", "memory request of injected proxies (config.weft.io/proxy-memory-request overrides it; empty: none)")
	f.StringVar(&wh.cpuLimit, "proxy-cpu-limit", "", "CPU limit of injected proxies (config.weft.io/proxy-cpu-limit overrides it; empty: none, so a busy proxy is not throttled)")
	f.StringVar(&wh.memoryLimit, "proxy-memory-limit", "256Mi", "memory limit of injected proxies (config.weft.io/proxy-memory-limit overrides it; empty: none)")
	f.StringVar(&wh.xdsAddress, "proxy-xds-address", "", "xDS address injected proxies dial, host:port (default weft-cp.<identity-namespace>.svc:<--xds-addr port>)")
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is neither json nor text", format)
	}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err == nil {
		return cfg, nil
	}
	if !errors.Is(err, rest.ErrNotInCluster) {
		return nil, fmt.Errorf("loading in-cluster config: %w", err)
	}
	cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a cluster and no usable kubeconfig: %w", err)
	}
	return cfg, nil
}

func run(ctx context.Context, o options) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if processLoggers {
		slog.SetDefault(log)
		// client-go logs through klog; send it to the same place.
		klog.SetSlogLogger(log)
	}

	if err := o.identity.validate(); err != nil {
		return err
	}
	if err := o.webhook.validate(); err != nil {
		return err
	}
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		log.Error("cannot reach Kubernetes", "error", err)
		return err
	}
	cfg.UserAgent = "weft-cp"

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var identity *controller.Identity
	if o.identity.enabled {
		// The identity loops end with the control plane, also when it fails.
		idCtx, idCancel := context.WithCancel(ctx)
		id, wait, err := startIdentity(idCtx, cfg, o.identity, o.trustDomain, reg, log)
		if err != nil {
			idCancel()
			log.Error("identity failed to start", "error", err)
			return err
		}
		defer func() { idCancel(); wait() }()
		identity = id
	}
	var ca interface{ Bundle() []byte }
	if identity != nil {
		ca = identity.CA
	}
	if o.webhook.listen != "" {
		injCfg, err := o.injectorConfig(ca)
		if err != nil {
			return err
		}
		whCtx, whCancel := context.WithCancel(ctx)
		wait, err := startWebhook(whCtx, cfg, o.webhook, injCfg, log)
		if err != nil {
			whCancel()
			log.Error("injection webhook failed to start", "error", err)
			return err
		}
		defer func() { whCancel(); wait() }()
	}

	err = controller.Run(ctx, controller.Config{
		RestConfig:        cfg,
		ClusterDomain:     o.clusterDomain,
		TrustDomain:       o.trustDomain,
		MTLS:              o.identity.mtls,
		Identity:          identity,
		Registry:          reg,
		XDSAddr:           o.xdsAddr,
		AdminAddr:         o.adminAddr,
		Logger:            log,
		Debounce:          o.debounce,
		DebounceMax:       o.debounceMax,
		EndpointDebounce:  o.endpointDebounce,
		Workers:           o.workers,
		DiscoveryInterval: o.discoveryInterval,
		ShutdownGrace:     o.shutdownGrace,
		// Read again after every change of the CA (controller.Config): the
		// bundle in it follows an anchor rotation.
		TapLogService: func() (*corev3.GrpcService, error) { return o.tapLogService(ca) },
	})
	if err != nil {
		log.Error("control plane failed", "error", err)
	}
	return err
}
