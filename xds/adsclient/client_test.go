package adsclient

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/xds"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 10 * time.Second

// startServer serves a real xds.Server on loopback until the test ends. The
// checkers accept anything: what is under test is the client's protocol,
// not whether the fixtures would pass Envoy.
func startServer(t *testing.T, validator xds.NodeValidator) (*xds.Server, string) {
	t.Helper()
	s, addr, _ := serveAt(t, validator, "127.0.0.1:0")
	return s, addr
}

// serveAt is startServer on addr; stop ends the server (and its streams)
// before the test does, as a control plane that dies.
func serveAt(t *testing.T, validator xds.NodeValidator, addr string) (_ *xds.Server, _ string, stop func()) {
	t.Helper()
	s, err := xds.New(xds.Options{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		Checker:         func(xds.NodeInfo, map[string][]types.Resource) error { return nil },
		EndpointChecker: func(*endpointv3.ClusterLoadAssignment) error { return nil },
		NodeValidator:   validator,
	})
	if err != nil {
		t.Fatalf("xds.New: %v", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, lis.Addr().String(), stop
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

// listener is an Envoy-style listener whose filter chains each hold an HCM
// with the given RDS name.
func listener(t *testing.T, name string, routeNames ...string) *listenerv3.Listener {
	t.Helper()
	l := &listenerv3.Listener{Name: name}
	for _, rn := range routeNames {
		router, err := anypb.New(&routerv3.Router{})
		if err != nil {
			t.Fatal(err)
		}
		hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
			StatPrefix:     rn,
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: rn}},
			HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}})
	}
	return l
}

func route(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

func edsCluster(name, serviceName string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: serviceName},
	}
}

func staticCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
}

func cla(name, ip string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality: &corev3.Locality{Zone: "zone-a"},
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
			}}},
		}}}},
	}}}
}

// names lists a type's resource names, as the client holds them.
func names(res map[string][]types.Resource, typeURL string) []string {
	var out []string
	for _, r := range res[typeURL] {
		out = append(out, cachev3.GetResourceName(r))
	}
	return out
}

const node = "web-1.emojivoto"

// set is one config update: the node's set, then the shared endpoints.
type set struct {
	res  map[string][]types.Resource
	clas []*endpointv3.ClusterLoadAssignment
}

