package telemetry

import (
	"math"
	"time"
)

// Sample is one reading of a cumulative counter.
type Sample struct {
	T time.Time
	V float64
}

// Increase is how much a cumulative counter grew over samples (oldest
// first) and over how much time that growth was seen. A value below its
// predecessor is a restarted proxy: the pair is dropped and the lower value
// becomes the new baseline, so a restart never yields a negative or
// invented increase; resets counts those drops. The rate is inc divided by
// span, over exactly the time the counter was watched (no extrapolation to
// the window's edges), so two sources holding the same samples agree.
func Increase(samples []Sample) (inc float64, span time.Duration, resets int) {
	for i := 1; i < len(samples); i++ {
		prev, cur := samples[i-1], samples[i]
		if !cur.T.After(prev.T) || bad(cur.V) || bad(prev.V) {
			continue
		}
		if cur.V < prev.V {
			resets++
			continue
		}
		inc += cur.V - prev.V
		span += cur.T.Sub(prev.T)
	}
	return inc, span, resets
}

// Rate is Increase per second; ok is false when no two usable samples exist.
func Rate(samples []Sample) (rate float64, ok bool) {
	inc, span, _ := Increase(samples)
	if span <= 0 {
		return 0, false
	}
	return inc / span.Seconds(), true
}

func bad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }

// Histogram is Envoy's histogram as both of its outputs carry it: upper
// bounds (supported_buckets, in the stat's unit: milliseconds for
// *_rq_time), the number of samples at or below each bound (cumulative
// over buckets), and the total count, which is the implicit +Inf bucket.
type Histogram struct {
	Bounds []float64
	Counts []float64
	Count  float64
	Sum    float64
}

// Valid reports whether h is a histogram at all: as many counts as bounds,
// bounds rising, counts never falling and never above Count.
func (h Histogram) Valid() bool {
	if len(h.Bounds) != len(h.Counts) || bad(h.Count) {
		return false
	}
	for i := range h.Bounds {
		if bad(h.Counts[i]) || h.Counts[i] > h.Count || math.IsNaN(h.Bounds[i]) {
			return false
		}
		if i > 0 && (h.Bounds[i] <= h.Bounds[i-1] || h.Counts[i] < h.Counts[i-1]) {
			return false
		}
	}
	return true
}

func sameBounds(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Add sums two histograms of the same buckets (interval histograms of
// consecutive flushes, or of several proxies); ok is false when their
// buckets differ. An empty h takes o's buckets.
func (h Histogram) Add(o Histogram) (Histogram, bool) {
	if len(h.Bounds) == 0 && h.Count == 0 {
		return Histogram{Bounds: o.Bounds, Counts: append([]float64(nil), o.Counts...), Count: o.Count, Sum: o.Sum}, true
	}
	if !sameBounds(h.Bounds, o.Bounds) {
		return h, false
	}
	out := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts)), Count: h.Count + o.Count, Sum: h.Sum + o.Sum}
	for i := range h.Counts {
		out.Counts[i] = h.Counts[i] + o.Counts[i]
	}
	return out, true
}

// Sub is what a cumulative histogram (Prometheus' view, counting since the
// proxy started) gained since prev; ok is false when the buckets differ or
// any count fell (a restarted proxy: use cur as a new baseline).
func (h Histogram) Sub(prev Histogram) (Histogram, bool) {
	if !sameBounds(h.Bounds, prev.Bounds) || h.Count < prev.Count {
		return Histogram{}, false
	}
	out := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts)), Count: h.Count - prev.Count, Sum: h.Sum - prev.Sum}
	for i := range h.Counts {
		if h.Counts[i] < prev.Counts[i] {
			return Histogram{}, false
		}
		out.Counts[i] = h.Counts[i] - prev.Counts[i]
	}
	return out, true
}

