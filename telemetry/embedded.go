package telemetry

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Workload is what the mesh model says about one pod, for grouping its
// proxy's numbers and for the MESHED column.
type Workload struct {
	Namespace, Pod string
	// Deployment owns the pod through its ReplicaSet; "" for none.
	Deployment string
	// Services select the pod (same namespace).
	Services []string
	Meshed   bool
	// Identity is the pod's SPIFFE ID; "" when identity is off.
	Identity string
}

// Directory is the mesh model as the embedded path needs it.
type Directory interface {
	Workloads() []Workload
	// ResponseClasses are a profile route's classes for a service's route
	// ("" route for none); nil means Linkerd's default.
	ResponseClasses(namespace, service, route string) []StatusRange
}

// Embedded answers queries from the control plane's Store.
type Embedded struct {
	Store *Store
	Dir   Directory
	// ClusterDomain ends service FQDNs in cluster names; "" is cluster.local.
	ClusterDomain string
}

// agg is one series summed over a window.
type agg struct {
	classes    ClassCounts
	retries    float64
	handshakes float64
	// grpcFailures are failed gRPC calls (ClassCounts.FailuresWithGRPC).
	grpcFailures float64
	// rps is responses per second (summed over proxies, each over the time
	// it was watched); retryRPS the same for retries.
	rps, retryRPS float64
	hist          Histogram
	active        float64
	// partial is set when a histogram could not be added (different buckets).
	partial bool
}

func (a *agg) add(b agg) {
	for i := range a.classes {
		a.classes[i] += b.classes[i]
	}
	a.retries += b.retries
	a.handshakes += b.handshakes
	a.grpcFailures += b.grpcFailures
	a.rps += b.rps
	a.retryRPS += b.retryRPS
	a.active += b.active
	if b.hist.Count > 0 {
		h, ok := a.hist.Add(b.hist)
		if ok {
			a.hist = h
		} else {
			a.partial = true
		}
	}
}

func (a agg) row(ranges []StatusRange) (Row, bool) {
	r := Row{RPS: a.rps, TCPConnections: int(a.active)}
	fails, ok := a.classes.FailuresWithGRPC(ranges, a.grpcFailures)
	if ok {
		r.SuccessRate = SuccessRate(a.classes.Total(), fails)
	}
	if !a.partial {
		r.P50, r.P95, r.P99 = Millis(a.hist.Quantile(0.5)), Millis(a.hist.Quantile(0.95)), Millis(a.hist.Quantile(0.99))
	}
	return r, ok
}

type proxySeries struct {
	w      Workload
	series map[seriesKey]agg
}

// window sums every proxy's series over the last w: the increases of the
// flushes inside it, and their interval histograms.
func (s *Store) window(w time.Duration) map[string]map[seriesKey]agg {
	from := s.now().Add(-w)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[seriesKey]agg{}
	for id, ps := range s.proxies {
		bounds := ps.bounds
		if bounds == nil {
			bounds = s.bounds
		}
		sums := make([]agg, len(ps.keys))
		spans := make([]uint64, len(ps.keys))
		present := make([]bool, len(ps.keys))
		latest := make([]time.Time, len(ps.keys))
		for i := 0; i < ps.n; i++ {
			f := ps.flushes[(ps.next-ps.n+i+Slots)%Slots]
			if f.t.Before(from) {
				continue
			}
			for _, sm := range f.samples {
				a := &sums[sm.id]
				present[sm.id] = true
				for c := range 5 {
					a.classes[c+1] += float64(sm.classes[c])
				}
				a.retries += float64(sm.retries)
				a.handshakes += float64(sm.handshakes)
				a.grpcFailures += float64(sm.grpcFailures(f.hists))
				spans[sm.id] += uint64(sm.spanMs)
				if f.t.After(latest[sm.id]) {
					a.active, latest[sm.id] = float64(sm.active), f.t
				}
				if sm.histCount == 0 {
					continue
				}
				h := Histogram{Bounds: bounds, Counts: make([]float64, len(bounds)), Count: float64(sm.histCount)}
				hist := sm.buckets(f.hists)
				for b := range bounds {
					if b < len(hist) {
						h.Counts[b] = float64(hist[b])
					} else {
						h.Counts[b] = h.Count
					}
				}
				if sum, ok := a.hist.Add(h); ok {
					a.hist = sum
				} else {
					a.partial = true
				}
			}
		}
		series := map[seriesKey]agg{}
		for i, k := range ps.keys {
			if !present[i] {
				continue
			}
			a := sums[i]
			if spans[i] > 0 {
				a.rps = a.classes.Total() / (float64(spans[i]) / 1000)
				a.retryRPS = a.retries / (float64(spans[i]) / 1000)
			}
			series[k] = a
		}
		out[id] = series
	}
	return out
}

