package xds

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const waitTimeout = 10 * time.Second

// testServer is a Server serving on loopback for the length of a test.
type testServer struct {
	*Server
	addr string
	reg  *prometheus.Registry
	// stop ends Serve and waits for it; cleanup calls it too.
	stop func()
}

func startServer(t testing.TB, opts Options) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.Registry == nil {
		opts.Registry = reg
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &testServer{Server: s, addr: lis.Addr().String(), reg: reg, stop: stop}
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// response is a SotW or delta response, reduced to what tests compare.
type response struct {
	typeURL string
	// version is version_info (SotW) or system_version_info (delta).
	version string
	nonce   string
	names   []string // sorted
	// resourceVersions are delta's per-resource versions.
	resourceVersions map[string]string
	removed          []string
	raw              [][]byte
}

// adsClient is the test's xDS client: go-control-plane's generated ADS
// stubs, speaking the protocol by hand the way Envoy does.
type adsClient interface {
	// subscribe sends the first request for a type (no names: wildcard).
	subscribe(typeURL string, names ...string)
	ack(r response)
	nack(r response, msg string)
	next(t testing.TB) response
	// expectNone asserts nothing arrives for d.
	expectNone(t testing.TB, d time.Duration)
	// streamErr waits for the stream to end and returns its error.
	streamErr(t testing.TB) error
	close()
}

type protocol string

const (
	sotw  protocol = "sotw"
	delta protocol = "delta"
)

func openClient(t testing.TB, p protocol, conn *grpc.ClientConn, nodeID string, md ...string) adsClient {
	t.Helper()
	node := &corev3.Node{Id: nodeID, Cluster: "test", UserAgentName: "envoy"}
	ctx, cancel := context.WithCancel(context.Background())
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	var c adsClient
	switch p {
	case sotw:
		stream, err := client.StreamAggregatedResources(ctx)
		if err != nil {
			cancel()
			t.Fatalf("opening SotW stream: %v", err)
		}
		sc := &sotwClient{t: t, stream: stream, cancel: cancel, node: node,
			names: map[string][]string{}, acked: map[string]string{}, pump: newPump()}
		go sc.pump.run(func() (response, error) {
			r, err := stream.Recv()
			if err != nil {
				return response{}, err
			}
			out := response{typeURL: r.GetTypeUrl(), version: r.GetVersionInfo(), nonce: r.GetNonce()}
			for _, a := range r.GetResources() {
				out.names = append(out.names, ResourceName(a.GetValue()))
				out.raw = append(out.raw, a.GetValue())
			}
			slices.Sort(out.names)
			return out, nil
		})
		c = sc
	case delta:
		stream, err := client.DeltaAggregatedResources(ctx)
		if err != nil {
			cancel()
			t.Fatalf("opening delta stream: %v", err)
		}
		dc := &deltaClient{t: t, stream: stream, cancel: cancel, node: node, pump: newPump()}
		go dc.pump.run(func() (response, error) {
			r, err := stream.Recv()
			if err != nil {
				return response{}, err
			}
			out := response{typeURL: r.GetTypeUrl(), version: r.GetSystemVersionInfo(), nonce: r.GetNonce(),
				resourceVersions: map[string]string{}, removed: r.GetRemovedResources()}
			for _, res := range r.GetResources() {
				out.names = append(out.names, res.GetName())
				out.resourceVersions[res.GetName()] = res.GetVersion()
				out.raw = append(out.raw, res.GetResource().GetValue())
			}
			slices.Sort(out.names)
			return out, nil
		})
		c = dc
	default:
		cancel()
		t.Fatalf("unknown protocol %q", p)
	}
	t.Cleanup(c.close)
	return c
}

// pump moves received responses onto a channel so tests can wait with a
// timeout.
type pump struct {
	ch   chan response
	err  error
	done chan struct{}
	stop chan struct{}
}

func newPump() *pump {
	return &pump{ch: make(chan response, 64), done: make(chan struct{}), stop: make(chan struct{})}
}

func (p *pump) run(recv func() (response, error)) {
	defer close(p.done)
	defer close(p.ch)
	for {
		r, err := recv()
		if err != nil {
			p.err = err
			return
		}
		select {
		case p.ch <- r:
		case <-p.stop:
			p.err = errors.New("client closed")
			return
		}
	}
}

func (p *pump) next(t testing.TB) response {
	t.Helper()
	select {
	case r, ok := <-p.ch:
		if !ok {
			<-p.done
			t.Fatalf("stream ended while waiting for a response: %v", p.err)
		}
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("no response within %v", waitTimeout)
	}
	return response{}
}

func (p *pump) expectNone(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case r, ok := <-p.ch:
		if ok {
			t.Fatalf("unexpected response: type %s version %s resources %v", r.typeURL, r.version, r.names)
		}
		<-p.done
		t.Fatalf("stream ended: %v", p.err)
	case <-time.After(d):
	}
}

