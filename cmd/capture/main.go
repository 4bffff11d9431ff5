// Command capture is the init container of a meshed pod: it writes the iptables rules that
// send the pod's TCP traffic through its proxy (package injector/capture), in the pod's
// network namespace, then exits. It needs NET_ADMIN and NET_RAW, and iptables in its image.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weftmesh/weft/injector/capture"
	"github.com/weftmesh/weft/mesh"
)

func main() {
	cmd := newCommand(os.Stdout, os.Stderr)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		os.Exit(1)
	}
}

type options struct {
	inboundPort, outboundPort uint32
	proxyUID                  int64
	skipIn, skipOut           string
	skipSubnets               []string
	backend                   string
	dryRun, remove            bool
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	o := options{}
	cmd := &cobra.Command{
		Use:   "capture",
		Short: "Redirect a pod's TCP traffic to its Weft proxy with iptables",
		Long: `capture writes the nat rules of a meshed pod, in chains of its own (WEFT-INBOUND from
PREROUTING, WEFT-OUTBOUND from OUTPUT, every rule commented "weft: ..."):
inbound TCP goes to --inbound-port except --skip-inbound-ports and the proxy's own ports;
outbound TCP goes to --outbound-port except the proxy's uid, loopback, --skip-outbound-ports
and --skip-subnets. Running it again leaves the same rules. --dry-run prints the
iptables-restore input instead of applying it; --remove takes Weft's rules out.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(stderr, nil))
			err := run(cmd.Context(), o, stdout, log)
			if err != nil {
				log.Error("capture failed", "err", err)
			}
			return err
		},
	}
	addFlags(cmd.Flags(), &o)
	return cmd
}

func addFlags(f *pflag.FlagSet, o *options) {
	f.Uint32Var(&o.inboundPort, "inbound-port", mesh.ProxyInboundPort, "the proxy's inbound port")
	f.Uint32Var(&o.outboundPort, "outbound-port", mesh.ProxyOutboundPort, "the proxy's outbound port")
	f.Int64Var(&o.proxyUID, "proxy-uid", mesh.ProxyUID, "the proxy's uid, whose connections are not redirected")
	f.StringVar(&o.skipIn, "skip-inbound-ports", "", `inbound ports that bypass the proxy: "25,587,4000-4100" (`+mesh.AnnotationSkipInboundPorts+`)`)
	f.StringVar(&o.skipOut, "skip-outbound-ports", "", `outbound destination ports that bypass the proxy, same syntax (`+mesh.AnnotationSkipOutboundPorts+`)`)
	f.StringSliceVar(&o.skipSubnets, "skip-subnets", nil, "IPv4 destination CIDRs that bypass the proxy, comma-separated")
	f.StringVar(&o.backend, "backend", string(capture.Auto), "iptables backend: auto, nft or legacy")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the iptables-restore input, change nothing")
	f.BoolVar(&o.remove, "remove", false, "remove Weft's rules instead of writing them")
}

// config turns the flags into a capture.Config; errors name the flag.
func (o options) config() (capture.Config, error) {
	c := capture.Config{InboundPort: o.inboundPort, OutboundPort: o.outboundPort, ProxyUID: o.proxyUID}
	for _, l := range []struct {
		flag, value string
		into        *[]mesh.PortRange
	}{{"--skip-inbound-ports", o.skipIn, &c.SkipInboundPorts}, {"--skip-outbound-ports", o.skipOut, &c.SkipOutboundPorts}} {
		set, err := mesh.ParsePortSet(l.value, false)
		if err != nil {
			return c, fmt.Errorf("%s %q: %w", l.flag, l.value, err)
		}
		*l.into = set.Ranges
	}
	for _, s := range o.skipSubnets {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return c, fmt.Errorf("--skip-subnets %q: %w", s, err)
		}
		if !p.Addr().Is4() {
			return c, fmt.Errorf("--skip-subnets %q: not an IPv4 CIDR (only IPv4 is captured)", s)
		}
		c.SkipSubnets = append(c.SkipSubnets, p)
	}
	return c, nil
}

func run(ctx context.Context, o options, stdout io.Writer, log *slog.Logger) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	backend, err := capture.ParseBackend(o.backend)
	if err != nil {
		return fmt.Errorf("--backend: %w", err)
	}
	if o.dryRun {
		return dryRun(ctx, cfg, backend, o.remove, stdout, log)
	}
	if backend == capture.Auto {
		if backend, err = capture.Detect(ctx); err != nil {
			return err
		}
	}
	var input string
	if o.remove {
		input, err = capture.Uninstall(ctx, backend)
	} else {
		input, err = capture.Apply(ctx, backend, cfg)
	}
	if err != nil {
		return err
	}
	log.Info("capture rules applied", "backend", backend, "remove", o.remove, "rules", strings.Count(input, "\n-"))
	return nil
}

// dryRun prints what would be applied. Without a readable nat table (no iptables, no
// privileges) it prints the rules for an empty one and says so.
func dryRun(ctx context.Context, cfg capture.Config, backend capture.Backend, remove bool, stdout io.Writer, log *slog.Logger) error {
	saved := ""
	if backend == capture.Auto {
		detected, err := capture.Detect(ctx)
		if err != nil {
			log.Warn("dry run: no iptables backend, showing the rules for an empty nat table", "err", err)
		}
		backend = detected
	}
	if backend != "" {
		s, err := capture.Save(ctx, backend)
		if err != nil {
			log.Warn("dry run: cannot read the nat table, showing the rules for an empty one", "err", err)
		}
		saved = s
	}
	var input string
	if remove {
		input = capture.Remove(saved)
	} else {
		var err error
		if input, err = capture.Restore(cfg, saved); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(stdout, input); err != nil {
		return fmt.Errorf("writing the rules: %w", err)
	}
	return nil
}
