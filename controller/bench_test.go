package controller

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds"
	"github.com/weftmesh/weft/xds/adsclient"
)

// The end-to-end benchmark: the model is fed straight into the store (not
// through an apiserver: informer latency is not measured, and 1,000 pods
// through kwok on two cores would measure kwok), then the real pipeline
// (store -> index -> debounce -> translate -> xds) serves N simulated ADS
// clients running in a child process, so the control plane's CPU and RSS
// are its own. Each iteration changes one EndpointSlice and measures, per
// client, the time from the store seeing the change to the client sending
// the ACK of the EDS response carrying it; the figure that matters is the
// per-change one, until the last client ACKed.
//
//	go test ./controller -run '^$' -bench EndToEnd -benchtime 1x -short
//
// WEFT_BENCH_PROXIES / WEFT_BENCH_SERVICES override 1,000 / 500;
// WEFT_BENCH_PROFILE_DIR writes profiles of the connected heap, of the
// connect storm and of the changes (see benchprof_test.go).

func benchInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchNodeID(i, namespaces int) string { return fmt.Sprintf("p-%d.ns-%d", i, i%namespaces) }

// benchSlice lists n endpoints of service j: its two pods, then extra IPs.
func benchSlice(j, namespaces, proxies, n int) *discoveryv1.EndpointSlice {
	ns := fmt.Sprintf("ns-%d", j%namespaces)
	port, portName, proto := int32(8080), "http", corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("svc-%d-x", j), Labels: map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("svc-%d", j)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}
	for k := range n {
		ready := true
		ep := discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
		if pod := j + k*proxies/2; k < 2 && pod < proxies {
			ep.Addresses = []string{benchPodIP(pod)}
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("p-%d", pod)}
		} else {
			ep.Addresses = []string{fmt.Sprintf("10.201.%d.%d", k/250, k%250+1)}
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	return es
}

func benchPodIP(i int) string { return fmt.Sprintf("10.200.%d.%d", i/250, i%250+1) }

func feedBench(s *Store, services, proxies, namespaces int) {
	for k := range namespaces {
		s.SetNamespace(testNamespace(fmt.Sprintf("ns-%d", k), meshedNS))
	}
	for j := range services {
		ns := fmt.Sprintf("ns-%d", j%namespaces)
		ip := fmt.Sprintf("10.96.%d.%d", j/250, j%250+1)
		s.SetService(&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("svc-%d", j), UID: types.UID(fmt.Sprint("svc-", j))},
			Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Ports: []corev1.ServicePort{
				{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)},
			}},
		})
		s.SetEndpointSlice(benchSlice(j, namespaces, proxies, 2))
	}
	for i := range proxies {
		s.SetPod(testPod(fmt.Sprintf("ns-%d", i%namespaces), fmt.Sprintf("p-%d", i), benchPodIP(i), "sa", nil, 8080))
	}
}

type usage struct {
	cpu    time.Duration
	maxRSS int64 // bytes
}

func rusage(who int) usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return usage{
		cpu:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		maxRSS: ru.Maxrss * 1024,
	}
}

