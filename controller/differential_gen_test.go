package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
)

// The generator of the differential test: random but plausible Kubernetes
// objects over a universe small enough that objects collide (two services on
// one cluster IP, two pods on one IP, two splits for one apex, a client
// namespace's profile for another namespace's service).

// chooser is where the generator's decisions come from: a seeded PRNG, or a
// fuzzer's bytes.
type chooser interface {
	// intn returns a number in [0, n); n is at most 256.
	intn(n int) int
	// exhausted reports that a byte source ran dry (a PRNG never does).
	exhausted() bool
}

type seededChooser struct{ r *rand.Rand }

func newSeededChooser(seed uint64) *seededChooser {
	return &seededChooser{rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

func (c *seededChooser) intn(n int) int  { return c.r.IntN(n) }
func (c *seededChooser) exhausted() bool { return false }

// byteChooser reads one byte per decision; once the bytes run out every
// decision is 0 and exhausted says so.
type byteChooser struct {
	b    []byte
	done bool
}

func (c *byteChooser) intn(n int) int {
	if len(c.b) == 0 {
		c.done = true
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % n
}

func (c *byteChooser) exhausted() bool { return c.done }

func pick[T any](c chooser, xs ...T) T { return xs[c.intn(len(xs))] }

func chance(c chooser, percent int) bool { return c.intn(100) < percent }

var (
	diffNamespaces   = []string{"a", "b", "c", "d"}
	diffServiceNames = []string{"api", "web", "db", "rpc"}
	diffPodNames     = []string{"p0", "p1", "p2", "p3"}
	diffClusterIPs   = []string{"10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5"}
	diffPodIPs       = []string{"10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"}
	diffPorts        = []int32{80, 8080, 9090, 5432, 7000}
)

// world is what the informers last delivered: the generator's memory of the
// objects it created, so that edits and endpoint slices stay plausible, and
// so that a store built from scratch can be fed the same objects.
type world struct {
	c chooser
	// objects holds, per "Kind ns/name", how to deliver the object as it
	// is now.
	objects map[string]func(*Store)
	svcs    map[mesh.ServiceKey]*corev1.Service
	pods    map[types.NamespacedName]*corev1.Pod
	// clock makes creation times: claims are decided by age.
	clock int64
}

func newWorld(c chooser) *world {
	return &world{c: c, objects: map[string]func(*Store){}, svcs: map[mesh.ServiceKey]*corev1.Service{}, pods: map[types.NamespacedName]*corev1.Pod{}}
}

// diffOp is one informer event: what it does to a store and what it says in
// a failure message.
type diffOp struct {
	desc  string
	apply func(*Store)
}

func (w *world) set(key, desc string, f func(*Store)) diffOp {
	w.objects[key] = f
	return diffOp{desc: strings.TrimSpace("set " + key + " " + strings.TrimSpace(desc)), apply: f}
}

func (w *world) del(key string, f func(*Store)) diffOp {
	delete(w.objects, key)
	return diffOp{desc: "delete " + key, apply: f}
}

// existing picks the key of an object of kind ("": any kind) that exists,
// if any.
func (w *world) existing(kind string) (string, bool) {
	var keys []string
	for k := range w.objects {
		if kind == "" || strings.HasPrefix(k, kind+" ") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	slices.Sort(keys)
	return pick(w.c, keys...), true
}

// diffKinds are the object kinds the generator makes, with how often each
// is set (created or edited) and deleted, out of 100 events; the rest are
// resyncs.
var diffKinds = []struct {
	kind        string
	set, delete int
	make        func(*world) diffOp
	remove      func(s *Store, ns, name string) bool
}{
	{"Namespace", 5, 2, (*world).namespaceOp, func(s *Store, ns, _ string) bool { return s.DeleteNamespace(ns) }},
	{"Service", 15, 6, (*world).serviceOp, (*Store).DeleteService},
	{"EndpointSlice", 17, 5, (*world).sliceOp, (*Store).DeleteEndpointSlice},
	{"Pod", 17, 6, (*world).podOp, (*Store).DeletePod},
	{"ServiceProfile", 9, 5, (*world).profileOp, (*Store).DeleteServiceProfile},
	{"TrafficSplit", 7, 3, (*world).splitOp, (*Store).DeleteTrafficSplit},
}

// op draws the next event. create makes it a creation or an edit (the first
// step populates the world).
func (w *world) op(create bool) diffOp {
	c := w.c
	sets := 0
	for _, k := range diffKinds {
		sets += k.set
	}
	r := c.intn(100)
	if create {
		r = c.intn(sets)
	}
	for _, k := range diffKinds {
		if r < k.set {
			return k.make(w)
		}
		r -= k.set
	}
	for _, k := range diffKinds {
		if r >= k.delete {
			r -= k.delete
			continue
		}
		key, ok := w.existing(k.kind)
		if !ok {
			return k.make(w)
		}
		ns, name := splitKey(key, k.kind)
		switch k.kind {
		case "Service":
			delete(w.svcs, mesh.ServiceKey{Namespace: ns, Name: name})
		case "Pod":
			delete(w.pods, types.NamespacedName{Namespace: ns, Name: name})
		}
		return w.del(key, func(s *Store) { k.remove(s, ns, name) })
	}
	// A resync: the same object delivered again must change nothing.
	key, ok := w.existing("")
	if !ok {
		return w.serviceOp()
	}
	return diffOp{desc: "resync " + key, apply: w.objects[key]}
}

func splitKey(key, kind string) (ns, name string) {
	ns, name, _ = strings.Cut(strings.TrimPrefix(key, kind+" "), "/")
	return ns, name
}

func (w *world) created() metav1.Time {
	// Ties are common on purpose: claims then go by name.
	if chance(w.c, 50) {
		w.clock++
	}
	return metav1.NewTime(time.Unix(1000+w.clock, 0))
}

func annotate(ann map[string]string, c chooser, percent int, key string, values ...string) {
	if chance(c, percent) {
		ann[key] = pick(c, values...)
	}
}

func describeAnnotations(ann map[string]string) string {
	if len(ann) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		parts = append(parts, k+"="+ann[k])
	}
	return " ann{" + strings.Join(parts, ",") + "}"
}

func (w *world) namespaceOp() diffOp {
	c := w.c
	name := pick(c, diffNamespaces...)
	ann := map[string]string{}
	switch c.intn(6) {
	case 0, 1, 2:
		ann[AnnotationInject] = InjectEnabled
	case 3:
		ann[LinkerdAnnotationInject] = InjectEnabled
	case 4:
		ann[AnnotationInject] = InjectDisabled
	}
	annotate(ann, c, 20, mesh.AnnotationOpaquePorts, "5432", "80,9090", "7000-7100", "bogus")
	annotate(ann, c, 15, mesh.AnnotationSkipOutboundPorts, "5432", "9090", "x")
	annotate(ann, c, 10, mesh.AnnotationSkipInboundPorts, "80", "8080")
	annotate(ann, c, 20, mesh.AnnotationMTLSMode, "strict", "permissive", "bogus")
	ns := testNamespace(name, ann)
	return w.set("Namespace "+name, describeAnnotations(ann), func(s *Store) { s.SetNamespace(ns) })
}

func (w *world) serviceOp() diffOp {
	c := w.c
	ns, name := pick(c, diffNamespaces...), pick(c, diffServiceNames...)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, UID: types.UID("svc-" + ns + "-" + name), Annotations: map[string]string{},
	}}
	var d strings.Builder
	switch r := c.intn(20); {
	case r == 0:
		svc.Spec.Type, svc.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
		d.WriteString("externalName")
	case r < 7:
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		d.WriteString("headless")
	default:
		ip := pick(c, diffClusterIPs...)
		if chance(c, 3) {
			ip = "bogus"
		}
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = ip, []string{ip}
		if chance(c, 10) {
			svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, pick(c, diffClusterIPs...))
		}
		fmt.Fprintf(&d, "ips=%v", svc.Spec.ClusterIPs)
	}
	n := 1 + c.intn(3)
	d.WriteString(" ports[")
	for i := range n {
		sp := corev1.ServicePort{Port: pick(c, diffPorts...), Protocol: corev1.ProtocolTCP}
		sp.Name = pick(c, "http", "grpc-api", "tcp-db", "", "web", "h2c")
		if n > 1 && chance(c, 95) && slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == sp.Name }) {
			sp.Name = fmt.Sprintf("p%d", i)
		}
		if chance(c, 4) {
			sp.Protocol = corev1.ProtocolUDP
		}
		switch c.intn(4) {
		case 0:
			sp.TargetPort = intstr.FromInt32(sp.Port)
		case 1:
			sp.TargetPort = intstr.FromInt32(sp.Port + 1)
		case 2:
			sp.TargetPort = intstr.FromString("web")
		}
		if chance(c, 30) {
			ap := pick(c, "grpc", "kubernetes.io/h2c", "http", "tcp", "unknown")
			sp.AppProtocol = &ap
		}
		svc.Spec.Ports = append(svc.Spec.Ports, sp)
		if i > 0 {
			d.WriteByte(' ')
		}
		fmt.Fprintf(&d, "%d/%s->%s", sp.Port, sp.Name, sp.TargetPort.String())
		if sp.Protocol != corev1.ProtocolTCP {
			d.WriteString("/udp")
		}
		if sp.AppProtocol != nil {
			d.WriteString(" ap=" + *sp.AppProtocol)
		}
	}
	d.WriteByte(']')
	annotate(svc.Annotations, c, 20, mesh.AnnotationOpaquePorts, "5432", "9090", "7000", "web", "bogus")
	d.WriteString(describeAnnotations(svc.Annotations))
	w.svcs[mesh.ServiceKey{Namespace: ns, Name: name}] = svc
	return w.set("Service "+ns+"/"+name, d.String(), func(s *Store) { s.SetService(svc) })
}

