package controller

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds"
	"github.com/weftmesh/weft/xds/adsclient"
)

// harness is the pipeline without Kubernetes: objects are fed into the
// store directly; translate and the xds server are the real ones, served
// on loopback.
type harness struct {
	store   *Store
	pipe    *pipeline
	xds     *xds.Server
	reg     *prometheus.Registry
	metrics *controllerMetrics
	addr    string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func testLogger() *slog.Logger {
	if os.Getenv("WEFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(tb testing.TB, debounce time.Duration) *harness {
	tb.Helper()
	log := testLogger()
	h := &harness{reg: prometheus.NewRegistry()}
	reporter := newConfigErrorReporter(log)
	h.store = NewStore("cluster.local", modelSink{reporter})
	m, err := newControllerMetrics(h.reg, h.store.Counts)
	if err != nil {
		tb.Fatal(err)
	}
	h.metrics = m
	reporter.metrics = m
	synced := make(chan struct{})
	close(synced)
	var pipe *pipeline
	x, err := xds.New(xds.Options{
		Logger:        log,
		Registry:      h.reg,
		NodeValidator: func(ctx context.Context, n *corev3.Node) (xds.NodeInfo, error) { return pipe.validateNode(ctx, n) },
		OnDisconnect:  func(id string) { pipe.disconnected(id) },
		ShutdownGrace: time.Second,
	})
	if err != nil {
		tb.Fatal(err)
	}
	h.xds = x
	// No trust domain: mTLS off, as Config.MTLS defaults to (the harness
	// serves no SDS secrets, so the checker would refuse every mTLS push).
	pipe = newPipeline(log, h.store, newDefaultTranslator(translate.Options{ClusterDomain: "cluster.local"}), x, 4, m,
		newTranslateProblems(reporter, h.store.ObjectReference, log), synced)
	pipe.podWait = 200 * time.Millisecond
	h.pipe = pipe

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	d := newDebouncer(debounce, 10*debounce, clock.RealClock{})
	// The production fast lane, scaled like the rest (10ms for 100ms).
	d.fastLane(debounce/10, debounce, h.store.PendingEndpointsOnly)
	h.store.SetOnChange(d.Kick)
	h.wg.Go(func() { _ = x.Serve(ctx, lis) })
	h.wg.Go(func() { d.Run(ctx, pipe.flush) })
	tb.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	h.wg.Wait()
}

// waitADS waits at most timeout for cond to hold on what c holds.
func waitADS(ctx context.Context, c *adsclient.Client, timeout time.Duration, what string, cond func(adsclient.View) bool) (adsclient.View, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.WaitFor(ctx, what, cond)
}
