package xds

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// disconnects records OnDisconnect calls.
type disconnects struct {
	mu    sync.Mutex
	calls map[string]int
}

func (d *disconnects) hook(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls[id]++
}

func (d *disconnects) count(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[id]
}

func TestOnDisconnectAfterTheLastStream(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			d := &disconnects{calls: map[string]int{}}
			var srv atomic.Pointer[Server]
			var sawOwnStream atomic.Bool
			ts := startServer(t, Options{
				OnDisconnect: d.hook,
				NodeValidator: func(ctx context.Context, node *corev3.Node) (NodeInfo, error) {
					// The validator runs while its stream already counts.
					if s := srv.Load(); s != nil && s.HasStreams(node.GetId()) {
						sawOwnStream.Store(true)
					}
					return ParsingNodeValidator(ctx, node)
				},
			})
			srv.Store(ts.Server)
			conn := dial(t, ts.addr)
			const node2 = "web-2.demo"
			a := openClient(t, p, conn, node1)
			b := openClient(t, p, conn, node1)
			other := openClient(t, p, conn, node2)
			for _, c := range []adsClient{a, b, other} {
				c.subscribe(resourcev3.ClusterType)
			}
			eventually(t, "both streams of "+node1+" bound", func() bool {
				ps, ok := ts.Proxy(node1)
				return ok && ps.Streams == 2
			})
			if !sawOwnStream.Load() {
				t.Error("HasStreams was false inside the NodeValidator")
			}

			a.close()
			eventually(t, "first stream gone", func() bool {
				ps, _ := ts.Proxy(node1)
				return ps.Streams == 1
			})
			if !ts.HasStreams(node1) {
				t.Fatal("HasStreams false while a stream of the node is open")
			}
			// The hook is asynchronous: give a wrong call the time to happen.
			time.Sleep(100 * time.Millisecond)
			if n := d.count(node1); n != 0 {
				t.Fatalf("OnDisconnect(%s) called %d times with a stream still open", node1, n)
			}

			b.close()
			eventually(t, "OnDisconnect after the last stream", func() bool { return d.count(node1) > 0 })
			if ts.HasStreams(node1) {
				t.Error("HasStreams true after every stream closed")
			}
			time.Sleep(100 * time.Millisecond)
			if n := d.count(node1); n != 1 {
				t.Errorf("OnDisconnect(%s) called %d times, want 1", node1, n)
			}
			if n := d.count(node2); n != 0 || !ts.HasStreams(node2) {
				t.Errorf("the other node: %d disconnects, HasStreams=%v", n, ts.HasStreams(node2))
			}

			// A reconnect is a new connection: its last stream closing calls the hook again.
			c := openClient(t, p, conn, node1)
			c.subscribe(resourcev3.ClusterType)
			eventually(t, "reconnected", func() bool { return ts.HasStreams(node1) })
			c.close()
			other.close()
			eventually(t, "second disconnect", func() bool { return d.count(node1) == 2 && d.count(node2) == 1 })
		})
	}
}
