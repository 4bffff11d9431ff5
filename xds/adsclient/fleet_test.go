package adsclient

import (
	"context"
	"fmt"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/xds"
)

// The fleet is exercised against the real xds.Server in both xDS variants:
// it must subscribe like Envoy (or the server never sends routes and
// endpoints and the fleet never syncs), and a Watch must count exactly the
// proxies that subscribe to the changed resource.
func TestFleetSyncsAndWatchesChanges(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			srv, addr := startServer(t, xds.ParsingNodeValidator)
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			configure(ctx, t, srv, "10.0.0.1")

			fleet := syncedFleet(ctx, t, addr, FleetOptions{Delta: delta, StreamsPerConn: 2})

			tests := []struct {
				name         string
				spec         WatchSpec
				ips          []string
				wantAffected int
			}{
				{"an address appears", WatchSpec{TypeURL: resourcev3.EndpointType, Name: "emoji", Marker: "10.0.0.2", Present: true}, []string{"10.0.0.1", "10.0.0.2"}, 3},
				{"an address goes away", WatchSpec{TypeURL: resourcev3.EndpointType, Name: "emoji", Marker: "10.0.0.1", Present: false}, []string{"10.0.0.2"}, 3},
				// 10.0.0.2 is a prefix of 10.0.0.20: the marker must match
				// the whole field, so only this change satisfies it.
				{"an address with a prefix of another", WatchSpec{TypeURL: resourcev3.EndpointType, Name: "emoji", Marker: "10.0.0.20", Present: true}, []string{"10.0.0.2", "10.0.0.20"}, 3},
			}
			for _, tc := range tests {
				w := fleet.Watch(tc.spec)
				if got := w.Affected(); got != tc.wantAffected {
					t.Errorf("%s: %d affected, want %d (only web-* subscribe to emoji)", tc.name, got, tc.wantAffected)
				}
				before := time.Now()
				setEndpoints(ctx, t, srv, tc.ips...)
				n, err := w.Wait(ctx)
				fleet.Unwatch(w)
				if err != nil || n != tc.wantAffected {
					t.Fatalf("%s: %d ACKed: %v", tc.name, n, err)
				}
				for _, at := range w.ACKs() {
					if at.Before(before) {
						t.Errorf("%s: an ACK at %v precedes the change at %v", tc.name, at, before)
					}
				}
			}

			// A watch for a marker that never comes is not satisfied by
			// unrelated pushes.
			w := fleet.Watch(WatchSpec{TypeURL: resourcev3.EndpointType, Name: "emoji", Marker: "10.9.9.9", Present: true})
			setEndpoints(ctx, t, srv, "10.0.0.3")
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			n, err := w.Wait(short)
			cancelShort()
			fleet.Unwatch(w)
			if err == nil || n != 0 {
				t.Errorf("a marker never served: %d ACKed, err %v; want 0 and a timeout", n, err)
			}
			if fleet.Responses.Load() == 0 || fleet.Bytes.Load() == 0 {
				t.Errorf("responses %d, bytes %d: want both counted", fleet.Responses.Load(), fleet.Bytes.Load())
			}
		})
	}
}

// fleetNodes are the proxies configure configures: web-* proxies call
// emoji and voting; the lone db proxy calls nothing, so it subscribes to
// no load assignment.
var fleetNodes = []string{"web-0.shop", "web-1.shop", "web-2.shop", "db-0.shop"}

// configure gives srv the fleetNodes' configuration, with emoji's
// endpoints at ips.
func configure(ctx context.Context, t *testing.T, srv *xds.Server, ips ...string) {
	t.Helper()
	callers := map[string][]types.Resource{
		resourcev3.ListenerType: {listener(t, "outbound", "emoji:8080", "voting:8080")},
		resourcev3.RouteType:    {route("emoji:8080", "emoji"), route("voting:8080", "voting")},
		resourcev3.ClusterType:  {edsCluster("emoji", ""), edsCluster("voting", "")},
	}
	loner := map[string][]types.Resource{
		resourcev3.ListenerType: {listener(t, "inbound")},
		resourcev3.ClusterType:  {staticCluster("inbound|8080")},
	}
	setEndpoints(ctx, t, srv, ips...)
	for _, n := range fleetNodes {
		res := callers
		if n == "db-0.shop" {
			res = loner
		}
		if err := srv.SetNodeResources(ctx, n, proxy.Envoy, res, time.Time{}); err != nil {
			t.Fatalf("SetNodeResources %s: %v", n, err)
		}
	}
}