// dest is a service named by an outbound cluster or a virtual host.
type dest struct {
	namespace, name string
	port            int
}

func (e *Embedded) domain() string {
	if e.ClusterDomain == "" {
		return "cluster.local"
	}
	return e.ClusterDomain
}

// parseFQDN reads "name.ns.svc.<domain>".
func (e *Embedded) parseFQDN(fqdn string, port int) (dest, bool) {
	rest, ok := strings.CutSuffix(fqdn, ".svc."+e.domain())
	name, ns, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(ns, ".") {
		return dest{}, false
	}
	return dest{namespace: ns, name: name, port: port}, true
}

// destOf reads "outbound|<port>|<fqdn>" or "<fqdn>:<port>".
func (e *Embedded) destOf(k seriesKey) (dest, bool) {
	switch k.kind {
	case kindOutbound:
		parts := strings.SplitN(k.a, "|", 3)
		if len(parts) != 3 {
			return dest{}, false
		}
		port, err := strconv.Atoi(parts[1])
		if err != nil {
			return dest{}, false
		}
		return e.parseFQDN(parts[2], port)
	case kindRoute:
		i := strings.LastIndexByte(k.a, ':')
		if i < 0 {
			return dest{}, false
		}
		port, err := strconv.Atoi(k.a[i+1:])
		if err != nil {
			return dest{}, false
		}
		return e.parseFQDN(k.a[:i], port)
	}
	return dest{}, false
}

// groups names what a workload counts toward for a resource kind.
func groups(resource string, w Workload) []string {
	switch resource {
	case ResourceNamespace:
		return []string{w.Namespace}
	case ResourceDeployment:
		if w.Deployment != "" {
			return []string{w.Deployment}
		}
	case ResourcePod:
		return []string{w.Pod}
	case ResourceService:
		return w.Services
	}
	return nil
}

func matches(t Target, w Workload) bool {
	if t.Resource == ResourceNamespace {
		return w.Namespace == t.Name
	}
	return slices.Contains(groups(t.Resource, w), t.Name)
}

type groupKey struct{ namespace, name string }

// inScope says whether namespace ns is one q asks about.
func (q Query) inScope(ns string) bool {
	return q.AllNamespaces || q.Namespace == "" || ns == q.Namespace
}

