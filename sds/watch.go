package sds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// DefaultResync re-reads the material this often even without a change, so
// an issuer that expires while nothing is written is noticed.
const DefaultResync = time.Minute

// WatcherConfig says where the trust material lives and who may write.
type WatcherConfig struct {
	Client    kubernetes.Interface
	Namespace string
	// IssuerSecret is the cert-manager Certificate's secretName.
	IssuerSecret string
	// BundleConfigMap holds the anchors; while it does not exist the
	// Secret's ca.crt is used (and, with CreateMissingBundle, the leader
	// writes it out so overlap rotation has a place to happen).
	BundleConfigMap     string
	BundleKey           string // DefaultBundleKey if ""
	CreateMissingBundle bool
	CA                  *CA
	// Recorder receives Warning Events on the object at fault; nil records none.
	Recorder record.EventRecorder
	// Leader gates every write (Events, the bundle); nil: this replica writes.
	Leader interface{ IsLeader() bool }
	Resync time.Duration
	Logger *slog.Logger
}

// Watcher feeds a CA from the issuer Secret and bundle ConfigMap, watching
// only those two objects.
type Watcher struct {
	cfg     WatcherConfig
	secrets cache.SharedIndexInformer
	bundles cache.SharedIndexInformer
	kick    chan struct{}
	synced  chan struct{}
}

// NewWatcher checks cfg; Run starts watching.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("identity watcher: Client is required")
	case cfg.CA == nil:
		return nil, errors.New("identity watcher: CA is required")
	case cfg.Namespace == "" || cfg.IssuerSecret == "":
		return nil, errors.New("identity watcher: Namespace and IssuerSecret are required")
	}
	if cfg.BundleKey == "" {
		cfg.BundleKey = DefaultBundleKey
	}
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Watcher{cfg: cfg, kick: make(chan struct{}, 1), synced: make(chan struct{})}
	w.secrets = w.informer("secrets", cfg.IssuerSecret, &corev1.Secret{})
	if cfg.BundleConfigMap != "" {
		w.bundles = w.informer("configmaps", cfg.BundleConfigMap, &corev1.ConfigMap{})
	}
	return w, nil
}

// informer watches one named object: the control plane needs read access
// to these two objects only, not to every Secret of its namespace.
func (w *Watcher) informer(resource, name string, obj runtime.Object) cache.SharedIndexInformer {
	lw := cache.NewFilteredListWatchFromClient(w.cfg.Client.CoreV1().RESTClient(), resource, w.cfg.Namespace,
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	inf := cache.NewSharedIndexInformer(lw, obj, w.cfg.Resync, cache.Indexers{})
	kick := func() {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(any, any) { kick() },
		DeleteFunc: func(any) { kick() },
	})
	return inf
}

// Synced is closed once the first read of the material is done (valid or not).
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	informers := []cache.SharedIndexInformer{w.secrets}
	if w.bundles != nil {
		informers = append(informers, w.bundles)
	}
	for _, inf := range informers {
		go func() { inf.RunWithContext(ctx); done <- struct{}{} }()
	}
	defer func() {
		for range informers {
			<-done
		}
	}()
	syncs := make([]cache.InformerSynced, len(informers))
	for i, inf := range informers {
		syncs[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return fmt.Errorf("watching trust material in %s: %w", w.cfg.Namespace, ctx.Err())
	}
	w.reconcile(ctx)
	close(w.synced)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
			w.reconcile(ctx)
		}
	}
}

func (w *Watcher) leader() bool { return w.cfg.Leader == nil || w.cfg.Leader.IsLeader() }

func (w *Watcher) reconcile(ctx context.Context) {
	m, skipped, fault, err := w.read(ctx)
	if err != nil {
		if w.cfg.CA.Refuse(err) && w.cfg.Recorder != nil && w.leader() {
			w.cfg.Recorder.Event(fault, corev1.EventTypeWarning, string(ReasonOf(err)), err.Error())
		}
		return
	}
	w.cfg.CA.SetMaterial(m, skipped)
}