// Quantile interpolates the q-quantile as Prometheus' histogram_quantile
// does (promql/quantile.go, BucketQuantile): find the first bucket whose
// cumulative count reaches q*Count, assume its samples spread evenly
// between its lower and upper bound (the lowest bucket starts at 0), and
// answer the highest finite bound when the rank falls in +Inf. ok is false
// without samples or for a histogram that is not Valid: no number rather
// than a wrong one.
func (h Histogram) Quantile(q float64) (float64, bool) {
	if q < 0 || q > 1 || math.IsNaN(q) || h.Count == 0 || len(h.Bounds) == 0 || !h.Valid() {
		return 0, false
	}
	rank := q * h.Count
	b := 0
	for b < len(h.Bounds) && h.Counts[b] < rank {
		b++
	}
	if b == len(h.Bounds) {
		return h.Bounds[len(h.Bounds)-1], true
	}
	if b == 0 && h.Bounds[0] <= 0 {
		return h.Bounds[0], true
	}
	start, end, count := 0.0, h.Bounds[b], h.Counts[b]
	if b > 0 {
		start = h.Bounds[b-1]
		count -= h.Counts[b-1]
		rank -= h.Counts[b-1]
	}
	return start + (end-start)*(rank/count), true
}

// Millis turns a quantile of a millisecond histogram into a Duration; 0
// (printed "-") when there is none.
func Millis(v float64, ok bool) time.Duration {
	if !ok {
		return 0
	}
	return time.Duration(v * float64(time.Millisecond))
}

// StatusRange is one of a profile route's response classes as translate
// flattens them (ResponseClassesMetadataKey): an inclusive status range and
// whether it is a failure; ranges are disjoint, first match wins.
type StatusRange struct {
	Min, Max  int
	IsFailure bool
}

// IsFailure classifies one HTTP status: the first range holding it
// decides; otherwise Linkerd's default, a failure when it is 5xx.
func IsFailure(status int, ranges []StatusRange) bool {
	for _, r := range ranges {
		if status >= r.Min && status <= r.Max {
			return r.IsFailure
		}
	}
	return status >= 500 && status <= 599
}

// ClassCounts are responses by status class, as Envoy counts them in
// upstream_rq_<N>xx / downstream_rq_<N>xx: index 1 is 1xx ... 5 is 5xx.
type ClassCounts [6]float64

// ClassOf reads a response code class as Envoy's tag gives it ("2xx") and
// returns its index in ClassCounts.
func ClassOf(label string) (int, bool) {
	if len(label) != 3 || label[0] < '1' || label[0] > '5' || label[1:] != "xx" {
		return 0, false
	}
	return int(label[0] - '0'), true
}

// Total is every response counted.
func (c ClassCounts) Total() float64 {
	return c[1] + c[2] + c[3] + c[4] + c[5]
}

// Failures counts the failures among c under ranges. Envoy counts by class
// only (the stats matcher keeps no per-status series, see
// injector/bootstrap/stats.go), so a class split by a range (500-503 a
// failure, the rest of 5xx not) cannot be classified from these counts:
// ok is false and the row's success must be shown as unknown, not guessed.
func (c ClassCounts) Failures(ranges []StatusRange) (failures float64, ok bool) {
	for class := 1; class <= 5; class++ {
		first := IsFailure(class*100, ranges)
		for s := class*100 + 1; s <= class*100+99; s++ {
			if IsFailure(s, ranges) != first {
				if c[class] == 0 {
					break // nothing to classify in this class
				}
				return 0, false
			}
		}
		if first {
			failures += c[class]
		}
	}
	return failures, true
}

