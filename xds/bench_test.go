package xds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/proxy"
)

// BenchmarkEndpointFanout measures how fast one endpoint change reaches
// every proxy that subscribes to it.
//
// WEFT_FANOUT_PROXIES (default 1000) simulated proxies run in a child
// process (so CPU and memory figures are the server's alone), each on its
// own connection, each subscribed to CDS (500 clusters, the same pointers
// for every node) and to the EDS of all WEFT_FANOUT_SERVICES (default 500)
// services, over WEFT_FANOUT_PROTOCOL (sotw, default, or delta). One op is
// one SetEndpoints of one CLA followed by the ACK of every proxy.
//
// Reported: p50/p99 of the per-proxy change->ACK latency, the time until
// the last proxy ACKed, server CPU seconds per op, peak RSS, and RSS and
// Go heap per connected proxy. Setup is shared between the benchmark's
// runs; use -benchtime=20x to bound the run:
//
//	go test -run '^$' -bench EndpointFanout -benchtime=20x ./xds/
func BenchmarkEndpointFanout(b *testing.B) {
	f, err := fanoutFixture(b)
	if err != nil {
		b.Fatal(err)
	}
	var latencies []time.Duration
	var allAcked time.Duration
	cpu0 := cpuSeconds()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.round++
		name := serviceCLA(f.round % f.services)
		c := benchCLA(name, f.round, 10000+uint32(f.round%50000))
		lat, err := f.changeAndWait(c)
		if err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, lat...)
		allAcked += slices.Max(lat)
	}
	b.StopTimer()
	cpu := cpuSeconds() - cpu0

	slices.Sort(latencies)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ack-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ack-ms")
	b.ReportMetric(ms(allAcked)/float64(b.N), "all-acked-ms")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(peakRSSKB())/1024, "peak-rss-MB")
	b.ReportMetric(f.rssPerProxyKB, "rss-KB/proxy")
	b.ReportMetric(f.heapPerProxyKB, "heap-KB/proxy")
	b.ReportMetric(float64(f.n), "proxies")
	b.Logf("%d proxies x %d services (%s): connect+initial ACKs %v (server CPU %.1fs), %d cluster hashes for %d nodes; "+
		"per change: p50 %.1fms p99 %.1fms all ACKed %.1fms, CPU %.3fs; peak RSS %.0f MB, %.1f KB RSS and %.1f KB heap per proxy",
		f.n, f.services, f.protocol, f.connectTime.Round(time.Millisecond), f.connectCPU, f.clusterHashes, f.n,
		ms(percentile(latencies, 0.5)), ms(percentile(latencies, 0.99)), ms(allAcked)/float64(b.N), cpu/float64(b.N),
		float64(peakRSSKB())/1024, f.rssPerProxyKB, f.heapPerProxyKB)
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * q)
	return sorted[i]
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// peakRSSKB is ru_maxrss, in KiB on Linux.
func peakRSSKB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss
}

func currentRSSKB() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize()) / 1024
}

