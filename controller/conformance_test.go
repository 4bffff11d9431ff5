package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/testenv/netns"
	"github.com/weftmesh/weft/translate"
)

// backend is a gRPC test server standing in for one pod. The test flips
// its behaviour: slow EmptyCalls, UNAVAILABLE on every other UnaryCall.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	pod        string
	calls      atomic.Int64
	failures   atomic.Int64
	flaky      atomic.Bool
	emptyDelay atomic.Int64 // nanoseconds
}

func (b *backend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	n := b.calls.Add(1)
	if b.flaky.Load() && n%2 == 1 {
		b.failures.Add(1)
		return nil, status.Errorf(codes.Unavailable, "%s: flaky", b.pod)
	}
	return &testgrpc.SimpleResponse{ServerId: b.pod, Hostname: b.pod}, nil
}

// budgetHeader carries, on EmptyCall's response, the time the server had
// left when the call arrived ("none" without a deadline). grpc-go turns the
// route's max_stream_duration into the call's deadline, so this tells which
// route table a call went through: the profile's route (300ms) or the
// default one (only the client's own deadline).
const budgetHeader = "x-deadline-budget"

func (b *backend) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	budget := "none"
	if d, ok := ctx.Deadline(); ok {
		budget = time.Until(d).String()
	}
	if err := grpc.SetHeader(ctx, metadata.Pairs(budgetHeader, budget)); err != nil {
		return nil, err
	}
	select {
	case <-time.After(time.Duration(b.emptyDelay.Load())):
		return &testgrpc.Empty{}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (b *backend) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

const conformanceApp = `
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  annotations: {weft.io/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: emoji-v1, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: emoji, version: v1}}
  template:
    metadata: {labels: {app: emoji, version: v1}}
    spec:
      containers:
      - {name: emoji, image: example.invalid/emoji:1, ports: [{name: grpc, containerPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: emoji-v2, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: emoji, version: v2}}
  template:
    metadata: {labels: {app: emoji, version: v2}}
    spec:
      containers:
      - {name: emoji, image: example.invalid/emoji:2, ports: [{name: grpc, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: emoji, namespace: demo}
spec:
  selector: {app: emoji}
  ports: [{name: grpc, port: 8080, targetPort: 8080, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: emoji-v1, namespace: demo}
spec:
  selector: {app: emoji, version: v1}
  ports: [{name: grpc, port: 8080, targetPort: 8080, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: emoji-v2, namespace: demo}
spec:
  selector: {app: emoji, version: v2}
  ports: [{name: grpc, port: 8080, targetPort: 8080, appProtocol: grpc}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: demo
  annotations: {weft.io/proxy: grpc}
spec:
  containers:
  - {name: client, image: example.invalid/client:1}
`

const conformanceSplit = `
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: emoji-canary, namespace: demo}
spec:
  service: emoji
  backends:
  - {service: emoji-v1, weight: 80}
  - {service: emoji-v2, weight: 20}
`

const conformanceProfile = `
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: emoji.demo.svc.cluster.local, namespace: demo}
spec:
  routes:
  - name: empty
    condition: {method: POST, pathRegex: '/grpc\.testing\.TestService/EmptyCall'}
    timeout: 300ms
  - name: unary
    condition: {method: POST, pathRegex: '/grpc\.testing\.TestService/UnaryCall'}
    isRetryable: true
`

func withXDSAddr(addr string) cfgOption {
	return func(c *Config) {
		c.XDSListener.Close()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			panic(fmt.Sprintf("re-listening on %s: %v", addr, err))
		}
		c.XDSListener = l
	}
}