// Query answers q from the store.
func (e *Embedded) Query(_ context.Context, q Query) (Table, error) {
	if err := q.Validate(); err != nil {
		return Table{}, err
	}
	from, _ := ParseTarget(q.From)
	to, _ := ParseTarget(q.To)
	workloads := e.Dir.Workloads()
	byID := map[string]Workload{}
	for _, w := range workloads {
		byID[w.Namespace+"/"+w.Pod] = w
	}
	// Pods behind each service, for destinations.
	behind := map[groupKey][]Workload{}
	for _, w := range workloads {
		for _, s := range w.Services {
			k := groupKey{w.Namespace, s}
			behind[k] = append(behind[k], w)
		}
	}
	var proxies []proxySeries
	for id, series := range e.Store.window(q.WindowOrDefault()) {
		w, ok := byID[id]
		if !ok {
			// A proxy the model no longer knows (deleted pod): its numbers
			// cannot be grouped.
			ns, pod, _ := strings.Cut(id, "/")
			w = Workload{Namespace: ns, Pod: pod, Meshed: true}
		}
		proxies = append(proxies, proxySeries{w, series})
	}
	t := Table{Resource: q.Resource}
	switch q.Resource {
	case ResourceRoute:
		return e.routes(q, from, proxies, t)
	case ResourceEdge:
		return e.edges(q, proxies, behind, t)
	}

	sums := map[groupKey]*agg{}
	addTo := func(k groupKey, a agg) {
		if sums[k] == nil {
			sums[k] = &agg{}
		}
		sums[k].add(a)
	}
	skipped := map[string]bool{}
	switch {
	case from.Resource == "" && to.Resource == "":
		// The resource as a server: its inbound side.
		for _, p := range proxies {
			a, ok := p.series[seriesKey{kind: kindInbound}]
			if !ok {
				continue
			}
			for _, g := range groups(q.Resource, p.w) {
				addTo(groupKey{p.w.Namespace, g}, a)
			}
		}
	default:
		// Traffic between resources: the clients' outbound side.
		for _, p := range proxies {
			if from.Resource != "" && !matches(from, p.w) {
				continue
			}
			for k, a := range p.series {
				d, ok := e.destOf(k)
				if k.kind != kindOutbound || !ok {
					continue
				}
				dsts := behind[groupKey{d.namespace, d.name}]
				if to.Resource != "" {
					hit := to.Resource == ResourceService && d.name == to.Name && (q.Namespace == "" || d.namespace == q.Namespace || q.AllNamespaces)
					if to.Resource == ResourceNamespace {
						hit = d.namespace == to.Name
					}
					hit = hit || slices.ContainsFunc(dsts, func(dw Workload) bool { return matches(to, dw) })
					if !hit {
						continue
					}
					for _, g := range groups(q.Resource, p.w) {
						addTo(groupKey{p.w.Namespace, g}, a)
					}
					continue
				}
				// --from: group by destination.
				if q.Resource == ResourceService || q.Resource == ResourceNamespace {
					name := d.name
					if q.Resource == ResourceNamespace {
						name = d.namespace
					}
					addTo(groupKey{d.namespace, name}, a)
					continue
				}
				names := map[string]bool{}
				for _, dw := range dsts {
					for _, g := range groups(q.Resource, dw) {
						names[g] = true
					}
				}
				if len(names) != 1 {
					// Cluster stats do not say which pod or which of several
					// deployments answered: no number rather than a guess.
					skipped[fmt.Sprintf("traffic to svc/%s.%s cannot be split by %s", d.name, d.namespace, q.Resource)] = true
					continue
				}
				for g := range names {
					addTo(groupKey{d.namespace, g}, a)
				}
			}
		}
	}

	// Every group the model knows is a row, traffic or not (Linkerd lists
	// idle deployments with "-"), plus groups seen only in traffic.
	meshed := map[groupKey][2]int{}
	for _, w := range workloads {
		for _, g := range groups(q.Resource, w) {
			k := groupKey{w.Namespace, g}
			m := meshed[k]
			m[1]++
			if w.Meshed {
				m[0]++
			}
			meshed[k] = m
		}
	}
	keys := map[groupKey]bool{}
	for k := range meshed {
		keys[k] = true
	}
	for k := range sums {
		keys[k] = true
	}
	for k := range keys {
		if !q.inScope(k.namespace) || (q.Name != "" && k.name != q.Name) {
			continue
		}
		if (from.Resource != "" || to.Resource != "") && sums[k] == nil {
			continue // with --from/--to only pairs that talk
		}
		a := agg{}
		if sums[k] != nil {
			a = *sums[k]
		}
		r, ok := a.row(nil)
		if !ok {
			skipped[fmt.Sprintf("%s/%s: success cannot be classified from status classes", k.namespace, k.name)] = true
		}
		r.Namespace, r.Name = k.namespace, k.name
		if m, ok := meshed[k]; ok {
			r.Meshed = fmt.Sprintf("%d/%d", m[0], m[1])
		}
		t.Rows = append(t.Rows, r)
	}
	for s := range skipped {
		t.Skipped = append(t.Skipped, s)
	}
	slices.Sort(t.Skipped)
	return t, nil
}

