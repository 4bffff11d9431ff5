package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/controller"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/sds/tokenauth"
)

// materialWait bounds how long start-up waits for the first read of the
// trust material.
const materialWait = 30 * time.Second

// identityOptions are the flags of workload identity.
type identityOptions struct {
	enabled        bool
	mtls           bool
	namespace      string
	issuerSecret   string
	trustBundle    string
	bundleKey      string
	leafTTL        time.Duration
	tokenAudience  string
	serviceAccount string
	serverNames    []string
	podName        string
	// externalIssuer ("" for none) has cert-manager sign workload leaves.
	externalIssuer  string
	externalTimeout time.Duration
}

// validate checks the flags before anything is started.
func (o identityOptions) validate() error {
	if o.mtls && !o.enabled {
		return fmt.Errorf("--mtls requires --identity: the certificates mTLS names are delivered by identity's SDS")
	}
	if o.externalIssuer != "" && !o.enabled {
		return fmt.Errorf("--external-issuer requires --identity")
	}
	if !o.enabled {
		return nil
	}
	if o.externalIssuer != "" {
		if _, err := sds.ParseIssuerRef(o.externalIssuer); err != nil {
			return fmt.Errorf("--external-issuer: %w", err)
		}
		if o.externalTimeout <= 0 {
			return fmt.Errorf("--external-issuer-timeout %s: must be positive", o.externalTimeout)
		}
	}
	if o.leafTTL < time.Minute {
		return fmt.Errorf("--leaf-ttl %s: must be at least 1m", o.leafTTL)
	}
	for flag, v := range map[string]string{
		"--identity-namespace": o.namespace, "--issuer-secret": o.issuerSecret,
		"--token-audience": o.tokenAudience, "--service-account": o.serviceAccount,
	} {
		if v == "" {
			return fmt.Errorf("%s: required with --identity", flag)
		}
	}
	return nil
}

// xdsServerNames are the DNS names in the xDS serving certificate: the
// flag's, else the control plane's Service in its namespace.
func (o identityOptions) xdsServerNames() []string {
	if len(o.serverNames) > 0 {
		return o.serverNames
	}
	svc := "weft-cp." + o.namespace
	return []string{svc + ".svc", svc + ".svc.cluster.local"}
}

// startIdentity builds the CA, the watcher feeding it from the issuer
// Secret and bundle ConfigMap, the leader election gating writes and the
// token authenticator, and runs the first three until ctx ends; wait
// returns once they have. It waits for the first read of the trust
// material so the first proxies are not turned away for want of it; bad
// material is reported by the watcher (log, metric, Event) and does not stop
// the control plane.
func startIdentity(ctx context.Context, cfg *rest.Config, o identityOptions, trustDomain string, reg prometheus.Registerer, log *slog.Logger) (*controller.Identity, func(), error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, nil, fmt.Errorf("--trust-domain %q: %w", trustDomain, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: creating the Kubernetes client: %w", err)
	}
	ca, err := sds.New(sds.Config{TrustDomain: td, LeafTTL: o.leafTTL, Registry: reg, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	auth, err := tokenauth.New(tokenauth.Config{Client: client, Audience: o.tokenAudience, Registry: reg, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	podName := o.podName
	if podName == "" {
		if podName, err = os.Hostname(); err != nil {
			return nil, nil, fmt.Errorf("identity: --pod-name is empty and the hostname is unknown: %w", err)
		}
	}
	leader, err := sds.NewLeader(sds.LeaderConfig{Client: client, Namespace: o.namespace, Lease: "weft-cp-identity", Identity: podName, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "weft-identity"})
	watcher, err := sds.NewWatcher(sds.WatcherConfig{
		Client: client, Namespace: o.namespace, IssuerSecret: o.issuerSecret,
		BundleConfigMap: o.trustBundle, BundleKey: o.bundleKey, CreateMissingBundle: o.trustBundle != "",
		CA:       ca,
		Recorder: recorder,
		Leader:   leader, Logger: log,
	})
	if err != nil {
		broadcaster.Shutdown()
		return nil, nil, err
	}
	leaves, err := externalLeaves(cfg, o, ca, recorder, log)
	if err != nil {
		broadcaster.Shutdown()
		return nil, nil, err
	}
	var wg sync.WaitGroup
	wg.Go(func() { leader.Run(ctx) })
	wg.Go(func() {
		if err := watcher.Run(ctx); err != nil {
			log.Error("identity: watching trust material", "error", err)
		}
	})
	wait := func() { wg.Wait(); broadcaster.Shutdown() }
	// Reading the material is waited for, within bounds: a control plane
	// that may not read its Secret (RBAC) still serves, and says so.
	synced := time.NewTimer(materialWait)
	defer synced.Stop()
	select {
	case <-watcher.Synced():
	case <-synced.C:
		log.Warn("identity: trust material not read yet (can this ServiceAccount get/list/watch the issuer Secret and bundle ConfigMap?); serving, xDS TLS handshakes fail until it is",
			"secret", o.namespace+"/"+o.issuerSecret, "waited", materialWait)
	case <-ctx.Done():
		wait()
		return nil, nil, ctx.Err()
	}
	if st := ca.Status(); !st.Ready {
		log.Warn("identity: no valid trust material yet; xDS TLS handshakes fail until there is", "problem", st.Problem)
	}
	return &controller.Identity{
		CA:              ca,
		Leaves:          leaves,
		Authenticator:   auth.Authenticate,
		Serving:         sds.Workload{Namespace: o.namespace, ServiceAccount: o.serviceAccount},
		ServingDNSNames: o.xdsServerNames(),
	}, wait, nil
}

// externalLeaves is the LeafSource of --external-issuer, nil without it (the
// CA signs). The Events of failed requests are recorded by the replica that
// made them, leader or not: each replica issues for its own proxies.
func externalLeaves(cfg *rest.Config, o identityOptions, ca *sds.CA, recorder record.EventRecorder, log *slog.Logger) (sds.LeafSource, error) {
	if o.externalIssuer == "" {
		return nil, nil
	}
	ref, err := sds.ParseIssuerRef(o.externalIssuer)
	if err != nil {
		return nil, fmt.Errorf("--external-issuer: %w", err)
	}
	client, err := cmclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("identity: creating the cert-manager client: %w", err)
	}
	crs, err := sds.NewCertificateRequests(sds.CertificateRequestConfig{
		Client: client, Namespace: o.namespace, IssuerRef: ref, CA: ca,
		Timeout: o.externalTimeout, Recorder: recorder, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("identity: workload certificates are signed by cert-manager", "issuer", o.externalIssuer, "namespace", o.namespace)
	return crs, nil
}
