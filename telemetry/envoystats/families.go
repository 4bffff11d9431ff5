package envoystats

// Type is a stat's kind, which decides how /stats/prometheus renders it.
type Type uint8

const (
	Counter Type = iota
	Gauge
	Histogram
)

func (t Type) String() string {
	switch t {
	case Counter:
		return "counter"
	case Gauge:
		return "gauge"
	}
	return "histogram"
}

// Stat is one stat as Envoy creates it: its full name, before tag extraction.
type Stat struct {
	Name string
	Type Type
}

// Scope is where Envoy roots a family's stats; the enumeration (enumerate.go) fills in
// the object's name.
type Scope uint8

const (
	// ScopeServer: names are complete ("server.live"), one set per proxy.
	ScopeServer Scope = iota
	// ScopeWorker: server.worker_<n>., per worker thread (--concurrency).
	ScopeWorker
	// ScopeCluster: cluster.<name>., per cluster (bootstrap's and CDS').
	ScopeCluster
	// ScopeCircuitBreakers: cluster.<name>.circuit_breakers.<default|high>.
	ScopeCircuitBreakers
	// ScopeOutlierDetection: cluster.<name>.outlier_detection., clusters with
	// outlier_detection.
	ScopeOutlierDetection
	// ScopeClusterTLS: cluster.<name>.ssl., clusters with a TLS transport socket.
	ScopeClusterTLS
	// ScopeClusterGRPC: cluster.<name>.grpc., clusters a connection manager with the
	// grpc_stats filter routes to.
	ScopeClusterGRPC
	// ScopeListener: listener.<address or stat_prefix>., per listener.
	ScopeListener
	// ScopeListenerHandler: listener.<address>.worker_<n>. per worker (the admin
	// listener's is main_thread).
	ScopeListenerHandler
	// ScopeListenerTLS: listener.<address>.ssl., listeners with a TLS filter chain.
	ScopeListenerTLS
	// ScopeListenerHTTP: listener.<address>.http.<stat_prefix>., per HTTP connection
	// manager prefix on a listener.
	ScopeListenerHTTP
	// ScopeHTTP: http.<stat_prefix>., per HTTP connection manager prefix (chains with
	// the same prefix share the stats).
	ScopeHTTP
	// ScopeRDS: http.<stat_prefix>.rds.<route_config_name>., per RDS subscription.
	ScopeRDS
	// ScopeTCP: tcp.<stat_prefix>., per tcp_proxy prefix.
	ScopeTCP
	// ScopeRoute: vhost.<virtual host>.route.<stat_prefix>., routes with a stat_prefix.
	ScopeRoute
	// ScopeListenerFilter: names are complete (tls_inspector.*), present when some
	// listener runs the filter (Filter names it).
	ScopeListenerFilter
)

// When says when Envoy creates a family's stats.
type When uint8

const (
	// AtConfig: with the object, as the stats struct its macro generates.
	AtConfig When = iota
	// OnTraffic: when the object first handles a request or connection. Names may hold
	// {class} (1xx..5xx), {code} (200, 503...) and {grpc} (a grpc-status: 0, 14...), one
	// stat per class, code or status seen
	// (source/common/http/codes.cc, CodeStatsImpl::chargeResponseStat and
	// chargeResponseTiming).
	OnTraffic
)

// Family is one row of what Envoy creates: the stats one macro (or one code path)
// makes under one scope. Adding a stat family Weft's configuration makes Envoy create
// is one row here.
type Family struct {
	Scope Scope
	When  When
	// Filter is the listener filter whose presence creates the family
	// (ScopeListenerFilter only).
	Filter string
	// Source is where the names come from in Envoy's source.
	Source string
	Stats  []Stat
}

func counters(names ...string) []Stat { return typed(Counter, names) }
func gauges(names ...string) []Stat   { return typed(Gauge, names) }
func histograms(names ...string) []Stat {
	return typed(Histogram, names)
}