// syncedFleet is a fleet of fleetNodes at addr, synced; it ends with the
// test.
func syncedFleet(ctx context.Context, t *testing.T, addr string, o FleetOptions) *Fleet {
	t.Helper()
	fleet := NewFleet(addr, o)
	fctx, stop := context.WithCancel(ctx)
	t.Cleanup(func() { stop(); fleet.Close() })
	for _, n := range fleetNodes {
		if _, err := fleet.Add(fctx, n); err != nil {
			t.Fatalf("Add %s: %v", n, err)
		}
	}
	waitFleet(ctx, t, fleet)
	return fleet
}

// TestFleetReconnectsWithWhatItHolds: after the control plane dies and a
// new process with the same configuration takes its address, delta
// proxies list what they hold and are sent only what differs, and still
// count as synced; cold ones (and SotW ones) are sent everything again.
func TestFleetReconnectsWithWhatItHolds(t *testing.T) {
	cases := []struct {
		name  string
		delta bool
		cold  bool
		// ips are emoji's endpoints in the new process (10.0.0.1 before).
		ips []string
		// wantResources received after the restart; -1: as many as on the
		// first connect.
		wantResources int64
	}{
		{name: "delta, same configuration", delta: true, ips: []string{"10.0.0.1"}, wantResources: 0},
		// Only the three web proxies subscribe to emoji's endpoints.
		{name: "delta, one load assignment changed", delta: true, ips: []string{"10.0.0.2"}, wantResources: 3},
		{name: "delta, cold", delta: true, cold: true, ips: []string{"10.0.0.1"}, wantResources: -1},
		{name: "sotw", ips: []string{"10.0.0.1"}, wantResources: -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			srv, addr, stop := serveAt(t, xds.ParsingNodeValidator, "127.0.0.1:0")
			configure(ctx, t, srv, "10.0.0.1")
			fleet := syncedFleet(ctx, t, addr, FleetOptions{Delta: tc.delta})
			first := fleet.Resources.Load()

			fleet.ColdReconnect(tc.cold)
			stop()
			for fleet.Synced() > 0 {
				select {
				case <-ctx.Done():
					t.Fatalf("%d streams still synced after the server stopped", fleet.Synced())
				case <-time.After(10 * time.Millisecond):
				}
			}
			before := fleet.Resources.Load()
			srv2, _, _ := serveAt(t, xds.ParsingNodeValidator, addr)
			configure(ctx, t, srv2, tc.ips...)
			waitFleet(ctx, t, fleet)
			// What the new process sends after the fleet synced would
			// still count: give it a moment.
			time.Sleep(200 * time.Millisecond)
			got := fleet.Resources.Load() - before
			want := tc.wantResources
			if want < 0 {
				want = first
			}
			if got != want {
				t.Errorf("%d resources received after the restart, want %d (%d on the first connect)", got, want, first)
			}
		})
	}
}

func setEndpoints(ctx context.Context, t *testing.T, srv *xds.Server, ips ...string) {
	t.Helper()
	m := map[string]*endpointv3.ClusterLoadAssignment{"voting": cla("voting", "10.1.0.1")}
	a := cla("emoji", ips[0])
	for _, ip := range ips[1:] {
		a.Endpoints[0].LbEndpoints = append(a.Endpoints[0].LbEndpoints, cla("emoji", ip).Endpoints[0].LbEndpoints...)
	}
	m["emoji"] = a
	if err := srv.SetEndpoints(ctx, m, time.Time{}); err != nil {
		t.Fatalf("SetEndpoints: %v", err)
	}
}

func waitFleet(ctx context.Context, t *testing.T, f *Fleet) {
	t.Helper()
	for f.Synced() < f.Len() {
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d streams synced: %v", f.Synced(), f.Len(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