func boolPtr(c chooser, pTrue, pFalse int) *bool {
	r := c.intn(100)
	switch {
	case r < pTrue:
		v := true
		return &v
	case r < pTrue+pFalse:
		v := false
		return &v
	}
	return nil
}

func (w *world) sliceOp() diffOp {
	c := w.c
	ns, svcName := pick(c, diffNamespaces...), pick(c, diffServiceNames...)
	name := svcName + "-" + pick(c, "0", "1")
	label := svcName
	if chance(c, 5) {
		label = pick(c, diffServiceNames...)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: label}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	var d strings.Builder
	fmt.Fprintf(&d, "service=%s", label)
	if chance(c, 3) {
		es.AddressType = discoveryv1.AddressTypeFQDN
		d.WriteString(" fqdn")
	}
	tcp := corev1.ProtocolTCP
	// Ports mostly follow the service's as the informer last had it.
	var svcPorts []corev1.ServicePort
	if svc := w.svcs[mesh.ServiceKey{Namespace: ns, Name: label}]; svc != nil {
		svcPorts = svc.Spec.Ports
	}
	d.WriteString(" ports[")
	for _, sp := range svcPorts {
		if !chance(c, 85) {
			continue
		}
		pname, port := sp.Name, sp.TargetPort.IntVal
		if port == 0 || chance(c, 20) {
			port = pick(c, diffPorts...)
		}
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &pname, Port: &port, Protocol: &tcp})
		fmt.Fprintf(&d, " %s:%d", pname, port)
	}
	if len(svcPorts) == 0 || chance(c, 10) {
		pname, port := pick(c, "http", "grpc-api", "", "web"), pick(c, diffPorts...)
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &pname, Port: &port, Protocol: &tcp})
		fmt.Fprintf(&d, " %s:%d", pname, port)
	}
	d.WriteString(" ] eps[")
	for range c.intn(4) {
		podName, podNS := pick(c, diffPodNames...), ns
		if chance(c, 5) {
			podNS = pick(c, diffNamespaces...) // a target in another namespace
		}
		addr := pick(c, diffPodIPs...)
		if pod := w.pods[types.NamespacedName{Namespace: podNS, Name: podName}]; pod != nil && chance(c, 85) {
			addr = pod.Status.PodIP
		}
		ep := discoveryv1.Endpoint{
			Addresses: []string{addr},
			Conditions: discoveryv1.EndpointConditions{
				Ready: boolPtr(c, 60, 30), Serving: boolPtr(c, 60, 20), Terminating: boolPtr(c, 20, 40),
			},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: podNS, Name: podName},
		}
		if chance(c, 40) {
			z := pick(c, "z1", "z2")
			ep.Zone = &z
		}
		es.Endpoints = append(es.Endpoints, ep)
		fmt.Fprintf(&d, " %s/%s@%s ready=%s serving=%s term=%s", podNS, podName, addr, fmtBool(ep.Conditions.Ready), fmtBool(ep.Conditions.Serving), fmtBool(ep.Conditions.Terminating))
	}
	d.WriteString(" ]")
	return w.set("EndpointSlice "+ns+"/"+name, d.String(), func(s *Store) { s.SetEndpointSlice(es) })
}

