package telemetry

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	promclient "github.com/prometheus/client_model/go"

	"github.com/weftmesh/weft/injector/bootstrap"
)

// Bounds of the embedded store. A proxy's memory is at most Slots flushes of
// at most MaxSeries series each; a proxy silent for Retention is evicted,
// and at most MaxProxies are kept (the oldest silent one makes room).
const (
	// Slots flushes per proxy: one minute of 10s flushes. Increases are
	// computed on arrival, so no baseline flush is kept.
	Slots = 6
	// MaxSeries bounds the series kept from one flush of one proxy: a proxy
	// talks to a bounded number of services; garbage or a runaway stats
	// config must not grow the control plane.
	MaxSeries = 256
	// Retention is how long a proxy that stopped reporting is remembered.
	Retention = 2 * time.Minute
	// MaxProxies bounds the number of proxies kept.
	MaxProxies = 50_000
	// MaxBuckets bounds a histogram's buckets (Envoy's default has 19): a
	// flush's buckets and gRPC counts are addressed by each sample's 16-bit
	// histOff and histLen, whose top bit is grpcFlag, so MaxSeries*(MaxBuckets+1)
	// must fit in histOff and MaxBuckets below grpcFlag.
	MaxBuckets = 100
)

// Series kinds, one per place Weft asks Envoy for golden metrics.
const (
	kindInbound  uint8 = iota + 1 // http.inbound.*: the pod as a server
	kindOutbound                  // cluster.outbound|port|fqdn.*: the pod as a client of a service
	kindRoute                     // vhost.<fqdn:port>.route.<name>.*: a profile route, client side
)

// seriesKey names one series of a proxy: kind, cluster or virtual host, route.
type seriesKey struct {
	kind uint8
	a, b string
}

// point is one series as one message carries it: Envoy's cumulative
// counters (report_counters_as_deltas is false) and the flush interval's
// histogram (the sink sends intervalStatistics()). It lives only while a
// message is ingested.
type point struct {
	retries, handshakes uint64
	// classes are 1xx..5xx by index; index grpcSlot, which no class uses,
	// sums the series' grpc.failure counters (the inbound side has one per
	// gRPC port), so they are read, reset and remembered with the classes.
	classes   [6]uint64
	has       uint8 // which counters were present
	active    float64
	hist      []float64 // cumulative by bucket, over the proxy's bounds
	histCount float64
}

// grpcSlot is the index of point.classes and last.classes holding failed gRPC calls.
const grpcSlot = 0

const (
	hasRetries uint8 = 1 << iota
	hasHandshakes
	hasClasses
)

// sample is what the store keeps of one series in one flush: the increases
// since the series' previous flush, computed on arrival exactly as Increase
// computes them (a counter that fell is a restart: no increase, a new
// baseline), so a flush costs a few dozen bytes, not a copy of the message.
type sample struct {
	id                  uint16
	classes             [5]uint32 // 1xx..5xx
	retries, handshakes uint32
	// spanMs is the time the class counters were watched over (0 for the
	// first flush of a series and across a restart).
	spanMs    uint32
	active    float32
	histCount uint32
	// hist is flush.hists[histOff:histOff+histLen]: cumulative by bucket,
	// with the trailing buckets that equal histCount left out (latencies
	// rarely reach Envoy's upper buckets); one array per flush, not one
	// allocation per series. With grpcFlag set in histLen, the next value
	// is the series' failed gRPC calls.
	histOff, histLen uint16
}

// grpcFlag marks a sample whose failed gRPC calls follow its buckets in the
// flush's hists: only a gRPC series in a flush with failed calls pays for
// them, the thousands of others keep their size.
const grpcFlag = 1 << 15

// buckets are the sample's histogram buckets in its flush's hists.
func (sm sample) buckets(hists []uint32) []uint32 {
	return hists[sm.histOff : sm.histOff+sm.histLen&^grpcFlag]
}

// grpcFailures is the sample's increase of failed gRPC calls.
func (sm sample) grpcFailures(hists []uint32) uint32 {
	if sm.histLen&grpcFlag == 0 {
		return 0
	}
	return hists[sm.histOff+sm.histLen&^grpcFlag]
}

