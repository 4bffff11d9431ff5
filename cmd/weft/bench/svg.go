package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The plot is hand-written SVG: two panels against proxy count, the
// convergence of each scenario (per-proxy p99, log scale: restarts take
// seconds where endpoint changes take milliseconds) and the control
// plane's memory. A dependency for three lines per panel would cost more
// than these hundred lines.

type point struct {
	x, y  float64
	label string // drawn beside the point; empty: none
}

type series struct {
	name   string
	color  string
	points []point
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

// WritePlot draws results.
func WritePlot(w io.Writer, m Machine, results []SizeResult) error {
	var conv []series
	byScenario := map[string]int{}
	var mem [2]series
	mem[0] = series{name: "peak RSS", color: "#d62728"}
	mem[1] = series{name: "RSS, all proxies synced", color: "#1f77b4"}
	var xs []float64
	for _, r := range results {
		x := float64(r.Proxies)
		xs = append(xs, x)
		for _, s := range Summaries(r) {
			i, ok := byScenario[s.Scenario]
			if !ok {
				i = len(conv)
				byScenario[s.Scenario] = i
				// A scenario keeps its colour whichever ran.
				c := slices.Index(Scenarios, s.Scenario)
				conv = append(conv, series{name: s.Scenario, color: palette[(c+len(palette))%len(palette)]})
			}
			if s.PerProxy.N > 0 {
				conv[i].points = append(conv[i].points, point{x: x, y: float64(s.PerProxy.P99) / float64(time.Millisecond)})
			}
		}
		mem[0].points = append(mem[0].points, point{x: x, y: float64(r.PeakRSS) / (1 << 20)})
		mem[1].points = append(mem[1].points, point{x: x, y: float64(r.RSSConnected) / (1 << 20),
			label: fmt.Sprintf("%.0f KiB/proxy", r.RSSPerProxy()/1024)})
	}
	var b strings.Builder
	const width, height = 1000, 500
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	title := "Weft control plane under weft bench"
	if len(results) > 0 {
		title += fmt.Sprintf(" (%d services, %s xDS)", results[0].Services, results[0].Mode)
	}
	fmt.Fprintf(&b, `<text x="%d" y="22" text-anchor="middle" font-size="16" font-weight="bold">%s</text>`+"\n", width/2, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", width/2, height-8,
		html.EscapeString(fmt.Sprintf("%d CPUs, %s, %s; objects from %s", m.CPUs, m.MemTotal, m.GoVersion, m.Source)))
	// The goals of the scale issue, as reference lines: an endpoint change
	// ACKed at p99 under 100 ms, 10,000 proxies in 300 MB.
	drawPanel(&b, 70, 50, 400, 330, "change → ACK, per-proxy p99 (log scale)", xs, conv, true, goal{100, "goal: endpoint change p99 100 ms"}, fmtMillis)
	drawPanel(&b, 580, 50, 400, 330, "control plane memory (MiB)", xs, mem[:], false, goal{300 * 1e6 / (1 << 20), "goal: 300 MB"}, fmtTick)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type goal struct {
	y     float64
	label string
}

func drawPanel(b *strings.Builder, x0, y0, w, h float64, title string, xs []float64, ss []series, logY bool, g goal, yFmt func(float64) string) {
	fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle" font-weight="bold">%s</text>`+"\n", x0+w/2, y0-10, html.EscapeString(title))
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>`+"\n", x0, y0, w, h)
	xmax := 1.0
	if len(xs) > 0 {
		xmax = slices.Max(xs) * 1.08
	}
	ys := []float64{g.y}
	for _, s := range ss {
		for _, p := range s.points {
			ys = append(ys, p.y)
		}
	}
	lo, hi, ticks := yAxis(ys, logY)
	sx := func(x float64) float64 { return x0 + x/xmax*w }
	sy := func(y float64) float64 {
		if logY {
			return y0 + h - (math.Log10(max(y, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*h
		}
		return y0 + h - (y-lo)/(hi-lo)*h
	}
	for _, t := range ticks {
		y := sy(t)
		fmt.Fprintf(b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#eee"/>`+"\n", x0, y, x0+w, y)
		fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", x0-6, y, yFmt(t))
	}
	for _, x := range xs {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999"/>`+"\n", sx(x), y0+h, sx(x), y0+h+5)
		fmt.Fprintf(b, `<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", sx(x), y0+h+18, fmtTick(x))
	}
	fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle">proxies</text>`+"\n", x0+w/2, y0+h+34)
	gy := sy(g.y)
	fmt.Fprintf(b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#666" stroke-dasharray="6 4"/>`+"\n", x0, gy, x0+w, gy)
	fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end" fill="#666" font-size="11">%s</text>`+"\n", x0+w-4, gy-4, html.EscapeString(g.label))
	for i, s := range ss {
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p.x), sy(p.y)))
		}
		fmt.Fprintf(b, `<g class="series" data-name="%s">`+"\n", html.EscapeString(s.name))
		if len(pts) > 1 {
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), s.color)
		}
		for _, p := range s.points {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" data-x="%g" data-y="%g"><title>%s: %g proxies, %s</title></circle>`+"\n",
				sx(p.x), sy(p.y), s.color, p.x, p.y, html.EscapeString(s.name), p.x, yFmt(p.y))
			if p.label != "" {
				fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s" font-size="11" text-anchor="end">%s</text>`+"\n", sx(p.x)-6, sy(p.y)-8, s.color, html.EscapeString(p.label))
			}
		}
		b.WriteString("</g>\n")
		// Legend below the panel, three to a row, clear of the lines.
		lx, ly := x0+float64(i%3)*(w/3), y0+h+54+float64(i/3)*16
		fmt.Fprintf(b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="2"/><text x="%g" y="%g" dominant-baseline="middle">%s</text>`+"\n",
			lx, ly, lx+20, ly, s.color, lx+26, ly, html.EscapeString(s.name))
	}
}

// yAxis picks the range and ticks: decades for log scale, a 1-2-5 step
// for linear, from zero.
func yAxis(ys []float64, logY bool) (lo, hi float64, ticks []float64) {
	if len(ys) == 0 {
		return 1, 10, []float64{1, 10}
	}
	if logY {
		lo = math.Pow(10, math.Floor(math.Log10(max(slices.Min(ys), 0.1))))
		hi = math.Pow(10, math.Ceil(math.Log10(max(slices.Max(ys), lo*10))))
		if hi == lo {
			hi = lo * 10
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			ticks = append(ticks, t)
		}
		return lo, hi, ticks
	}
	top := max(slices.Max(ys), 1)
	step := math.Pow(10, math.Floor(math.Log10(top/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if top/(step*m) <= 6 {
			step *= m
			break
		}
	}
	hi = math.Ceil(top/step) * step
	for t := 0.0; t <= hi*1.0001; t += step {
		ticks = append(ticks, t)
	}
	return 0, hi, ticks
}

// fmtMillis writes milliseconds as a person reads latencies: 100 ms, 4.1 s.
func fmtMillis(v float64) string {
	if v >= 1000 {
		return fmtTick(v/1000) + " s"
	}
	return fmtTick(v) + " ms"
}

func fmtTick(v float64) string {
	switch {
	case v >= 1000 && math.Mod(v, 1000) == 0:
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
