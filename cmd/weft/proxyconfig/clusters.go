package proxyconfig

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Envoy's defaults where a cluster leaves a field unset.
const (
	defaultConnectTimeout  = "5s"
	defaultMaxConnections  = 1024
	defaultMaxRetries      = 3
	defaultBudgetPercent   = 20.0
	defaultMinRetryConc    = 3
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

func renderClusters(w io.Writer, cfg *config) {
	fmt.Fprintf(w, "CLUSTERS (%d)\n", len(cfg.clusters))
	for _, p := range cfg.problems[resourcev3.ClusterType] {
		fmt.Fprintln(w, p)
	}
	if len(cfg.clusters) == 0 {
		fmt.Fprintln(w, "(none)")
		return
	}
	t := newTable(w, "", "NAME", "TYPE", "LB", "PROTOCOL", "LIMITS", "OUTLIER DETECTION", "CONNECT TIMEOUT")
	for _, c := range cfg.clusters {
		t.row(c.GetName(), discoveryType(c), lbPolicy(c), upstreamProtocol(c), limits(c.GetCircuitBreakers()),
			outlier(c.GetOutlierDetection()), durationOr(c.GetConnectTimeout(), defaultConnectTimeout))
	}
	t.flush()
}

func discoveryType(c *clusterv3.Cluster) string {
	if ct := c.GetClusterType(); ct != nil {
		return shortFilterName(ct.GetName())
	}
	s := c.GetType().String()
	if c.GetType() == clusterv3.Cluster_EDS {
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" && sn != c.GetName() {
			s += " " + sn
		}
	}
	return s
}

// lbPolicy names the load balancer: load_balancing_policy's first policy
// (Envoy takes the first it supports), else the lb_policy enum.
func lbPolicy(c *clusterv3.Cluster) string {
	if ps := c.GetLoadBalancingPolicy().GetPolicies(); len(ps) > 0 {
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = lbExtension(p.GetTypedExtensionConfig())
		}
		return strings.Join(names, " | ")
	}
	return strings.ToLower(c.GetLbPolicy().String())
}

func lbExtension(tec *corev3.TypedExtensionConfig) string {
	tc := tec.GetTypedConfig()
	name := lbName(tc.GetTypeUrl(), tec.GetName())
	m, err := tc.UnmarshalNew()
	if err != nil {
		return name
	}
	switch v := m.(type) {
	case *leastrequestv3.LeastRequest:
		return fmt.Sprintf("%s (choose %d)", name, u32Or(v.GetChoiceCount(), 2))
	case *wrrlocalityv3.WrrLocality:
		var inner []string
		for _, p := range v.GetEndpointPickingPolicy().GetPolicies() {
			inner = append(inner, lbExtension(p.GetTypedExtensionConfig()))
		}
		return name + "(" + strings.Join(inner, " | ") + ")"
	}
	return name
}

// lbName is the policy's package (least_request, ring_hash, ...).
func lbName(typeURL, extName string) string {
	const marker = "load_balancing_policies."
	if i := strings.Index(typeURL, marker); i >= 0 {
		rest := typeURL[i+len(marker):]
		if j := strings.IndexByte(rest, '.'); j > 0 {
			return rest[:j]
		}
	}
	return cmp.Or(strings.TrimPrefix(extName, "envoy.load_balancing_policies."), shortTypeURL(typeURL))
}

// upstreamProtocol is the HTTP version spoken to the cluster's endpoints,
// and TLS if the cluster originates it.
func upstreamProtocol(c *clusterv3.Cluster) string {
	s := "http/1.1 (default)"
	if c.GetHttp2ProtocolOptions() != nil { //nolint:staticcheck // still honoured by Envoy
		s = "h2"
	}
	if tc := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]; tc != nil {
		var o httpv3.HttpProtocolOptions
		if err := tc.UnmarshalTo(&o); err != nil {
			s = "? (unreadable " + httpProtocolOptionsKey + ")"
		} else {
			s = httpOptions(&o)
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		s += ", " + upstreamTLS(ts)
	}
	return s
}

func httpOptions(o *httpv3.HttpProtocolOptions) string {
	switch u := o.GetUpstreamProtocolOptions().(type) {
	case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_:
		switch u.ExplicitHttpConfig.GetProtocolConfig().(type) {
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions:
			return "http/1.1"
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
			return "h2"
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http3ProtocolOptions:
			return "h3"
		}
	case *httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig:
		d := u.UseDownstreamProtocolConfig
		var vs []string
		if d.GetHttpProtocolOptions() != nil {
			vs = append(vs, "http/1.1")
		}
		if d.GetHttp2ProtocolOptions() != nil {
			vs = append(vs, "h2")
		}
		if d.GetHttp3ProtocolOptions() != nil {
			vs = append(vs, "h3")
		}
		return "as downstream (" + strings.Join(vs, ", ") + ")"
	case *httpv3.HttpProtocolOptions_AutoConfig:
		return "auto (ALPN)"
	}
	return "http/1.1 (default)"
}