// last is a series' previous cumulative values, once per series.
type last struct {
	tMs                 int64 // 0: never seen
	retries, handshakes uint64
	classes             [6]uint64 // as point.classes
	has                 uint8
}

type flush struct {
	t       time.Time
	samples []sample
	hists   []uint32
}

type proxyState struct {
	pod, namespace string
	ids            map[seriesKey]uint16
	keys           []seriesKey
	last           []last
	flushes        [Slots]flush
	next, n        int
	bounds         []float64
	lastSeen       time.Time
}

// Store is the embedded path's memory: a rolling window of flushes per
// proxy, fed by the metrics service receiver and read by Query.
type Store struct {
	mu      sync.Mutex
	proxies map[string]*proxyState
	// bounds is shared by every proxy whose histograms use Envoy's default
	// buckets, so most proxies hold no copy.
	bounds []float64
	now    func() time.Time
}

// NewStore makes an empty store; now is the clock (tests fix it).
func NewStore(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{proxies: map[string]*proxyState{}, now: now}
}

// IngestResult says what one message gave and what was left out, so the
// receiver can log garbage without failing the stream.
type IngestResult struct {
	Kept, Unknown, Bad int
	// Problem describes the first bad metric, for the log.
	Problem string
}

// Ingest records one StreamMetricsMessage's metric families for the proxy
// named by nodeID ("<pod>.<namespace>"). Stat names Weft did not ask for are
// counted as Unknown and skipped; malformed values (negative, NaN, histograms
// whose buckets fall) are counted as Bad and skipped: they never reach a
// table.
func (s *Store) Ingest(pod, namespace string, families []*promclient.MetricFamily) IngestResult {
	var res IngestResult
	reject := func(format string, args ...any) {
		res.Bad++
		if res.Problem == "" {
			res.Problem = fmt.Sprintf(format, args...)
		}
	}
	series := map[seriesKey]*point{}
	var bounds []float64
	var ts time.Time
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key, field, ok := classify(f.GetName(), m.GetLabel())
			if !ok {
				res.Unknown++
				continue
			}
			p := series[key]
			if p == nil {
				if len(series) >= MaxSeries {
					reject("more than %d series in one flush; %s dropped", MaxSeries, f.GetName())
					continue
				}
				p = &point{}
				series[key] = p
			}
			if m.TimestampMs != nil && ts.IsZero() {
				ts = time.UnixMilli(m.GetTimestampMs())
			}
			switch {
			case field == "time" && f.GetType() == promclient.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				hb := make([]float64, len(h.GetBucket()))
				hc := make([]float64, len(h.GetBucket()))
				for i, b := range h.GetBucket() {
					hb[i], hc[i] = b.GetUpperBound(), float64(b.GetCumulativeCount())
				}
				hist := Histogram{Bounds: hb, Counts: hc, Count: float64(h.GetSampleCount())}
				if len(hb) > MaxBuckets {
					reject("%s: %d histogram buckets, more than %d", f.GetName(), len(hb), MaxBuckets)
					continue
				}
				if !hist.Valid() || (bounds != nil && !sameBounds(bounds, hb)) {
					reject("%s: histogram buckets are not cumulative or differ from the proxy's others", f.GetName())
					continue
				}
				bounds = hb
				p.hist, p.histCount = hc, hist.Count
			case field == "active" && f.GetType() == promclient.MetricType_GAUGE:
				v := m.GetGauge().GetValue()
				if bad(v) {
					reject("%s: gauge %v", f.GetName(), v)
					continue
				}
				p.active = v
			case f.GetType() == promclient.MetricType_COUNTER:
				v := m.GetCounter().GetValue()
				if bad(v) || v != float64(uint64(v)) {
					reject("%s: counter %v is not a count", f.GetName(), v)
					continue
				}
				switch field {
				case "total":
					// Requests, not responses: rates and success count responses.
				case "retry":
					p.retries, p.has = uint64(v), p.has|hasRetries
				case "handshake":
					p.handshakes, p.has = uint64(v), p.has|hasHandshakes
				case "grpc_failure":
					p.classes[grpcSlot] += uint64(v)
				default: // "1xx".."5xx"
					p.classes[field[0]-'0'], p.has = uint64(v), p.has|hasClasses
				}
			default:
				reject("%s: type %s where Envoy sends another", f.GetName(), f.GetType())
				continue
			}
			res.Kept++
		}
	}
	now := s.now()
	if ts.IsZero() || ts.After(now.Add(time.Minute)) || ts.Before(now.Add(-Retention)) {
		// No timestamp, or a clock too far off to place the flush: the
		// control plane's arrival time is the honest substitute.
		ts = now
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	id := namespace + "/" + pod
	ps := s.proxies[id]
	if ps == nil {
		s.evictLocked(now)
		ps = &proxyState{pod: pod, namespace: namespace}
		s.proxies[id] = ps
	}
	if bounds != nil {
		switch {
		case s.bounds == nil:
			s.bounds = bounds
		case ps.bounds == nil && !sameBounds(s.bounds, bounds):
			ps.bounds = bounds
		}
	}
	ps.lastSeen = now
	if ps.n > 0 && !ts.After(ps.flushes[(ps.next+Slots-1)%Slots].t) {
		// Out of order or repeated: a rate needs increasing time.
		res.Bad += res.Kept
		res.Kept = 0
		if res.Problem == "" {
			res.Problem = "flush timestamp not after the previous one"
		}
		return res
	}
	if len(ps.keys)+len(series) > MaxSeries {
		// The proxy's services changed beyond the bound over its life: start
		// it afresh rather than grow (its rates resume after one flush).
		*ps = proxyState{pod: pod, namespace: namespace, bounds: ps.bounds, lastSeen: now}
	}
	if ps.ids == nil {
		ps.ids = map[seriesKey]uint16{}
	}
	samples := make([]sample, 0, len(series))
	var hists []uint32
	for key, p := range series {
		id, ok := ps.ids[key]
		if !ok {
			id = uint16(len(ps.keys))
			ps.ids[key] = id
			ps.keys = append(ps.keys, key)
			ps.last = append(ps.last, last{})
		}
		var sm sample
		sm, hists = ps.advance(id, ts, p, hists)
		samples = append(samples, sm)
	}
	ps.flushes[ps.next] = flush{t: ts, samples: samples, hists: slices.Clip(hists)}
	ps.next = (ps.next + 1) % Slots
	ps.n = min(ps.n+1, Slots)
	return res
}

