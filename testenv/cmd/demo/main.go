// Command demo starts the local Kubernetes, applies the emojivoto sample app, prints what
// there is to look at, and keeps everything running until Ctrl-C, which tears it all down.
//
//	make demo            # or: go run ./testenv/cmd/demo
//
// The demo is a list of steps run in order (see steps). Each step may register cleanups,
// which run in reverse order on the way out, so a step that starts something (a control
// plane, say) adds itself in one place.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/weftmesh/weft/controller"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// If whatever reads our output goes away (a pipe closed by the same Ctrl-C), the teardown
	// must still run: write errors instead of dying of SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demo is the state steps share.
type demo struct {
	out       io.Writer
	log       *slog.Logger
	sample    string // manifest file
	namespace string // the sample app's namespace
	podCIDR   string
	env       *testenv.Env
	settled   *summary // the sample app as last seen running
	crds      string   // directory of the CRDs to install
	mesh      string   // manifest that meshes the sample app
	sidecarOf string   // app.kubernetes.io/name of the pod whose config is shown
	ctrl      *controller.Controller
	profiles  []mesh.ProfileKey // the ServiceProfiles the mesh manifest applied
	proxy     string            // node id of the stand-in sidecar
	cleanups  []func() error
}

// step is one stage of the demo. name is printed before it runs.
type step struct {
	name string
	run  func(ctx context.Context, d *demo) error
}

func steps(d *demo) []step {
	return []step{
		{"Starting a local Kubernetes (etcd, kube-apiserver, controller-manager, scheduler, kwok)", startCluster},
		{"Applying the sample app " + d.sample, applySample},
		{"Waiting for its pods to run and its Services to get endpoints", waitForSample},
		{"What is running", printSummary},
		{"Meshing it: the CRDs of " + d.crds + ", then " + d.mesh, applyMesh},
		{"Starting the control plane in this process, against the local cluster", startControlPlane},
		{"Connecting a stand-in sidecar for " + d.sidecarOf + " (an ADS client that subscribes like Envoy)", connectSidecar},
		{"What " + d.sidecarOf + "'s sidecar receives from the control plane", printProxyConfig},
		{"Look around", printLookAround},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := &demo{out: stdout, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	fs.StringVar(&d.sample, "sample", "deploy/samples/emojivoto.yaml", "manifest of the sample app")
	fs.StringVar(&d.namespace, "namespace", "emojivoto", "namespace of the sample app, for the summary")
	fs.StringVar(&d.podCIDR, "pod-cidr", testenv.DefaultPodCIDR, "CIDR kwok hands pod IPs out of")
	fs.StringVar(&d.crds, "crds", "deploy/crds", "directory of the CustomResourceDefinitions to install")
	fs.StringVar(&d.mesh, "mesh", "deploy/samples/emojivoto-mesh.yaml", "manifest that meshes the sample app (inject annotation, ServiceProfiles)")
	fs.StringVar(&d.sidecarOf, "sidecar-of", "web", "app.kubernetes.io/name of the pod whose sidecar config is shown")
	once := fs.Bool("once", false, "tear down right after the summary instead of waiting for Ctrl-C")
	if err := fs.Parse(args); err != nil {
		return err
	}

	defer func() {
		fmt.Fprintln(d.out, "\n==> Tearing down")
		for i := len(d.cleanups) - 1; i >= 0; i-- {
			err = errors.Join(err, d.cleanups[i]())
		}
		if err == nil {
			fmt.Fprintln(d.out, "Stopped every component and removed the cluster's files.")
		}
	}()

	for _, s := range steps(d) {
		fmt.Fprintf(d.out, "\n==> %s\n", s.name)
		start := time.Now()
		if err := s.run(ctx, d); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "    (%s)\n", time.Since(start).Round(100*time.Millisecond))
	}
	if *once {
		return nil
	}
	fmt.Fprintln(d.out, "\nRunning. Press Ctrl-C to stop and clean up.")
	<-ctx.Done()
	return nil
}

func startCluster(ctx context.Context, d *demo) error {
	env, err := testenv.Start(ctx, testenv.Options{PodCIDR: d.podCIDR, Logger: d.log})
	if err != nil {
		return err
	}
	d.env = env
	d.cleanups = append(d.cleanups, env.Stop)
	fmt.Fprintf(d.out, "    apiserver %s, pod CIDR %s, service CIDR %s\n", env.Config.Host, env.PodCIDR, env.ServiceCIDR)
	return nil
}

func applySample(ctx context.Context, d *demo) error {
	_, err := applyFile(ctx, d, d.sample)
	return err
}

// applyFile applies a manifest and lists what it applied.
func applyFile(ctx context.Context, d *demo, path string) ([]*unstructured.Unstructured, error) {
	objs, err := d.env.ApplyFile(ctx, path)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		name := o.GetName()
		if o.GetNamespace() != "" {
			name = o.GetNamespace() + "/" + name
		}
		fmt.Fprintf(d.out, "    %s %s\n", o.GetKind(), name)
	}
	return objs, nil
}

func waitForSample(ctx context.Context, d *demo) error {
	return d.env.WaitFor(ctx, 2*time.Minute, "the sample app to run", func(ctx context.Context) (bool, error) {
		s, err := collect(ctx, d.env.Clientset, d.namespace)
		if err != nil {
			return false, err
		}
		ok, err := s.settled()
		if ok {
			d.settled = s
		}
		return ok, err
	})
}

// printSummary shows the state waitForSample saw settle, not a fresh read, so that what is
// printed is what was checked.
func printSummary(ctx context.Context, d *demo) error {
	return d.settled.write(d.out)
}
