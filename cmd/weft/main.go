// Command weft is the operator's tool for a Weft mesh: what a proxy is
// served (proxy-config), which proxies are connected and in sync (proxies),
// and its own version, through the control plane's admin address
// (cp --admin-addr); tap and top, live requests of meshed pods; check, which reads Kubernetes too; inject/uninject,
// which rewrite YAML offline; profile, which writes, checks and explains
// ServiceProfiles from files alone; and install/uninstall, which apply the
// Helm chart through Helm's SDK.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/cmd/weft/bench"
)

func main() {
	cmd := newRootCommand(os.Getenv, time.Now)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// defaultCP is where `cp --admin-addr` listens by default, as seen from the
// machine it runs on.
const defaultCP = "http://127.0.0.1:9990"

// cpEnv overrides the default control plane address.
const cpEnv = "WEFT_CP"

// globals are the flags every command shares.
type globals struct {
	cp      string
	timeout time.Duration
	// now is the clock for ages ("connected 5m ago"); tests fix it.
	now func() time.Time
}

func newRootCommand(getenv func(string) string, now func() time.Time) *cobra.Command {
	g := &globals{now: now}
	cmd := &cobra.Command{
		Use:   "weft",
		Short: "Inspect a Weft service mesh",
		Long: `weft inspects a Weft service mesh through its control plane's admin address
(cp --admin-addr, default :9990), given with --cp or $` + cpEnv + `. Without either it asks
` + defaultCP + `, a cp running on this machine with its default flags;
make demo prints the address of the control plane it starts:

  weft --cp http://127.0.0.1:<admin port> proxies
  weft --cp http://127.0.0.1:<admin port> proxy-config web-0.emojivoto`,
		SilenceUsage: true,
	}
	def := defaultCP
	if v := getenv(cpEnv); v != "" {
		def = v
	}
	cmd.PersistentFlags().StringVar(&g.cp, "cp", def, "control plane admin address (cp --admin-addr); env "+cpEnv)
	cmd.PersistentFlags().DurationVar(&g.timeout, "timeout", 10*time.Second, "how long to wait for the control plane")
	cmd.AddCommand(newProxyConfigCommand(g), newProxiesCommand(g), newVersionCommand(), newIdentityCommand(), newProfileCommand(), bench.NewCommand(),
		newInjectCommand(), newUninjectCommand(), newInstallCommand(), newUninstallCommand(), newCheckCommand(g),
		newStatCommand(g), newRoutesCommand(g), newEdgesCommand(g), newTapCommand(g), newTopCommand(g), newDashboardCommand(g))
	return cmd
}

// outputFormat validates -o.
func outputFormat(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("-o %q: want text or json", o)
	}
	return nil
}

// writeAll copies a response body unchanged (the -o json output).
func writeAll(w io.Writer, body []byte) error {
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
