package proxyconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// duration prints 300ms, 2s, 1m30s, 1h (no trailing zero units).
func duration(d *durationpb.Duration) string {
	return goDuration(d.AsDuration())
}

func goDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// durationOr prints d, or def marked as Envoy's default when d is unset.
func durationOr(d *durationpb.Duration, def string) string {
	if d == nil {
		return def + " (default)"
	}
	return duration(d)
}

// durationDefault prints d, or def when d is unset (without saying so,
// where the marker would drown the figures).
func durationDefault(d *durationpb.Duration, def time.Duration) string {
	if d == nil {
		return goDuration(def)
	}
	return duration(d)
}

// u32Or is a UInt32Value or Envoy's default for it.
func u32Or(v *wrapperspb.UInt32Value, def uint32) uint32 {
	if v == nil {
		return def
	}
	return v.GetValue()
}

type weighted struct {
	name   string
	weight uint64
}

// splitString prints "a 90% / b 10%". total is the weight the shares are
// of; 0 means their sum.
func splitString(ws []weighted, total uint64) string {
	if total == 0 {
		for _, w := range ws {
			total += w.weight
		}
	}
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.name + " " + percent(w.weight, total)
	}
	return strings.Join(parts, " / ")
}

func percent(part, total uint64) string {
	if total == 0 {
		return "0%"
	}
	p := float64(part) * 100 / float64(total)
	if p == float64(int64(p)) {
		return strconv.FormatInt(int64(p), 10) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// ranges prints sorted numbers as runs: 500-502,504-599.
func ranges(ns []uint32) string {
	s := slices.Clone(ns)
	slices.Sort(s)
	s = slices.Compact(s)
	var parts []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.FormatUint(uint64(s[i]), 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", s[i], s[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// compactDomains lists a virtual host's domains briefly: the first n that
// carry no port (the host:port forms repeat them), then "*" if present,
// then how many are not shown. n < 0 lists all.
func compactDomains(domains []string, n int) string {
	if n < 0 {
		return strings.Join(domains, ", ")
	}
	var shown []string
	wildcard := false
	for _, d := range domains {
		switch {
		case d == "*":
			wildcard = true
		case len(shown) < n && !hasPort(d):
			shown = append(shown, d)
		}
	}
	hidden := len(domains) - len(shown)
	if wildcard {
		shown = append(shown, "*")
		hidden--
	}
	s := strings.Join(shown, ", ")
	if hidden > 0 {
		s += fmt.Sprintf(" (+%d)", hidden)
	}
	return s
}

// hasPort reports whether a domain is host:port ([v6]:port included).
func hasPort(d string) bool {
	if strings.HasPrefix(d, "[") {
		return strings.Contains(d, "]:")
	}
	return strings.Count(d, ":") == 1
}
