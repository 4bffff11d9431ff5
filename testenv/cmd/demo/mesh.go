package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/cmd/weft/proxyconfig"
	"github.com/weftmesh/weft/controller"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds/adsclient"
)

// controlPlaneTimeout bounds each wait on the control plane: its caches syncing, the stand-in
// sidecar getting its config.
const controlPlaneTimeout = time.Minute

// clusterDomain is the one the demo's control plane runs with, so that profile names
// parse here as they do there.
const clusterDomain = translate.DefaultClusterDomain

func applyMesh(ctx context.Context, d *demo) error {
	names, err := d.env.InstallCRDs(ctx, d.crds)
	if err != nil {
		return err
	}
	for _, n := range names {
		fmt.Fprintf(d.out, "    CustomResourceDefinition %s\n", n)
	}
	objs, err := applyFile(ctx, d, d.mesh)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() != "ServiceProfile" {
			continue
		}
		svc, ns, err := profiles.ParseProfileName(o.GetName(), clusterDomain)
		if err != nil {
			return fmt.Errorf("ServiceProfile %s/%s: %w", o.GetNamespace(), o.GetName(), err)
		}
		d.profiles = append(d.profiles, mesh.ProfileKey{Namespace: o.GetNamespace(), Service: mesh.ServiceKey{Namespace: ns, Name: svc}})
	}
	return nil
}