func fmtBool(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}

func (w *world) podOp() diffOp {
	c := w.c
	ns, name := pick(c, diffNamespaces...), pick(c, diffPodNames...)
	ann := map[string]string{}
	switch c.intn(10) {
	case 0, 1, 2, 3:
		ann[AnnotationInject] = InjectEnabled
	case 4:
		ann[AnnotationInject] = InjectDisabled
	}
	annotate(ann, c, 20, mesh.AnnotationProxyKind, mesh.ProxyKindValueGRPC, mesh.ProxyKindValueGRPC, mesh.ProxyKindValueSidecar, "bogus")
	annotate(ann, c, 15, mesh.AnnotationOpaquePorts, "5432", "web", "8080", "bogus")
	annotate(ann, c, 10, mesh.AnnotationSkipOutboundPorts, "5432", "80,9090")
	annotate(ann, c, 10, mesh.AnnotationSkipInboundPorts, "80", "9090")
	annotate(ann, c, 15, mesh.AnnotationMTLSMode, "strict", "permissive", "bogus")
	var ports []int32
	for _, p := range []int32{80, 8080, 9090, 5432, 4143} {
		if chance(c, 30) {
			ports = append(ports, p)
		}
	}
	ip := pick(c, diffPodIPs...)
	pod := testPod(ns, name, ip, pick(c, "default", "sa1", ""), ann, ports...)
	if len(pod.Spec.Containers[0].Ports) > 0 && chance(c, 50) {
		pod.Spec.Containers[0].Ports[0].Name = "web"
	}
	if chance(c, 5) {
		pod.Status.Phase = corev1.PodSucceeded
	}
	desc := fmt.Sprintf("ip=%s sa=%s ports=%v phase=%s%s", ip, pod.Spec.ServiceAccountName, ports, pod.Status.Phase, describeAnnotations(ann))
	w.pods[types.NamespacedName{Namespace: ns, Name: name}] = pod
	return w.set("Pod "+ns+"/"+name, desc, func(s *Store) { s.SetPod(pod) })
}