func TestClientSubscribesLikeEnvoyAndSyncs(t *testing.T) {
	first := set{
		res: map[string][]types.Resource{
			resourcev3.ListenerType: {listener(t, "outbound", "emoji:8080", "voting:8080"), listener(t, "inbound")},
			resourcev3.RouteType:    {route("emoji:8080", "emoji"), route("voting:8080", "voting"), route("unused", "emoji")},
			resourcev3.ClusterType:  {edsCluster("emoji", "emoji-cla"), edsCluster("voting", ""), staticCluster("inbound|8080")},
		},
		clas: []*endpointv3.ClusterLoadAssignment{cla("emoji-cla", "10.244.0.5"), cla("voting", "10.244.0.6"), cla("elsewhere", "10.244.0.9")},
	}
	// voting goes away: its route and CLA must no longer be asked for.
	second := set{
		res: map[string][]types.Resource{
			resourcev3.ListenerType: {listener(t, "outbound", "emoji:8080")},
			resourcev3.RouteType:    {route("emoji:8080", "emoji")},
			resourcev3.ClusterType:  {edsCluster("emoji", "emoji-cla")},
		},
	}

	tests := []struct {
		name   string
		sets   []set
		wantLn []string
		wantRt []string
		wantCl []string
		wantEp []string
	}{
		{
			name:   "routes and load assignments named by listeners and EDS clusters, nothing else",
			sets:   []set{first},
			wantLn: []string{"inbound", "outbound"},
			wantRt: []string{"emoji:8080", "voting:8080"},
			wantCl: []string{"emoji", "inbound|8080", "voting"},
			wantEp: []string{"emoji-cla", "voting"},
		},
		{
			name:   "an update drops what is no longer named",
			sets:   []set{first, second},
			wantLn: []string{"outbound"},
			wantRt: []string{"emoji:8080"},
			wantCl: []string{"emoji"},
			wantEp: []string{"emoji-cla"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := startServer(t, xds.ParsingNodeValidator)
			ctx := t.Context()
			c, err := Dial(ctx, addr, node)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()

			for i, s := range tc.sets {
				if len(s.clas) > 0 {
					m := map[string]*endpointv3.ClusterLoadAssignment{}
					for _, a := range s.clas {
						m[a.GetClusterName()] = a
					}
					if err := srv.SetEndpoints(ctx, m, time.Time{}); err != nil {
						t.Fatalf("SetEndpoints: %v", err)
					}
				}
				if err := srv.SetNodeResources(ctx, node, proxy.Envoy, s.res, time.Time{}); err != nil {
					t.Fatalf("SetNodeResources: %v", err)
				}
				want := srv.NodeVersions(node)
				wctx, cancel := context.WithTimeout(ctx, waitTimeout)
				err := waitVersions(wctx, c, want)
				cancel()
				if err != nil {
					t.Fatalf("set %d: %v", i, err)
				}
			}

			got := c.Resources()
			for _, w := range []struct {
				typeURL string
				want    []string
			}{
				{resourcev3.ListenerType, tc.wantLn},
				{resourcev3.RouteType, tc.wantRt},
				{resourcev3.ClusterType, tc.wantCl},
				{resourcev3.EndpointType, tc.wantEp},
			} {
				if n := names(got, w.typeURL); !slices.Equal(n, w.want) {
					t.Errorf("%s: client holds %v, want %v", w.typeURL, n, w.want)
				}
			}
			// What the client holds is what the server says the node is
			// served, except the routes no listener names.
			served, ok := srv.NodeConfig(node)
			if !ok {
				t.Fatal("NodeConfig: no set")
			}
			for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
				if s, g := names(served, typeURL), names(got, typeURL); typeURL != resourcev3.RouteType && !slices.Equal(s, g) {
					t.Errorf("%s: server serves %v, client holds %v", typeURL, s, g)
				}
			}
			// The server has seen every type ACKed at the version it sent.
			for typeURL, v := range srv.NodeVersions(node) {
				if typeURL == resourcev3.SecretType {
					continue
				}
				if c.Versions()[typeURL] != v {
					t.Errorf("%s: client ACKed %q, server's version %q", typeURL, c.Versions()[typeURL], v)
				}
			}
		})
	}
}