func typed(t Type, names []string) []Stat {
	out := make([]Stat, len(names))
	for i, n := range names {
		out[i] = Stat{Name: n, Type: t}
	}
	return out
}

func join(parts ...[]Stat) []Stat {
	var out []Stat
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// subscriptionStats are what every xDS subscription keeps under its scope
// (source/common/config/utility.h ALL_SUBSCRIPTION_STATS) plus the reload counters of
// the API using it (ALL_CDS_STATS, ALL_LDS_STATS, ALL_RDS_STATS).
var subscriptionStats = join(
	counters("init_fetch_timeout", "update_attempt", "update_failure", "update_rejected", "update_success", "config_reload"),
	gauges("update_time", "version", "config_reload_time_ms"),
	histograms("update_duration"),
)

// sslStats are a TLS context's stats (source/common/tls/stats.h ALL_SSL_STATS). The
// ciphers.<name>, curves.<name>, sigalgs.<name> and versions.<name> counters a
// handshake creates are left out: no inclusion pattern of Weft's can keep them.
var sslStats = counters("connection_error", "handshake", "session_reused", "no_certificate",
	"fail_verify_no_cert", "fail_verify_error", "fail_verify_san", "fail_verify_cert_hash",
	"ocsp_staple_failed", "ocsp_staple_omitted", "ocsp_staple_responses", "ocsp_staple_requests",
	"was_key_usage_invalid")

// responseStats are what the router charges per response and timing on a cluster or a
// route (codes.cc chargeResponseStat / chargeResponseTiming).
var responseStats = join(
	counters("upstream_rq_{class}", "upstream_rq_{code}", "upstream_rq_completed"),
	histograms("upstream_rq_time"),
)

// Families is everything the enumeration knows Envoy creates, from Envoy's source
// (envoyproxy/envoy; Weft pins Envoy 1.40). Not listed, because no pattern of Weft's
// inclusion list can keep them (each would be a new row if one did): the codec stats
// cluster.<name>.http1.* / http2.*, the gRPC client stats of Envoy's own gRPC clients, the
// SDS subscriptions sds.<secret>.*, runtime.*, overload.*, access log stats, and the
// ALL_CLUSTER_LOAD_REPORT_STATS, which live outside the store /stats/prometheus reads.
var Families = []Family{
	{Scope: ScopeServer, Source: "source/server/server.h ALL_SERVER_STATS", Stats: join(
		counters("server.debug_assertion_failures", "server.envoy_bug_failures", "server.envoy_notifications",
			"server.dynamic_unknown_fields", "server.static_unknown_fields", "server.wip_protos",
			"server.dropped_stat_flushes"),
		gauges("server.concurrency", "server.days_until_first_cert_expiring",
			"server.seconds_until_first_ocsp_response_expiring", "server.hot_restart_epoch",
			"server.hot_restart_generation", "server.live", "server.memory_allocated", "server.memory_heap_size",
			"server.memory_physical_size", "server.parent_connections", "server.state",
			"server.stats_recent_lookups", "server.total_connections", "server.uptime", "server.version",
			"server.compilation_settings.fips_mode"),
		histograms("server.initialization_time_ms"),
	)},
	{Scope: ScopeServer, Source: "source/server/guarddog_impl.cc (server.watchdog_miss, server.<thread>.watchdog_miss)",
		Stats: counters("server.watchdog_miss", "server.watchdog_mega_miss",
			"server.main_thread.watchdog_miss", "server.main_thread.watchdog_mega_miss")},
	{Scope: ScopeWorker, Source: "source/server/guarddog_impl.cc (per worker thread)",
		Stats: counters("watchdog_miss", "watchdog_mega_miss")},
	{Scope: ScopeServer, Source: "source/common/upstream/cluster_manager_impl.h ALL_CLUSTER_MANAGER_STATS", Stats: join(
		counters("cluster_manager.cluster_added", "cluster_manager.cluster_modified", "cluster_manager.cluster_removed",
			"cluster_manager.cluster_updated", "cluster_manager.cluster_updated_via_merge",
			"cluster_manager.update_merge_cancelled", "cluster_manager.update_out_of_merge_window"),
		gauges("cluster_manager.active_clusters", "cluster_manager.warming_clusters"),
	)},
	{Scope: ScopeServer, Source: "source/common/upstream/cds_api_impl.cc (cluster_manager.cds.) ALL_SUBSCRIPTION_STATS, ALL_CDS_STATS",
		Stats: prefixed("cluster_manager.cds.", subscriptionStats)},
	{Scope: ScopeServer, Source: "source/common/listener_manager/listener_manager_impl.h ALL_LISTENER_MANAGER_STATS", Stats: join(
		counters("listener_manager.listener_added", "listener_manager.listener_create_failure",
			"listener_manager.listener_create_success", "listener_manager.listener_in_place_updated",
			"listener_manager.listener_modified", "listener_manager.listener_removed", "listener_manager.listener_stopped"),
		gauges("listener_manager.total_filter_chains_draining", "listener_manager.total_listeners_active",
			"listener_manager.total_listeners_draining", "listener_manager.total_listeners_warming",
			"listener_manager.workers_started"),
	)},
	{Scope: ScopeServer, Source: "source/common/listener_manager/lds_api.cc (listener_manager.lds.) ALL_SUBSCRIPTION_STATS, ALL_LDS_STATS",
		Stats: prefixed("listener_manager.lds.", subscriptionStats)},
	{Scope: ScopeServer, Source: "source/common/config/grpc_stream.h ALL_CONTROL_PLANE_STATS (identifier is a text readout, not rendered)", Stats: join(
		counters("control_plane.rate_limit_enforced"),
		gauges("control_plane.connected_state", "control_plane.pending_requests"),
	)},
	{Scope: ScopeServer, Source: "source/common/runtime/runtime_impl.h ALL_RUNTIME_STATS", Stats: join(
		counters("runtime.load_error", "runtime.load_success", "runtime.override_dir_exists",
			"runtime.override_dir_not_exists", "runtime.deprecated_feature_use"),
		gauges("runtime.admin_overrides_active", "runtime.deprecated_feature_seen_since_process_start",
			"runtime.num_keys", "runtime.num_layers"),
	)},

	{Scope: ScopeCluster, Source: "envoy/upstream/upstream.h ALL_CLUSTER_TRAFFIC_STATS", Stats: join(
		counters("bind_errors", "original_dst_host_invalid", "retry_or_shadow_abandoned",
			"upstream_cx_close_notify", "upstream_cx_connect_attempts_exceeded", "upstream_cx_connect_fail",
			"upstream_cx_connect_timeout", "upstream_cx_connect_with_0_rtt", "upstream_cx_destroy",
			"upstream_cx_destroy_local", "upstream_cx_destroy_local_with_active_rq", "upstream_cx_destroy_remote",
			"upstream_cx_destroy_remote_with_active_rq", "upstream_cx_destroy_with_active_rq",
			"upstream_cx_http1_total", "upstream_cx_http2_total", "upstream_cx_http3_total",
			"upstream_cx_idle_timeout", "upstream_cx_max_duration_reached", "upstream_cx_max_requests",
			"upstream_cx_none_healthy", "upstream_cx_overflow", "upstream_cx_pool_overflow",
			"upstream_cx_protocol_error", "upstream_cx_rx_bytes_total", "upstream_cx_total",
			"upstream_cx_tx_bytes_total", "upstream_flow_control_backed_up_total",
			"upstream_flow_control_drained_total", "upstream_flow_control_paused_reading_total",
			"upstream_flow_control_resumed_reading_total", "upstream_internal_redirect_failed_total",
			"upstream_internal_redirect_succeeded_total", "upstream_rq_cancelled", "upstream_rq_completed",
			"upstream_rq_maintenance_mode", "upstream_rq_max_duration_reached", "upstream_rq_pending_failure_eject",
			"upstream_rq_pending_overflow", "upstream_rq_pending_total", "upstream_rq_0rtt",
			"upstream_rq_per_try_timeout", "upstream_rq_per_try_idle_timeout", "upstream_rq_retry",
			"upstream_rq_retry_backoff_exponential", "upstream_rq_retry_backoff_ratelimited",
			"upstream_rq_retry_limit_exceeded", "upstream_rq_retry_overflow", "upstream_rq_retry_success",
			"upstream_rq_rx_reset", "upstream_rq_timeout", "upstream_rq_total", "upstream_rq_tx_reset",
			"upstream_http3_broken"),
		gauges("upstream_cx_active", "upstream_cx_rx_bytes_buffered", "upstream_cx_tx_bytes_buffered",
			"upstream_rq_active", "upstream_rq_pending_active"),
		histograms("upstream_cx_connect_ms", "upstream_cx_length_ms", "upstream_rq_per_cx"),
	)},
	{Scope: ScopeCluster, Source: "envoy/upstream/upstream.h ALL_CLUSTER_LB_STATS, ALL_CLUSTER_ENDPOINT_STATS, ALL_CLUSTER_CONFIG_UPDATE_STATS", Stats: join(
		counters("lb_healthy_panic", "lb_local_cluster_not_ok", "lb_recalculate_zone_structures",
			"lb_subsets_created", "lb_subsets_fallback", "lb_subsets_fallback_panic", "lb_subsets_removed",
			"lb_subsets_selected", "lb_zone_cluster_too_small", "lb_zone_no_capacity_left",
			"lb_zone_routing_all_directly", "lb_zone_routing_cross_zone", "lb_zone_routing_sampled",
			"membership_change", "assignment_stale", "assignment_timeout_received", "assignment_use_cached",
			"update_attempt", "update_empty", "update_failure", "update_no_rebuild", "update_success"),
		gauges("lb_subsets_active", "max_host_weight", "membership_degraded", "membership_excluded",
			"membership_healthy", "membership_total", "version", "warming_state"),
	)},
	// remaining_* gauges exist only with track_remaining, which Weft does not set.
	{Scope: ScopeCircuitBreakers, Source: "envoy/upstream/upstream.h ALL_CLUSTER_CIRCUIT_BREAKERS_STATS",
		Stats: gauges("cx_open", "cx_pool_open", "rq_open", "rq_pending_open", "rq_retry_open")},
	{Scope: ScopeOutlierDetection, Source: "source/common/upstream/outlier_detection_impl.h ALL_OUTLIER_DETECTION_STATS", Stats: join(
		counters("ejections_consecutive_5xx", "ejections_detected_consecutive_5xx",
			"ejections_detected_consecutive_gateway_failure", "ejections_detected_success_rate",
			"ejections_enforced_consecutive_5xx", "ejections_enforced_consecutive_gateway_failure",
			"ejections_enforced_success_rate", "ejections_enforced_total", "ejections_overflow",
			"ejections_success_rate", "ejections_total", "ejections_detected_consecutive_local_origin_failure",
			"ejections_enforced_consecutive_local_origin_failure", "ejections_detected_local_origin_success_rate",
			"ejections_enforced_local_origin_success_rate", "ejections_detected_failure_percentage",
			"ejections_enforced_failure_percentage", "ejections_detected_failure_percentage_local_origin",
			"ejections_enforced_failure_percentage_local_origin"),
		gauges("ejections_active"),
	)},
	{Scope: ScopeClusterTLS, Source: "source/common/tls/stats.h ALL_SSL_STATS", Stats: sslStats},
	// The grpc_stats filter with stats_for_all_methods false and no allowlist charges
	// no service or method in the name (source/extensions/filters/http/grpc_stats/
	// grpc_stats_filter.cc; source/common/grpc/context_impl.cc, ContextImpl::chargeStat:
	// the status, then success or failure, then total).
	{Scope: ScopeClusterGRPC, When: OnTraffic, Source: "source/common/grpc/context_impl.cc ContextImpl::chargeStat (grpc_stats filter)",
		Stats: counters("{grpc}", "success", "failure", "total")},
	// Weft's connection managers leave use_remote_address unset, so Envoy never marks a
	// request internal (x-envoy-internal): every response is also charged as external.
	{Scope: ScopeCluster, When: OnTraffic, Source: "source/common/http/codes.cc chargeResponseStat, chargeResponseTiming (and writeCategory: external.)",
		Stats: join(responseStats, prefixed("external.", responseStats))},

	{Scope: ScopeListener, Source: "source/server/active_listener_base.h ALL_LISTENER_STATS", Stats: join(
		counters("downstream_cx_destroy", "downstream_cx_overflow", "downstream_cx_total",
			"downstream_cx_transport_socket_connect_timeout", "downstream_cx_overload_reject",
			"downstream_global_cx_overflow", "downstream_pre_cx_timeout", "no_filter_chain_match"),
		gauges("downstream_cx_active", "downstream_pre_cx_active"),
		histograms("downstream_cx_length_ms"),
	)},
	{Scope: ScopeListenerHandler, Source: "source/server/active_listener_base.h ALL_PER_HANDLER_LISTENER_STATS (per worker: parent.statPrefix())", Stats: join(
		counters("downstream_cx_total"), gauges("downstream_cx_active"),
	)},
	{Scope: ScopeListenerTLS, Source: "source/common/tls/stats.h ALL_SSL_STATS", Stats: sslStats},
	{Scope: ScopeListenerHTTP, When: OnTraffic, Source: "source/common/http/conn_manager_config.h CONN_MAN_LISTENER_STATS",
		Stats: counters("downstream_rq_1xx", "downstream_rq_2xx", "downstream_rq_3xx", "downstream_rq_4xx",
			"downstream_rq_5xx", "downstream_rq_completed")},
	{Scope: ScopeListenerFilter, Filter: "envoy.filters.listener.tls_inspector", Source: "source/extensions/filters/listener/tls_inspector/tls_inspector.h ALL_TLS_INSPECTOR_STATS", Stats: join(
		counters("tls_inspector.client_hello_too_large", "tls_inspector.tls_found", "tls_inspector.tls_not_found",
			"tls_inspector.alpn_found", "tls_inspector.alpn_not_found", "tls_inspector.sni_found",
			"tls_inspector.sni_not_found"),
		histograms("tls_inspector.bytes_processed"),
	)},
	{Scope: ScopeListenerFilter, Filter: "envoy.filters.listener.http_inspector", Source: "source/extensions/filters/listener/http_inspector/http_inspector.h ALL_HTTP_INSPECTOR_STATS",
		Stats: counters("http_inspector.read_error", "http_inspector.http10_found", "http_inspector.http11_found",
			"http_inspector.http2_found", "http_inspector.http_not_found")},

	{Scope: ScopeHTTP, Source: "source/common/http/conn_manager_config.h ALL_HTTP_CONN_MAN_STATS", Stats: join(
		counters("downstream_cx_delayed_close_timeout", "downstream_cx_destroy", "downstream_cx_destroy_active_rq",
			"downstream_cx_destroy_local", "downstream_cx_destroy_local_active_rq", "downstream_cx_destroy_remote",
			"downstream_cx_destroy_remote_active_rq", "downstream_cx_drain_close", "downstream_cx_http1_total",
			"downstream_cx_http2_total", "downstream_cx_http3_total", "downstream_cx_idle_timeout",
			"downstream_cx_max_duration_reached", "downstream_cx_max_requests_reached",
			"downstream_cx_overload_disable_keepalive", "downstream_cx_protocol_error", "downstream_cx_rx_bytes_total",
			"downstream_cx_ssl_total", "downstream_cx_total", "downstream_cx_tx_bytes_total",
			"downstream_cx_upgrades_total", "downstream_flow_control_paused_reading_total",
			"downstream_flow_control_resumed_reading_total", "downstream_rq_1xx", "downstream_rq_2xx",
			"downstream_rq_3xx", "downstream_rq_4xx", "downstream_rq_5xx", "downstream_rq_completed",
			"downstream_rq_failed_path_normalization", "downstream_rq_http1_total", "downstream_rq_http2_total",
			"downstream_rq_http3_total", "downstream_rq_idle_timeout", "downstream_rq_non_relative_path",
			"downstream_rq_overload_close", "downstream_rq_redirected_with_normalized_path",
			"downstream_rq_rejected_via_ip_detection", "downstream_rq_response_before_rq_complete",
			"downstream_rq_rx_reset", "downstream_rq_header_timeout", "downstream_rq_timeout",
			"downstream_rq_too_large", "downstream_rq_total", "downstream_rq_tx_reset",
			"downstream_rq_max_duration_reached", "downstream_rq_ws_on_non_ws_route",
			"downstream_rq_too_many_premature_resets", "rs_too_large"),
		gauges("downstream_cx_active", "downstream_cx_http1_active", "downstream_cx_http2_active",
			"downstream_cx_http3_active", "downstream_cx_rx_bytes_buffered", "downstream_cx_ssl_active",
			"downstream_cx_tx_bytes_buffered", "downstream_cx_upgrades_active", "downstream_rq_active"),
		histograms("downstream_cx_length_ms", "downstream_rq_time"),
	)},
	{Scope: ScopeHTTP, Source: "source/common/http/conn_manager_config.h CONN_MAN_TRACING_STATS (tracing.)",
		Stats: counters("tracing.random_sampling", "tracing.service_forced", "tracing.client_enabled",
			"tracing.not_traceable", "tracing.health_check")},
	{Scope: ScopeHTTP, Source: "source/common/router/router.h ALL_ROUTER_STATS (the router filter, rooted at its connection manager's prefix)",
		Stats: counters("no_route", "no_cluster", "rq_redirect", "rq_direct_response", "rq_total",
			"rq_reset_after_downstream_response_started", "rq_overload_local_reply",
			"passthrough_internal_redirect_bad_location", "passthrough_internal_redirect_unsafe_scheme",
			"passthrough_internal_redirect_too_many_redirects", "passthrough_internal_redirect_no_route",
			"passthrough_internal_redirect_predicate")},
	{Scope: ScopeRDS, Source: "source/common/router/rds_impl.h ALL_RDS_STATS, ALL_SUBSCRIPTION_STATS", Stats: subscriptionStats},
	{Scope: ScopeTCP, Source: "source/common/tcp_proxy/tcp_proxy.h ALL_TCP_PROXY_STATS", Stats: join(
		counters("downstream_cx_no_route", "downstream_cx_rx_bytes_total", "downstream_cx_total",
			"downstream_cx_tx_bytes_total", "downstream_flow_control_paused_reading_total",
			"downstream_flow_control_resumed_reading_total", "early_data_received_count_total", "idle_timeout",
			"max_downstream_connection_duration", "upstream_flush_total"),
		gauges("downstream_cx_rx_bytes_buffered", "downstream_cx_tx_bytes_buffered", "upstream_flush_active"),
	)},
	{Scope: ScopeRoute, Source: "envoy/router/router.h ALL_VIRTUAL_CLUSTER_STATS (Route.stat_prefix: \"the same as those documented for virtual clusters\")",
		Stats: counters("upstream_rq_retry", "upstream_rq_retry_limit_exceeded", "upstream_rq_retry_overflow",
			"upstream_rq_retry_success", "upstream_rq_timeout", "upstream_rq_total")},
	{Scope: ScopeRoute, When: OnTraffic, Source: "source/common/http/codes.cc chargeResponseStat, chargeResponseTiming (request_route_name_)",
		Stats: responseStats},
}

func prefixed(prefix string, stats []Stat) []Stat {
	out := make([]Stat, len(stats))
	for i, s := range stats {
		out[i] = Stat{Name: prefix + s.Name, Type: s.Type}
	}
	return out
}
