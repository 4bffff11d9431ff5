package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/profiles"
)

// stripManagedFields drops what the store never reads before objects enter
// the informer caches: managedFields are often the largest part of an
// object, and every pod in the cluster is cached.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// handlerFuncs adapts typed store calls to informer events, counting which
// events changed the model and which were dropped as no-ops.
func handlerFuncs[T any](kind string, m *controllerMetrics, set func(T) bool, del func(ns, name string) bool) cache.ResourceEventHandlerFuncs {
	count := func(changed bool) {
		result := "noop"
		if changed {
			result = "changed"
		}
		m.objectEvents.WithLabelValues(kind, result).Inc()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if o, ok := obj.(T); ok {
				count(set(o))
			}
		},
		UpdateFunc: func(_, obj any) {
			if o, ok := obj.(T); ok {
				count(set(o))
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if acc, err := meta.Accessor(obj); err == nil {
				count(del(acc.GetNamespace(), acc.GetName()))
			}
		},
	}
}

// coreInformers watches the built-in kinds the model reads.
type coreInformers struct {
	factory informers.SharedInformerFactory
	synced  []cache.InformerSynced
}

func newCoreInformers(client kubernetes.Interface, store *Store, m *controllerMetrics) (*coreInformers, error) {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(stripManagedFields))
	ci := &coreInformers{factory: f}
	add := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("adding an informer handler: %w", err)
		}
		// The registration's HasSynced waits until the handler (not just the
		// cache) has seen the initial list.
		ci.synced = append(ci.synced, reg.HasSynced)
		return nil
	}
	for _, err := range []error{
		add(f.Core().V1().Namespaces().Informer(), handlerFuncs("Namespace", m, store.SetNamespace,
			func(_, name string) bool { return store.DeleteNamespace(name) })),
		add(f.Core().V1().Services().Informer(), handlerFuncs("Service", m, store.SetService, store.DeleteService)),
		add(f.Discovery().V1().EndpointSlices().Informer(), handlerFuncs("EndpointSlice", m, store.SetEndpointSlice, store.DeleteEndpointSlice)),
		add(f.Core().V1().Pods().Informer(), handlerFuncs("Pod", m, store.SetPod, store.DeletePod)),
	} {
		if err != nil {
			return nil, err
		}
	}
	return ci, nil
}

// crdKind is a custom resource Weft reads when (and only when) its CRD is
// installed: versions in order of preference. A CRD serving several
// versions serves the same objects under each, so exactly one is watched.
type crdKind struct {
	kind     string
	group    string
	resource string
	versions []string
	set      func(u *unstructured.Unstructured) bool
	del      func(ns, name string) bool
}

func crdKinds(store *Store) []*crdKind {
	return []*crdKind{
		{
			kind:     "ServiceProfile",
			group:    profiles.ServiceProfileGroupVersion.Group,
			resource: "serviceprofiles",
			versions: []string{profiles.ServiceProfileGroupVersion.Version, profiles.ServiceProfileV1alpha1.Version},
			set: func(u *unstructured.Unstructured) bool {
				sp, err := profiles.ServiceProfileFromUnstructured(u)
				if err != nil {
					return store.SetServiceProfileUndecodable(u.GetNamespace(), u.GetName(), u.GetUID(),
						fmt.Errorf("decoding ServiceProfile: %w", err))
				}
				return store.SetServiceProfile(sp)
			},
			del: store.DeleteServiceProfile,
		},
		{
			kind:     "TrafficSplit",
			group:    profiles.TrafficSplitV1alpha2.Group,
			resource: "trafficsplits",
			versions: []string{profiles.TrafficSplitV1alpha2.Version, profiles.TrafficSplitV1alpha1.Version},
			set: func(u *unstructured.Unstructured) bool {
				ts, err := profiles.TrafficSplitFromUnstructured(u)
				if err != nil {
					return store.SetTrafficSplitUndecodable(u.GetAPIVersion(), u.GetNamespace(), u.GetName(), u.GetUID(),
						fmt.Errorf("decoding TrafficSplit: %w", err))
				}
				return store.SetTrafficSplit(ts)
			},
			del: store.DeleteTrafficSplit,
		},
	}
}

// crdWatches follows the discovery API: when a kind's CRD appears (or
// changes served version) an informer starts for it; when it disappears the
// informer stops and its objects leave the model.
type crdWatches struct {
	log     *slog.Logger
	disco   discovery.DiscoveryInterface
	dyn     dynamic.Interface
	metrics *controllerMetrics
	kinds   []*crdKind

	mu      sync.Mutex
	running map[string]*crdWatch // by kind
	wg      sync.WaitGroup
}

type crdWatch struct {
	gvr      schema.GroupVersionResource
	informer cache.SharedIndexInformer
	synced   cache.InformerSynced
	cancel   context.CancelFunc
	done     chan struct{}
}

