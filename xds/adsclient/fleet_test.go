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

			// web-* proxies call emoji and voting; the lone db proxy calls
			// nothing, so it subscribes to no load assignment.
			callers := map[string][]types.Resource{
				resourcev3.ListenerType: {listener(t, "outbound", "emoji:8080", "voting:8080")},
				resourcev3.RouteType:    {route("emoji:8080", "emoji"), route("voting:8080", "voting")},
				resourcev3.ClusterType:  {edsCluster("emoji", ""), edsCluster("voting", "")},
			}
			loner := map[string][]types.Resource{
				resourcev3.ListenerType: {listener(t, "inbound")},
				resourcev3.ClusterType:  {staticCluster("inbound|8080")},
			}
			nodes := []string{"web-0.shop", "web-1.shop", "web-2.shop", "db-0.shop"}
			setEndpoints(ctx, t, srv, "10.0.0.1")
			for _, n := range nodes {
				res := callers
				if n == "db-0.shop" {
					res = loner
				}
				if err := srv.SetNodeResources(ctx, n, proxy.Envoy, res, time.Time{}); err != nil {
					t.Fatalf("SetNodeResources %s: %v", n, err)
				}
			}

			fleet := NewFleet(addr, FleetOptions{Delta: delta, StreamsPerConn: 2})
			fctx, stop := context.WithCancel(ctx)
			defer func() { stop(); fleet.Close() }()
			for _, n := range nodes {
				if _, err := fleet.Add(fctx, n); err != nil {
					t.Fatalf("Add %s: %v", n, err)
				}
			}
			waitFleet(ctx, t, fleet)

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
