package telemetry

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Output formats of the printer (-o).
const (
	OutputTable = ""
	OutputWide  = "wide"
	OutputJSON  = "json"
)

// PrintOptions are the CLI's -o and -A.
type PrintOptions struct {
	Output        string
	AllNamespaces bool
}

// ParseOutput validates -o; "table" and "" are the default.
func ParseOutput(o string) (string, error) {
	switch o {
	case "", "table":
		return OutputTable, nil
	case OutputWide, OutputJSON:
		return o, nil
	}
	return "", fmt.Errorf("-o %q: want table, wide or json", o)
}

// Print writes t as Linkerd prints the same table (columns of `linkerd viz
// stat|routes|edges`, values `100.00%`, `1.2rps`, `5ms`, `-` for no data).
// Rows are sorted so the output is the same whichever source answered;
// [DEFAULT] stays last among routes.
func Print(w io.Writer, t Table, o PrintOptions) error {
	rows := SortedRows(t)
	if o.Output == OutputJSON {
		return printJSON(w, t.Resource, rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No traffic found.")
		return err
	}
	wide := o.Output == OutputWide
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	line := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")) }
	switch t.Resource {
	case ResourceRoute:
		if wide {
			line("ROUTE", "SERVICE", "EFFECTIVE_SUCCESS", "EFFECTIVE_RPS", "ACTUAL_SUCCESS", "ACTUAL_RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")
		} else {
			line("ROUTE", "SERVICE", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")
		}
		for _, r := range rows {
			if wide {
				line(r.Name, r.Dst, FormatSuccess(r.EffectiveSuccess), FormatRPS(r.EffectiveRPS),
					FormatSuccess(r.ActualSuccess), FormatRPS(r.ActualRPS), FormatLatency(r.P50), FormatLatency(r.P95), FormatLatency(r.P99))
			} else {
				line(r.Name, r.Dst, FormatSuccess(r.SuccessRate), FormatRPS(r.RPS), FormatLatency(r.P50), FormatLatency(r.P95), FormatLatency(r.P99))
			}
		}
	case ResourceEdge:
		if wide {
			line("SRC", "DST", "SRC_NS", "DST_NS", "CLIENT_ID", "SERVER_ID", "SECURED")
		} else {
			line("SRC", "DST", "SRC_NS", "DST_NS", "SECURED")
		}
		for _, r := range rows {
			if wide {
				line(r.Src, r.Dst, r.Namespace, r.DstNamespace, dash(r.ClientID), dash(r.ServerID), FormatSecured(r.Secured))
			} else {
				line(r.Src, r.Dst, r.Namespace, r.DstNamespace, FormatSecured(r.Secured))
			}
		}
	default:
		// -A and -o wide add the namespace; a namespace row is its own namespace.
		withNS := (o.AllNamespaces || wide) && t.Resource != ResourceNamespace
		var head []string
		if withNS {
			head = append(head, "NAMESPACE")
		}
		line(append(head, "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN")...)
		for _, r := range rows {
			var cols []string
			if withNS {
				cols = append(cols, r.Namespace)
			}
			line(append(cols, r.Name, dash(r.Meshed), FormatSuccess(r.SuccessRate), FormatRPS(r.RPS),
				FormatLatency(r.P50), FormatLatency(r.P95), FormatLatency(r.P99), fmt.Sprint(r.TCPConnections))...)
		}
	}
	return tw.Flush()
}

// SortedRows is t's rows in the order tables show them: by namespace, source,
// destination and name, a route table's [DEFAULT] last.
func SortedRows(t Table) []Row {
	rows := slices.Clone(t.Rows)
	slices.SortStableFunc(rows, func(a, b Row) int {
		if t.Resource == ResourceRoute && (a.Name == DefaultRoute) != (b.Name == DefaultRoute) {
			if a.Name == DefaultRoute {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Src, b.Src),
			cmp.Compare(a.Dst, b.Dst), cmp.Compare(a.Name, b.Name), cmp.Compare(a.DstNamespace, b.DstNamespace))
	})
	return rows
}

// jsonRow is one row of -o json, keyed as `linkerd viz stat -o json` keys it;
// null means no data.
type jsonRow struct {
	Namespace      string   `json:"namespace,omitempty"`
	Kind           string   `json:"kind"`
	Name           string   `json:"name"`
	Meshed         string   `json:"meshed,omitempty"`
	Success        *float64 `json:"success"`
	RPS            float64  `json:"rps"`
	LatencyP50     *float64 `json:"latency_ms_p50"`
	LatencyP95     *float64 `json:"latency_ms_p95"`
	LatencyP99     *float64 `json:"latency_ms_p99"`
	TCPConnections *int     `json:"tcp_open_connections,omitempty"`

	Service          string   `json:"service,omitempty"`
	EffectiveSuccess *float64 `json:"effective_success,omitempty"`
	EffectiveRPS     *float64 `json:"effective_rps,omitempty"`
	ActualSuccess    *float64 `json:"actual_success,omitempty"`
	ActualRPS        *float64 `json:"actual_rps,omitempty"`

	Src      string `json:"src,omitempty"`
	Dst      string `json:"dst,omitempty"`
	SrcNS    string `json:"src_namespace,omitempty"`
	DstNS    string `json:"dst_namespace,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	ServerID string `json:"server_id,omitempty"`
	Secured  *bool  `json:"secured,omitempty"`
}

func printJSON(w io.Writer, resource string, rows []Row) error {
	out := make([]jsonRow, 0, len(rows))
	for _, r := range rows {
		j := jsonRow{Kind: resource}
		switch resource {
		case ResourceEdge:
			j.Src, j.Dst, j.SrcNS, j.DstNS = r.Src, r.Dst, r.Namespace, r.DstNamespace
			j.ClientID, j.ServerID, j.Secured = r.ClientID, r.ServerID, r.Secured
			j.Name = r.Src + "->" + r.Dst
		default:
			j.Namespace, j.Name, j.Meshed = r.Namespace, r.Name, r.Meshed
			j.Success, j.RPS = r.SuccessRate, round(r.RPS, 3)
			j.LatencyP50, j.LatencyP95, j.LatencyP99 = millis(r.P50), millis(r.P95), millis(r.P99)
			if resource == ResourceRoute {
				j.Service = r.Dst
				er, ar := round(r.EffectiveRPS, 3), round(r.ActualRPS, 3)
				j.EffectiveSuccess, j.ActualSuccess, j.EffectiveRPS, j.ActualRPS = r.EffectiveSuccess, r.ActualSuccess, &er, &ar
			} else {
				n := r.TCPConnections
				j.TCPConnections = &n
			}
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func millis(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	v := round(float64(d)/float64(time.Millisecond), 3)
	return &v
}

func round(v float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(v*p) / p
}

// FormatSuccess prints a success rate as Linkerd does: "99.50%", "-" without traffic.
func FormatSuccess(s *float64) string {
	if s == nil || math.IsNaN(*s) {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", *s*100)
}

// FormatRPS prints a rate as Linkerd does: "1.2rps"; "-" for none.
func FormatRPS(r float64) string {
	if r <= 0 || math.IsNaN(r) {
		return "-"
	}
	return fmt.Sprintf("%.1frps", r)
}

// FormatLatency prints whole milliseconds as Linkerd does ("5ms"); Envoy's
// request-time histograms resolve below a millisecond, so a latency under
// one keeps one decimal ("0.5ms") rather than print a misleading "0ms".
func FormatLatency(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	ms := float64(d) / float64(time.Millisecond)
	if ms < 0.95 {
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%dms", int64(math.Round(ms)))
}

// FormatSecured prints an edge's SECURED: √ for mutual TLS, × for
// plaintext, - without evidence.
func FormatSecured(s *bool) string {
	switch {
	case s == nil:
		return "-"
	case *s:
		return "√"
	}
	return "×"
}

func dash(s string) string { return cmp.Or(s, "-") }
