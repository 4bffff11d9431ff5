package bench

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"
)

// ScenarioSummary folds one scenario's changes at one proxy count.
type ScenarioSummary struct {
	Proxies  int
	Scenario string
	Changes  int
	// Incomplete changes had an affected proxy that never ACKed; their
	// convergence is left out of Convergence.
	Incomplete int
	// Convergence is over changes: each change's last affected ACK.
	Convergence Dist
	// PerProxy pools every affected proxy's latency over the changes.
	PerProxy                Dist
	Affected, Pushes, Bytes float64 // per change
	CPU                     time.Duration
}

// Summaries folds a run's changes by scenario, in the order they ran.
func Summaries(res SizeResult) []ScenarioSummary {
	var out []ScenarioSummary
	for _, ch := range res.Changes {
		if len(out) == 0 || out[len(out)-1].Scenario != ch.Scenario {
			out = append(out, ScenarioSummary{Proxies: res.Proxies, Scenario: ch.Scenario})
		}
	}
	for i := range out {
		s := &out[i]
		var conv, per []time.Duration
		var cpu time.Duration
		for _, ch := range res.Changes {
			if ch.Scenario != s.Scenario {
				continue
			}
			s.Changes++
			if ch.Complete {
				conv = append(conv, ch.Convergence)
			} else {
				s.Incomplete++
			}
			per = append(per, ch.PerProxy...)
			s.Affected += float64(ch.Affected)
			s.Pushes += float64(ch.Pushes)
			s.Bytes += float64(ch.Bytes)
			cpu += ch.CPU
		}
		s.Convergence, s.PerProxy = Summarise(conv), Summarise(per)
		n := float64(s.Changes)
		s.Affected, s.Pushes, s.Bytes = s.Affected/n, s.Pushes/n, s.Bytes/n
		s.CPU = cpu / time.Duration(s.Changes)
	}
	return out
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }

// writeResults rewrites every CSV and the plot from all sizes so far.
func writeResults(dir string, m Machine, results []SizeResult) error {
	sizes := [][]string{{"proxies", "services", "mode", "connect_p50_ms", "connect_p99_ms", "all_connected_ms",
		"cpu_connect_s", "rss_base_mib", "rss_connected_mib", "rss_per_proxy_kib", "peak_rss_mib",
		"loadgen_cpu_connect_s", "loadgen_rss_mib"}}
	changes := [][]string{{"proxies", "scenario", "change", "affected", "acked", "complete", "convergence_ms",
		"proxy_p50_ms", "proxy_p99_ms", "pushes", "bytes", "resources", "cpu_ms"}}
	summary := [][]string{{"proxies", "scenario", "changes", "incomplete", "convergence_p50_ms", "convergence_p99_ms",
		"convergence_max_ms", "proxy_p50_ms", "proxy_p99_ms", "proxy_max_ms", "affected_per_change",
		"pushes_per_change", "bytes_per_change", "cpu_ms_per_change"}}
	for _, r := range results {
		sizes = append(sizes, []string{strconv.Itoa(r.Proxies), strconv.Itoa(r.Services), r.Mode,
			ms(r.Connect.P50), ms(r.Connect.P99), ms(r.Connect.Max),
			strconv.FormatFloat(r.CPUConnect.Seconds(), 'f', 2, 64), mib(r.RSSBase), mib(r.RSSConnected),
			strconv.FormatFloat(r.RSSPerProxy()/1024, 'f', 1, 64), mib(r.PeakRSS),
			strconv.FormatFloat(r.LoadCPU.Seconds(), 'f', 2, 64), mib(r.LoadRSS)})
		for _, ch := range r.Changes {
			d := Summarise(ch.PerProxy)
			changes = append(changes, []string{strconv.Itoa(ch.Proxies), ch.Scenario, strconv.Itoa(ch.Index),
				strconv.Itoa(ch.Affected), strconv.Itoa(ch.ACKed), strconv.FormatBool(ch.Complete), ms(ch.Convergence),
				ms(d.P50), ms(d.P99), strconv.FormatInt(ch.Pushes, 10), strconv.FormatInt(ch.Bytes, 10), strconv.FormatInt(ch.Resources, 10), ms(ch.CPU)})
		}
		for _, s := range Summaries(r) {
			summary = append(summary, []string{strconv.Itoa(s.Proxies), s.Scenario, strconv.Itoa(s.Changes),
				strconv.Itoa(s.Incomplete), ms(s.Convergence.P50), ms(s.Convergence.P99), ms(s.Convergence.Max),
				ms(s.PerProxy.P50), ms(s.PerProxy.P99), ms(s.PerProxy.Max),
				strconv.FormatFloat(s.Affected, 'f', 0, 64), strconv.FormatFloat(s.Pushes, 'f', 0, 64),
				strconv.FormatFloat(s.Bytes, 'f', 0, 64), ms(s.CPU)})
		}
	}
	for name, rows := range map[string][][]string{"sizes.csv": sizes, "changes.csv": changes, "summary.csv": summary} {
		if err := writeCSV(filepath.Join(dir, name), rows); err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(dir, "bench.svg"))
	if err != nil {
		return fmt.Errorf("writing the plot: %w", err)
	}
	defer f.Close()
	if err := WritePlot(f, m, results); err != nil {
		return fmt.Errorf("writing the plot: %w", err)
	}
	return f.Close()
}

