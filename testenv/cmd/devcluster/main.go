// Command devcluster starts the local Kubernetes that tests use (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and a kwok fake node), prints its kubeconfig path
// and keeps it running until interrupted.
//
//	go run ./testenv/cmd/devcluster
//	kubectl --kubeconfig <printed path> get nodes,pods -A
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftmesh/weft/testenv"
)

func main() {
	podCIDR := flag.String("pod-cidr", testenv.DefaultPodCIDR, "CIDR kwok hands pod IPs out of")
	flag.Parse()
	if err := run(*podCIDR); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

func run(podCIDR string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// If whatever reads our output goes away (a pipe closed by the same Ctrl-C), the teardown
	// must still run: write errors instead of dying of SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	env, err := testenv.Start(ctx, testenv.Options{PodCIDR: podCIDR, Logger: log})
	if err != nil {
		return err
	}
	fmt.Printf("kubeconfig: %s\n", env.Kubeconfig)
	fmt.Printf("try:        kubectl --kubeconfig %s get nodes,pods -A\n", env.Kubeconfig)
	fmt.Printf("logs:       %s\n", env.LogPath("kube-apiserver"))
	fmt.Println("running; Ctrl-C stops it and removes everything")

	<-ctx.Done()
	log.Info("stopping")
	return env.Stop()
}