// currentRSS reads VmRSS after a GC, so the figure is live memory plus
// what the runtime keeps, not garbage.
func currentRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// percentile is the nearest-rank percentile: with 10 samples, p99 is the
// largest, not the ninth (a p99 below the max of 10 changes would flatter).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func BenchmarkEndToEndEndpointChange(b *testing.B) {
	services := benchInt("WEFT_BENCH_SERVICES", 500)
	proxies := benchInt("WEFT_BENCH_PROXIES", 1000)
	const namespaces, iterations = 10, 10

	rssBase := currentRSS()
	start := time.Now()
	h := newHarness(b, 100*time.Millisecond) // production debounce: 100ms quiet, 1s cap; endpoint-only bursts 10ms, 100ms cap
	feedBench(h.store, services, proxies, namespaces)
	waitUntil(b, time.Minute, "the model published", func() bool { return len(h.store.Published().Proxies) == proxies })
	rssModel := currentRSS()
	fmt.Printf("model: %d services, %d proxies in %d namespaces fed and published in %v; RSS %s (+%s over the empty process)\n",
		services, proxies, namespaces, time.Since(start).Round(time.Millisecond), mib(rssModel), mib(rssModel-rssBase))

	nodes := make([]string, proxies)
	for i := range nodes {
		nodes[i] = benchNodeID(i, namespaces)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchFleet$", "-test.short")
	cmd.Env = append(os.Environ(), "WEFT_BENCH_FLEET="+h.addr, "WEFT_BENCH_NODES="+strings.Join(nodes, ","))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	lines := make(chan string, 4*proxies)
	connectStart := time.Now()
	stopProfile := cpuProfile(b, "connect")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	defer func() {
		fmt.Fprintln(stdin, "quit")
		stdin.Close()
		_ = cmd.Wait()
	}()
	expect := func(prefix string, n int, timeout time.Duration) []string {
		var got []string
		deadline := time.After(timeout)
		for len(got) < n {
			select {
			case l, ok := <-lines:
				if !ok {
					b.Fatalf("the fleet exited after %d of %d %q lines", len(got), n, prefix)
				}
				if strings.HasPrefix(l, prefix) {
					got = append(got, l)
				}
			case <-deadline:
				b.Fatalf("%d of %d %q lines after %v", len(got), n, prefix, timeout)
			}
		}
		return got
	}
	expect("ready", proxies, 5*time.Minute)
	connectTook := time.Since(connectStart)
	stopProfile()
	rssConnected := currentRSS()
	heapProfile(b, "connected")
	fmt.Printf("connect: %d clients complete (LDS, CDS, every RDS and EDS ACKed) in %v; RSS %s, +%s for the proxies = %s per connected proxy\n",
		proxies, connectTook.Round(time.Millisecond), mib(rssConnected), mib(rssConnected-rssModel),
		fmt.Sprintf("%.1f KiB", float64(rssConnected-rssModel)/float64(proxies)/1024))

	target := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "ns-0", Name: "svc-0"}, 8080, "cluster.local")
	before := rusage(syscall.RUSAGE_SELF)
	// perProxy has one sample per client and change; lastAck one per
	// change: when the last client ACKed it, which is when the change is
	// in force everywhere.
	var perProxy, lastAck []time.Duration
	b.ResetTimer()
	stopProfile = cpuProfile(b, "changes")
	for it := range iterations {
		n := 3 + it
		fmt.Fprintf(stdin, "watch %d %s %d\n", it+1, target, n)
		time.Sleep(20 * time.Millisecond) // let the fleet read the watch before the change
		t0 := time.Now()
		h.store.SetEndpointSlice(benchSlice(0, namespaces, proxies, n))
		var last time.Duration
		for _, l := range expect(fmt.Sprintf("ack %d ", it+1), proxies, time.Minute) {
			f := strings.Fields(l)
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			d := time.Unix(0, ns).Sub(t0)
			perProxy = append(perProxy, d)
			last = max(last, d)
		}
		lastAck = append(lastAck, last)
	}
	b.StopTimer()
	stopProfile()
	after := rusage(syscall.RUSAGE_SELF)
	slices.Sort(perProxy)
	slices.Sort(lastAck)
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	fmt.Printf("endpoint change -> ACK by the last of %d subscribed clients, over %d changes: p50 %v, p99 %v, max %v (includes the 10ms endpoint debounce)\n",
		proxies, iterations, ms(percentile(lastAck, 0.50)), ms(percentile(lastAck, 0.99)), ms(lastAck[len(lastAck)-1]))
	fmt.Printf("endpoint change -> ACK by one client, over %d client ACKs: p50 %v, p99 %v, max %v\n",
		len(perProxy), ms(percentile(perProxy, 0.50)), ms(percentile(perProxy, 0.99)), ms(perProxy[len(perProxy)-1]))
	fmt.Printf("control plane CPU: %.2fs for the %d changes (%.0f ms per change), %.2fs in total; peak RSS %s\n",
		(after.cpu - before.cpu).Seconds(), iterations, float64((after.cpu-before.cpu).Milliseconds())/iterations,
		after.cpu.Seconds(), mib(after.maxRSS))
	// p50-ms and p99-ms keep their names (per client ACK) so that figures
	// compare with earlier runs.
	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(msf(percentile(lastAck, 0.50)), "last-ack-p50-ms")
	b.ReportMetric(msf(percentile(lastAck, 0.99)), "last-ack-p99-ms")
	b.ReportMetric(msf(lastAck[len(lastAck)-1]), "last-ack-max-ms")
	b.ReportMetric(msf(percentile(perProxy, 0.50)), "p50-ms")
	b.ReportMetric(msf(percentile(perProxy, 0.99)), "p99-ms")
	b.ReportMetric((after.cpu-before.cpu).Seconds()/iterations, "cpu-s/change")
	b.ReportMetric(float64(after.maxRSS)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(float64(rssConnected-rssModel)/float64(proxies)/1024, "rss-KiB/proxy")
}

