package adsclient

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/xds"
)

// TestFleetLeavesAHalfOpenConnection: a connection that goes silent both
// ways without closing, as one whose control plane side the kernel
// aborted without a reset, is dropped once a keepalive ping goes
// unanswered; the proxy reconnects and receives the next change. Without
// pings a proxy waiting for a response never learns its stream is gone.
func TestFleetLeavesAHalfOpenConnection(t *testing.T) {
	for _, delta := range []bool{false, true} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name, func(t *testing.T) {
			// gRPC pings no more often than every 10 s: the wait covers one
			// silent interval, the unanswered ping and the reconnect.
			ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
			defer cancel()
			srv, addr := startServer(t, xds.ParsingNodeValidator)
			configure(ctx, t, srv, "10.0.0.1")
			hole := newBlackhole(t, addr)
			fleet := syncedFleet(ctx, t, hole.addr(), FleetOptions{Delta: delta, KeepaliveTime: 10 * time.Second, KeepaliveTimeout: time.Second})

			hole.silence()
			w := fleet.Watch(WatchSpec{TypeURL: resourcev3.EndpointType, Name: "emoji", Marker: "10.0.0.2", Present: true})
			setEndpoints(ctx, t, srv, "10.0.0.2")
			n, err := w.Wait(ctx)
			fleet.Unwatch(w)
			if err != nil || n != w.Affected() {
				t.Fatalf("%d of %d proxies ACKed the change made after their connections went silent: %v", n, w.Affected(), err)
			}
		})
	}
}

// blackhole forwards connections to a server; silence makes every
// connection it holds stop forwarding both ways while staying open (what
// it reads is discarded), and later connections are forwarded again.
type blackhole struct {
	lis net.Listener

	mu     sync.Mutex
	conns  []*holeConn
	closed bool
	wg     sync.WaitGroup
}

type holeConn struct {
	client, server net.Conn
	mu             sync.Mutex
	silent         bool
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &blackhole{lis: lis}
	b.wg.Add(1)
	go b.accept(target)
	t.Cleanup(b.close)
	return b
}

func (b *blackhole) addr() string { return b.lis.Addr().String() }

func (b *blackhole) accept(target string) {
	defer b.wg.Done()
	for {
		client, err := b.lis.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", target)
		if err != nil {
			client.Close()
			continue
		}
		c := &holeConn{client: client, server: server}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		b.conns = append(b.conns, c)
		b.wg.Add(2)
		b.mu.Unlock()
		go func() { defer b.wg.Done(); c.pipe(c.server, c.client) }()
		go func() { defer b.wg.Done(); c.pipe(c.client, c.server) }()
	}
}

// pipe copies from src to dst until either fails; once the connection is
// silent it keeps reading src and drops what it reads.
func (c *holeConn) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		c.mu.Lock()
		silent := c.silent
		c.mu.Unlock()
		if n > 0 && !silent {
			if _, werr := dst.Write(buf[:n]); werr != nil && !silent {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				return
			}
			if !silent {
				dst.Close()
			}
			return
		}
	}
}

// silence cuts every connection open now: the server's side is closed
// (its streams end there), the client's stays open and hears nothing.
func (b *blackhole) silence() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.mu.Lock()
		c.silent = true
		c.mu.Unlock()
		c.server.Close()
	}
}

func (b *blackhole) close() {
	b.mu.Lock()
	b.closed = true
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	b.lis.Close()
	for _, c := range conns {
		c.client.Close()
		c.server.Close()
	}
	b.wg.Wait()
}