// FailuresWithGRPC adds to a series' failures under ranges its failed gRPC
// calls: Envoy's cluster.<name>.grpc.failure (the grpc_stats filter on gRPC
// ports, ContextImpl::chargeStat in source/common/grpc/context_impl.cc,
// Envoy 1.40), calls whose grpc-status was not OK. That is Linkerd's
// classification: a response fails when its HTTP status does, or when it
// ends a gRPC call with a status other than OK. Every call is also counted
// in its HTTP class, and a gRPC server answers every call 200 (gRPC over
// HTTP/2; Envoy's own replies to gRPC requests too), so the two never count
// one response twice; a server that answers 5xx with an error grpc-status
// would be, so the sum is capped at the responses counted.
func (c ClassCounts) FailuresWithGRPC(ranges []StatusRange, grpcFailures float64) (failures float64, ok bool) {
	failures, ok = c.Failures(ranges)
	if !ok || bad(grpcFailures) {
		return 0, false
	}
	return min(c.Total(), failures+grpcFailures), true
}

// GRPCFailuresUnattributed reports whether a service's failed gRPC calls
// cannot be given to its profile routes: Envoy's grpc_stats filter charges
// the route's cluster, never the route (the router's per-route
// upstream_rq_<N>xx see only the HTTP status: Filter::chargeUpstreamCode in
// source/common/router/router.cc), so with routes that saw traffic and any
// failed call, which route and which [DEFAULT] failed is unknown. Without
// failed calls every call succeeded and the status classes tell the rest;
// without routes [DEFAULT] is the whole service.
func GRPCFailuresUnattributed(routesWithTraffic int, serviceGRPCFailures float64) bool {
	return routesWithTraffic > 0 && serviceGRPCFailures > 0
}

// GRPCPerServiceOnly is what a routes table says of a row whose success
// GRPCFailuresUnattributed leaves unknown.
const GRPCPerServiceOnly = "success unknown: failed gRPC calls are counted per service, not per route"

// SuccessRate is 1 - failures/total; nil without traffic.
func SuccessRate(total, failures float64) *float64 {
	if total <= 0 || bad(failures) {
		return nil
	}
	s := 1 - min(failures, total)/total
	return &s
}

// RouteCounts are a route's counts as the client proxy's router charges
// them (Envoy 1.40: Filter::onUpstreamHeaders, onUpstreamReset,
// onPerTryTimeoutCommon and maybeRetryReset in source/common/router/router.cc;
// RetryStateImpl::shouldRetry in source/common/router/retry_state_impl.cc).
type RouteCounts struct {
	// Responses are the route's (or cluster's) upstream_rq_<N>xx: one final
	// response per request. A response that triggers a retry returns from
	// onUpstreamHeaders before chargeUpstreamCode and is charged only to the
	// cluster's retry.upstream_rq_<N>xx; a retried reset or per-try timeout
	// returns before chargeUpstreamAbort and charges no code at all.
	Responses float64
	// Failures are the Responses the route's response classes call failures.
	Failures float64
	// Retries are upstream_rq_retry: one per retry scheduled, that is, one
	// per attempt abandoned.
	Retries float64
	// GRPCFailures are failed gRPC calls (cluster.<name>.grpc.failure): the
	// grpc_stats filter sits in the client's connection manager and sees only
	// the response the client gets, so each is a final response, failed.
	GRPCFailures float64
}

// EffectiveActual splits a route's counts into what the client saw and what
// the servers saw. Effective is one outcome per request: the final
// responses and their failures, failed gRPC calls included. Actual adds the
// abandoned attempts: Envoy retries only an attempt translate's retry_on
// calls failed (a status the response classes call a failure, a reset, a
// connection failure, a refused stream, or a failing gRPC status), so each
// retry is one more attempt and one more failed attempt.
func EffectiveActual(c RouteCounts) (effTotal, effFailures, actTotal, actFailures float64) {
	nonNeg := func(v float64) float64 {
		if bad(v) {
			return 0
		}
		return v
	}
	effTotal = nonNeg(c.Responses)
	effFailures = min(nonNeg(c.Failures)+nonNeg(c.GRPCFailures), effTotal)
	retries := nonNeg(c.Retries)
	return effTotal, effFailures, effTotal + retries, effFailures + retries
}
