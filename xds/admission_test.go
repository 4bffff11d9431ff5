package xds

import (
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// oneSyncingSlot starts a server that serves one syncing stream at a time,
// with configuration for two nodes, and opens a stream for each (nothing
// is requested yet).
func oneSyncingSlot(t *testing.T, p protocol) (ts *testServer, first, second adsClient) {
	t.Helper()
	ts = startServer(t, Options{MaxSyncingStreams: 1})
	conn := dial(t, ts.addr)
	for _, id := range []string{node1, "web-2.demo"} {
		mustSet(t, ts.Server, id, nodeSet(t, "echo.test"), time.Time{})
	}
	first, second = openClient(t, p, conn, node1), openClient(t, p, conn, "web-2.demo")
	t.Cleanup(first.close)
	t.Cleanup(second.close)
	return ts, first, second
}

// TestSyncingStreamsAreBounded: with MaxSyncingStreams 1, a second proxy's
// stream is not served while the first has a response it has not
// answered, and is served as soon as the first ACKs, NACKs or goes away.
func TestSyncingStreamsAreBounded(t *testing.T) {
	cases := []struct {
		name string
		// free makes the first stream give up its slot.
		free func(first adsClient, r response)
	}{
		{"ACK", func(first adsClient, r response) { first.ack(r) }},
		{"NACK", func(first adsClient, r response) { first.nack(r, "refused by the test") }},
		{"stream closed", func(first adsClient, _ response) { first.close() }},
	}
	for _, p := range protocols {
		for _, tc := range cases {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) {
				ts, first, second := oneSyncingSlot(t, p)
				first.subscribe(resourcev3.ClusterType)
				r := first.next(t)

				second.subscribe(resourcev3.ClusterType)
				second.expectNone(t, 300*time.Millisecond)
				if n := testutil.ToFloat64(ts.metrics.waitingStreams); n != 1 {
					t.Errorf("weft_xds_waiting_streams = %v while the second stream waits, want 1", n)
				}

				tc.free(first, r)
				if got := second.next(t); got.typeURL != resourcev3.ClusterType || len(got.names) != 1 {
					t.Errorf("second stream got %s with %v, want its one cluster", TypeLabel(got.typeURL), got.names)
				}
				if n := testutil.ToFloat64(ts.metrics.waitingStreams); n != 0 {
					t.Errorf("weft_xds_waiting_streams = %v once served, want 0", n)
				}
			})
		}
	}
}

// TestUnboundedSyncing: a negative MaxSyncingStreams serves every stream at
// once, answered or not.
func TestUnboundedSyncing(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			ts := startServer(t, Options{MaxSyncingStreams: -1})
			conn := dial(t, ts.addr)
			for _, id := range []string{node1, "web-2.demo", "web-3.demo"} {
				mustSet(t, ts.Server, id, nodeSet(t, "echo.test"), time.Time{})
				c := openClient(t, p, conn, id)
				defer c.close()
				c.subscribe(resourcev3.ClusterType)
				c.next(t)
			}
		})
	}
}

// TestSyncingSlotHeldUntilEveryTypeIsAnswered: a stream that ACKed its
// clusters but not its listeners is still syncing.
func TestSyncingSlotHeldUntilEveryTypeIsAnswered(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			_, first, second := oneSyncingSlot(t, p)
			first.subscribe(resourcev3.ClusterType)
			first.subscribe(resourcev3.ListenerType)
			byType := map[string]response{}
			for range 2 {
				r := first.next(t)
				byType[r.typeURL] = r
			}
			first.ack(byType[resourcev3.ClusterType])

			second.subscribe(resourcev3.ClusterType)
			second.expectNone(t, 300*time.Millisecond)

			first.ack(byType[resourcev3.ListenerType])
			second.next(t)
		})
	}
}
