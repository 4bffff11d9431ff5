package promsourcetest

// GRPCTraffic is gRPC traffic, per 10 s interval, in namespace apps. Every call answers
// HTTP 200 (gRPC over HTTP/2), so the status classes count them all as 2xx; the calls
// that end with a grpc-status other than OK (UNAVAILABLE, say) are counted by the
// grpc_stats filter Weft puts on gRPC ports, in cluster.<route's cluster>.grpc.failure
// (Envoy 1.40, configuration/http/http_filters/grpc_stats_filter.rst; ContextImpl::chargeStat
// in source/common/grpc/context_impl.cc), on the server's inbound|<port> cluster and on
// the client's outbound one:
//   - apps/greeter (1 pod) serves 42 calls on port 50051, 10 of them failed, at 3 ms;
//   - apps/billing (1 pod) serves 30 calls on port 9090, 3 failed, at 5 ms;
//   - apps/web (1 pod) serves 10 HTTP requests (2xx at 3 ms) and makes 40 calls to
//     greeter, 2 of which its proxy retried once after a trailers-only UNAVAILABLE
//     (translate's gRPC retry_on; the 42 attempts greeter served), 8 failed in the end,
//     and billing's 30 (3 failed), 10 of which matched billing's profile route "Charge".
func GRPCTraffic() []*ProxyTarget {
	server := func(port string, calls, failed, ms float64) func(p *standInProxy) {
		return func(p *standInProxy) {
			h := map[string]string{"weft_http_prefix": "inbound"}
			p.counters[newSeries("http.downstream_rq", with(h, "weft_response_code_class", "2xx"))] += calls
			p.counters[newSeries("http.downstream_rq_total", h)] += calls
			p.observe(newSeries("http.downstream_rq_time", h), ms, calls)
			p.gauges[newSeries("http.downstream_cx_active", h)] = 1
			if port != "" {
				p.counters[newSeries("cluster.grpc.failure", map[string]string{"weft_cluster": "inbound|" + port})] += failed
			}
		}
	}
	// A retried attempt answered 200 is charged to the cluster's retry.upstream_rq_2xx
	// and upstream_rq_retry, never to upstream_rq_2xx, and the grpc_stats filter never
	// sees it (Filter::onUpstreamHeaders, source/common/router/router.cc): the classes
	// and grpc.failure count each call's final response.
	client := func(p *standInProxy, cluster string, calls, failed, retried, ms float64) {
		out := map[string]string{"weft_cluster": cluster}
		p.counters[newSeries("cluster.upstream_rq", with(out, "weft_response_code_class", "2xx"))] += calls
		p.observe(newSeries("cluster.upstream_rq_time", out), ms, calls)
		p.counters[newSeries("cluster.grpc.failure", out)] += failed
		if retried > 0 {
			// (and retry.upstream_rq_2xx, which the stats matcher does not keep)
			p.counters[newSeries("cluster.upstream_rq_retry", out)] += retried
		}
	}
	webInbound := server("", 10, 0, 3)
	web := func(p *standInProxy) {
		webInbound(p)
		client(p, "outbound|50051|greeter.apps.svc.cluster.local", 40, 8, 2, 3)
		client(p, "outbound|9090|billing.apps.svc.cluster.local", 30, 3, 0, 5)
		// Route stats carry the HTTP status only: the route cannot tell its failed calls.
		rt := map[string]string{"weft_vhost": "billing.apps.svc.cluster.local:9090", "weft_route": "Charge"}
		p.counters[newSeries("vhost.route.upstream_rq", with(rt, "weft_response_code_class", "2xx"))] += 10
		p.counters[newSeries("vhost.route.upstream_rq_retry", rt)] += 0
		p.observe(newSeries("vhost.route.upstream_rq_time", rt), 5, 10)
	}
	return []*ProxyTarget{
		{"apps", "greeter-6c4d-1", "greeter", newStandInProxy(), server("50051", 42, 10, 3)},
		{"apps", "billing-7b8f-1", "billing", newStandInProxy(), server("9090", 30, 3, 5)},
		{"apps", "web-5d7c-1", "web", newStandInProxy(), web},
	}
}
