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
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
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

func (b *backend) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
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

// TestConformanceGRPCGo: a proxyless grpc-go client (the stricter xDS peer
// we can run here) dialing xds:///emoji.demo:8080 reaches real gRPC servers
// on the pod IPs kwok assigned, and honours splits, timeouts, retries,
// endpoint removal and a control-plane restart.
func TestConformanceGRPCGo(t *testing.T) {
	requireEnv(t)
	netns.Require(t)
	ensureCRDs(t)
	ctx := t.Context()

	nsn, err := netns.New(ctx, netns.Config{Subnet: netip.MustParsePrefix(podCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nsn.Close(); err != nil {
			t.Errorf("closing the network namespace: %v", err)
		}
	})
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
		addr := netip.MustParseAddr(pod.Status.PodIP)
		if err := nsn.AddAddr(ctx, addr); err != nil {
			t.Fatal(err)
		}
		lis, err := nsn.Listen("tcp", netip.AddrPortFrom(addr, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
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
		// grpc-go swaps in the new route table (config selector) before its
		// cluster manager has a child for a newly named cluster, so RPCs
		// started in that window fail with "unknown cluster selected for
		// RPC" (clientconn.go: applyServiceConfigAndBalancer runs before
		// updateClientConnState). Count that window rather than hide it.
		start, failed := time.Now(), 0
		waitUntil(t, 10*time.Second, "50 calls in a row to succeed under the split", func() bool {
			for range 50 {
				if _, err := call(); err != nil {
					failed++
					return false
				}
			}
			return true
		})
		t.Logf("after the split was ACKed, %d calls failed in the %v before 50 in a row succeeded", failed, time.Since(start))
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
		for _, b := range backends {
			b.emptyDelay.Store(int64(3 * time.Second))
		}
		defer func() {
			for _, b := range backends {
				b.emptyDelay.Store(0)
			}
		}()
		// grpc-go ACKs a route table before its resolver has handed the new
		// config selector to the channel, so a call started right after the
		// ACK may still take the old route (no timeout). Allow a few such
		// calls, counted, but every call must end one way or the other.
		var (
			err  error
			took time.Duration
		)
		for attempt := 1; attempt <= 3; attempt++ {
			start := time.Now()
			_, err = client.EmptyCall(ctx, &testgrpc.Empty{}) // no deadline of its own
			took = time.Since(start)
			if status.Code(err) == codes.DeadlineExceeded {
				if attempt > 1 {
					t.Logf("%d call(s) still took the route table from before the profile", attempt-1)
				}
				break
			}
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("slow call ended with %v after %v, want DEADLINE_EXCEEDED from the 300ms route timeout", err, took)
		}
		if took > 2*time.Second {
			t.Errorf("the 300ms timeout fired after %v", took)
		}
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
		if err := env.Dynamic.Resource(splitGVR).Namespace("demo").Delete(ctx, "emoji-canary", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := env.Clientset.AppsV1().Deployments("demo").Patch(ctx, "emoji-v2", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		apex := translate.OutboundClusterName(mesh.ServiceKey{Namespace: "demo", Name: "emoji"}, 8080, "cluster.local")
		waitUntil(t, time.Minute, "v2 gone from the apex endpoints", func() bool {
			cla := rc.XDS().Endpoints()[apex]
			addrs := claAddresses(cla)
			return len(addrs) == 1 && addrs[0] == ips["v1"]
		})
		// The client applies the push within moments; the v2 server is
		// still up, so only config can keep traffic off it.
		waitUntil(t, 10*time.Second, "a batch of calls without v2", func() bool {
			hits, err := calls(50)
			return err == nil && hits["v2"] == 0
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
