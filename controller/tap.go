package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/xds"
)

// Tap sessions on the admin server (tap.Path): the store says which pods a
// target names and whether they are meshed.

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
		return nil, &tap.TargetError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("target %q: want KIND/NAME with KIND one of deploy, sts, ds, pod", target)}
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
		return nil, &tap.TargetError{Code: http.StatusNotFound, Msg: fmt.Sprintf("%s %s/%s: no pods", kind, ns, name)}
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
		return nil, &tap.TargetError{Code: http.StatusUnprocessableEntity, Msg: fmt.Sprintf("%s %s/%s cannot be tapped: %s", kind, ns, name, strings.Join(why, "; "))}
	}
	slices.Sort(nodes)
	return nodes, nil
}

// ownedBy: a Deployment's pods are owned by its ReplicaSets (deploymentOf);
// the other kinds own their pods.
func ownedBy(p *corev1.Pod, kind, name string) bool {
	if kind == "Deployment" && deploymentOf(p) == name {
		return true
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == kind && o.Name == name {
			return true
		}
	}
	return false
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

// followTrust keeps the tap loggers' service current with the CA: the
// service built at start carries the trust bundle of that moment, and after
// an anchor rotation the serving certificate chains to an anchor it does
// not hold, so a tapped proxy could not open its access log stream. On
// every change of the CA's issuer or bundle the service is built again and,
// if it differs, the proxies tapped now are translated again with it.
func (c *Controller) followTrust(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		svc, err := c.cfg.TapLogService()
		if err != nil {
			// The last good service stays: proxies keep the logger they have.
			c.log.Error("tap: rebuilding the access log service after a change of the trust material; tapped proxies keep the previous one", "error", err)
			continue
		}
		if proto.Equal(svc, c.tapService.Load()) {
			continue
		}
		c.tapService.Store(svc)
		if n := c.store.RetranslateTapped(); n > 0 {
			c.log.Info("tap: the trust material changed; tapped proxies get the access log service again", "proxies", n)
		}
	}
}
