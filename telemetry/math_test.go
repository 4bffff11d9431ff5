package telemetry

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func at(sec int, v float64) Sample { return Sample{T: t0.Add(time.Duration(sec) * time.Second), V: v} }

func TestIncreaseAndRate(t *testing.T) {
	cases := []struct {
		name       string
		samples    []Sample
		wantInc    float64
		wantSpan   time.Duration
		wantResets int
		wantRate   float64
		wantOK     bool
	}{
		{"steady", []Sample{at(0, 0), at(10, 10), at(20, 30)}, 30, 20 * time.Second, 0, 1.5, true},
		// The proxy restarted between 10s and 20s: 100 -> 5 is dropped, 5 is the new
		// baseline, and only the watched growth counts: (100 + 20) / 20s.
		{"restart is a new baseline", []Sample{at(0, 0), at(10, 100), at(20, 5), at(30, 25)}, 120, 20 * time.Second, 1, 6, true},
		{"only a restart", []Sample{at(0, 50), at(10, 3)}, 0, 0, 1, 0, false},
		{"one sample", []Sample{at(0, 7)}, 0, 0, 0, 0, false},
		{"garbage values are skipped", []Sample{at(0, 0), at(10, math.NaN()), at(20, -4), at(30, 10), at(40, 20)}, 10, 10 * time.Second, 0, 1, true},
		{"repeated timestamp", []Sample{at(0, 0), at(0, 5), at(10, 15)}, 10, 10 * time.Second, 0, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inc, span, resets := Increase(c.samples)
			if inc != c.wantInc || span != c.wantSpan || resets != c.wantResets {
				t.Errorf("Increase = %v over %v, %d resets; want %v over %v, %d resets", inc, span, resets, c.wantInc, c.wantSpan, c.wantResets)
			}
			rate, ok := Rate(c.samples)
			if ok != c.wantOK || math.Abs(rate-c.wantRate) > 1e-9 {
				t.Errorf("Rate = %v, %v; want %v, %v", rate, ok, c.wantRate, c.wantOK)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	// Ten samples: 2 at or below 0.5ms, 5 at or below 1ms, 8 <= 5ms, 9 <= 10ms, 10 <= 25ms.
	h := Histogram{Bounds: []float64{0.5, 1, 5, 10, 25}, Counts: []float64{2, 5, 8, 9, 10}, Count: 10}
	overflow := h
	overflow.Count = 12 // two samples above the last bound (+Inf)
	cases := []struct {
		name   string
		h      Histogram
		q      float64
		want   float64
		wantOK bool
	}{
		// rank 1 in [0, 0.5] holding 2: 0 + 0.5*1/2
		{"p10 first bucket starts at 0", h, 0.10, 0.25, true},
		// rank 5 reaches bucket (0.5, 1] holding 3, 3 of them: 0.5 + 0.5*3/3
		{"p50", h, 0.50, 1, true},
		// rank 9.5 in (10, 25] holding 1, 0.5 of it: 10 + 15*0.5
		{"p95", h, 0.95, 17.5, true},
		// rank 9.9: 10 + 15*0.9
		{"p99", h, 0.99, 23.5, true},
		{"rank in +Inf answers the last bound", overflow, 0.99, 25, true},
		{"no samples", Histogram{Bounds: h.Bounds, Counts: make([]float64, 5)}, 0.5, 0, false},
		{"counts falling is garbage", Histogram{Bounds: h.Bounds, Counts: []float64{2, 1, 8, 9, 10}, Count: 10}, 0.5, 0, false},
		{"counts above the total is garbage", Histogram{Bounds: h.Bounds, Counts: []float64{2, 5, 8, 9, 11}, Count: 10}, 0.5, 0, false},
		{"bounds and counts disagree", Histogram{Bounds: h.Bounds, Counts: []float64{2, 5}, Count: 10}, 0.5, 0, false},
		{"q out of range", h, 1.5, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := c.h.Quantile(c.q)
			if ok != c.wantOK || math.Abs(got-c.want) > 1e-9 {
				t.Errorf("Quantile(%v) = %v, %v; want %v, %v", c.q, got, ok, c.want, c.wantOK)
			}
		})
	}
	if d := Millis(h.Quantile(0.95)); d != 17500*time.Microsecond {
		t.Errorf("Millis(p95) = %v, want 17.5ms", d)
	}
}

func TestHistogramAddSub(t *testing.T) {
	a := Histogram{Bounds: []float64{1, 10}, Counts: []float64{1, 2}, Count: 3, Sum: 30}
	b := Histogram{Bounds: []float64{1, 10}, Counts: []float64{2, 4}, Count: 4, Sum: 12}
	other := Histogram{Bounds: []float64{1, 5}, Counts: []float64{1, 1}, Count: 1}

	sum, ok := Histogram{}.Add(a)
	if !ok {
		t.Fatal("Add to empty refused")
	}
	if sum, ok = sum.Add(b); !ok || sum.Count != 7 || sum.Counts[0] != 3 || sum.Counts[1] != 6 || sum.Sum != 42 {
		t.Errorf("a+b = %+v, %v", sum, ok)
	}
	if _, ok := a.Add(other); ok {
		t.Error("Add of different buckets accepted")
	}
	// Cumulative (Prometheus) histograms: b - a is what was observed in between...
	cum := Histogram{Bounds: []float64{1, 10}, Counts: []float64{3, 6}, Count: 7, Sum: 42}
	if d, ok := cum.Sub(a); !ok || d.Count != 4 || d.Counts[0] != 2 || d.Counts[1] != 4 {
		t.Errorf("cum - a = %+v, %v", d, ok)
	}
	// ...and any count falling is a restart, never a negative bucket.
	if _, ok := a.Sub(cum); ok {
		t.Error("Sub across a restart accepted")
	}
}

func TestFailures(t *testing.T) {
	var c ClassCounts
	c[2], c[4], c[5] = 90, 5, 5
	no5xx := c
	no5xx[5] = 0
	cases := []struct {
		name    string
		counts  ClassCounts
		ranges  []StatusRange
		want    float64
		wantOK  bool
		success float64
	}{
		{"default: 5xx fail", c, nil, 5, true, 0.95},
		{"4xx declared failures", c, []StatusRange{{400, 499, true}}, 10, true, 0.90},
		{"5xx declared success", c, []StatusRange{{500, 599, false}}, 0, true, 1},
		{"a range splitting 5xx cannot be counted from classes", c, []StatusRange{{500, 503, false}}, 0, false, 0},
		{"a range inside 5xx that agrees with the default", c, []StatusRange{{500, 503, true}}, 5, true, 0.95},
		{"a split class with no responses is fine", no5xx, []StatusRange{{500, 503, false}}, 0, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.counts.Failures(tc.ranges)
			if ok != tc.wantOK || got != tc.want {
				t.Fatalf("Failures = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
			if ok {
				if s := SuccessRate(tc.counts.Total(), got); s == nil || math.Abs(*s-tc.success) > 1e-9 {
					t.Errorf("SuccessRate = %v, want %v", s, tc.success)
				}
			}
		})
	}
	if SuccessRate(0, 0) != nil {
		t.Error("SuccessRate without traffic is not nil")
	}
	for _, st := range []struct {
		status int
		ranges []StatusRange
		want   bool
	}{{503, nil, true}, {404, nil, false}, {404, []StatusRange{{400, 404, true}}, true}, {503, []StatusRange{{500, 599, false}}, false}} {
		if got := IsFailure(st.status, st.ranges); got != st.want {
			t.Errorf("IsFailure(%d, %v) = %v", st.status, st.ranges, got)
		}
	}
}

// TestEffectiveActual: hand-computed cases of what `weft routes -o wide` shows from a
// route's counters.
func TestEffectiveActual(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name                   string
		c                      RouteCounts
		effT, effF, actT, actF float64
	}{
		// 10 requests: 5 failed once and succeeded on retry, 1 failed and the retry
		// budget refused its retry. Envoy charged 10 final responses, 1 of them failed,
		// and 5 retries: the client saw 10 requests and 1 failure (90%); the servers saw
		// 15 attempts and 6 failures (60%).
		{"retries add failed attempts", RouteCounts{Responses: 10, Failures: 1, Retries: 5}, 10, 1, 15, 6},
		{"no retries", RouteCounts{Responses: 10, Failures: 2}, 10, 2, 10, 2},
		// 1 request whose 3 retries all failed too: one failed response, four failed attempts.
		{"retries exhausted", RouteCounts{Responses: 1, Failures: 1, Retries: 3}, 1, 1, 4, 4},
		// Retries counted in a window whose final responses fall in the next one.
		{"retries without responses", RouteCounts{Retries: 2}, 0, 0, 2, 2},
		// The same 10 requests, and 2 calls ended with grpc-status UNAVAILABLE in a
		// 200's trailers: final responses the client saw fail, retried by nobody.
		{"gRPC failures are final responses", RouteCounts{Responses: 10, Failures: 1, Retries: 5, GRPCFailures: 2}, 10, 3, 15, 8},
		{"gRPC failures without HTTP failures", RouteCounts{Responses: 40, Retries: 3, GRPCFailures: 8}, 40, 8, 43, 11},
		{"failures capped at the responses", RouteCounts{Responses: 4, Failures: 3, GRPCFailures: 5}, 4, 4, 4, 4},
		{"garbage counts as nothing", RouteCounts{Responses: nan, Failures: -1, Retries: math.Inf(1), GRPCFailures: nan}, 0, 0, 0, 0},
	}
	for _, c := range cases {
		effT, effF, actT, actF := EffectiveActual(c.c)
		if effT != c.effT || effF != c.effF || actT != c.actT || actF != c.actF {
			t.Errorf("%s: got eff %v/%v act %v/%v, want eff %v/%v act %v/%v (failed/total)", c.name, effF, effT, actF, actT, c.effF, c.effT, c.actF, c.actT)
		}
	}
}

// attemptEnd is how one upstream attempt ended, as the client proxy's router sees it.
type attemptEnd struct {
	// status is the response's :status, or what chargeUpstreamAbort charges for an
	// attempt that got none: 503 for a reset, timeout_response_code_ (504) for a
	// per-try timeout.
	status int
	// response: headers arrived (false for a reset or a per-try timeout).
	response bool
	// grpcFailed: grpc-status other than OK; inHeaders when it came in the headers of a
	// trailers-only response, where the router's retry policy can see it.
	grpcFailed, inHeaders bool
}

var (
	ok200            = attemptEnd{status: 200, response: true}
	notFound404      = attemptEnd{status: 404, response: true}
	unavailable503   = attemptEnd{status: 503, response: true}
	reset            = attemptEnd{status: 503}
	perTryTimeout    = attemptEnd{status: 504}
	grpcUnavailable  = attemptEnd{status: 200, response: true, grpcFailed: true, inHeaders: true}
	grpcFailTrailers = attemptEnd{status: 200, response: true, grpcFailed: true}
)

// failed is Linkerd's default classification: 5xx, or a gRPC call not OK.
func (a attemptEnd) failed() bool { return a.status >= 500 || a.grpcFailed }

// retriable is translate's retry_on for a route with Linkerd's default classes: 5xx,
// reset (a per-try timeout is retried as a LocalReset), connect-failure,
// refused-stream, and on gRPC ports the failing gRPC codes in the headers
// (RetryStateImpl::wouldRetryFromHeaders, wouldRetryFromReset).
func (a attemptEnd) retriable() bool {
	return !a.response || a.status >= 500 || (a.grpcFailed && a.inHeaders)
}

// request is one request: how each attempt ended, in order, and whether the retry
// budget (cluster circuit_breakers retry_budget) refuses its retries.
type request struct {
	attempts     []attemptEnd
	budgetRefuse bool
}

// envoyCharges is a stand-in for Envoy 1.40's router filter, charging a route's
// counters for requests as source/common/router/router.cc and retry_state_impl.cc do,
// with translate's retry policy (num_retries 3):
//   - RetryStateImpl::shouldRetry answering Yes charges upstream_rq_retry (cluster and
//     route); with no retries left it answers NoRetryLimitExceeded and with the budget
//     spent NoOverflow, and the attempt is final.
//   - Filter::onUpstreamHeaders: a retried response is charged only to the cluster's
//     retry.upstream_rq_<code> (chargeBasicResponseStat with stat_names_.retry_) and
//     returns before chargeUpstreamCode, which charges a final response's
//     upstream_rq_<N>xx on the cluster and the route (CodeStatsImpl::chargeResponseStat).
//   - Filter::onUpstreamReset and onPerTryTimeoutCommon: maybeRetryReset returns before
//     chargeUpstreamAbort when the attempt is retried, so a retried reset or timeout
//     charges no code; a final one is charged 503 or 504 through chargeUpstreamCode.
//   - The grpc_stats filter sits in the connection manager before the router and sees
//     only the response forwarded downstream: grpc.failure counts final responses.
//
// It also returns what the client and the servers saw, counted from the attempts
// themselves: one outcome per request, and every attempt.
func envoyCharges(t *testing.T, reqs []request) (c RouteCounts, effT, effF, actT, actF float64) {
	t.Helper()
	var classes ClassCounts
	for _, rq := range reqs {
		retriesLeft := 3
		for i, a := range rq.attempts {
			actT++
			if a.failed() {
				actF++
			}
			if a.retriable() && retriesLeft > 0 && !rq.budgetRefuse {
				retriesLeft--
				c.Retries++
				if i == len(rq.attempts)-1 {
					t.Fatalf("request %v: Envoy retries its last attempt", rq.attempts)
				}
				continue
			}
			if i != len(rq.attempts)-1 {
				t.Fatalf("request %v: attempt %d is final, but more follow", rq.attempts, i)
			}
			classes[a.status/100]++
			if a.grpcFailed {
				c.GRPCFailures++
			}
			effT++
			if a.failed() {
				effF++
			}
		}
	}
	c.Responses = classes.Total()
	c.Failures, _ = classes.Failures(nil)
	return c, effT, effF, actT, actF
}

// TestEffectiveActualFromEnvoyCharges: for requests whose attempts end in every way
// Envoy retries or does not, EffectiveActual over the counters Envoy charges gives
// what the client saw (one outcome per request) and what the servers saw (every
// attempt).
func TestEffectiveActualFromEnvoyCharges(t *testing.T) {
	cases := []struct {
		name string
		reqs []request
	}{
		{"a 503 retried, then 200", []request{{attempts: []attemptEnd{unavailable503, ok200}}}},
		{"a reset retried, then 200", []request{{attempts: []attemptEnd{reset, ok200}}}},
		{"a per-try timeout retried, then 200", []request{{attempts: []attemptEnd{perTryTimeout, ok200}}}},
		{"retries exhausted on 503s", []request{{attempts: []attemptEnd{unavailable503, unavailable503, unavailable503, unavailable503}}}},
		{"retries exhausted on resets", []request{{attempts: []attemptEnd{reset, perTryTimeout, reset, reset}}}},
		{"the retry budget refuses", []request{{attempts: []attemptEnd{unavailable503}, budgetRefuse: true}}},
		{"gRPC UNAVAILABLE retried, then OK", []request{{attempts: []attemptEnd{grpcUnavailable, grpcUnavailable, ok200}}}},
		{"gRPC failure in trailers is not retried", []request{{attempts: []attemptEnd{grpcFailTrailers}}}},
		{"a 404 succeeds and is not retried", []request{{attempts: []attemptEnd{notFound404}}}},
		{"a mix", []request{
			{attempts: []attemptEnd{ok200}}, {attempts: []attemptEnd{ok200}}, {attempts: []attemptEnd{notFound404}},
			{attempts: []attemptEnd{unavailable503, ok200}}, {attempts: []attemptEnd{reset, unavailable503, ok200}},
			{attempts: []attemptEnd{unavailable503, unavailable503, unavailable503, reset}},
			{attempts: []attemptEnd{perTryTimeout}, budgetRefuse: true},
			{attempts: []attemptEnd{grpcUnavailable, grpcFailTrailers}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, wantEffT, wantEffF, wantActT, wantActF := envoyCharges(t, tc.reqs)
			effT, effF, actT, actF := EffectiveActual(c)
			if effT != wantEffT || effF != wantEffF || actT != wantActT || actF != wantActF {
				t.Errorf("counters %+v: got eff %v/%v act %v/%v, the requests were eff %v/%v act %v/%v (failed/total)",
					c, effF, effT, actF, actT, wantEffF, wantEffT, wantActF, wantActT)
			}
		})
	}
}

// TestFailuresWithGRPC: on gRPC ports a call that fails answers HTTP 200 with a
// grpc-status other than OK; Envoy counts it in the 2xx class and in the cluster's
// grpc.failure (Envoy 1.40, source/common/grpc/context_impl.cc ContextImpl::chargeStat).
func TestFailuresWithGRPC(t *testing.T) {
	var c ClassCounts
	c[2], c[5] = 95, 5
	cases := []struct {
		name   string
		ranges []StatusRange
		grpc   float64
		want   float64
		wantOK bool
	}{
		// 100 responses: 5 are 5xx, 20 more are 200 with grpc-status UNAVAILABLE.
		{"gRPC failures in 200 responses count", nil, 20, 25, true},
		{"no gRPC failures: the classes alone", nil, 0, 5, true},
		// responseClasses classify HTTP statuses; a failed call stays failed.
		{"5xx declared success, gRPC failures still fail", []StatusRange{{500, 599, false}}, 20, 20, true},
		{"4xx declared failures add to them", []StatusRange{{400, 499, true}}, 20, 25, true},
		// A server answering 5xx with an error grpc-status is counted twice: never
		// more failures than responses.
		{"capped at the responses counted", nil, 99, 100, true},
		{"a split class cannot be classified", []StatusRange{{500, 503, false}}, 20, 0, false},
		{"garbage gRPC count", nil, math.NaN(), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := c.FailuresWithGRPC(tc.ranges, tc.grpc)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("FailuresWithGRPC = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestGRPCFailuresUnattributed(t *testing.T) {
	for _, tc := range []struct {
		routes int
		grpc   float64
		want   bool
	}{
		{0, 5, false}, // [DEFAULT] is the whole service
		{2, 0, false}, // every call succeeded: the classes tell the rest
		{2, 5, true},
	} {
		if got := GRPCFailuresUnattributed(tc.routes, tc.grpc); got != tc.want {
			t.Errorf("GRPCFailuresUnattributed(%d, %v) = %v, want %v", tc.routes, tc.grpc, got, tc.want)
		}
	}
}

func TestClassOf(t *testing.T) {
	for label, want := range map[string]int{"1xx": 1, "2xx": 2, "5xx": 5, "6xx": 0, "2XX": 0, "20x": 0, "": 0, "2xxx": 0} {
		got, ok := ClassOf(label)
		if got != want || ok != (want != 0) {
			t.Errorf("ClassOf(%q) = %d, %v; want %d", label, got, ok, want)
		}
	}
}
