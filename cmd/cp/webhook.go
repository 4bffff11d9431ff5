package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/injector"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles/admission"
)

// version is set at link time (go build -ldflags "-X main.version=v0.1.0")
// and recorded on injected pods (weft.io/created-by).
var version = "dev"

// webhookOptions are the flags of the admission webhook server and of what
// it injects.
type webhookOptions struct {
	listen       string
	certFile     string
	keyFile      string
	proxyImage   string
	captureImage string
	logLevel     string
	xdsAddress   string
	// The injected proxy's resources unless a pod's annotations say
	// otherwise; "" leaves that request or limit unset.
	cpuRequest, memoryRequest, cpuLimit, memoryLimit string
}

// proxyResources parses the --proxy-* resource flags.
func (o webhookOptions) proxyResources() (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		flag, value string
		list        corev1.ResourceList
		name        corev1.ResourceName
	}{
		{"--proxy-cpu-request", o.cpuRequest, r.Requests, corev1.ResourceCPU},
		{"--proxy-memory-request", o.memoryRequest, r.Requests, corev1.ResourceMemory},
		{"--proxy-cpu-limit", o.cpuLimit, r.Limits, corev1.ResourceCPU},
		{"--proxy-memory-limit", o.memoryLimit, r.Limits, corev1.ResourceMemory},
	} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err != nil || v.Sign() <= 0 {
			return r, fmt.Errorf("%s %q: want a positive quantity such as 100m or 64Mi", q.flag, q.value)
		}
		q.list[q.name] = v
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[name]
		lim, hasLim := r.Limits[name]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			return r, fmt.Errorf("--proxy-%s-request %s is above --proxy-%s-limit %s", name, req.String(), name, lim.String())
		}
	}
	return r, nil
}

func (o webhookOptions) validate() error {
	if o.listen == "" {
		return nil
	}
	if o.certFile == "" || o.keyFile == "" {
		return errors.New("--webhook-listen needs --webhook-cert and --webhook-key: the apiserver calls webhooks over HTTPS only")
	}
	if !slices.Contains(mesh.EnvoyLogLevels, o.logLevel) {
		return fmt.Errorf("--proxy-log-level %q: not one of %v", o.logLevel, mesh.EnvoyLogLevels)
	}
	_, err := o.proxyResources()
	return err
}

// injectorConfig is what the webhook injects: the proxy dials the xDS port
// through the control plane's Service, over TLS verified by the mesh's
// bundle when identity is on.
func (o options) injectorConfig(ca interface{ Bundle() []byte }) (injector.Config, error) {
	cfg := injector.DefaultConfig()
	cfg.ProxyImage, cfg.CaptureImage, cfg.LogLevel = o.webhook.proxyImage, o.webhook.captureImage, o.webhook.logLevel
	cfg.TokenAudience = o.identity.tokenAudience
	cfg.Version = version
	cfg.ClusterDomain = o.clusterDomain
	resources, err := o.webhook.proxyResources()
	if err != nil {
		return cfg, err
	}
	cfg.Resources = resources
	cfg.ControlPlaneAddress = o.webhook.xdsAddress
	if cfg.ControlPlaneAddress == "" {
		_, port, err := net.SplitHostPort(o.xdsAddr)
		if err != nil {
			return cfg, fmt.Errorf("--xds-addr %q: %w", o.xdsAddr, err)
		}
		cfg.ControlPlaneAddress = net.JoinHostPort("weft-cp."+o.identity.namespace+".svc", port)
	}
	if o.identity.enabled {
		cfg.ServerName = o.identity.xdsServerNames()[0]
		cfg.TrustBundleSource = ca.Bundle
	}
	return cfg, nil
}

// startWebhook serves the injection webhook over HTTPS until ctx ends;
// wait returns once it has stopped.
func startWebhook(ctx context.Context, cfg *rest.Config, o webhookOptions, injCfg injector.Config, log *slog.Logger) (wait func(), err error) {
	in, err := injector.New(injCfg)
	if err != nil {
		return nil, err
	}
	certs, err := newCertReloader(o.certFile, o.keyFile, log)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("webhook: creating the Kubernetes client: %w", err)
	}
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("webhook: listening on %s: %w", o.listen, err)
	}

	// Namespaces come from a cache: an admission waits on a GET only for a
	// namespace the cache has not seen yet.
	factory := informers.NewSharedInformerFactory(client, 0)
	namespaces := factory.Core().V1().Namespaces()
	nsLister := namespaces.Lister()
	namespaces.Informer()
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})

	mux := http.NewServeMux()
	mux.Handle(injector.InjectPath, &injector.Handler{
		Injector: in,
		Namespace: func(ctx context.Context, name string) (*corev1.Namespace, error) {
			ns, err := nsLister.Get(name)
			if apierrors.IsNotFound(err) {
				// Created a moment ago (a manifest with the Namespace and its
				// pods): the cache may not have it yet, the apiserver has.
				return client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			}
			return ns, err
		},
		Events: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "weft-injector"}),
		Log:    log,
	})
	// The ServiceProfile/TrafficSplit validating webhook shares the server, so
	// one certificate and one Service serve both webhooks.
	mux.Handle(admission.Path, &admission.Handler{
		Validator: admission.Validator{ClusterDomain: injCfg.ClusterDomain},
		Log:       log,
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	factory.Start(ctx.Done())
	wg.Go(func() {
		if err := srv.ServeTLS(lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("webhook server failed", "error", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	if !cache.WaitForCacheSync(ctx.Done(), namespaces.Informer().HasSynced) {
		log.Warn("webhook: namespaces not synced; pods are judged by their own annotations until they are")
	}
	log.Info("injection webhook serving", "addr", lis.Addr().String(), "path", injector.InjectPath, "proxy", injCfg.ProxyImage, "xds", injCfg.ControlPlaneAddress)
	return func() { wg.Wait(); factory.Shutdown(); broadcaster.Shutdown() }, nil
}

// certReloader serves the certificate in certFile/keyFile and reloads it
// when either file changes (a renewed Secret volume, cert-manager's), checked
// at each handshake: a stat is cheap next to a handshake, and no watcher
// can miss the symlink swap kubelet does.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	certMod, keyMod, err := modTimes(r.certFile, r.keyFile)
	if err == nil && (!certMod.Equal(r.certMod) || !keyMod.Equal(r.keyMod)) {
		if err := r.reloadLocked(); err != nil {
			// A half-written pair (cert renewed, key not yet) must not take
			// the webhook down: serve the last good one, retry next time.
			r.log.Warn("webhook certificate changed but does not load; serving the previous one", "cert", r.certFile, "error", err)
		}
	}
	return r.cert, nil
}

func (r *certReloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *certReloader) reloadLocked() error {
	certMod, keyMod, err := modTimes(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading the webhook certificate %s / key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certMod, r.keyMod = &cert, certMod, keyMod
	return nil
}

func modTimes(certFile, keyFile string) (cert, key time.Time, err error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return cert, key, fmt.Errorf("webhook certificate: %w", err)
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return cert, key, fmt.Errorf("webhook key: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}