// read builds Material from the stores; on error it also returns the object
// at fault, for the Event.
func (w *Watcher) read(ctx context.Context) (*Material, []string, *corev1.ObjectReference, error) {
	ns := w.cfg.Namespace
	secretObj := "Secret " + ns + "/" + w.cfg.IssuerSecret
	secretRef := &corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: ns, Name: w.cfg.IssuerSecret}
	item, ok, err := w.secrets.GetStore().GetByKey(ns + "/" + w.cfg.IssuerSecret)
	if err != nil || !ok {
		return nil, nil, secretRef, &MaterialError{Reason: ReasonMissing, Object: secretObj, Err: errors.New("not found")}
	}
	secret := item.(*corev1.Secret)
	secretRef.UID, secretRef.ResourceVersion = secret.UID, secret.ResourceVersion
	chain, key, caCrt, err := ParseIssuerSecret(secret)
	if err != nil {
		return nil, nil, secretRef, err
	}
	now := w.cfg.CA.now()
	from := fmt.Sprintf("%s@%s", secretObj, secret.ResourceVersion)

	anchors, skipped, bundleRef, err := w.anchors(ctx, secretRef, caCrt, now)
	if err != nil {
		return nil, nil, bundleRef, err
	}
	if bundleRef != nil {
		from += fmt.Sprintf(", ConfigMap %s/%s@%s", ns, bundleRef.Name, bundleRef.ResourceVersion)
	} else {
		from += " (" + cmmeta.TLSCAKey + ")"
	}
	m, err := NewMaterial(secretObj, chain, key, anchors, now)
	if err != nil {
		return nil, nil, secretRef, err
	}
	m.From = from
	return m, skipped, nil, nil
}

// anchors reads the bundle ConfigMap, or the Secret's ca.crt while there is
// none. The returned reference is the ConfigMap used (nil for ca.crt), or
// the object at fault with the error.
func (w *Watcher) anchors(ctx context.Context, secretRef *corev1.ObjectReference, caCrt []*x509.Certificate, now time.Time) ([]*x509.Certificate, []string, *corev1.ObjectReference, error) {
	ns := w.cfg.Namespace
	if w.bundles != nil {
		ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: ns, Name: w.cfg.BundleConfigMap}
		item, ok, err := w.bundles.GetStore().GetByKey(ns + "/" + w.cfg.BundleConfigMap)
		if err == nil && ok {
			cm := item.(*corev1.ConfigMap)
			ref.UID, ref.ResourceVersion = cm.UID, cm.ResourceVersion
			anchors, skipped, err := ParseBundle(cm, w.cfg.BundleKey, now)
			return anchors, skipped, ref, err
		}
		if len(caCrt) > 0 && w.cfg.CreateMissingBundle && w.leader() {
			w.createBundle(ctx, caCrt)
		}
	}
	if len(caCrt) == 0 {
		what := "the Secret has no " + cmmeta.TLSCAKey
		if w.bundles != nil {
			what = fmt.Sprintf("ConfigMap %s/%s does not exist and %s", ns, w.cfg.BundleConfigMap, what)
		}
		return nil, nil, secretRef, &MaterialError{Reason: ReasonNoValidAnchor, Object: "Secret " + ns + "/" + w.cfg.IssuerSecret,
			Field: "data[" + cmmeta.TLSCAKey + "]", Err: errors.New(what)}
	}
	anchors, skipped := validAnchors(caCrt, now)
	if len(anchors) == 0 {
		return nil, skipped, secretRef, &MaterialError{Reason: ReasonNoValidAnchor, Object: "Secret " + ns + "/" + w.cfg.IssuerSecret,
			Field: "data[" + cmmeta.TLSCAKey + "]", Err: fmt.Errorf("no valid anchor: %v", skipped)}
	}
	return anchors, skipped, nil, nil
}

// createBundle writes the missing bundle from the Secret's ca.crt. A
// conflict means another writer got there first, which is as good.
func (w *Watcher) createBundle(ctx context.Context, anchors []*x509.Certificate) {
	cm := BundleConfigMap(w.cfg.Namespace, w.cfg.BundleConfigMap, w.cfg.BundleKey, anchors...)
	cm.TypeMeta = metav1.TypeMeta{}
	_, err := w.cfg.Client.CoreV1().ConfigMaps(w.cfg.Namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: "weft-identity"})
	switch {
	case err == nil:
		w.cfg.Logger.Info("identity: created the missing trust bundle from the issuer's ca.crt", "configmap", w.cfg.Namespace+"/"+w.cfg.BundleConfigMap)
	case apierrors.IsAlreadyExists(err):
	default:
		w.cfg.Logger.Error("identity: creating the missing trust bundle", "configmap", w.cfg.Namespace+"/"+w.cfg.BundleConfigMap, "err", err)
	}
}
