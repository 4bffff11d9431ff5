package bench

import (
	"slices"
	"time"
)

// Percentile is the nearest-rank percentile of ds (p in [0,1]): the
// smallest value with at least p of the values at or below it. Nearest
// rank, not interpolation, so a reported p99 is a latency some proxy
// really saw. ds need not be sorted; it is not changed. Empty: 0.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return sortedPercentile(s, p)
}

func sortedPercentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	// rank = ceil(p*n), at least 1.
	rank := int(p * float64(len(s)))
	if float64(rank) < p*float64(len(s)) {
		rank++
	}
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Dist is a latency distribution summarised.
type Dist struct {
	N             int
	P50, P99, Max time.Duration
}

// Summarise computes a Dist.
func Summarise(ds []time.Duration) Dist {
	s := slices.Clone(ds)
	slices.Sort(s)
	d := Dist{N: len(s), P50: sortedPercentile(s, 0.50), P99: sortedPercentile(s, 0.99)}
	if len(s) > 0 {
		d.Max = s[len(s)-1]
	}
	return d
}

// Latencies turns ACK times into latencies from the change at t0. An ACK
// can precede t0 by a hair: t0 is when the apiserver's answer reached the
// tool, which may be after the informer's event reached the control plane
// and the proxy; such a latency counts as 0, never negative.
func Latencies(t0 time.Time, acks []time.Time) []time.Duration {
	out := make([]time.Duration, 0, len(acks))
	for _, a := range acks {
		out = append(out, max(a.Sub(t0), 0))
	}
	return out
}

// Convergence is the time from t0 to the last affected proxy's ACK: the
// largest latency. complete says whether every affected proxy ACKed; if
// not, the convergence is unknown and reported as missing, not as the
// largest ACK seen.
func Convergence(latencies []time.Duration, affected int) (d time.Duration, complete bool) {
	if len(latencies) < affected || affected == 0 {
		return 0, affected == 0
	}
	return slices.Max(latencies), true
}