// acked waits until the node has ACKed the version of every per-node type
// the server holds for it, and returns those versions.
func acked(t *testing.T, rc *runningController, node string) map[string]string {
	t.Helper()
	var versions map[string]string
	waitUntil(t, 30*time.Second, node+" to ACK its config", func() bool {
		p, ok := rc.XDS().Proxy(node)
		if !ok {
			return false
		}
		versions = map[string]string{}
		for _, typ := range []string{"lds", "rds", "cds"} {
			ts, ok := p.Types[typ]
			if !ok || ts.VersionSet == "" || ts.VersionAcked != ts.VersionSet {
				return false
			}
			versions[typ] = ts.VersionAcked
		}
		return true
	})
	return versions
}

// maxRouteSwapFailures caps how often the known grpc-go race may show in one
// settling window. The window is between two steps of one goroutine in the
// client, so it holds a handful of calls at most; polling every 20ms, 20
// failures would mean the client sat in it for 400ms or more, which is no
// longer that race.
const maxRouteSwapFailures = 20

// routeSwapRace says whether err is the one failure grpc-go is known to
// produce while it applies a route table it has just ACKed: it swaps in the
// new routes (the config selector) before its cluster manager has a child
// for a cluster they name for the first time (clientconn.go:
// applyServiceConfigAndBalancer runs before updateClientConnState), so a
// call routed there in between fails in the picker with exactly this
// status, naming one of those clusters.
func routeSwapRace(err error, newClusters []string) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	for _, c := range newClusters {
		if st.Message() == fmt.Sprintf("unknown cluster selected for RPC: %q", "cluster:"+c) {
			return true
		}
	}
	return false
}

// settleRouteSwap runs try until it reports done, within 10s. try may fail
// only with the route-swap race for newClusters, at most
// maxRouteSwapFailures times; any other error fails the test at once. It
// returns how many calls hit the race.
func settleRouteSwap(t *testing.T, what string, newClusters []string, try func() (done bool, err error)) int {
	t.Helper()
	raced := 0
	waitUntil(t, 10*time.Second, what, func() bool {
		done, err := try()
		if err == nil {
			return done
		}
		if !routeSwapRace(err, newClusters) {
			t.Fatalf("%s: a call failed with something other than the known route-swap race (after %d of those): %v", what, raced, err)
		}
		if raced++; raced > maxRouteSwapFailures {
			t.Fatalf("%s: %d calls hit the route-swap race, more than the %d that race explains; last: %v", what, raced, maxRouteSwapFailures, err)
		}
		return false
	})
	return raced
}