func (w *world) serviceFQDN(ns string) (string, mesh.ServiceKey) {
	c := w.c
	target := mesh.ServiceKey{Namespace: ns, Name: pick(c, diffServiceNames...)}
	if chance(c, 35) {
		target.Namespace = pick(c, diffNamespaces...)
	}
	return target.FQDN("cluster.local"), target
}

func (w *world) requestMatch(depth int) *profiles.RequestMatch {
	c := w.c
	m := &profiles.RequestMatch{
		PathRegex: pick(c, "/api/.*", "/users/[0-9]+", "/x", "", "/v[0-9]/.*"),
		Method:    pick(c, "", "GET", "POST"),
	}
	switch {
	case chance(c, 4):
		m.PathRegex = "(" // invalid
	case chance(c, 4):
		// Within the size limit as written, not as translate emits it
		// under a not (widened for the :path header): a profile that
		// validates and still fails to translate.
		m.PathRegex = pick(c, "/[a-z]{0,45}", "/[a-z]{0,46}")
		if chance(c, 50) {
			return &profiles.RequestMatch{Method: "GET", Not: m}
		}
	case m.PathRegex == "" && m.Method == "" && chance(c, 80):
		m.Method = "GET" // mostly valid: an empty match is invalid
	}
	if depth < 2 && chance(c, 10) {
		m.Any = []*profiles.RequestMatch{w.requestMatch(depth + 1), w.requestMatch(depth + 1)}
	}
	if depth < 2 && chance(c, 5) {
		m.Not = w.requestMatch(depth + 1)
	}
	return m
}

