// Command cert-manager-controller runs cert-manager's own controllers (from the tagged
// github.com/cert-manager/cert-manager module) against a testenv apiserver, for the tests of
// Weft's external PKI mode.
//
// cert-manager's real entry point, the module github.com/cert-manager/cert-manager/cmd/controller,
// is a separate module of which the Go proxy serves no version (it lists none, and has no
// v1.21.2), and its go.mod replaces the main module with ../../. Its controllers live in the
// main module, which is served at the tag; this is the small part of
// cmd/controller/app/controller.go that builds the shared controller context, constructs the
// named controllers and starts the shared informers, without leader election, the metrics
// server, the ACME, Vault and Venafi issuers or the webhook.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuer kinds the issuers controller can set up (cert-manager's entry point imports
	// every one; the tests need these two).
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

const certManagerModule = "github.com/cert-manager/cert-manager"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the apiserver")
	namespace := flag.String("namespace", "", "the only namespace to act in (cert-manager's --namespace); empty: all")
	controllers := flag.String("controllers", strings.Join(known(), ","), "comma-separated controllers to run")
	version := flag.Bool("version", false, "print the cert-manager version and exit")
	flag.Parse()
	if *version {
		fmt.Println("cert-manager-controller version", moduleVersion())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig, *namespace, strings.Split(*controllers, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, namespace string, names []string) error {
	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig: kubeconfig,
		Namespace:  namespace,
		// cert-manager's own defaults (cmd/controller/app/options).
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: "cert-manager"},
	})
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	var loops []controllerpkg.Interface
	for _, n := range names {
		newController, ok := controllerpkg.Known()[n]
		if !ok {
			return fmt.Errorf("--controllers: unknown controller %q (known: %s)", n, strings.Join(known(), ", "))
		}
		c, err := newController(factory)
		if err != nil {
			return fmt.Errorf("constructing controller %s: %w", n, err)
		}
		loops = append(loops, c)
	}
	// The informers every controller registered are started once all are constructed, as
	// cert-manager's own entry point does.
	shared, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	errs := make([]error, len(loops))
	var wg sync.WaitGroup
	for i, c := range loops {
		wg.Go(func() { errs[i] = c.Run(5, ctx) })
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	fmt.Fprintf(os.Stderr, "cert-manager-controller %s: running %s in namespace %q\n", moduleVersion(), strings.Join(names, ","), namespace)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("controller %s: %w", names[i], err)
		}
	}
	return nil
}

func known() []string {
	var names []string
	for n := range controllerpkg.Known() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// moduleVersion is the cert-manager module this binary was built with, which testenv checks
// against the pinned version.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == certManagerModule {
				return d.Version
			}
		}
	}
	return "unknown"
}
