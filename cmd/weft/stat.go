package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/telemetry"
)

// adminSource asks the control plane's embedded metrics (GET /api/stat).
type adminSource struct{ g *globals }

func (s adminSource) Query(ctx context.Context, q telemetry.Query) (telemetry.Table, error) {
	v := url.Values{}
	v.Set("resource", q.Resource)
	for k, val := range map[string]string{"namespace": q.Namespace, "name": q.Name, "from": q.From, "to": q.To} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if q.AllNamespaces {
		v.Set("all", "true")
	}
	if q.Window > 0 {
		v.Set("window", q.Window.String())
	}
	c, body, err := s.g.fetch(ctx, "/api/stat?"+v.Encode(), "reading golden metrics", "/api/stat")
	if err != nil {
		return telemetry.Table{}, err
	}
	var t telemetry.Table
	if err := json.Unmarshal(body, &t); err != nil {
		return telemetry.Table{}, fmt.Errorf("reading golden metrics from %s: %w", c.baseStr, err)
	}
	return t, nil
}

// statFlags are what stat, routes and edges share.
type statFlags struct {
	namespace string
	all       bool
	from, to  string
	output    string
	window    time.Duration
	prom      *prometheusFlags
}

func (f *statFlags) register(cmd *cobra.Command, fromTo bool) {
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "default", "namespace of the resources")
	cmd.Flags().BoolVarP(&f.all, "all-namespaces", "A", false, "every namespace")
	if fromTo {
		cmd.Flags().StringVar(&f.from, "from", "", "only traffic from this resource (deploy/web, pod/web-0, svc/web, ns/shop)")
		cmd.Flags().StringVar(&f.to, "to", "", "only traffic to this resource")
	}
	cmd.Flags().StringVarP(&f.output, "output", "o", "table", "table, wide or json")
	cmd.Flags().DurationVarP(&f.window, "time-window", "t", telemetry.DefaultWindow, "how far back to look (the control plane keeps about a minute)")
	f.prom = addPrometheusFlags(cmd.Flags())
}

// runQuery asks src and prints the table; rows a source skipped are named
// on errw, so a missing row is never silent.
func runQuery(ctx context.Context, w, errw io.Writer, src telemetry.Source, q telemetry.Query, f *statFlags) error {
	out, err := telemetry.ParseOutput(f.output)
	if err != nil {
		return err
	}
	if err := q.Validate(); err != nil {
		return err
	}
	if src, err = f.prom.source(src); err != nil {
		return err
	}
	t, err := src.Query(ctx, q)
	if err != nil {
		return err
	}
	for _, s := range t.Skipped {
		fmt.Fprintln(errw, "skipped:", s)
	}
	return telemetry.Print(w, t, telemetry.PrintOptions{Output: out, AllNamespaces: q.AllNamespaces})
}

func newStatCommand(g *globals) *cobra.Command {
	var f statFlags
	cmd := &cobra.Command{
		Use:   "stat ns|deploy|pod|svc[/NAME]",
		Short: "Success rate, requests per second and latency of namespaces, deployments, pods or services",
		Long: `stat prints golden metrics as Envoy reported them to the control plane over the
last minute: SUCCESS (responses not classified as failures), RPS, latency percentiles
and open connections, per resource as a server (its proxies' inbound side). With --from
or --to, the traffic between resources as the clients' proxies saw it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, _ := strings.Cut(args[0], "/")
			res, err := telemetry.ParseResource(kind)
			if err != nil {
				return err
			}
			if res == telemetry.ResourceRoute || res == telemetry.ResourceEdge {
				return fmt.Errorf("%q: use weft routes or weft edges", args[0])
			}
			q := telemetry.Query{Resource: res, Name: name, Namespace: f.namespace, AllNamespaces: f.all, From: f.from, To: f.to, Window: f.window}
			return runQuery(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), adminSource{g}, q, &f)
		},
	}
	f.register(cmd, true)
	return cmd
}

func newRoutesCommand(g *globals) *cobra.Command {
	var f statFlags
	cmd := &cobra.Command{
		Use:   "routes svc/NAME | deploy/NAME --to svc/NAME",
		Short: "Golden metrics per ServiceProfile route of a service",
		Long: `routes prints a service's ServiceProfile routes as its clients' proxies saw them, and
[DEFAULT] for requests no route matched. -o wide splits EFFECTIVE (one outcome per
request, after retries: what the client saw) from ACTUAL (every attempt: what the
servers saw). "routes deploy/web --to svc/api" keeps only web's requests to api.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := telemetry.ParseTarget(args[0])
			if err != nil {
				return err
			}
			q := telemetry.Query{Resource: telemetry.ResourceRoute, Namespace: f.namespace, Window: f.window}
			switch {
			case target.Resource == telemetry.ResourceService && f.to == "":
				q.Name = target.Name
			case f.to != "":
				to, err := telemetry.ParseTarget(f.to)
				if err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				if to.Resource != telemetry.ResourceService {
					return fmt.Errorf("--to %s: routes belong to services: give svc/NAME", f.to)
				}
				q.Name, q.From = to.Name, target.String()
			default:
				return fmt.Errorf("%s: routes belong to services: give svc/NAME, or %s --to svc/NAME", args[0], args[0])
			}
			return runQuery(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), adminSource{g}, q, &f)
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&f.to, "to", "", "the service whose routes to show, for traffic from the argument")
	return cmd
}

func newEdgesCommand(g *globals) *cobra.Command {
	var f statFlags
	cmd := &cobra.Command{
		Use:   "edges deploy",
		Short: "Which deployments talk to which, and whether over mutual TLS",
		Long: `edges lists the connections between deployments seen by the clients' proxies in the
last minute. SECURED is √ when the client's proxy completed TLS handshakes to the
destination (Envoy's ssl.handshake of the outbound cluster), × when it sent traffic
without any.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := telemetry.ParseResource(args[0])
			if err != nil {
				return err
			}
			if res != telemetry.ResourceDeployment {
				return fmt.Errorf("edges %s: only deploy is supported", args[0])
			}
			q := telemetry.Query{Resource: telemetry.ResourceEdge, Namespace: f.namespace, AllNamespaces: f.all, Window: f.window}
			return runQuery(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), adminSource{g}, q, &f)
		},
	}
	f.register(cmd, false)
	return cmd
}