// --- the fleet: runs in the child process ---

type benchWatch struct {
	gen     int
	cluster string
	count   int
}

// TestBenchFleet is the client side of BenchmarkEndToEndEndpointChange; it
// does nothing unless that benchmark started it.
func TestBenchFleet(t *testing.T) {
	addr := os.Getenv("WEFT_BENCH_FLEET")
	if addr == "" {
		t.Skip("started only by BenchmarkEndToEndEndpointChange")
	}
	nodes := strings.Split(os.Getenv("WEFT_BENCH_NODES"), ",")
	f := &fleet{out: bufio.NewWriter(os.Stdout)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Go(func() {
			if err := f.run(ctx, addr, i, node); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "fleet client %s: %v\n", node, err)
			}
		})
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 4 && fs[0] == "watch" {
			gen, _ := strconv.Atoi(fs[1])
			count, _ := strconv.Atoi(fs[3])
			f.watch.Store(&benchWatch{gen: gen, cluster: fs[2], count: count})
			continue
		}
		break
	}
	cancel()
	wg.Wait()
	f.flush()
}

type fleet struct {
	watch atomic.Pointer[benchWatch]
	// decoded maps "<type>/<version>" to the names that response makes a
	// client subscribe to: proxies of one namespace share versions, so
	// listeners and clusters are decoded once per version, not per client.
	decoded sync.Map
	outMu   sync.Mutex
	out     *bufio.Writer
}

func (f *fleet) print(format string, args ...any) {
	f.outMu.Lock()
	fmt.Fprintf(f.out, format, args...)
	f.out.Flush()
	f.outMu.Unlock()
}

func (f *fleet) flush() {
	f.outMu.Lock()
	f.out.Flush()
	f.outMu.Unlock()
}

func (f *fleet) names(resp *discoveryv3.DiscoveryResponse) []string {
	key := resp.GetTypeUrl() + "/" + resp.GetVersionInfo()
	if v, ok := f.decoded.Load(key); ok {
		return v.([]string)
	}
	var out []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		out = append(out, adsclient.Subscriptions(m)...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	f.decoded.Store(key, out)
	return out
}

func (f *fleet) run(ctx context.Context, addr string, idx int, node string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	n := &corev3.Node{Id: node, Cluster: "bench", UserAgentName: "envoy"}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ListenerType}); err != nil {
		return err
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType}); err != nil {
		return err
	}
	subs := map[string][]string{}
	versions := map[string]string{}
	nonces := map[string]string{}
	ready, reported := false, 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		t := resp.GetTypeUrl()
		versions[t], nonces[t] = resp.GetVersionInfo(), resp.GetNonce()
		var follow *discoveryv3.DiscoveryRequest
		switch t {
		case resourcev3.ListenerType, resourcev3.ClusterType:
			sub := resourcev3.RouteType
			if t == resourcev3.ClusterType {
				sub = resourcev3.EndpointType
			}
			if names := f.names(resp); !slices.Equal(names, subs[sub]) {
				subs[sub] = names
				follow = &discoveryv3.DiscoveryRequest{TypeUrl: sub, VersionInfo: versions[sub], ResponseNonce: nonces[sub], ResourceNames: names}
			}
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: subs[t]}
		var hit *benchWatch
		if t == resourcev3.EndpointType {
			if w := f.watch.Load(); w != nil && w.gen > reported {
				for _, a := range resp.GetResources() {
					if xds.ResourceName(a.GetValue()) != w.cluster {
						continue
					}
					var cla endpointv3.ClusterLoadAssignment
					if proto.Unmarshal(a.GetValue(), &cla) == nil && len(claAddresses(&cla)) == w.count {
						hit = w
					}
				}
			}
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
		if hit != nil {
			reported = hit.gen
			f.print("ack %d %d %d\n", hit.gen, idx, time.Now().UnixNano())
		}
		if follow != nil {
			if err := stream.Send(follow); err != nil {
				return err
			}
		}
		if !ready && t == resourcev3.EndpointType && len(subs[t]) > 0 && len(resp.GetResources()) == len(subs[t]) && len(subs[resourcev3.RouteType]) > 0 {
			ready = true
			f.print("ready %d\n", idx)
		}
	}
}
