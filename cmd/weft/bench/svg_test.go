package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"testing"
	"time"
)

// circle is a plotted point as the SVG carries it.
type circle struct {
	series string
	x, y   float64
}

// parsePlot decodes the SVG as XML (failing on malformed output) and
// returns its points with the series each belongs to.
func parsePlot(t *testing.T, svg []byte) []circle {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var out []circle
	var series string
	sawRoot := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the plot is not well-formed XML: %v\n%s", err, svg)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
		}
		switch se.Name.Local {
		case "svg":
			sawRoot = se.Name.Space == "http://www.w3.org/2000/svg"
		case "g":
			series = attr["data-name"]
		case "circle":
			x, errX := strconv.ParseFloat(attr["data-x"], 64)
			y, errY := strconv.ParseFloat(attr["data-y"], 64)
			if errX != nil || errY != nil {
				t.Fatalf("circle without numeric data-x/data-y: %v", se.Attr)
			}
			out = append(out, circle{series, x, y})
		}
	}
	if !sawRoot {
		t.Fatal("no <svg> root in the SVG namespace")
	}
	return out
}

func TestPlotHasEveryPoint(t *testing.T) {
	size := func(n int, p99 time.Duration, rss int64) SizeResult {
		return SizeResult{Proxies: n, Services: 2000, Mode: "sotw", RSSBase: 50 << 20, RSSConnected: rss, PeakRSS: rss + 10<<20,
			Changes: []Change{
				{Scenario: ScenarioEndpointFlap, Complete: true, PerProxy: []time.Duration{p99}},
				{Scenario: ScenarioRestart, Complete: true, PerProxy: []time.Duration{40 * p99}},
			}}
	}
	tests := []struct {
		name    string
		results []SizeResult
	}{
		{"no results yet", nil},
		{"one size", []SizeResult{size(1000, 120*time.Millisecond, 300<<20)}},
		{"three sizes", []SizeResult{size(1000, 120*time.Millisecond, 300<<20), size(5000, 400*time.Millisecond, 900<<20), size(10000, 2*time.Second, 2<<30)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WritePlot(&buf, Machine{CPUs: 2, MemTotal: "24 GB", GoVersion: "go1.26", Source: "test <&>"}, tc.results); err != nil {
				t.Fatal(err)
			}
			got := map[circle]bool{}
			for _, c := range parsePlot(t, buf.Bytes()) {
				got[c] = true
			}
			// Four series: two scenarios, peak and connected RSS.
			if want := 4 * len(tc.results); len(got) != want {
				t.Errorf("%d distinct points, want %d", len(got), want)
			}
			for _, r := range tc.results {
				x := float64(r.Proxies)
				for _, want := range []circle{
					{ScenarioEndpointFlap, x, float64(r.Changes[0].PerProxy[0]) / float64(time.Millisecond)},
					{ScenarioRestart, x, float64(r.Changes[1].PerProxy[0]) / float64(time.Millisecond)},
					{"peak RSS", x, float64(r.PeakRSS) / (1 << 20)},
					{"RSS, all proxies synced", x, float64(r.RSSConnected) / (1 << 20)},
				} {
					if !got[want] {
						t.Errorf("no point %+v", want)
					}
				}
			}
		})
	}
}