func newCRDWatches(log *slog.Logger, disco discovery.DiscoveryInterface, dyn dynamic.Interface, m *controllerMetrics, kinds []*crdKind) *crdWatches {
	return &crdWatches{log: log, disco: disco, dyn: dyn, metrics: m, kinds: kinds, running: map[string]*crdWatch{}}
}

// servedVersion asks discovery which preferred version of k is served;
// ok=false with a nil error means none is.
func (w *crdWatches) servedVersion(k *crdKind) (string, bool, error) {
	for _, v := range k.versions {
		list, err := w.disco.ServerResourcesForGroupVersion(schema.GroupVersion{Group: k.group, Version: v}.String())
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", false, fmt.Errorf("discovering %s/%s: %w", k.group, v, err)
		}
		if slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == k.resource }) {
			return v, true, nil
		}
	}
	return "", false, nil
}

// sync brings the running informers in line with discovery and returns
// the sync functions of those running (to wait on at start-up).
func (w *crdWatches) sync(ctx context.Context) []cache.InformerSynced {
	var synced []cache.InformerSynced
	for _, k := range w.kinds {
		version, served, err := w.servedVersion(k)
		if err != nil {
			// A discovery hiccup must not tear down a working watch.
			w.log.Warn("discovery failed; keeping current watches", "kind", k.kind, "error", err)
			if cur := w.current(k.kind); cur != nil {
				synced = append(synced, cur.synced)
			}
			continue
		}
		cur := w.current(k.kind)
		switch {
		case !served && cur != nil:
			w.log.Info("custom resource no longer served; dropping its objects", "kind", k.kind, "gvr", cur.gvr.String())
			w.stop(k, cur, nil)
		case served && (cur == nil || cur.gvr.Version != version):
			gvr := schema.GroupVersionResource{Group: k.group, Version: version, Resource: k.resource}
			nw, err := w.start(ctx, k, gvr)
			if err != nil {
				w.log.Error("starting a watch", "kind", k.kind, "gvr", gvr.String(), "error", err)
				continue
			}
			w.log.Info("watching custom resource", "kind", k.kind, "gvr", gvr.String())
			if cur != nil {
				// A version switch: the new informer re-delivers every object
				// (same names, usually equal values: no-ops); only objects it
				// does not have are deleted once it has listed.
				w.wg.Go(func() {
					if cache.WaitForCacheSync(ctx.Done(), nw.synced) {
						w.stop(k, cur, nw)
					}
				})
			}
			synced = append(synced, nw.synced)
		case served:
			synced = append(synced, cur.synced)
		}
	}
	return synced
}

func (w *crdWatches) current(kind string) *crdWatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running[kind]
}

func (w *crdWatches) start(ctx context.Context, k *crdKind, gvr schema.GroupVersionResource) (*crdWatch, error) {
	inf := dynamicinformer.NewFilteredDynamicInformer(w.dyn, gvr, "", 0, cache.Indexers{}, nil).Informer()
	if err := inf.SetTransform(stripManagedFields); err != nil {
		return nil, fmt.Errorf("setting the transform: %w", err)
	}
	reg, err := inf.AddEventHandler(handlerFuncs(k.kind, w.metrics, k.set, k.del))
	if err != nil {
		return nil, fmt.Errorf("adding the handler: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	cw := &crdWatch{gvr: gvr, informer: inf, synced: reg.HasSynced, cancel: cancel, done: make(chan struct{})}
	w.mu.Lock()
	w.running[k.kind] = cw
	w.mu.Unlock()
	w.wg.Go(func() {
		defer close(cw.done)
		inf.RunWithContext(wctx)
	})
	return cw, nil
}

// stop ends a watch and deletes its objects from the store, except those
// the replacement watch (if any) holds.
func (w *crdWatches) stop(k *crdKind, cw *crdWatch, replacement *crdWatch) {
	cw.cancel()
	<-cw.done
	w.mu.Lock()
	if w.running[k.kind] == cw {
		delete(w.running, k.kind)
	}
	w.mu.Unlock()
	for _, key := range cw.informer.GetStore().ListKeys() {
		if replacement != nil {
			if _, exists, _ := replacement.informer.GetStore().GetByKey(key); exists {
				continue
			}
		}
		ns, name, err := cache.SplitMetaNamespaceKey(key)
		if err == nil {
			k.del(ns, name)
		}
	}
}

// run re-discovers every interval until ctx ends, then waits for the
// informers to stop.
func (w *crdWatches) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			for _, cw := range w.running {
				cw.cancel()
			}
			w.mu.Unlock()
			w.wg.Wait()
			return
		case <-t.C:
			w.sync(ctx)
		}
	}
}
