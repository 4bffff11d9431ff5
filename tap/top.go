package tap

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftmesh/weft/proxy"
)

// Top aggregates events by route, as Linkerd's top does: source,
// destination, method and path.
type Top struct {
	rows map[topKey]*TopRow
}

type topKey struct{ src, dst, method, path string }

// TopRow is one line of the table.
type TopRow struct {
	Source, Destination, Method, Path string
	Count, Successes                  int
	Best, Worst, Last                 time.Duration
}

// NewTop returns an empty table.
func NewTop() *Top { return &Top{rows: map[topKey]*TopRow{}} }

// Add counts e. The tapped proxy's side is named by its pod; the other
// side by what the request says of it: the client's address inbound, the
// authority outbound.
func (t *Top) Add(e Event) {
	pod, _, _ := proxy.ParseNodeID(e.Proxy)
	src, dst := pod, e.Authority
	if e.Direction == "in" {
		src, dst = host(e.Src), pod
	}
	k := topKey{src, dst, e.Method, e.Path}
	r := t.rows[k]
	if r == nil {
		r = &TopRow{Source: src, Destination: dst, Method: e.Method, Path: e.Path, Best: e.Latency, Worst: e.Latency}
		t.rows[k] = r
	}
	r.Count++
	if e.Success() {
		r.Successes++
	}
	r.Best, r.Worst, r.Last = min(r.Best, e.Latency), max(r.Worst, e.Latency), e.Latency
}

func host(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// Rows are the rows, busiest first.
func (t *Top) Rows() []TopRow {
	out := make([]TopRow, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b TopRow) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Source, b.Source), strings.Compare(a.Destination, b.Destination),
			strings.Compare(a.Method, b.Method), strings.Compare(a.Path, b.Path))
	})
	return out
}

// Write prints the table in Linkerd's columns.
func (t *Top) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "Source\tDestination\tMethod\tPath\tCount\tBest\tWorst\tLast\tSuccess Rate")
	for _, r := range t.Rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.2f%%\n", r.Source, r.Destination, r.Method, r.Path, r.Count,
			latency(r.Best), latency(r.Worst), latency(r.Last), 100*float64(r.Successes)/float64(r.Count))
	}
	return tw.Flush()
}

// latency prints as Linkerd does: whole milliseconds, or µs under one.
func latency(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
