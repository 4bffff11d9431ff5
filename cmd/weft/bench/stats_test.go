package bench

import (
	"testing"
	"time"
)

func msd(vs ...int) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentileIsNearestRank(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // descending: input order must not matter
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one value is every percentile", msd(7), 0.99, 7 * time.Millisecond},
		{"p50 of 1..100 is the 50th", msd(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 1..100 is the 99th", msd(hundred...), 0.99, 99 * time.Millisecond},
		{"p100 is the max", msd(hundred...), 1, 100 * time.Millisecond},
		{"p0 is the min", msd(3, 1, 2), 0, 1 * time.Millisecond},
		// ceil(0.5*3) = 2nd of 10,20,30; interpolation would also say 20,
		// but for p99 of three values it would not say the max.
		{"p50 of three", msd(30, 10, 20), 0.5, 20 * time.Millisecond},
		{"p99 of three is a value someone saw", msd(30, 10, 20), 0.99, 30 * time.Millisecond},
		{"p99 of 200 skips the two slowest", msd(append(make([]int, 198), 500, 900)...), 0.99, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]time.Duration(nil), tc.in...)
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
			for i := range before {
				if before[i] != tc.in[i] {
					t.Fatalf("Percentile reordered its input")
				}
			}
		})
	}
}

func TestSummarise(t *testing.T) {
	got := Summarise(msd(5, 1, 9, 3))
	want := Dist{N: 4, P50: 3 * time.Millisecond, P99: 9 * time.Millisecond, Max: 9 * time.Millisecond}
	if got != want {
		t.Errorf("Summarise = %+v, want %+v", got, want)
	}
	if got := Summarise(nil); got != (Dist{}) {
		t.Errorf("Summarise(nil) = %+v, want zero", got)
	}
}

func TestLatenciesAndConvergence(t *testing.T) {
	t0 := time.Unix(100, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name         string
		acks         []time.Time
		affected     int
		wantLat      []time.Duration
		wantConv     time.Duration
		wantComplete bool
	}{
		{"last ACK is the convergence", []time.Time{at(120), at(340), at(105)}, 3, msd(120, 340, 105), 340 * time.Millisecond, true},
		{"an ACK before the write's answer counts as 0", []time.Time{at(-2), at(50)}, 2, msd(0, 50), 50 * time.Millisecond, true},
		{"a proxy missing leaves it unknown", []time.Time{at(120), at(340)}, 3, msd(120, 340), 0, false},
		{"nobody affected converges at once", nil, 0, msd(), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lat := Latencies(t0, tc.acks)
			if len(lat) != len(tc.wantLat) {
				t.Fatalf("Latencies = %v, want %v", lat, tc.wantLat)
			}
			for i := range lat {
				if lat[i] != tc.wantLat[i] {
					t.Errorf("Latencies[%d] = %v, want %v", i, lat[i], tc.wantLat[i])
				}
			}
			conv, complete := Convergence(lat, tc.affected)
			if conv != tc.wantConv || complete != tc.wantComplete {
				t.Errorf("Convergence = %v, %v; want %v, %v", conv, complete, tc.wantConv, tc.wantComplete)
			}
		})
	}
}

func TestSummariesFoldByScenario(t *testing.T) {
	res := SizeResult{Proxies: 10, Changes: []Change{
		{Scenario: ScenarioEndpointFlap, Affected: 10, Complete: true, Convergence: 110 * time.Millisecond, PerProxy: msd(100, 110), Pushes: 10, Bytes: 1000, CPU: 20 * time.Millisecond},
		{Scenario: ScenarioEndpointFlap, Affected: 10, Complete: false, PerProxy: msd(300), Pushes: 30, Bytes: 3000, CPU: 40 * time.Millisecond},
		{Scenario: ScenarioRestart, Affected: 10, Complete: true, Convergence: 2 * time.Second, PerProxy: msd(2000)},
	}}
	got := Summaries(res)
	if len(got) != 2 || got[0].Scenario != ScenarioEndpointFlap || got[1].Scenario != ScenarioRestart {
		t.Fatalf("Summaries = %+v, want endpoint-flap then restart", got)
	}
	flap := got[0]
	if flap.Changes != 2 || flap.Incomplete != 1 {
		t.Errorf("changes %d, incomplete %d; want 2, 1", flap.Changes, flap.Incomplete)
	}
	if flap.Convergence.N != 1 || flap.Convergence.Max != 110*time.Millisecond {
		t.Errorf("convergence %+v: want only the complete change's 110ms", flap.Convergence)
	}
	if flap.PerProxy.N != 3 || flap.PerProxy.Max != 300*time.Millisecond {
		t.Errorf("per proxy %+v: want all three latencies pooled", flap.PerProxy)
	}
	if flap.Pushes != 20 || flap.Bytes != 2000 || flap.CPU != 30*time.Millisecond {
		t.Errorf("per change: pushes %v, bytes %v, CPU %v; want 20, 2000, 30ms", flap.Pushes, flap.Bytes, flap.CPU)
	}
}

func TestProcParsing(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50 ticks.
	stat := "4242 (cp (weft) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0"
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", cpu, err)
	}
	if _, err := parseStatCPU("4242 cp S 1"); err == nil {
		t.Error("parseStatCPU accepted a line without a command name")
	}
	rss, peak, err := parseStatusMemory("Name:\tcp\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t12\n")
	if err != nil || rss != 100<<20 || peak != 200<<20 {
		t.Errorf("parseStatusMemory = %d, %d, %v; want 100 MiB, 200 MiB", rss, peak, err)
	}
	if _, _, err := parseStatusMemory("Name:\tcp\n"); err == nil {
		t.Error("parseStatusMemory accepted a status without VmRSS")
	}
}