// waitVersions waits for WaitSynced and for the listener, route and cluster
// versions to be the ones the server holds for the node.
func waitVersions(ctx context.Context, c *Client, want map[string]string) error {
	for {
		if err := c.WaitSynced(ctx); err != nil {
			return err
		}
		v := c.Versions()
		if v[resourcev3.ListenerType] == want[resourcev3.ListenerType] && v[resourcev3.ClusterType] == want[resourcev3.ClusterType] &&
			v[resourcev3.RouteType] == want[resourcev3.RouteType] {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestWaitSyncedWaitsForNamedEndpoints(t *testing.T) {
	srv, addr := startServer(t, xds.ParsingNodeValidator)
	ctx := t.Context()
	c, err := Dial(ctx, addr, node)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	res := map[string][]types.Resource{
		resourcev3.ListenerType: {listener(t, "outbound", "emoji:8080")},
		resourcev3.RouteType:    {route("emoji:8080", "emoji")},
		resourcev3.ClusterType:  {edsCluster("emoji", "emoji-cla")},
	}
	if err := srv.SetNodeResources(ctx, node, proxy.Envoy, res, time.Time{}); err != nil {
		t.Fatalf("SetNodeResources: %v", err)
	}
	// Without the CLA the client must not call itself synced.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = c.WaitSynced(short)
	cancel()
	if err == nil {
		t.Fatalf("WaitSynced returned before the named ClusterLoadAssignment arrived; holds %v", names(c.Resources(), resourcev3.EndpointType))
	}
	if err := srv.SetEndpoints(ctx, map[string]*endpointv3.ClusterLoadAssignment{"emoji-cla": cla("emoji-cla", "10.244.0.5")}, time.Time{}); err != nil {
		t.Fatalf("SetEndpoints: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := c.WaitSynced(wctx); err != nil {
		t.Fatalf("WaitSynced after the CLA was set: %v", err)
	}
	if n := names(c.Resources(), resourcev3.EndpointType); !slices.Equal(n, []string{"emoji-cla"}) {
		t.Errorf("endpoints held: %v, want [emoji-cla]", n)
	}
}

func TestWaitSyncedFailsWhenTheServerRefusesTheNode(t *testing.T) {
	refuse := func(_ context.Context, n *corev3.Node) (xds.NodeInfo, error) {
		return xds.NodeInfo{}, status.Errorf(codes.NotFound, "no pod for %s", n.GetId())
	}
	_, addr := startServer(t, refuse)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	c, err := Dial(ctx, addr, node)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	err = c.WaitSynced(ctx)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("WaitSynced: %v, want the server's NotFound", err)
	}
}

func TestSubscriptions(t *testing.T) {
	grpcListener := func(rds string) *listenerv3.Listener {
		hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: rds}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return &listenerv3.Listener{Name: "emoji:8080", ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}
	}
	for _, tc := range []struct {
		name     string
		resource types.Resource
		want     []string
	}{
		{"envoy listener", listener(t, "outbound", "emoji:8080", "web:80"), []string{"emoji:8080", "web:80"}},
		{"grpc-go API listener", grpcListener("emoji:8080"), []string{"emoji:8080"}},
		{"EDS cluster with a service name", edsCluster("emoji", "emoji-cla"), []string{"emoji-cla"}},
		{"EDS cluster without one", edsCluster("emoji", ""), []string{"emoji"}},
		{"static cluster", staticCluster("emoji"), nil},
		{"route configuration", route("emoji:8080", "emoji"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Subscriptions(tc.resource); !slices.Equal(got, tc.want) {
				t.Errorf("Subscriptions = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNACKKeepsThePreviousState(t *testing.T) {
	srv, addr := startServer(t, xds.ParsingNodeValidator)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	const msg = "not to my taste"
	c, err := Dial(ctx, addr, node, WithNACK(func(resp *discoveryv3.DiscoveryResponse) string {
		if resp.GetTypeUrl() == resourcev3.ListenerType {
			return msg
		}
		return ""
	}))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	res := map[string][]types.Resource{
		resourcev3.ListenerType: {listener(t, "outbound", "emoji:8080")},
		resourcev3.ClusterType:  {staticCluster("emoji")},
	}
	if err := srv.SetNodeResources(ctx, node, proxy.Envoy, res, time.Time{}); err != nil {
		t.Fatalf("SetNodeResources: %v", err)
	}
	v, err := c.WaitFor(ctx, "a listener NACK and a cluster ACK", func(v View) bool {
		return v.NACKs[resourcev3.ListenerType] > 0 && v.ACKs[resourcev3.ClusterType] > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(v.Resources[resourcev3.ListenerType]); n != 0 || v.ACKs[resourcev3.ListenerType] != 0 {
		t.Errorf("after NACKing listeners the client holds %d and ACKed %d, want none", n, v.ACKs[resourcev3.ListenerType])
	}
	if _, ok := v.Versions[resourcev3.ListenerType]; ok || v.Synced {
		t.Errorf("NACKed listeners count as applied: versions %v, synced %v", v.Versions, v.Synced)
	}
	if _, ok := v.Resources[resourcev3.ClusterType]["emoji"]; !ok {
		t.Errorf("clusters held: %v, want emoji", v.Resources[resourcev3.ClusterType])
	}
}
