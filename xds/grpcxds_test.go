package xds

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/weftmesh/weft/proxy"
)

// startBackend serves the gRPC health service on loopback, reporting st.
func startBackend(t testing.TB, st healthpb.HealthCheckResponse_ServingStatus) uint32 {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", st)
	healthpb.RegisterHealthServer(gs, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return uint32(lis.Addr().(*net.TCPAddr).Port)
}

// TestGRPCClientThroughXDS runs grpc-go's own xDS client (the stricter peer
// for several resource kinds) against the server: it must accept the
// resources, route an RPC to the endpoint, follow an endpoint change, and
// its NACK of a bad CLA must be recorded.
func TestGRPCClientThroughXDS(t *testing.T) {
	var endpointCheckerOff = func(*endpointv3.ClusterLoadAssignment) error { return nil }
	nacks := make(chan Nack, 8)
	ts := startServer(t, Options{
		// Off so that a CLA grpc-go refuses reaches it: the point is to see
		// a real client's NACK.
		EndpointChecker: endpointCheckerOff,
		NackReporter:    func(n Nack) { nacks <- n },
	})
	serving := startBackend(t, healthpb.HealthCheckResponse_SERVING)
	notServing := startBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)

	const nodeID = "client-1.demo"
	const target = "echo.test:8080"
	res := map[string][]types.Resource{
		resourcev3.ListenerType: {apiListener(t, target, "echo-route")},
		resourcev3.RouteType:    {routeConfig("echo-route", target, "echo-cluster")},
		resourcev3.ClusterType:  {edsCluster("echo-cluster", "echo-cla")},
	}
	if err := ts.SetNodeResources(context.Background(), nodeID, proxy.GRPC, res, time.Time{}); err != nil {
		t.Fatal(err)
	}
	mustSetEndpoints(t, ts.Server, time.Time{}, cla("echo-cla", "127.0.0.1", serving))

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": "demo"}
	}`, ts.addr, nodeID)
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("building the xDS resolver: %v", err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)

	check := func() (healthpb.HealthCheckResponse_ServingStatus, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return resp.GetStatus(), err
	}
	if st, err := check(); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("RPC through xDS: %v %v, want SERVING", st, err)
	}

	eventually(t, "grpc-go ACKs every type", func() bool {
		ps, ok := ts.Proxy(nodeID)
		if !ok || ps.Kind != "grpc" {
			return false
		}
		versions := ts.NodeVersions(nodeID)
		for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
			if ps.Types[TypeLabel(typ)].VersionAcked != versions[typ] {
				return false
			}
		}
		eds := ps.Types["eds"]
		return eds.VersionAcked != "" && eds.VersionAcked == eds.VersionSent
	})
	ps, _ := ts.Proxy(nodeID)
	if !strings.Contains(strings.ToLower(ps.UserAgent), "grpc") {
		t.Errorf("user agent %q", ps.UserAgent)
	}
	for typ, st := range ps.Types {
		if st.LastNack != nil {
			t.Errorf("%s NACKed: %+v", typ, st.LastNack)
		}
	}

	// An endpoint change reaches the client: the RPC now lands on the
	// backend that reports NOT_SERVING.
	mustSetEndpoints(t, ts.Server, time.Time{}, cla("echo-cla", "127.0.0.1", notServing))
	eventually(t, "RPCs follow the endpoint change", func() bool {
		st, err := check()
		return err == nil && st == healthpb.HealthCheckResponse_NOT_SERVING
	})

	// grpc-go refuses a locality without an ID; the NACK is recorded and the
	// client keeps the last good endpoints.
	bad := cla("echo-cla", "127.0.0.1", serving)
	bad.Endpoints[0].Locality = nil
	mustSetEndpoints(t, ts.Server, time.Time{}, bad)
	select {
	case n := <-nacks:
		if n.TypeURL != resourcev3.EndpointType || n.Node.ID != nodeID || !strings.Contains(n.Detail.GetMessage(), "locality") {
			t.Errorf("NACK %+v, want an EDS NACK about the locality", n)
		}
	case <-time.After(waitTimeout):
		t.Fatal("grpc-go did not NACK a locality without ID")
	}
	if v := testutil.ToFloat64(ts.metrics.nacks.WithLabelValues("eds")); v != 1 {
		t.Errorf("eds NACKs = %v, want 1", v)
	}
	if st, err := check(); err != nil || st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("after the NACK: %v %v, want the last good endpoints (NOT_SERVING)", st, err)
	}
}
