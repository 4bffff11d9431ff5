package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/cmd/weft/proxyconfig"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/xds"
)

type proxyConfigOptions struct {
	namespace string
	output    string
	sections  []string
	domains   int
}

func newProxyConfigCommand(g *globals) *cobra.Command {
	var o proxyConfigOptions
	cmd := &cobra.Command{
		Use:     "proxy-config <pod>[.<namespace>]",
		Aliases: []string{"pc"},
		Short:   "Show the listeners, routes, clusters, endpoints and secrets a pod's proxy is served",
		Long: `proxy-config shows what the control plane serves one pod's proxy: its last
accepted configuration (a set the checker refused is never served, so this is
what the proxy has or is about to get) and the endpoints of its clusters.

The pod is <pod>.<namespace> (the proxy's node id), or <pod> with -n
(default namespace "default"). A pod name containing dots needs -n.

-o json prints the control plane's document unchanged: every resource as
protojson with Envoy's field names, private keys redacted.`,
		Example: `  weft proxy-config web-0.emojivoto
  weft proxy-config web-0 -n emojivoto --section routes,clusters
  weft proxy-config web-0.emojivoto -o json | jq '.resources'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProxyConfig(cmd.Context(), cmd.OutOrStdout(), g, o, args[0], cmd.Flags().Changed("namespace"))
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of the pod")
	f.StringVarP(&o.output, "output", "o", "text", "text or json")
	f.StringSliceVar(&o.sections, "section", nil, "sections to show: listeners, routes, clusters, endpoints, secrets (default all)")
	f.IntVar(&o.domains, "domains", 3, "virtual host domains listed before \"(+N)\"; -1 lists all")
	return cmd
}

// nodeID turns the argument into the proxy's node id, "<pod>.<namespace>".
func nodeID(arg, namespace string, namespaceSet bool) (string, error) {
	arg = strings.TrimSpace(arg)
	if arg == "" || strings.HasPrefix(arg, ".") || strings.HasSuffix(arg, ".") {
		return "", fmt.Errorf("pod %q: want <pod>.<namespace> or <pod> -n <namespace>", arg)
	}
	switch {
	case namespaceSet && strings.HasSuffix(arg, "."+namespace):
		return arg, nil
	case namespaceSet:
		return proxy.NodeID(arg, namespace), nil
	case strings.Contains(arg, "."):
		return arg, nil
	default:
		return proxy.NodeID(arg, namespace), nil
	}
}

func runProxyConfig(ctx context.Context, w io.Writer, g *globals, o proxyConfigOptions, arg string, namespaceSet bool) error {
	if err := outputFormat(o.output); err != nil {
		return err
	}
	ropts := proxyconfig.Options{Domains: o.domains}
	if o.domains == 0 {
		return errors.New("--domains 0 would list no domain: use a positive number, or -1 for all")
	}
	for _, s := range o.sections {
		sec, err := proxyconfig.ParseSection(s)
		if err != nil {
			return fmt.Errorf("--section: %w", err)
		}
		ropts.Sections = append(ropts.Sections, sec)
	}
	node, err := nodeID(arg, o.namespace, namespaceSet)
	if err != nil {
		return err
	}
	_, body, err := g.fetch(ctx, "/debug/config/"+url.PathEscape(node), "proxy "+node, "/debug/config/")
	if err != nil {
		return err
	}
	if o.output == "json" {
		return writeAll(w, body)
	}
	doc, res, err := proxyconfig.DecodeNodeConfig(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("proxy %s: %w", node, err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "PROXY %s\n", doc.Node)
	var versions []string
	for _, typeURL := range xds.ConfigTypes {
		if v := doc.Versions[typeURL]; v != "" {
			versions = append(versions, typeName(typeURL)+" "+shortVersion(v))
		}
	}
	fmt.Fprintf(&out, "VERSIONS %s\n\n", strings.Join(versions, "  "))
	if err := proxyconfig.Render(&out, res, ropts); err != nil {
		return err
	}
	return writeAll(w, out.Bytes())
}
