package bench

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
)

// NewCommand is `weft bench`.
func NewCommand() *cobra.Command {
	cfg := Config{}
	var xdsMode, maxRSS string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a control plane under N simulated proxies and churn",
		Long: `bench starts a local Kubernetes (etcd and kube-apiserver from bin/, as the tests
do), writes a mesh of --services services into it through the API, then for each
--proxies count starts the control plane binary (--cp-binary, built from ./cmd/cp)
as its own process and connects that many simulated Envoy proxies over ADS.
It then makes changes (--scenarios) and measures, per change, the time from the
apiserver acknowledging the write to the last affected proxy ACKing the new
config, the pushes and bytes it caused, and the control plane's CPU time;
per proxy count, its resident memory with and without the proxies.

Results: a table on stdout; sizes.csv, summary.csv, changes.csv and bench.svg
in --out. See docs/performance.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch xdsMode {
			case "sotw":
			case "delta":
				cfg.Delta = true
			default:
				return fmt.Errorf("--xds %q: want sotw or delta", xdsMode)
			}
			cfg.MaxCPRSS = defaultMaxRSS()
			if maxRSS != "" {
				q, err := resource.ParseQuantity(maxRSS)
				if err != nil {
					return fmt.Errorf("--max-cp-rss %q: %w", maxRSS, err)
				}
				cfg.MaxCPRSS = q.Value()
			}
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			cfg.Stdout = cmd.OutOrStdout()
			_, err := Run(cmd.Context(), cfg)
			return err
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&cfg.Proxies, "proxies", []int{1000, 5000, 10000}, "proxy counts, each run with a fresh control plane")
	f.IntVar(&cfg.Services, "services", 2000, "services in the mesh")
	f.IntVar(&cfg.Namespaces, "namespaces", 10, "namespaces the services and pods are spread over")
	f.IntVar(&cfg.Endpoints, "endpoints", 3, "endpoints per service")
	f.IntVar(&cfg.Changes, "changes", 10, "changes per scenario (namespace-add makes a fifth as many, restart and restart-cold one)")
	f.StringSliceVar(&cfg.Scenarios, "scenarios", Scenarios, "scenarios to run, in this order")
	f.StringVar(&xdsMode, "xds", "sotw", "xDS variant the proxies use: sotw or delta")
	f.IntVar(&cfg.StreamsPerConn, "streams-per-conn", 1, "ADS streams per gRPC connection (Envoy: 1)")
	f.StringVar(&cfg.Out, "out", "bench-out", "directory for CSV files, the plot and control plane logs")
	f.StringVar(&cfg.CPBinary, "cp-binary", defaultCPBinary(), "control plane binary (go build -o bin/cp ./cmd/cp)")
	f.StringArrayVar(&cfg.CPArgs, "cp-arg", nil, "extra control plane flag, repeatable (e.g. --cp-arg=--debounce=50ms)")
	f.DurationVar(&cfg.ChangeTimeout, "change-timeout", time.Minute, "longest wait for one change to reach every affected proxy")
	f.DurationVar(&cfg.RestartTimeout, "restart-timeout", 5*time.Minute, "longest wait for every proxy to be synced again after a control plane restart")
	f.StringVar(&maxRSS, "max-cp-rss", "", "stop when the control plane's (or the load generator's) RSS passes this (a quantity: 8Gi, 500Mi; default: half the machine's memory; 0: no limit)")
	f.DurationVar(&cfg.CPUProfile, "cpu-profile", 0, "profile the control plane's CPU for this long from the start of each scenario, a restarted one's from when its admin port answers (cp-<proxies>-<scenario>.cpu.pb.gz in --out); 0: none")
	f.DurationVar(&cfg.Settle, "settle", 300*time.Millisecond, "how long a change's window stays open after its last ACK (CPU, pushes)")
	return cmd
}

// defaultCPBinary is cp next to the running weft, where make bench puts it.
func defaultCPBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "cp")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// defaultMaxRSS is half the machine's memory: it is shared with the
// apiserver, the load generator and whatever else runs.
func defaultMaxRSS() int64 { return memTotal() / 2 }