func startControlPlane(ctx context.Context, d *demo) error {
	ctrl, err := controller.New(controller.Config{
		RestConfig:    d.env.Config,
		ClusterDomain: clusterDomain,
		XDSAddr:       "127.0.0.1:0",
		AdminAddr:     "127.0.0.1:0",
		Logger:        d.log,
	})
	if err != nil {
		return fmt.Errorf("creating the control plane: %w", err)
	}
	// The control plane outlives this step (it serves until teardown), so it runs on a
	// context of its own that the cleanup ends.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan error, 1)
	go func() { ran <- ctrl.Run(runCtx) }()
	d.cleanups = append(d.cleanups, func() error {
		cancel()
		if err := <-ran; err != nil {
			return fmt.Errorf("control plane: %w", err)
		}
		return nil
	})

	timeout := time.NewTimer(controlPlaneTimeout)
	defer timeout.Stop()
	for _, w := range []struct {
		what string
		done <-chan struct{}
	}{{"its listeners", ctrl.Serving()}, {"its informer caches to sync", ctrl.Synced()}} {
		select {
		case <-w.done:
		case err := <-ran:
			ran <- err // for the cleanup
			return fmt.Errorf("control plane stopped while waiting for %s: %w", w.what, err)
		case <-timeout.C:
			return fmt.Errorf("waiting %s for the control plane's %s", controlPlaneTimeout, w.what)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Synced promises a published model that holds everything the informers listed; the
	// sidecar connecting next must get its profiles in the first push, not a second one.
	for _, k := range d.profiles {
		if ctrl.Store().Published().Model.Profiles[k] == nil {
			return fmt.Errorf("control plane reported synced without the ServiceProfile for %s (from namespace %s)", k.Service, k.Namespace)
		}
	}
	d.ctrl = ctrl
	fmt.Fprintf(d.out, "    xDS on %s, admin on http://%s, caches synced %v\n", ctrl.XDSAddr(), ctrl.AdminAddr(), ctrl.Store().Counts())
	return nil
}

func connectSidecar(ctx context.Context, d *demo) error {
	pod, err := d.settled.podOf(d.sidecarOf)
	if err != nil {
		return err
	}
	d.proxy = proxy.NodeID(pod.Name, pod.Namespace)
	// Like a sidecar, the client stays connected until teardown: the control plane computes
	// config only for connected proxies, and `weft proxies` lists it.
	c, err := adsclient.Dial(context.WithoutCancel(ctx), d.ctrl.XDSAddr().String(), d.proxy)
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() error { c.Close(); return nil })

	wctx, cancel := context.WithTimeout(ctx, controlPlaneTimeout)
	defer cancel()
	if err := c.WaitSynced(wctx); err != nil {
		return fmt.Errorf("sidecar %s: %w", d.proxy, err)
	}
	// The config printed next is the server's view of the node; it is what the client holds
	// once their versions agree (a push may still have been on its way).
	for !sameVersions(c.Versions(), d.ctrl.XDS().NodeVersions(d.proxy)) {
		select {
		case <-wctx.Done():
			return fmt.Errorf("sidecar %s: waiting for the versions it ACKed (%v) to be the server's (%v): %w",
				d.proxy, c.Versions(), d.ctrl.XDS().NodeVersions(d.proxy), wctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if err := c.WaitSynced(wctx); err != nil {
			return fmt.Errorf("sidecar %s: %w", d.proxy, err)
		}
	}
	v := c.Versions()
	fmt.Fprintf(d.out, "    node %s ACKed listeners %s, routes %s, clusters %s and %d load assignments\n", d.proxy,
		v[resourcev3.ListenerType], v[resourcev3.RouteType], v[resourcev3.ClusterType], len(c.Resources()[resourcev3.EndpointType]))
	return nil
}

// sameVersions compares the per-node types; endpoints are versioned per CLA and secrets are
// not subscribed to.
func sameVersions(client, server map[string]string) bool {
	for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
		if client[t] == "" || client[t] != server[t] {
			return false
		}
	}
	return true
}

func printProxyConfig(_ context.Context, d *demo) error {
	res, ok := d.ctrl.XDS().NodeConfig(d.proxy)
	if !ok {
		return fmt.Errorf("the control plane has no config for %s", d.proxy)
	}
	// Secrets come with the identity work; until then the section would only say "(none)".
	only := make(map[string][]types.Resource, 4)
	for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		only[t] = res[t]
	}
	var buf bytes.Buffer
	if err := proxyconfig.Render(&buf, only, proxyconfig.Options{
		Sections: []proxyconfig.Section{proxyconfig.Listeners, proxyconfig.Routes, proxyconfig.Clusters, proxyconfig.Endpoints},
	}); err != nil {
		return err
	}
	// Indented like the rest of the demo's output, blank lines kept blank.
	for line := range strings.Lines(buf.String()) {
		if strings.TrimSpace(line) == "" {
			fmt.Fprintln(d.out)
			continue
		}
		fmt.Fprint(d.out, "    "+line)
	}
	return nil
}

func printLookAround(_ context.Context, d *demo) error {
	admin := "http://" + d.ctrl.AdminAddr().String()
	lines := []string{
		"export KUBECONFIG=" + d.env.Kubeconfig,
		fmt.Sprintf("kubectl -n %s get deploy,pods,svc,endpointslices,serviceprofiles -o wide", d.namespace),
		fmt.Sprintf("go run ./cmd/weft --cp %s proxies", admin),
		fmt.Sprintf("go run ./cmd/weft --cp %s proxy-config %s", admin, d.proxy),
		fmt.Sprintf("curl -s %s/metrics | grep ^weft_", admin),
		fmt.Sprintf("curl -s %s/debug/config/%s   # the same config as JSON", admin, d.proxy),
		"component logs: " + d.env.LogDir(),
	}
	for _, l := range lines {
		fmt.Fprintf(d.out, "    %s\n", l)
	}
	return nil
}

// podOf finds the one pod of an app (its app.kubernetes.io/name label).
func (s *summary) podOf(app string) (*podRef, error) {
	var found []podRef
	for _, p := range s.pods {
		if p.Labels["app.kubernetes.io/name"] == app {
			found = append(found, podRef{Name: p.Name, Namespace: p.Namespace})
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no pod labelled app.kubernetes.io/name=%s in %s", app, s.namespace)
	}
	return &found[0], nil
}

type podRef struct{ Name, Namespace string }