// advance turns a series' cumulative values into increases since its
// previous flush and remembers them as the next baseline.
func (ps *proxyState) advance(id uint16, ts time.Time, p *point, hists []uint32) (sample, []uint32) {
	prev := &ps.last[id]
	out := sample{id: id, active: float32(p.active), histCount: uint32(p.histCount)}
	seen := prev.tMs != 0
	var grpcFailures uint32
	// grpc.failure goes with the classes: Envoy creates it at a cluster's
	// first failed call, so its absence from the previous flush of a series
	// that had classes is a zero, not a missing baseline.
	if p.has&hasClasses != 0 && seen && prev.has&hasClasses != 0 {
		reset := false
		for c := range p.classes {
			reset = reset || p.classes[c] < prev.classes[c]
		}
		if !reset {
			for c := 1; c <= 5; c++ {
				out.classes[c-1] = uint32(min(p.classes[c]-prev.classes[c], 1<<32-1))
			}
			grpcFailures = uint32(min(p.classes[grpcSlot]-prev.classes[grpcSlot], 1<<32-1))
			out.spanMs = uint32(ts.UnixMilli() - prev.tMs)
		}
	}
	if p.has&hasRetries != 0 && seen && prev.has&hasRetries != 0 && p.retries >= prev.retries {
		out.retries = uint32(min(p.retries-prev.retries, 1<<32-1))
	}
	if p.has&hasHandshakes != 0 && seen && prev.has&hasHandshakes != 0 && p.handshakes >= prev.handshakes {
		out.handshakes = uint32(min(p.handshakes-prev.handshakes, 1<<32-1))
	}
	if p.histCount > 0 || grpcFailures > 0 {
		n := 0
		if p.histCount > 0 {
			n = len(p.hist)
		}
		for n > 0 && p.hist[n-1] == p.histCount {
			n--
		}
		out.histOff, out.histLen = uint16(len(hists)), uint16(n)
		for i := range n {
			hists = append(hists, uint32(p.hist[i]))
		}
		if grpcFailures > 0 {
			hists = append(hists, grpcFailures)
			out.histLen |= grpcFlag
		}
	}
	*prev = last{tMs: ts.UnixMilli(), retries: p.retries, handshakes: p.handshakes, classes: p.classes, has: p.has}
	return out, hists
}