func writeCSV(path string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	if err := w.WriteAll(rows); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

func printSize(w io.Writer, r SizeResult) {
	fmt.Fprintf(w, "\n%d proxies, %d services (%s): all synced in %s ms (per proxy p50 %s / p99 %s), CPU %.1f s;\n",
		r.Proxies, r.Services, r.Mode, ms(r.Connect.Max), ms(r.Connect.P50), ms(r.Connect.P99), r.CPUConnect.Seconds())
	fmt.Fprintf(w, "control plane RSS %s MiB with no proxy, %s MiB with all (%.0f KiB per proxy), peak %s MiB;\n",
		mib(r.RSSBase), mib(r.RSSConnected), r.RSSPerProxy()/1024, mib(r.PeakRSS))
	fmt.Fprintf(w, "the load generator itself: %.1f s CPU to connect, RSS %s MiB\n", r.LoadCPU.Seconds(), mib(r.LoadRSS))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tchanges\taffected\tlast ACK p50\tp99\tmax\tper proxy p50\tp99\tmax\tpushes\tKiB\tCPU ms\t")
	for _, s := range Summaries(r) {
		inc := ""
		if s.Incomplete > 0 {
			inc = fmt.Sprintf(" (%d incomplete)", s.Incomplete)
		}
		fmt.Fprintf(tw, "%s\t%d%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t\n", s.Scenario, s.Changes, inc, s.Affected,
			ms(s.Convergence.P50), ms(s.Convergence.P99), ms(s.Convergence.Max),
			ms(s.PerProxy.P50), ms(s.PerProxy.P99), ms(s.PerProxy.Max), s.Pushes, s.Bytes/1024, ms(s.CPU))
	}
	tw.Flush()
}

func printSummary(w io.Writer, m Machine, results []SizeResult) {
	fmt.Fprintf(w, "\nmachine: %d CPUs, %s memory, %s, kernel %s; objects from %s\n", m.CPUs, m.MemTotal, m.GoVersion, m.Kernel, m.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "proxies\tservices\tall synced\tRSS/proxy KiB\tpeak RSS MiB\tendpoint p99 ms\tCPU/endpoint change ms\trestart s\t")
	for _, r := range results {
		var ep []time.Duration
		var cpu time.Duration
		var n int
		restart := "-"
		for _, ch := range r.Changes {
			switch ch.Scenario {
			case ScenarioEndpointFlap, ScenarioRollout:
				ep = append(ep, ch.PerProxy...)
				cpu += ch.CPU
				n++
			case ScenarioRestart:
				if ch.Complete {
					restart = strconv.FormatFloat(ch.Convergence.Seconds(), 'f', 1, 64)
				} else {
					restart = "incomplete"
				}
			}
		}
		cpuPer := "-"
		if n > 0 {
			cpuPer = ms(cpu / time.Duration(n))
		}
		fmt.Fprintf(tw, "%d\t%d\t%s s\t%.0f\t%s\t%s\t%s\t%s\t\n", r.Proxies, r.Services,
			strconv.FormatFloat(r.Connect.Max.Seconds(), 'f', 1, 64), r.RSSPerProxy()/1024, mib(r.PeakRSS),
			ms(Summarise(ep).P99), cpuPer, restart)
	}
	tw.Flush()
}