func settledMemory() (rssKB int64, heapBytes uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return currentRSSKB(), ms.HeapInuse
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func serviceCLA(i int) string { return fmt.Sprintf("svc-%d.bench-cla", i) }

func benchCLA(name string, seed int, port uint32) *endpointv3.ClusterLoadAssignment {
	c := cla(name, fmt.Sprintf("10.%d.%d.1", (seed/250)%250, seed%250), port, port+1, port+2)
	c.Endpoints[0].LoadBalancingWeight = wrapperspb.UInt32(1)
	return c
}

type fanout struct {
	srv      *Server
	stop     func() error
	child    *exec.Cmd
	stdin    io.WriteCloser
	childOut *bytes.Buffer

	n, services int
	protocol    protocol
	round       int

	connectTime    time.Duration
	connectCPU     float64
	rssPerProxyKB  float64
	heapPerProxyKB float64
	clusterHashes  int

	mu     sync.Mutex
	start  time.Time
	acked  map[string]time.Duration
	done   chan struct{}
	active bool
	// initial counts, per node, the types ACKed while connecting.
	initial    map[string]int
	readyCount int
	ready      chan struct{}
}

var fanoutOnce struct {
	sync.Once
	f   *fanout
	err error
}

func fanoutFixture(b *testing.B) (*fanout, error) {
	fanoutOnce.Do(func() {
		b.StopTimer()
		defer b.StartTimer()
		fanoutOnce.f, fanoutOnce.err = startFanout(
			envInt("WEFT_FANOUT_PROXIES", 1000),
			envInt("WEFT_FANOUT_SERVICES", 500),
			protocol(os.Getenv("WEFT_FANOUT_PROTOCOL")),
		)
	})
	return fanoutOnce.f, fanoutOnce.err
}

// teardownFanout ends the shared benchmark setup; TestMain calls it before
// looking for leaked goroutines.
func teardownFanout() error {
	if fanoutOnce.f == nil {
		return nil
	}
	return fanoutOnce.f.close()
}

func startFanout(n, services int, p protocol) (*fanout, error) {
	if p == "" {
		p = sotw
	}
	if p != sotw && p != delta {
		return nil, fmt.Errorf("WEFT_FANOUT_PROTOCOL %q: want sotw or delta", p)
	}
	f := &fanout{n: n, services: services, protocol: p, initial: map[string]int{}, ready: make(chan struct{})}
	srv, err := New(Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	srv.ackHook = f.ack
	f.srv = srv

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	f.stop = func() error {
		cancel()
		return <-served
	}

	// One cluster per service; every node gets the same pointers, as
	// translate's per-service cache would hand them out.
	clusters := make([]types.Resource, services)
	clas := make(map[string]*endpointv3.ClusterLoadAssignment, services)
	for i := range services {
		clusters[i] = edsCluster(fmt.Sprintf("svc-%d.bench", i), serviceCLA(i))
		clas[serviceCLA(i)] = benchCLA(serviceCLA(i), i, 8080)
	}
	if err := srv.SetEndpoints(context.Background(), clas, time.Time{}); err != nil {
		f.close()
		return nil, err
	}
	rss0, heap0 := settledMemory()
	cpu0 := cpuSeconds()
	start := time.Now()
	computed0 := srv.hashes.computed
	for i := range n {
		res := map[string][]types.Resource{resourcev3.ClusterType: clusters}
		if err := srv.SetNodeResources(context.Background(), fanoutNode(i), proxy.Envoy, res, time.Time{}); err != nil {
			f.close()
			return nil, err
		}
	}
	f.clusterHashes = srv.hashes.computed - computed0

	f.childOut = &bytes.Buffer{}
	child := exec.Command(os.Args[0], "-test.run=^TestFanoutClients$", "-test.count=1")
	child.Env = append(os.Environ(),
		"WEFT_FANOUT_ADDR="+lis.Addr().String(),
		"WEFT_FANOUT_CHILD_PROXIES="+strconv.Itoa(n),
		"WEFT_FANOUT_CHILD_SERVICES="+strconv.Itoa(services),
		"WEFT_FANOUT_CHILD_PROTOCOL="+string(p),
	)
	child.Stdout, child.Stderr = f.childOut, f.childOut
	stdin, err := child.StdinPipe()
	if err != nil {
		f.close()
		return nil, err
	}
	f.stdin = stdin
	if err := child.Start(); err != nil {
		f.close()
		return nil, fmt.Errorf("starting the client process: %w", err)
	}
	f.child = child

	select {
	case <-f.ready:
	case <-time.After(90 * time.Second):
		f.mu.Lock()
		got := f.readyCount
		f.mu.Unlock()
		err := fmt.Errorf("only %d of %d proxies connected and ACKed within 90s; client output:\n%s", got, n, f.childOut.String())
		f.close()
		return nil, err
	}
	f.connectTime = time.Since(start)
	f.connectCPU = cpuSeconds() - cpu0
	rss1, heap1 := settledMemory()
	f.rssPerProxyKB = float64(rss1-rss0) / float64(n)
	f.heapPerProxyKB = (float64(heap1) - float64(heap0)) / 1024 / float64(n)
	return f, nil
}

func fanoutNode(i int) string { return fmt.Sprintf("proxy-%d.bench", i) }

func (f *fanout) ack(nodeID, typeURL string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ready != nil {
		// Connecting: a proxy is ready once it ACKed CDS and EDS.
		f.initial[nodeID]++
		if f.initial[nodeID] == 2 {
			f.readyCount++
			if f.readyCount == f.n {
				close(f.ready)
				f.ready = nil
			}
		}
		return
	}
	if !f.active || typeURL != resourcev3.EndpointType {
		return
	}
	if _, seen := f.acked[nodeID]; seen {
		return
	}
	f.acked[nodeID] = at.Sub(f.start)
	if len(f.acked) == f.n {
		f.active = false
		close(f.done)
	}
}

// changeAndWait sets one CLA and returns every proxy's change->ACK latency.
func (f *fanout) changeAndWait(c *endpointv3.ClusterLoadAssignment) ([]time.Duration, error) {
	f.mu.Lock()
	f.acked = make(map[string]time.Duration, f.n)
	f.done = make(chan struct{})
	f.start = time.Now()
	f.active = true
	done := f.done
	start := f.start
	f.mu.Unlock()

	if err := f.srv.SetEndpoints(context.Background(), map[string]*endpointv3.ClusterLoadAssignment{c.GetClusterName(): c}, start); err != nil {
		return nil, err
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		f.mu.Lock()
		got := len(f.acked)
		f.active = false
		f.mu.Unlock()
		return nil, fmt.Errorf("only %d of %d proxies ACKed the change within 60s", got, f.n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]time.Duration, 0, len(f.acked))
	for _, d := range f.acked {
		out = append(out, d)
	}
	return out, nil
}

func (f *fanout) close() error {
	var errs []error
	if f.stdin != nil {
		f.stdin.Close()
	}
	if f.child != nil {
		if err := f.child.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("client process: %w\n%s", err, f.childOut.String()))
		}
	}
	if f.stop != nil {
		if err := f.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// TestFanoutClients is BenchmarkEndpointFanout's client process, not a
// test: it connects the simulated proxies and ACKs everything until its
// stdin closes.
func TestFanoutClients(t *testing.T) {
	addr := os.Getenv("WEFT_FANOUT_ADDR")
	if addr == "" {
		t.Skip("client process of BenchmarkEndpointFanout")
	}
	n := envInt("WEFT_FANOUT_CHILD_PROXIES", 1)
	services := envInt("WEFT_FANOUT_CHILD_SERVICES", 1)
	p := protocol(os.Getenv("WEFT_FANOUT_CHILD_PROTOCOL"))
	names := make([]string, services)
	for i := range services {
		names[i] = serviceCLA(i)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, n)
	conns := make([]*grpc.ClientConn, 0, n)
	for i := range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runFanoutClient(ctx, conn, fanoutNode(i), names, p); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", fanoutNode(i), err)
			}
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// runFanoutClient behaves like an Envoy that only cares about clusters and
// endpoints: subscribe, ACK every response.
func runFanoutClient(ctx context.Context, conn *grpc.ClientConn, nodeID string, names []string, p protocol) error {
	node := &corev3.Node{Id: nodeID, Cluster: "bench", UserAgentName: "envoy"}
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	if p == delta {
		stream, err := client.DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
			return err
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names}); err != nil {
			return err
		}
		for {
			r, err := stream.Recv()
			if err != nil {
				return err
			}
			if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
				return err
			}
		}
	}
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		return err
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names}); err != nil {
		return err
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			return err
		}
		req := &discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}
		if r.GetTypeUrl() == resourcev3.EndpointType {
			req.ResourceNames = names
		}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
}