func (p *pump) streamErr(t testing.TB) error {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-p.ch:
			if !ok {
				<-p.done
				return p.err
			}
		case <-deadline:
			t.Fatalf("stream did not end within %v", waitTimeout)
			return nil
		}
	}
}

type sotwClient struct {
	t      testing.TB
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	node   *corev3.Node
	sent   bool
	names  map[string][]string
	acked  map[string]string
	*pump
}

func (c *sotwClient) send(req *discoveryv3.DiscoveryRequest) {
	if !c.sent {
		req.Node = c.node
		c.sent = true
	}
	// A send error means the stream ended; the pump reports why.
	if err := c.stream.Send(req); err != nil && !errors.Is(err, context.Canceled) {
		c.t.Logf("send: %v", err)
	}
}

func (c *sotwClient) subscribe(typeURL string, names ...string) {
	c.names[typeURL] = names
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: c.acked[typeURL]})
}

// subscribeAt is a first request claiming an already-held version, as after
// a reconnect.
func (c *sotwClient) subscribeAt(typeURL, version string, names ...string) {
	c.acked[typeURL] = version
	c.subscribe(typeURL, names...)
}

func (c *sotwClient) ack(r response) {
	c.acked[r.typeURL] = r.version
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: r.typeURL, ResourceNames: c.names[r.typeURL], VersionInfo: r.version, ResponseNonce: r.nonce})
}

func (c *sotwClient) nack(r response, msg string) {
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: r.typeURL, ResourceNames: c.names[r.typeURL], VersionInfo: c.acked[r.typeURL],
		ResponseNonce: r.nonce, ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg}})
}

func (c *sotwClient) close() {
	c.cancel()
	closeOnce(c.pump.stop)
	<-c.pump.done
}

type deltaClient struct {
	t      testing.TB
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel context.CancelFunc
	node   *corev3.Node
	sent   bool
	*pump
}

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	if !c.sent {
		req.Node = c.node
		c.sent = true
	}
	if err := c.stream.Send(req); err != nil && !errors.Is(err, context.Canceled) {
		c.t.Logf("send: %v", err)
	}
}

func (c *deltaClient) subscribe(typeURL string, names ...string) {
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names})
}

// subscribeKnown is a first request listing versions already held, as after
// a reconnect.
func (c *deltaClient) subscribeKnown(typeURL string, known map[string]string, names ...string) {
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names, InitialResourceVersions: known})
}

func (c *deltaClient) ack(r response) {
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.typeURL, ResponseNonce: r.nonce})
}

func (c *deltaClient) nack(r response, msg string) {
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.typeURL, ResponseNonce: r.nonce,
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg}})
}

func (c *deltaClient) close() {
	c.cancel()
	closeOnce(c.pump.stop)
	<-c.pump.done
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// nextOfType receives until a response of typeURL arrives, ACKing others.
func nextOfType(t testing.TB, c adsClient, typeURL string) response {
	t.Helper()
	for {
		r := c.next(t)
		if r.typeURL == typeURL {
			return r
		}
		c.ack(r)
	}
}

// testLogger sends the server's logs to the test's log, shown only when the
// test fails or with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
