package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/weftmesh/weft/xds"
)

// proxyTypes are the columns of `weft proxies`, keyed as ProxyStatus.Types.
var proxyTypes = []string{"lds", "rds", "cds", "eds", "sds"}

func newProxiesCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "proxies",
		Short: "List the proxies connected to the control plane and whether they are in sync",
		Long: `proxies lists every proxy connected to this control plane replica (each
replica knows only its own streams) with, per resource type, the version last
sent and the version the proxy ACKed: one version means it ACKed what it was
sent; "sent/acked" means it has not (yet); "-" means it did not ask for that
type. LAST-NACK is the newest rejection, with Envoy's reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProxies(cmd.Context(), cmd.OutOrStdout(), g, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func runProxies(ctx context.Context, w io.Writer, g *globals, output string) error {
	if err := outputFormat(output); err != nil {
		return err
	}
	c, body, err := g.fetch(ctx, "/debug/proxies", "listing proxies", "/debug/proxies")
	if err != nil {
		return err
	}
	if output == "json" {
		return writeAll(w, body)
	}
	var proxies []xds.ProxyStatus
	if err := json.Unmarshal(body, &proxies); err != nil {
		return fmt.Errorf("reading the proxy list from %s: %w", c.baseStr, err)
	}
	var out bytes.Buffer
	renderProxies(&out, proxies, g.now())
	return writeAll(w, out.Bytes())
}

func renderProxies(w io.Writer, proxies []xds.ProxyStatus, now time.Time) {
	if len(proxies) == 0 {
		fmt.Fprintln(w, "No proxies connected to this control plane replica.")
		return
	}
	slices.SortFunc(proxies, func(a, b xds.ProxyStatus) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Node, b.Node))
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"NAME", "NAMESPACE", "KIND", "CONNECTED-SINCE"}
	for _, t := range proxyTypes {
		header = append(header, strings.ToUpper(t)+" SENT/ACKED")
	}
	header = append(header, "LAST-NACK")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, p := range proxies {
		row := []string{
			cmp.Or(p.Pod, p.Node), cmp.Or(p.Namespace, "-"), cmp.Or(p.Kind, "-"),
			p.ConnectedSince.UTC().Format(time.RFC3339) + " (" + age(now, p.ConnectedSince) + ")",
		}
		for _, t := range proxyTypes {
			row = append(row, syncState(p.Types[t], p.Types[t].TypeURL != ""))
		}
		row = append(row, lastNack(p, now))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush() // write errors surface from the caller's buffer
}

// syncState is "v1" (sent and ACKed), "v2/v1" (sent v2, ACKed v1), or "-".
func syncState(t xds.TypeStatus, present bool) string {
	if !present || (t.VersionSent == "" && t.VersionAcked == "") {
		return "-"
	}
	sent, acked := shortVersion(t.VersionSent), shortVersion(t.VersionAcked)
	if t.VersionSent == t.VersionAcked {
		return sent
	}
	return cmp.Or(sent, "-") + "/" + cmp.Or(acked, "-")
}

// lastNack is the newest NACK of any type: "cds 3m ago: <reason>".
func lastNack(p xds.ProxyStatus, now time.Time) string {
	var typ string
	var last *xds.NackStatus
	for _, t := range proxyTypes {
		n := p.Types[t].LastNack
		if n != nil && (last == nil || n.At.After(last.At)) {
			typ, last = t, n
		}
	}
	if last == nil {
		return "-"
	}
	msg := strings.Join(strings.Fields(last.Message), " ")
	if r := []rune(msg); len(r) > 100 {
		msg = string(r[:100]) + "..."
	}
	return fmt.Sprintf("%s %s ago: %s", typ, age(now, last.At), msg)
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return duration.HumanDuration(now.Sub(t))
}

// shortVersion keeps enough of a content hash to tell versions apart.
func shortVersion(v string) string {
	if len(v) > 8 {
		return v[:8]
	}
	return v
}

func typeName(typeURL string) string {
	if l := xds.TypeLabel(typeURL); l != "other" {
		return l
	}
	return typeURL
}
