package check

import (
	"fmt"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/proxy"
)

// largeNode is a sidecar the size of a busy mesh: n services, each with an outbound filter
// chain (service IP, port, mTLS-originating HCM), a virtual host with a profile route
// (regex, retries, timeout, fault override) and a default route, an EDS cluster with
// least-request, mTLS over SDS and HTTP/2 options, and a 3-endpoint assignment.
func largeNode(n int) node {
	testCerts()
	out := &listenerv3.Listener{
		Name:    "outbound",
		Address: socketAddress("0.0.0.0", 15001),
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})}}},
	}
	rc := &routev3.RouteConfiguration{Name: "outbound"}
	nd := node{
		listeners: []*listenerv3.Listener{out, listener("inbound", 15006, httpChain("http", hcmRDS("outbound")))},
		routes:    []*routev3.RouteConfiguration{rc},
		secrets:   []*tlsv3.Secret{certSecret("cert", goodPair), caSecret("ca", goodPair.cert)},
	}
	protocol := mustAny(explicitHTTP2())
	lb := lbPolicy(&leastrequestv3.LeastRequest{})
	for i := range n {
		svc := fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i%20)
		clusterName := fmt.Sprintf("outbound|8080||%s", svc)
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		chain := httpChain(svc, hcmRDS("outbound"))
		chain.FilterChainMatch = &listenerv3.FilterChainMatch{
			PrefixRanges:    []*corev3.CidrRange{cidr(ip, 32)},
			DestinationPort: wrapperspb.UInt32(8080),
		}
		out.FilterChains = append(out.FilterChains, chain)

		profile := routeTo(clusterName)
		profile.Name = "profile"
		profile.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/api/v1/books/[^/]+"}}
		profile.GetRoute().RetryPolicy = &routev3.RetryPolicy{
			RetryOn: "5xx,connect-failure", NumRetries: wrapperspb.UInt32(2),
			RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(25 * time.Millisecond), MaxInterval: durationpb.New(250 * time.Millisecond)},
		}
		profile.GetRoute().Timeout = durationpb.New(time.Second)
		profile.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": mustAny(&faultv3.HTTPFault{})}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    svc,
			Domains: []string{svc, svc + ":8080", ip, ip + ":8080"},
			Routes:  []*routev3.Route{profile, routeTo(clusterName)},
		})

		cl := edsCluster(clusterName)
		cl.ConnectTimeout = durationpb.New(time.Second)
		cl.LoadBalancingPolicy = lb
		cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: protocol}
		cl.TransportSocket = transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: mtls()})
		cl.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{MinRetryConcurrency: wrapperspb.UInt32(10)},
		}}}
		nd.clusters = append(nd.clusters, cl)
		nd.endpoints = append(nd.endpoints, cla(clusterName,
			lbEndpoint(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), 8080),
			lbEndpoint(fmt.Sprintf("10.2.%d.%d", i/250, i%250+1), 8080),
			lbEndpoint(fmt.Sprintf("10.3.%d.%d", i/250, i%250+1), 8080)))
	}
	return nd
}

// The benchmark measures clean input: a checker that reports problems does more work.
func TestLargeNodeIsClean(t *testing.T) {
	if probs := Problems(proxy.Envoy, largeNode(50).res()); len(probs) != 0 {
		t.Fatalf("got:\n%s", dump(probs))
	}
}

// BenchmarkResources500 checks 500 services' worth of resources (500 filter chains, 500
// virtual hosts with 1000 routes, 500 clusters, 500 assignments), as before every push.
func BenchmarkResources500(b *testing.B) {
	res := largeNode(500).res()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := Resources(proxy.Envoy, res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResources500Unmemoized is BenchmarkResources500 with the memo off: every
// resource checked as if seen for the first time (a node whose resources are all new).
func BenchmarkResources500Unmemoized(b *testing.B) {
	memoDisabled.Store(true)
	defer memoDisabled.Store(false)
	BenchmarkResources500(b)
}

// BenchmarkNodesSharingOneSet checks 1000 sidecars of one mesh, as the xDS server does on a
// connect storm: every node gets the same 100 services' routes, clusters, assignments,
// secrets and outbound listener (the same pointers, as translate returns them), and its own
// inbound listener. The figure per node is what one push costs the checker.
func BenchmarkNodesSharingOneSet(b *testing.B) {
	const nodes = 1000
	shared := largeNode(100)
	sets := make([]map[string][]types.Resource, nodes)
	for i := range sets {
		n := shared
		n.listeners = []*listenerv3.Listener{shared.listeners[0],
			listener(fmt.Sprintf("inbound-%d", i), 15006, httpChain("http", hcmRDS("outbound")))}
		sets[i] = n.res()
	}
	for _, memo := range []bool{true, false} {
		b.Run(fmt.Sprintf("memo=%v", memo), func(b *testing.B) {
			memoDisabled.Store(!memo)
			defer memoDisabled.Store(false)
			b.ReportAllocs()
			for b.Loop() {
				for _, res := range sets {
					if err := Resources(proxy.Envoy, res); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nodes), "ns/node")
		})
	}
}
