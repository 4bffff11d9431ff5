package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/xds"
)

// Event reasons, stable so users can filter on them
// (kubectl get events --field-selector reason=InvalidProfile).
const (
	ReasonInvalidProfile      = "InvalidProfile"
	ReasonInvalidTrafficSplit = "InvalidTrafficSplit"
	ReasonInvalidProxyConfig  = "InvalidProxyConfig"
	ReasonInvalidAnnotation   = "InvalidAnnotation"
	ReasonConfigRejected      = "ConfigRejected"
)

func reasonFor(kind string) string {
	switch kind {
	case "ServiceProfile":
		return ReasonInvalidProfile
	case "TrafficSplit":
		return ReasonInvalidTrafficSplit
	case "Pod":
		return ReasonInvalidProxyConfig
	default:
		return ReasonInvalidAnnotation
	}
}

// configErrorReporter makes bad input (a skipped object, or an annotation
// left at its default) visible three ways: an error log naming the object
// and field paths, the weft_config_errors series, and a Warning Event on the
// object itself (what `kubectl describe` shows).
//
// Problems come from two sources: the store ("model": the object did not
// validate or convert) and translate ("translate": it converted but part of
// it could not be turned into Envoy config). Each source reports an object
// once per distinct error, so nothing repeats on every recompute; the
// series is the sum over sources and goes away when every source is clear.
type configErrorReporter struct {
	log     *slog.Logger
	metrics *controllerMetrics

	mu       sync.Mutex
	recorder record.EventRecorder
	bySource map[mesh.ObjectRef]map[string]int // source -> problem count
}

func newConfigErrorReporter(log *slog.Logger) *configErrorReporter {
	return &configErrorReporter{log: log, bySource: map[mesh.ObjectRef]map[string]int{}}
}

func (r *configErrorReporter) setRecorder(rec record.EventRecorder) {
	r.mu.Lock()
	r.recorder = rec
	r.mu.Unlock()
}

func (r *configErrorReporter) set(source string, e mesh.ConfigError, ref *corev1.ObjectReference) {
	paths, count := fieldPaths(e.Err)
	r.log.Error("invalid configuration: the invalid part is left out, everything else is still served",
		"kind", e.Object.Kind, "namespace", e.Object.Namespace, "name", e.Object.Name,
		"source", source, "fields", paths, "error", e.Err.Error())
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.bySource[e.Object]
	if m == nil {
		m = map[string]int{}
		r.bySource[e.Object] = m
	}
	m[source] = count
	r.metrics.configErrors.WithLabelValues(e.Object.Kind, e.Object.Namespace, e.Object.Name).Set(float64(sum(m)))
	if r.recorder != nil && ref != nil {
		r.recorder.Event(ref, corev1.EventTypeWarning, reasonFor(e.Object.Kind), truncate(e.Err.Error(), 1024))
	}
}