// TestConformanceGRPCGo: a proxyless grpc-go client (the stricter xDS peer
// we can run here) dialing xds:///emoji.demo:8080 reaches real gRPC servers
// on the pod IPs kwok assigned, and honours splits, timeouts, retries,
// endpoint removal and a control-plane restart.
// podNetwork is a network namespace holding the test's pod IPs, closed when
// the test ends.
func podNetwork(t *testing.T) *netns.Namespace {
	t.Helper()
	nsn, err := netns.New(t.Context(), netns.Config{Subnet: netip.MustParsePrefix(podCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nsn.Close(); err != nil {
			t.Errorf("closing the network namespace: %v", err)
		}
	})
	return nsn
}

// listenOnPod listens on pod's IP (kwok's, added to nsn) at port: a server
// standing in for the pod's process.
func listenOnPod(t *testing.T, nsn *netns.Namespace, pod corev1.Pod, port uint16) net.Listener {
	t.Helper()
	addr := netip.MustParseAddr(pod.Status.PodIP)
	if err := nsn.AddAddr(t.Context(), addr); err != nil {
		t.Fatal(err)
	}
	lis, err := nsn.Listen("tcp", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

func TestConformanceGRPCGo(t *testing.T) {
	requireEnv(t)
	netns.Require(t)
	ensureCRDs(t)
	ctx := t.Context()

	nsn := podNetwork(t)
	if _, err := env.Apply(ctx, []byte(conformanceApp)); err != nil {
		t.Fatal(err)
	}
	runningPods(t, "demo", "app!=emoji", 1) // the client pod
	backends := map[string]*backend{}       // by version
	var servers []*grpc.Server
	t.Cleanup(func() {
		for _, s := range servers {
			s.Stop()
		}
	})
	ips := map[string]string{}
	for _, version := range []string{"v1", "v2"} {
		pod := runningPods(t, "demo", "app=emoji,version="+version, 1)[0]
		lis := listenOnPod(t, nsn, pod, 8080)
		b := &backend{pod: version}
		s := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(s, b)
		go s.Serve(lis)
		servers = append(servers, s)
		backends[version] = b
		ips[version] = pod.Status.PodIP
	}

	rc := startController(t)
	xdsAddr := rc.XDSAddr().String()
	const node = "client.demo"
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": "demo", "locality": {"zone": "test"}}
	}`, xdsAddr, node)
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///emoji.demo:8080", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	call := func() (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{FillServerId: true})
		if err != nil {
			return "", err
		}
		return resp.GetServerId(), nil
	}
	// succeedInARow is a settleRouteSwap step: n calls, stopping at the
	// first failure.
	succeedInARow := func(n int) func() (bool, error) {
		return func() (bool, error) {
			for range n {
				if _, err := call(); err != nil {
					return false, err
				}
			}
			return true, nil
		}
	}
	calls := func(n int) (map[string]int, error) {
		hits := map[string]int{}
		for range n {
			id, err := call()
			if err != nil {
				return hits, err
			}
			hits[id]++
		}
		return hits, nil
	}

	t.Run("reaches the endpoints", func(t *testing.T) {
		// Pods run before their EndpointSlice lists them ready: wait until
		// the control plane holds both, then until the client has applied
		// the push (grpc-go updates its balancer asynchronously).
		apex := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "demo", Name: "emoji"}, 8080, "cluster.local")
		waitUntil(t, time.Minute, "both pods in the apex endpoints", func() bool {
			return len(claAddresses(rc.XDS().Endpoints()[apex])) == 2
		})
		var hits map[string]int
		waitUntil(t, 10*time.Second, "a batch of 100 calls reaching both pods", func() bool {
			var err error
			hits, err = calls(100)
			if err != nil {
				t.Fatalf("calls failed: %v (hits so far %v)", err, hits)
			}
			return hits["v1"] > 0 && hits["v2"] > 0
		})
		t.Logf("100 calls: %v", hits)
	})

	t.Run("split 80/20", func(t *testing.T) {
		before := acked(t, rc, node)
		if _, err := env.Apply(ctx, []byte(conformanceSplit)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, "a new route version", func() bool {
			v := acked(t, rc, node)
			return v["rds"] != before["rds"]
		})
		// The split names emoji-v1 and emoji-v2 in a route for the first
		// time: see routeSwapRace.
		start := time.Now()
		raced := settleRouteSwap(t, "50 calls in a row to succeed under the split", []string{
			translate.OutboundClusterName(mesh.ServiceKey{Namespace: "demo", Name: "emoji-v1"}, 8080, "cluster.local"),
			translate.OutboundClusterName(mesh.ServiceKey{Namespace: "demo", Name: "emoji-v2"}, 8080, "cluster.local"),
		}, succeedInARow(50))
		t.Logf("after the split was ACKed, %d call(s) hit the route-swap race in the %v before 50 in a row succeeded", raced, time.Since(start))
		const n = 1000
		hits, err := calls(n)
		if err != nil {
			t.Fatalf("calls failed: %v", err)
		}
		// Binomial(1000, 0.2): sigma = 12.6 calls = 1.26 points, so ±5
		// points is about 4 sigma.
		share := float64(hits["v2"]) / n
		t.Logf("split 80/20 over %d calls: %v (v2 share %.3f)", n, hits, share)
		if share < 0.15 || share > 0.25 {
			t.Errorf("v2 got %.1f%% of calls, want 20%% ± 5 points", 100*share)
		}
	})

	t.Run("route timeout", func(t *testing.T) {
		before := acked(t, rc, node)
		if _, err := env.Apply(ctx, []byte(conformanceProfile)); err != nil {
			t.Fatal(err)
		}
		// A new RDS version alone could be some other change: wait for the
		// one that carries the profile's "empty" route.
		waitUntil(t, 30*time.Second, "the profile's routes", func() bool {
			return acked(t, rc, node)["rds"] != before["rds"] && nodeHasRoute(rc, node, "empty")
		})
		// grpc-go ACKs a route table before its channel uses it, so a call
		// started right after the ACK may still take the old table: the
		// default route, without the profile's timeout. Fast calls find
		// out which table they went through (budgetHeader), until one
		// carries the profile's 300ms; only that race is tolerated, a
		// bounded number of times, and any failed call ends the test.
		const routeTimeout, clientDeadline = 300 * time.Millisecond, 10 * time.Second
		oldTable, probes := 0, 0
		waitUntil(t, 10*time.Second, "a call through the profile's route table", func() bool {
			probes++
			var hdr metadata.MD
			cctx, cancel := context.WithTimeout(ctx, clientDeadline)
			defer cancel()
			if _, err := client.EmptyCall(cctx, &testgrpc.Empty{}, grpc.Header(&hdr)); err != nil {
				t.Fatalf("a fast EmptyCall failed: %v", err)
			}
			v := hdr.Get(budgetHeader)
			if len(v) != 1 {
				t.Fatalf("the server sent %s = %q, want one value", budgetHeader, v)
			}
			if budget, err := time.ParseDuration(v[0]); err == nil && budget <= routeTimeout {
				return true
			}
			// The default route: the server saw only the client's own
			// deadline (or none).
			if oldTable++; oldTable > maxRouteSwapFailures {
				t.Fatalf("%d calls after the ACK went through a route table without the profile's %v timeout (the server saw a deadline budget of %s), more than the route-swap race explains", oldTable, routeTimeout, v[0])
			}
			return false
		})
		t.Logf("%d of %d fast calls after the ACK still took the route table from before the profile", oldTable, probes)

		// Now slow backends: they answer only after the client's own
		// deadline, so a call that succeeds had no timeout at all, one that
		// ends at about the client's deadline had only that, and one that
		// ends with DEADLINE_EXCEEDED after 300ms but long before the
		// client's deadline had the route's. 2s leaves a busy CI machine
		// more than 1.5s of slack and is still 5 times below the client's
		// deadline.
		for _, b := range backends {
			b.emptyDelay.Store(int64(2 * clientDeadline))
		}
		defer func() {
			for _, b := range backends {
				b.emptyDelay.Store(0)
			}
		}()
		const upper = 2 * time.Second
		cctx, cancel := context.WithTimeout(ctx, clientDeadline)
		defer cancel()
		start := time.Now()
		_, err := client.EmptyCall(cctx, &testgrpc.Empty{})
		took := time.Since(start)
		switch {
		case err == nil:
			t.Fatalf("the slow call succeeded after %v: no timeout applied, want DEADLINE_EXCEEDED from the %v route timeout", took, routeTimeout)
		case status.Code(err) != codes.DeadlineExceeded:
			t.Fatalf("the slow call ended with %v after %v, want DEADLINE_EXCEEDED from the %v route timeout", err, took, routeTimeout)
		case took >= clientDeadline:
			t.Fatalf("the slow call ended after %v, at the client's own %v deadline: the %v route timeout was not applied", took, clientDeadline, routeTimeout)
		case took < routeTimeout:
			t.Fatalf("the slow call ended after %v, before the %v route timeout could fire", took, routeTimeout)
		case took >= upper:
			t.Fatalf("the %v route timeout fired only after %v (want under %v)", routeTimeout, took, upper)
		}
		t.Logf("the %v route timeout ended the slow call after %v", routeTimeout, took)
	})

	t.Run("retries UNAVAILABLE", func(t *testing.T) {
		for _, b := range backends {
			b.failures.Store(0)
			b.flaky.Store(true)
		}
		defer func() {
			for _, b := range backends {
				b.flaky.Store(false)
			}
		}()
		hits, err := calls(100)
		if err != nil {
			t.Fatalf("a call failed although its route retries UNAVAILABLE: %v (hits %v)", err, hits)
		}
		failures := backends["v1"].failures.Load() + backends["v2"].failures.Load()
		if failures == 0 {
			t.Error("no backend failed: the retry path was not exercised")
		}
		t.Logf("100 calls succeeded over %d failed attempts", failures)
	})

	t.Run("removed endpoint gets no traffic", func(t *testing.T) {
		apex := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "demo", Name: "emoji"}, 8080, "cluster.local")
		before := acked(t, rc, node)
		if err := env.Dynamic.Resource(splitGVR).Namespace("demo").Delete(ctx, "emoji-canary", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, "a route version without the split", func() bool {
			return acked(t, rc, node)["rds"] != before["rds"]
		})
		// Without the split the routes name the apex cluster again, for
		// the first time since the split: see routeSwapRace.
		raced := settleRouteSwap(t, "50 calls in a row to succeed without the split", []string{apex}, succeedInARow(50))
		t.Logf("after the split was deleted, %d call(s) hit the route-swap race", raced)

		// Only now take v2's endpoint away. Done together with the split's
		// deletion, the client could get v2's empty endpoints before the
		// routes without the split, and a call the split still sent to v2
		// would have nowhere to go ("no children to pick from").
		_, err := env.Clientset.AppsV1().Deployments("demo").Patch(ctx, "emoji-v2", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, time.Minute, "v2 gone from the apex endpoints", func() bool {
			addrs := claAddresses(rc.XDS().Endpoints()[apex])
			return len(addrs) == 1 && addrs[0] == ips["v1"]
		})
		// The client applies the push within moments; the v2 server is
		// still up, so only config can keep traffic off it, and no call
		// has a reason to fail.
		waitUntil(t, 10*time.Second, "a batch of calls without v2", func() bool {
			hits, err := calls(50)
			if err != nil {
				t.Fatalf("a call failed while v2's endpoint was being removed: %v (hits %v)", err, hits)
			}
			return hits["v2"] == 0
		})
		hits, err := calls(200)
		if err != nil {
			t.Fatal(err)
		}
		if hits["v2"] != 0 {
			t.Errorf("the removed endpoint still got %d of 200 calls", hits["v2"])
		}
	})

	t.Run("control plane restart", func(t *testing.T) {
		before := acked(t, rc, node)
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		echo := func() error {
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}); err != nil {
				return err
			}
			_, err := stream.Recv()
			return err
		}
		if err := echo(); err != nil {
			t.Fatal(err)
		}

		rc.stop(t)
		// With the control plane gone, the client keeps its config.
		if hits, err := calls(20); err != nil {
			t.Fatalf("calls failed while the control plane was down: %v (%v)", err, hits)
		}
		rc2 := startController(t, withXDSAddr(xdsAddr))
		after := acked(t, rc2, node)
		for typ, v := range before {
			if after[typ] != v {
				t.Errorf("%s version changed across the restart: %s -> %s", typ, v, after[typ])
			}
		}
		if err := echo(); err != nil {
			t.Errorf("the stream opened before the restart broke: %v", err)
		}
		if hits, err := calls(20); err != nil {
			t.Errorf("calls after the restart: %v (%v)", err, hits)
		}
		if err := stream.CloseSend(); err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
}

// nodeHasRoute reports whether the route configurations the control plane
// holds for node include a route called name.
func nodeHasRoute(rc *runningController, node, name string) bool {
	res, ok := rc.XDS().NodeConfig(node)
	if !ok {
		return false
	}
	for _, r := range res[resourcev3.RouteType] {
		rc, ok := r.(*routev3.RouteConfiguration)
		if !ok {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				if rt.GetName() == name {
					return true
				}
			}
		}
	}
	return false
}
