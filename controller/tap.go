package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/xds"
)

// Tap sessions on the admin server: GET /api/tap?namespace=NS&target=
// deploy/web&to=&path=&method=&max=1m streams tap.Line values, one JSON
// object per line, until the client goes away or max (default and cap
// MaxTapDuration) passes; the session's proxies are untapped then.

// MaxTapDuration bounds a session: a forgotten `weft tap` must not keep
// proxies logging forever.
const MaxTapDuration = 30 * time.Minute

// tapTargetError is a target that cannot be tapped; its message is the
// user's answer.
type tapTargetError struct {
	code int
	msg  string
}

func (e *tapTargetError) Error() string { return e.msg }

// ownerKinds are the workload kinds a target may name, by the short and
// long names kubectl accepts.
var ownerKinds = map[string]string{
	"deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
	"sts": "StatefulSet", "statefulset": "StatefulSet", "statefulsets": "StatefulSet",
	"ds": "DaemonSet", "daemonset": "DaemonSet", "daemonsets": "DaemonSet",
	"po": "Pod", "pod": "Pod", "pods": "Pod",
}

// tapNodes resolves target ("deploy/web", "pod/web-1") in namespace ns to
// the node ids of its meshed sidecars.
func (c *Controller) tapNodes(ns, target string) ([]string, error) {
	kindName, name, ok := strings.Cut(target, "/")
	kind := ownerKinds[strings.ToLower(kindName)]
	if !ok || kind == "" || name == "" {
		return nil, &tapTargetError{http.StatusBadRequest, fmt.Sprintf("target %q: want KIND/NAME with KIND one of deploy, sts, ds, pod", target)}
	}
	var pods []*corev1.Pod
	if kind == "Pod" {
		if p := c.store.Pod(ns, name); p != nil {
			pods = append(pods, p)
		}
	} else {
		for _, p := range c.store.Pods(ns) {
			if ownedBy(p, kind, name) {
				pods = append(pods, p)
			}
		}
	}
	if len(pods) == 0 {
		return nil, &tapTargetError{http.StatusNotFound, fmt.Sprintf("%s %s/%s: no pods", kind, ns, name)}
	}
	var nodes, unmeshed, proxyless []string
	for _, p := range pods {
		px, _ := c.store.Proxy(p.Name, p.Namespace)
		switch {
		case px == nil:
			unmeshed = append(unmeshed, p.Name)
		case px.Kind == proxy.GRPC:
			proxyless = append(proxyless, p.Name)
		default:
			nodes = append(nodes, px.NodeID())
		}
	}
	if len(nodes) == 0 {
		var why []string
		if len(unmeshed) > 0 {
			why = append(why, fmt.Sprintf("not meshed (no Weft proxy): %s", strings.Join(unmeshed, ", ")))
		}
		if len(proxyless) > 0 {
			why = append(why, fmt.Sprintf("proxyless gRPC, which has no access log to tap: %s", strings.Join(proxyless, ", ")))
		}
		return nil, &tapTargetError{http.StatusUnprocessableEntity, fmt.Sprintf("%s %s/%s cannot be tapped: %s", kind, ns, name, strings.Join(why, "; "))}
	}
	slices.Sort(nodes)
	return nodes, nil
}

// ownedBy: a Deployment's pods are owned by its ReplicaSets, named
// <deployment>-<pod-template-hash>; the other kinds own their pods.
func ownedBy(p *corev1.Pod, kind, name string) bool {
	for _, o := range p.OwnerReferences {
		switch {
		case kind == "Deployment" && o.Kind == "ReplicaSet":
			if h := p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; h != "" && o.Name == name+"-"+h {
				return true
			}
		case o.Kind == kind && o.Name == name:
			return true
		}
	}
	return false
}

func (c *Controller) serveTap(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	jsonError := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	ns := q.Get("namespace")
	if ns == "" {
		ns = "default"
	}
	max := MaxTapDuration
	if s := q.Get("max"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			jsonError(http.StatusBadRequest, fmt.Sprintf("max %q: want a positive duration such as 30s", s))
			return
		}
		max = min(d, MaxTapDuration)
	}
	nodes, err := c.tapNodes(ns, q.Get("target"))
	if err != nil {
		var te *tapTargetError
		if errors.As(err, &te) {
			jsonError(te.code, te.msg)
			return
		}
		jsonError(http.StatusInternalServerError, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), max)
	defer cancel()
	watcher, err := c.tap.Watch(ctx, nodes, tap.Filter{To: q.Get("to"), Path: q.Get("path"), Method: q.Get("method")})
	if err != nil {
		jsonError(http.StatusBadRequest, err.Error())
		return
	}
	defer watcher.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(l tap.Line) bool {
		if err := enc.Encode(l); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if !send(tap.Line{Proxies: nodes}) {
		return
	}
	for ev := range watcher.Events {
		if !send(tap.Line{Event: &ev}) {
			return
		}
	}
	end := "client gone"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		end = fmt.Sprintf("session reached its maximum of %s", max)
	}
	send(tap.Line{End: end, Dropped: watcher.Dropped()})
}

// authorizeAccessLog lets an access log stream speak only for the node its
// credential is bound to, as the xDS streams are (xds.CheckIdentity).
func (c *Controller) authorizeAccessLog(ctx context.Context, nodeID string) error {
	if c.cfg.Identity == nil {
		return nil
	}
	id, err := c.cfg.Identity.Authenticator(ctx)
	if err != nil {
		return err
	}
	pod, ns, err := proxy.ParseNodeID(nodeID)
	if err != nil {
		return err
	}
	info := xds.NodeInfo{ID: nodeID, Pod: pod, Namespace: ns}
	if px, _ := c.store.Proxy(pod, ns); px != nil {
		info.ServiceAccount = px.Identity.ServiceAccount
	}
	return xds.CheckIdentity(id, info)
}