// evictLocked drops proxies silent for Retention and, at MaxProxies, the
// longest silent one.
func (s *Store) evictLocked(now time.Time) {
	var oldestID string
	var oldest time.Time
	for id, ps := range s.proxies {
		if now.Sub(ps.lastSeen) > Retention {
			delete(s.proxies, id)
			continue
		}
		if oldestID == "" || ps.lastSeen.Before(oldest) {
			oldestID, oldest = id, ps.lastSeen
		}
	}
	if len(s.proxies) >= MaxProxies && oldestID != "" {
		delete(s.proxies, oldestID)
	}
}

// Proxies is the number of proxies remembered.
func (s *Store) Proxies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.proxies)
}

// classify maps a tag-extracted stat name and its labels (emit_tags_as_labels,
// tags from bootstrap.StatTags) to a series and the field it fills. Names:
// Envoy 1.40 docs, configuration/upstream/cluster_manager/cluster_stats.rst
// (cluster.<name>.upstream_rq_total, upstream_rq_<*xx>, upstream_rq_retry,
// upstream_rq_time, ssl.handshake), route_components.proto Route.stat_prefix
// (vhost.<vhost>.route.<prefix>.*, the virtual cluster statistics of
// configuration/http/http_filters/router_filter.rst), and
// configuration/http/http_conn_man/stats.rst (http.<prefix>.downstream_rq_total,
// downstream_rq_<*xx>, downstream_rq_time, downstream_cx_active), and
// configuration/http/http_filters/grpc_stats_filter.rst (cluster.<name>.grpc.failure,
// on the outbound cluster or, for the inbound side, on inbound|<port>).
func classify(name string, labels []*promclient.LabelPair) (seriesKey, string, bool) {
	var cluster, vhost, route, httpPrefix, class string
	for _, l := range labels {
		switch l.GetName() {
		case bootstrap.TagCluster:
			cluster = l.GetValue()
		case bootstrap.TagVirtualHost:
			vhost = l.GetValue()
		case bootstrap.TagRoute:
			route = l.GetValue()
		case bootstrap.TagHTTPPrefix:
			httpPrefix = l.GetValue()
		case bootstrap.TagResponseCodeClass:
			class = l.GetValue()
		}
	}
	var key seriesKey
	var stat string
	switch {
	case name == "cluster.grpc.failure" && strings.HasPrefix(cluster, "inbound|"):
		// The inbound connection manager's route goes to inbound|<port>: the
		// pod as a server, with the inbound HTTP classes.
		return seriesKey{kind: kindInbound}, "grpc_failure", true
	case strings.HasPrefix(name, "cluster.") && strings.HasPrefix(cluster, "outbound|"):
		key, stat = seriesKey{kind: kindOutbound, a: cluster}, strings.TrimPrefix(name, "cluster.")
		switch stat {
		case "ssl.handshake":
			return key, "handshake", true
		case "grpc.failure":
			return key, "grpc_failure", true
		}
	case strings.HasPrefix(name, "vhost.route.") && vhost != "" && route != "":
		key, stat = seriesKey{kind: kindRoute, a: vhost, b: route}, strings.TrimPrefix(name, "vhost.route.")
	case strings.HasPrefix(name, "http.") && httpPrefix == "inbound":
		key, stat = seriesKey{kind: kindInbound}, strings.TrimPrefix(name, "http.")
		switch stat {
		case "downstream_rq_total":
			return key, "total", true
		case "downstream_rq":
			return key, class, validClass(class)
		case "downstream_rq_time":
			return key, "time", true
		case "downstream_cx_active":
			return key, "active", true
		}
		return key, "", false
	default:
		return key, "", false
	}
	switch stat {
	case "upstream_rq_total":
		return key, "total", true
	case "upstream_rq":
		return key, class, validClass(class)
	case "upstream_rq_retry":
		return key, "retry", true
	case "upstream_rq_time":
		return key, "time", true
	}
	return key, "", false
}

func validClass(c string) bool { _, ok := ClassOf(c); return ok }