// routes is `weft routes svc/NAME`: every client's per-route stats for the
// service (route stat_prefix), and [DEFAULT] as what the service's cluster
// saw beyond its routes.
func (e *Embedded) routes(q Query, from Target, proxies []proxySeries, t Table) (Table, error) {
	ns := q.Namespace
	if ns == "" {
		ns = "default"
	}
	perRoute := map[string]*agg{}
	var cluster agg
	for _, p := range proxies {
		if from.Resource != "" && !matches(from, p.w) {
			continue
		}
		for k, a := range p.series {
			d, ok := e.destOf(k)
			if !ok || d.name != q.Name || d.namespace != ns {
				continue
			}
			switch k.kind {
			case kindRoute:
				if perRoute[k.b] == nil {
					perRoute[k.b] = &agg{}
				}
				perRoute[k.b].add(a)
			case kindOutbound:
				cluster.add(a)
			}
		}
	}
	// [DEFAULT] = the cluster's requests and retries minus those of the routes.
	def := cluster
	for _, a := range perRoute {
		for i := range def.classes {
			def.classes[i] = max(0, def.classes[i]-a.classes[i])
		}
		def.retries = max(0, def.retries-a.retries)
		def.rps = max(0, def.rps-a.rps)
		def.retryRPS = max(0, def.retryRPS-a.retryRPS)
		if h, ok := def.hist.Sub(a.hist); ok {
			def.hist = h
		} else if a.hist.Count > 0 {
			def.partial = true
		}
	}
	withTraffic := 0
	for _, a := range perRoute {
		if a.classes.Total() > 0 {
			withTraffic++
		}
	}
	unattributed := GRPCFailuresUnattributed(withTraffic, cluster.grpcFailures)
	perRoute[DefaultRoute] = &def
	for name, a := range perRoute {
		var ranges []StatusRange
		if name != DefaultRoute {
			ranges = e.Dir.ResponseClasses(ns, q.Name, name)
		}
		r, ok := a.row(ranges)
		r.Namespace, r.Name, r.Dst = ns, name, q.Name
		fails, _ := a.classes.Failures(ranges)
		effT, effF, actT, actF := EffectiveActual(RouteCounts{Responses: a.classes.Total(), Failures: fails, Retries: a.retries, GRPCFailures: a.grpcFailures})
		switch {
		case unattributed:
			r.SuccessRate = nil
			t.Skipped = append(t.Skipped, fmt.Sprintf("route %q: %s", name, GRPCPerServiceOnly))
		case ok:
			r.ActualSuccess = SuccessRate(actT, actF)
			r.EffectiveSuccess = SuccessRate(effT, effF)
			r.SuccessRate = r.EffectiveSuccess
		default:
			t.Skipped = append(t.Skipped, fmt.Sprintf("route %q: success cannot be classified from status classes", name))
		}
		if actT > 0 {
			r.EffectiveRPS, _, r.ActualRPS, _ = EffectiveActual(RouteCounts{Responses: a.rps, Retries: a.retryRPS})
			r.RPS = r.EffectiveRPS
		}
		t.Rows = append(t.Rows, r)
	}
	return t, nil
}

// edges is `weft edges deploy`: who called whom, from the clients' outbound
// clusters, SECURED from the clusters' TLS handshakes.
func (e *Embedded) edges(q Query, proxies []proxySeries, behind map[groupKey][]Workload, t Table) (Table, error) {
	type edgeKey struct{ srcNS, src, dstNS, dst string }
	type edgeVal struct {
		a                  agg
		clientID, serverID string
	}
	out := map[edgeKey]*edgeVal{}
	for _, p := range proxies {
		if !q.inScope(p.w.Namespace) {
			continue
		}
		srcs := groups(ResourceDeployment, p.w)
		if len(srcs) == 0 {
			srcs = []string{p.w.Pod}
		}
		for k, a := range p.series {
			d, ok := e.destOf(k)
			if k.kind != kindOutbound || !ok || a.classes.Total() == 0 && a.handshakes == 0 {
				continue
			}
			dsts := behind[groupKey{d.namespace, d.name}]
			dstName, serverID := "svc/"+d.name, ""
			names, ids := map[string]bool{}, map[string]bool{}
			for _, dw := range dsts {
				for _, g := range groups(ResourceDeployment, dw) {
					names[g] = true
				}
				ids[dw.Identity] = true
			}
			if len(names) == 1 {
				for n := range names {
					dstName = n
				}
			}
			if len(ids) == 1 {
				for id := range ids {
					serverID = id
				}
			}
			ek := edgeKey{p.w.Namespace, srcs[0], d.namespace, dstName}
			if out[ek] == nil {
				out[ek] = &edgeVal{clientID: p.w.Identity, serverID: serverID}
			}
			out[ek].a.add(a)
		}
	}
	for k, v := range out {
		secured := v.a.handshakes > 0
		t.Rows = append(t.Rows, Row{Namespace: k.srcNS, Src: k.src, Dst: k.dst, DstNamespace: k.dstNS, Name: k.src + "->" + k.dst,
			Secured: &secured, ClientID: v.clientID, ServerID: v.serverID, RPS: v.a.rps})
	}
	return t, nil
}