func (r *configErrorReporter) clear(source string, obj mesh.ObjectRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.bySource[obj]
	if _, ok := m[source]; !ok {
		return
	}
	delete(m, source)
	r.log.Info("configuration error resolved", "kind", obj.Kind, "namespace", obj.Namespace, "name", obj.Name, "source", source)
	if len(m) == 0 {
		delete(r.bySource, obj)
		r.metrics.configErrors.DeleteLabelValues(obj.Kind, obj.Namespace, obj.Name)
		return
	}
	r.metrics.configErrors.WithLabelValues(obj.Kind, obj.Namespace, obj.Name).Set(float64(sum(m)))
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// modelSink is the store's ConfigErrorSink.
type modelSink struct{ r *configErrorReporter }

func (s modelSink) ConfigErrorSet(e mesh.ConfigError, ref *corev1.ObjectReference) {
	s.r.set("model", e, ref)
}
func (s modelSink) ConfigErrorCleared(obj mesh.ObjectRef) { s.r.clear("model", obj) }

// translateProblems counts, across proxies, the problems translate reports
// (the same skipped profile shows up in every proxy that can reach its
// service): an object is reported when the first proxy meets a problem
// with it and cleared when the last one stops meeting it.
type translateProblems struct {
	report *configErrorReporter
	ref    func(mesh.ObjectRef) *corev1.ObjectReference
	log    *slog.Logger

	mu    sync.Mutex
	count map[problem]int
}

type problem struct {
	obj mesh.ObjectRef // zero for problems not about one object
	msg string
}

func newTranslateProblems(r *configErrorReporter, ref func(mesh.ObjectRef) *corev1.ObjectReference, log *slog.Logger) *translateProblems {
	return &translateProblems{report: r, ref: ref, log: log, count: map[problem]int{}}
}

// problemsOf turns translate's errors into a set.
func problemsOf(errs []error) map[problem]struct{} {
	if len(errs) == 0 {
		return nil
	}
	out := make(map[problem]struct{}, len(errs))
	for _, err := range errs {
		var ce mesh.ConfigError
		if errors.As(err, &ce) {
			out[problem{obj: ce.Object, msg: ce.Err.Error()}] = struct{}{}
		} else {
			out[problem{msg: err.Error()}] = struct{}{}
		}
	}
	return out
}

// update moves one proxy from old to new problems.
func (t *translateProblems) update(old, cur map[problem]struct{}) {
	if len(old) == 0 && len(cur) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	touched := map[mesh.ObjectRef]bool{}
	var appeared []string
	for p := range old {
		if _, still := cur[p]; still {
			continue
		}
		if t.count[p]--; t.count[p] <= 0 {
			delete(t.count, p)
			touched[p.obj] = true
		}
	}
	for p := range cur {
		if _, had := old[p]; had {
			continue
		}
		if t.count[p]++; t.count[p] == 1 {
			touched[p.obj] = true
			if p.obj == (mesh.ObjectRef{}) {
				appeared = append(appeared, p.msg)
			}
		}
	}
	for _, m := range appeared {
		// Not about one object: logged once when a first proxy meets it.
		t.log.Error("translation problem", "error", m)
	}
	for obj := range touched {
		if obj == (mesh.ObjectRef{}) {
			continue
		}
		var msgs []string
		for p := range t.count {
			if p.obj == obj {
				msgs = append(msgs, p.msg)
			}
		}
		slices.Sort(msgs)
		if len(msgs) == 0 {
			t.report.clear("translate", obj)
			continue
		}
		errs := make([]error, len(msgs))
		for i, m := range msgs {
			errs[i] = errors.New(m)
		}
		t.report.set("translate", mesh.ConfigError{Object: obj, Err: errors.Join(errs...)}, t.ref(obj))
	}
}

// fieldPaths lists the field paths inside an error (field.Error values,
// however wrapped) and how many problems it holds.
func fieldPaths(err error) ([]string, int) {
	var paths []string
	var walk func(error)
	count := 0
	walk = func(err error) {
		var fe *field.Error
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
			return
		}
		count++
		if errors.As(err, &fe) {
			paths = append(paths, fe.Field)
		}
	}
	walk(err)
	return paths, max(count, 1)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// nackReporter turns a proxy's NACK into a Warning Event on its pod, so the
// rejection shows next to the workload. Events of one pod, reason and
// message are aggregated by client-go's correlator, so a proxy NACKing every
// push does not flood the apiserver.
type nackReporter struct {
	store    *Store
	recorder record.EventRecorder
	metrics  *controllerMetrics
}

func (n *nackReporter) report(nack xds.Nack) {
	pod := n.store.Pod(nack.Node.Namespace, nack.Node.Pod)
	if pod == nil || n.recorder == nil {
		return
	}
	ref := objectReference("v1", "Pod", pod.Namespace, pod.Name, pod.UID)
	msg := fmt.Sprintf("proxy %s rejected %s version %q: %s (%s)",
		nack.Node.ID, nack.TypeURL, nack.Version, nack.Detail.GetMessage(), codes.Code(nack.Detail.GetCode()))
	n.recorder.Event(ref, corev1.EventTypeWarning, ReasonConfigRejected, truncate(msg, 1024))
	n.metrics.nackEvents.Inc()
}
