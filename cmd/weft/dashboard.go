package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/dashboard"
	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/telemetry"
)

func newDashboardCommand(g *globals) *cobra.Command {
	var addr string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard: namespaces, deployments, services, routes, the topology of edges and live tap",
		Long: `dashboard serves Weft's web dashboard on this machine and prints its address:
namespaces, the deployments and services of a namespace with their golden
metrics and the topology of its edges, a deployment's pods and live tap, and a
service's routes. The numbers are those weft stat prints, from the control plane or,
with --prometheus, from a Prometheus that scrapes the proxies; live tap always
comes from the control plane, as for weft tap.`,
		Args: cobra.NoArgs,
	}
	prom := addPrometheusFlags(cmd.Flags())
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:50750", "address to serve the dashboard on")
	cmd.Flags().DurationVar(&window, "window", telemetry.DefaultWindow, "how far back the numbers look")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		src, err := prom.source(adminSource{g})
		if err != nil {
			return err
		}
		h, err := dashboard.New(src, dashboard.Options{Window: window, Logger: slog.Default(), Tapper: cpTapper{g}})
		if err != nil {
			return err
		}
		return serveDashboard(cmd.Context(), addr, h, cmd.OutOrStdout())
	}
	return cmd
}

// serveDashboard serves h on addr until ctx ends.
func serveDashboard(ctx context.Context, addr string, h http.Handler, out io.Writer) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serving the dashboard on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "Weft dashboard: http://%s/\n", l.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return fmt.Errorf("serving the dashboard on %s: %w", addr, err)
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// cpTapper runs the tap page's sessions on the control plane, as `weft tap`
// does: the page's request ends, and with it the session on /api/tap.
type cpTapper struct{ g *globals }

func (t cpTapper) Tap(ctx context.Context, namespace, target string, onProxies func([]string), onEvent func(tap.Event) error) (tap.Line, error) {
	return t.g.stream(ctx, target, tapFlags{namespace: namespace}, onProxies, onEvent)
}