func upstreamTLS(ts *corev3.TransportSocket) string {
	tc := ts.GetTypedConfig()
	var u tlsv3.UpstreamTlsContext
	if tc.GetTypeUrl() != resourcev3.APITypePrefix+string(proto.MessageName(&u)) || tc.UnmarshalTo(&u) != nil {
		return "transport " + cmp.Or(shortFilterName(ts.GetName()), shortTypeURL(tc.GetTypeUrl()))
	}
	s := "TLS"
	var details []string
	if sni := u.GetSni(); sni != "" {
		details = append(details, "sni "+sni)
	}
	if certs := tlsCertNames(u.GetCommonTlsContext()); certs != "" {
		details = append(details, certs)
	}
	if len(details) > 0 {
		s += " (" + strings.Join(details, ", ") + ")"
	}
	return s
}

// limits summarises circuit breaking: the default-priority thresholds
// (unset fields are Envoy's defaults) and the retry budget, which replaces
// max_retries when set.
func limits(cb *clusterv3.CircuitBreakers) string {
	var def, high *clusterv3.CircuitBreakers_Thresholds
	for _, t := range cb.GetThresholds() {
		switch t.GetPriority() {
		case corev3.RoutingPriority_DEFAULT:
			if def == nil {
				def = t
			}
		case corev3.RoutingPriority_HIGH:
			if high == nil {
				high = t
			}
		}
	}
	s := thresholds(def)
	if high != nil {
		s += "; high priority: " + thresholds(high)
	}
	return s
}

func thresholds(t *clusterv3.CircuitBreakers_Thresholds) string {
	conn := u32Or(t.GetMaxConnections(), defaultMaxConnections)
	pending := u32Or(t.GetMaxPendingRequests(), defaultMaxConnections)
	req := u32Or(t.GetMaxRequests(), defaultMaxConnections)
	var parts []string
	if conn == pending && pending == req {
		parts = append(parts, "conn/pending/req "+limit(conn))
	} else {
		parts = append(parts, "conn "+limit(conn), "pending "+limit(pending), "req "+limit(req))
	}
	if rb := t.GetRetryBudget(); rb != nil {
		parts = append(parts, "retry budget "+retryBudget(rb))
	} else {
		parts = append(parts, "retries "+limit(u32Or(t.GetMaxRetries(), defaultMaxRetries)))
	}
	return strings.Join(parts, ", ")
}

// retryBudget prints "20% (min 10)": the share of active requests that may
// be retries, and the concurrency always allowed.
func retryBudget(rb *clusterv3.CircuitBreakers_Thresholds_RetryBudget) string {
	pct := defaultBudgetPercent
	if p := rb.GetBudgetPercent(); p != nil {
		pct = p.GetValue()
	}
	return fmt.Sprintf("%s%% (min %d)", strconv.FormatFloat(pct, 'f', -1, 64), u32Or(rb.GetMinRetryConcurrency(), defaultMinRetryConc))
}

func limit(n uint32) string {
	if n == math.MaxUint32 {
		return "unlimited"
	}
	return strconv.FormatUint(uint64(n), 10)
}

// outlier summarises failure accrual: the detectors that eject (Envoy's
// defaults for unset fields), how often, and for how long.
func outlier(o *clusterv3.OutlierDetection) string {
	if o == nil {
		return "-"
	}
	var det []string
	detector := func(name string, enforcing *uint32, n uint32) {
		if *enforcing == 0 {
			return
		}
		s := name + ":" + strconv.FormatUint(uint64(n), 10)
		if *enforcing < 100 {
			s += fmt.Sprintf("(%d%%)", *enforcing)
		}
		det = append(det, s)
	}
	e5xx := u32Or(o.GetEnforcingConsecutive_5Xx(), 100)
	detector("5xx", &e5xx, u32Or(o.GetConsecutive_5Xx(), 5))
	egw := u32Or(o.GetEnforcingConsecutiveGatewayFailure(), 0)
	detector("gateway", &egw, u32Or(o.GetConsecutiveGatewayFailure(), 5))
	if o.GetSplitExternalLocalOriginErrors() {
		elo := u32Or(o.GetEnforcingConsecutiveLocalOriginFailure(), 100)
		detector("local", &elo, u32Or(o.GetConsecutiveLocalOriginFailure(), 5))
	}
	if u32Or(o.GetEnforcingSuccessRate(), 100) > 0 {
		det = append(det, "success-rate")
	}
	if u32Or(o.GetEnforcingFailurePercentage(), 0) > 0 {
		det = append(det, fmt.Sprintf("failure-%%:%d", u32Or(o.GetFailurePercentageThreshold(), 85)))
	}
	if len(det) == 0 {
		det = append(det, "no detector enforced")
	}
	return fmt.Sprintf("%s every %s, eject %s..%s, max %d%%", strings.Join(det, " "),
		durationDefault(o.GetInterval(), 10*time.Second), durationDefault(o.GetBaseEjectionTime(), 30*time.Second),
		durationDefault(o.GetMaxEjectionTime(), 300*time.Second), u32Or(o.GetMaxEjectionPercent(), 10))
}