func (w *world) profileOp() diffOp {
	c := w.c
	ns := pick(c, diffNamespaces...)
	name, _ := w.serviceFQDN(ns)
	if chance(c, 3) {
		name = "not-a-service-name"
	}
	key := "ServiceProfile " + ns + "/" + name
	uid := types.UID("sp-" + ns + "-" + name)
	if chance(c, 3) {
		return w.set(key, "undecodable", func(s *Store) {
			s.SetServiceProfileUndecodable(ns, name, uid, fmt.Errorf("decoding ServiceProfile %s/%s: bad json", ns, name))
		})
	}
	sp := &profiles.ServiceProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: profiles.ServiceProfileGroupVersion.String(), Kind: "ServiceProfile"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid, CreationTimestamp: w.created()},
	}
	var d strings.Builder
	d.WriteString("routes[")
	for i := range c.intn(4) {
		r := &profiles.RouteSpec{
			Name:        fmt.Sprintf("r%d", i),
			Condition:   w.requestMatch(0),
			Timeout:     pick(c, "", "", "1s", "300ms"),
			IsRetryable: chance(c, 30),
		}
		if chance(c, 3) {
			r.Timeout = "bogus"
		}
		if chance(c, 30) {
			r.ResponseClasses = []*profiles.ResponseClass{{
				Condition: &profiles.ResponseMatch{Status: &profiles.Range{Min: 500, Max: uint32(pick(c, 599, 503))}},
				IsFailure: chance(c, 80),
			}}
		}
		sp.Spec.Routes = append(sp.Spec.Routes, r)
		fmt.Fprintf(&d, " %s:%s/%s/%s timeout=%q retry=%v", r.Name, r.Condition.Method, r.Condition.PathRegex, describeMatch(r.Condition), r.Timeout, r.IsRetryable)
	}
	d.WriteString(" ]")
	if chance(c, 20) {
		sp.Spec.RetryBudget = &profiles.RetryBudget{RetryRatio: pick[float32](c, 0.2, 0.5), MinRetriesPerSecond: uint32(pick(c, 5, 10)), TTL: pick(c, "10s", "5s")}
		fmt.Fprintf(&d, " budget=%v", *sp.Spec.RetryBudget)
	}
	if chance(c, 25) {
		for range 1 + c.intn(2) {
			authority, _ := w.serviceFQDN(ns)
			if chance(c, 30) {
				authority += fmt.Sprintf(":%d", pick(c, diffPorts...))
			}
			sp.Spec.DstOverrides = append(sp.Spec.DstOverrides, &profiles.WeightedDst{Authority: authority, Weight: resource.MustParse(pick(c, "1", "500m", "0", "100"))})
			fmt.Fprintf(&d, " dst=%s*%s", authority, sp.Spec.DstOverrides[len(sp.Spec.DstOverrides)-1].Weight.String())
		}
	}
	if chance(c, 15) {
		sp.Spec.OpaquePorts = map[uint32]struct{}{uint32(pick(c, diffPorts...)): {}}
		fmt.Fprintf(&d, " opaque=%v", slices.Collect(maps.Keys(sp.Spec.OpaquePorts)))
	}
	fmt.Fprintf(&d, " created=%d", sp.CreationTimestamp.Unix())
	return w.set(key, d.String(), func(s *Store) { s.SetServiceProfile(sp) })
}

// serviceIn names a service of ns, mostly one that exists: a split naming a
// missing service is invalid, and invalid splits alone would test little.
func (w *world) serviceIn(ns string) string {
	var names []string
	for k := range w.svcs {
		if k.Namespace == ns {
			names = append(names, k.Name)
		}
	}
	if len(names) == 0 || chance(w.c, 15) {
		return pick(w.c, diffServiceNames...)
	}
	slices.Sort(names)
	return pick(w.c, names...)
}

func describeMatch(m *profiles.RequestMatch) string {
	var parts []string
	for _, a := range m.Any {
		parts = append(parts, "any("+a.Method+" "+a.PathRegex+")")
	}
	if m.Not != nil {
		parts = append(parts, "not("+m.Not.Method+" "+m.Not.PathRegex+")")
	}
	return strings.Join(parts, ",")
}

func (w *world) splitOp() diffOp {
	c := w.c
	ns, name := pick(c, diffNamespaces...), pick(c, "ts0", "ts1", "ts2")
	key := "TrafficSplit " + ns + "/" + name
	if chance(c, 3) {
		return w.set(key, "undecodable", func(s *Store) {
			s.SetTrafficSplitUndecodable(profiles.TrafficSplitV1alpha2.String(), ns, name, types.UID("ts-"+ns+"-"+name), fmt.Errorf("decoding TrafficSplit %s/%s: bad json", ns, name))
		})
	}
	ts := &profiles.TrafficSplit{
		Version:    pick(c, profiles.TrafficSplitV1alpha2, profiles.TrafficSplitV1alpha1),
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("ts-" + ns + "-" + name), CreationTimestamp: w.created()},
		Service:    w.serviceIn(ns),
	}
	for range 1 + c.intn(3) {
		b := profiles.SplitBackend{Service: w.serviceIn(ns), Weight: int64(pick(c, 0, 1, 50, 100, 500))}
		if chance(c, 90) && slices.ContainsFunc(ts.Backends, func(o profiles.SplitBackend) bool { return o.Service == b.Service }) {
			continue // mostly valid: a backend named twice is invalid
		}
		ts.Backends = append(ts.Backends, b)
	}
	desc := fmt.Sprintf("apex=%s backends=%v created=%d", ts.Service, ts.Backends, ts.CreationTimestamp.Unix())
	return w.set(key, desc, func(s *Store) { s.SetTrafficSplit(ts) })
}
