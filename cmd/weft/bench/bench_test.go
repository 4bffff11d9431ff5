package bench

import (
	"bytes"
	"encoding/csv"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBenchEndToEnd runs the real thing small: a local Kubernetes, the cp
// binary built from this checkout, 20 delta proxies, 10 services, three
// scenarios (an endpoint change reaches some proxies, a restart all of
// them, once as Envoy reconnects and once holding nothing).
func TestBenchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local Kubernetes and builds the control plane")
	}
	dir := t.TempDir()
	cp := filepath.Join(dir, "cp")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", cp, "github.com/weftmesh/weft/cmd/cp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the control plane: %v\n%s", err, out)
	}
	const proxies, services = 20, 10
	var stdout bytes.Buffer
	out := filepath.Join(dir, "out")
	results, err := Run(t.Context(), Config{
		Proxies: []int{proxies}, Services: services, Namespaces: 3, Endpoints: 2, Changes: 4,
		Scenarios: []string{ScenarioEndpointFlap, ScenarioRestart, ScenarioRestartCold}, Delta: true,
		Out: out, CPBinary: cp, ChangeTimeout: 30 * time.Second, RestartTimeout: time.Minute, Settle: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: &stdout,
		// A debounce long enough to tell apart from the push itself: the
		// convergence the bench reports must include it.
		CPArgs: []string{"--endpoint-debounce=60ms"},
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, stdout.String())
	}
	if len(results) != 1 {
		t.Fatalf("%d results, want 1", len(results))
	}
	r := results[0]
	if r.Connect.N != proxies {
		t.Errorf("%d proxies connected, want %d", r.Connect.N, proxies)
	}
	if r.LoadRSS <= 0 {
		t.Errorf("load generator RSS %d: want it measured", r.LoadRSS)
	}
	if r.RSSConnected <= 0 || r.PeakRSS < r.RSSConnected {
		t.Errorf("RSS connected %d, peak %d: want a positive RSS under its peak", r.RSSConnected, r.PeakRSS)
	}
	var flaps, restarts int
	var warm, cold Change
	for _, ch := range r.Changes {
		if !ch.Complete || ch.ACKed != ch.Affected {
			t.Errorf("%s #%d: %d of %d affected proxies ACKed", ch.Scenario, ch.Index, ch.ACKed, ch.Affected)
		}
		if ch.Pushes < int64(ch.Affected) || ch.Bytes == 0 {
			t.Errorf("%s #%d: %d pushes, %d bytes for %d affected proxies", ch.Scenario, ch.Index, ch.Pushes, ch.Bytes, ch.Affected)
		}
		switch ch.Scenario {
		case ScenarioEndpointFlap:
			flaps++
			// Every proxy calls every service, so all subscribe to svc-0's
			// endpoints; the endpoint debounce alone takes 60ms.
			if ch.Affected != proxies {
				t.Errorf("endpoint flap #%d affected %d proxies, want %d", ch.Index, ch.Affected, proxies)
			}
			if ch.Convergence < 60*time.Millisecond {
				t.Errorf("endpoint flap #%d converged in %v, faster than the debounce", ch.Index, ch.Convergence)
			}
		case ScenarioRestart, ScenarioRestartCold:
			restarts++
			if ch.Affected != proxies || ch.CPU <= 0 {
				t.Errorf("%s: %d affected, CPU %v; want %d and some CPU", ch.Scenario, ch.Affected, ch.CPU, proxies)
			}
			if ch.Scenario == ScenarioRestart {
				warm = ch
			} else {
				cold = ch
			}
		}
	}
	if flaps != 4 || restarts != 2 {
		t.Errorf("%d flaps and %d restarts, want 4 and 2", flaps, restarts)
	}
	// The new process translates the same objects into the same bytes,
	// so its versions are the old one's: proxies listing what they hold
	// are sent nothing but the wildcard types' empty first responses.
	if warm.Resources != 0 || warm.Pushes != 2*proxies {
		t.Errorf("restart: %d resources in %d responses, want none in %d (LDS and CDS each)", warm.Resources, warm.Pushes, 2*proxies)
	}
	if cold.Resources <= int64(services*proxies) {
		t.Errorf("restart-cold: %d resources, want every proxy's whole configuration (over %d)", cold.Resources, services*proxies)
	}

	// The CSV files hold what Run returned.
	f, err := os.Open(filepath.Join(out, "changes.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("changes.csv: %v", err)
	}
	if len(rows) != 1+len(r.Changes) {
		t.Errorf("changes.csv has %d rows, want a header and %d changes", len(rows), len(r.Changes))
	}
	for i, row := range rows[1:] {
		if row[1] != r.Changes[i].Scenario || row[3] != strconv.Itoa(r.Changes[i].Affected) {
			t.Errorf("changes.csv row %d = %v, want scenario %s, %d affected", i+1, row, r.Changes[i].Scenario, r.Changes[i].Affected)
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "bench.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if pts := parsePlot(t, svg); len(pts) != 5 {
		t.Errorf("the plot has %d points, want 5 (three scenarios, two RSS series, one size)", len(pts))
	}
	if !bytes.Contains(stdout.Bytes(), []byte(ScenarioEndpointFlap)) {
		t.Errorf("the table on stdout does not name the scenario:\n%s", stdout.String())
	}
}
