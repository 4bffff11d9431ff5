package envoystats

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// Proxy is one Envoy's configuration: its bootstrap and what xDS gave it.
type Proxy struct {
	Bootstrap *bootstrapv3.Bootstrap
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	// Workers is Envoy's --concurrency. The injected sidecar sets none, so Envoy runs
	// one worker per hardware thread of its node; 0 means 2.
	Workers int
}

// Traffic is what the enumeration assumes every object has handled: each HTTP
// connection manager, each cluster a route sends to and each route with a stat_prefix
// has seen responses of these classes and codes. nil is the proxy at rest.
type Traffic struct {
	Classes []string // "2xx", "5xx"
	Codes   []string // "200", "503"
	// GRPCStatuses are the grpc-status values gRPC calls ended with ("0", "14").
	GRPCStatuses []string
}

// Enumerate lists the stats Envoy creates for the proxy's configuration, before the
// stats matcher (Render applies it). An object this stand-in cannot read is an error
// naming it, not a guess.
func Enumerate(p Proxy, tr *Traffic) ([]Stat, error) {
	e := &enumeration{tr: tr, seen: map[string]bool{}, routes: map[string]*routev3.RouteConfiguration{}, httpClusters: map[string]bool{}, grpcClusters: map[string]bool{}}
	e.workers = p.Workers
	if e.workers == 0 {
		e.workers = 2
	}
	e.scope(ScopeServer, "", "")
	for i := range e.workers {
		e.scope(ScopeWorker, "server.worker_"+strconv.Itoa(i)+".", "")
	}
	for _, rc := range p.Routes {
		e.routes[rc.GetName()] = rc
	}
	if p.Bootstrap.GetAdmin() != nil {
		// The admin interface is a listener of its own on the main thread with a
		// connection manager whose prefix is "admin" (source/server/admin/admin.cc).
		e.scope(ScopeListener, "listener.admin.", "")
		e.scope(ScopeListenerHandler, "listener.admin.main_thread.", "")
		e.httpPrefix("listener.admin.", "admin")
	}
	listeners := append(append([]*listenerv3.Listener{}, p.Bootstrap.GetStaticResources().GetListeners()...), p.Listeners...)
	for _, l := range listeners {
		if err := e.listener(l); err != nil {
			return nil, err
		}
	}
	clusters := append(append([]*clusterv3.Cluster{}, p.Bootstrap.GetStaticResources().GetClusters()...), p.Clusters...)
	for _, c := range clusters {
		e.cluster(c)
	}
	return e.stats, nil
}

type enumeration struct {
	tr      *Traffic
	workers int
	stats   []Stat
	seen    map[string]bool
	routes  map[string]*routev3.RouteConfiguration
	// httpClusters are the clusters some HTTP route sends to: the ones the router charges
	// responses to.
	httpClusters map[string]bool
	// grpcClusters are the clusters a connection manager with the grpc_stats filter
	// routes to: the filter charges its counters to the route's cluster.
	grpcClusters map[string]bool
}

// scope adds every family of the scope under prefix; filter picks listener filter
// families.
func (e *enumeration) scope(sc Scope, prefix, filter string) {
	for _, f := range Families {
		if f.Scope == sc && f.Filter == filter {
			e.family(f, prefix)
		}
	}
}

func (e *enumeration) expand(name string) []string {
	switch {
	case strings.Contains(name, "{class}"):
		return each(name, "{class}", e.tr.Classes)
	case strings.Contains(name, "{code}"):
		return each(name, "{code}", e.tr.Codes)
	case strings.Contains(name, "{grpc}"):
		return each(name, "{grpc}", e.tr.GRPCStatuses)
	}
	return []string{name}
}

func each(name, placeholder string, values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = strings.Replace(name, placeholder, v, 1)
	}
	return out
}

// scopeName is a name as Envoy's createScope(string) stores it
// (source/common/stats/utility.cc, Utility::sanitizeStatsName: ':' becomes '_').
func scopeName(s string) string { return strings.ReplaceAll(s, ":", "_") }

func (e *enumeration) listener(l *listenerv3.Listener) error {
	name := l.GetStatPrefix()
	if name == "" {
		sa := l.GetAddress().GetSocketAddress()
		name = sa.GetAddress() + ":" + strconv.FormatUint(uint64(sa.GetPortValue()), 10)
	}
	ls := "listener." + scopeName(name) + "."
	e.scope(ScopeListener, ls, "")
	for i := range e.workers {
		e.scope(ScopeListenerHandler, ls+"worker_"+strconv.Itoa(i)+".", "")
	}
	for _, lf := range l.GetListenerFilters() {
		e.scope(ScopeListenerFilter, "", lf.GetName())
	}
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains[:len(chains):len(chains)], dc)
	}
	for ci, fc := range chains {
		if isTLS(fc.GetTransportSocket()) {
			e.scope(ScopeListenerTLS, ls+"ssl.", "")
		}
		for fi, f := range fc.GetFilters() {
			where := fmt.Sprintf("listener %q filter chain %d (%s) filter %d", l.GetName(), ci, fc.GetName(), fi)
			switch f.GetTypedConfig().MessageName() {
			case "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					return fmt.Errorf("envoystats: %s: %w", where, err)
				}
				if err := e.hcm(ls, hcm, where); err != nil {
					return err
				}
			case "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
				tp := &tcpproxyv3.TcpProxy{}
				if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
					return fmt.Errorf("envoystats: %s: %w", where, err)
				}
				e.scope(ScopeTCP, "tcp."+scopeName(tp.GetStatPrefix())+".", "")
			default:
				return fmt.Errorf("envoystats: %s: network filter %s (%s) is not modelled", where, f.GetName(), f.GetTypedConfig().GetTypeUrl())
			}
		}
	}
	return nil
}

// grpcStatsTypeURL is the grpc_stats filter's config: Envoy picks the extension by it.
const grpcStatsTypeURL = "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"

func isTLS(ts *corev3.TransportSocket) bool {
	return ts.GetName() == wellknown.TransportSocketTLS
}

// httpPrefix adds a connection manager's own stats: http.<prefix>. and, per listener,
// listener.<address>.http.<prefix>. (ConnectionManagerImpl::generateListenerStats).
func (e *enumeration) httpPrefix(listenerScope, prefix string) {
	hs := "http." + scopeName(prefix) + "."
	e.scope(ScopeHTTP, hs, "")
	e.scope(ScopeListenerHTTP, listenerScope+"http."+scopeName(prefix)+".", "")
}

func (e *enumeration) hcm(listenerScope string, hcm *hcmv3.HttpConnectionManager, where string) error {
	e.httpPrefix(listenerScope, hcm.GetStatPrefix())
	var rc *routev3.RouteConfiguration
	switch {
	case hcm.GetRds() != nil:
		name := hcm.GetRds().GetRouteConfigName()
		e.scope(ScopeRDS, "http."+scopeName(hcm.GetStatPrefix())+".rds."+scopeName(name)+".", "")
		rc = e.routes[name]
		if rc == nil {
			return fmt.Errorf("envoystats: %s: route configuration %q is not among the proxy's routes", where, name)
		}
	case hcm.GetRouteConfig() != nil:
		rc = hcm.GetRouteConfig()
	default:
		return fmt.Errorf("envoystats: %s: scoped routes are not modelled", where)
	}
	grpcStats := slices.ContainsFunc(hcm.GetHttpFilters(), func(f *hcmv3.HttpFilter) bool {
		return f.GetTypedConfig().GetTypeUrl() == grpcStatsTypeURL
	})
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetStatPrefix() != "" {
				// Joined from stat names, not through createScope(string): the ':' of a
				// virtual host named host:port stays (config_impl.cc, RouteStatsContextImpl).
				e.scope(ScopeRoute, "vhost."+vh.GetName()+".route."+r.GetStatPrefix()+".", "")
			}
			a := r.GetRoute()
			routed := a.GetCluster()
			if routed != "" {
				e.httpClusters[routed] = true
				e.grpcClusters[routed] = e.grpcClusters[routed] || grpcStats
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				e.httpClusters[wc.GetName()] = true
				e.grpcClusters[wc.GetName()] = e.grpcClusters[wc.GetName()] || grpcStats
			}
		}
	}
	return nil
}

func (e *enumeration) cluster(c *clusterv3.Cluster) {
	name := c.GetAltStatName()
	if name == "" {
		name = c.GetName()
	}
	cs := "cluster." + scopeName(name) + "."
	for _, f := range Families {
		// The response stats exist only on clusters the router sends requests to.
		if f.Scope == ScopeCluster && f.When == OnTraffic && !e.httpClusters[c.GetName()] {
			continue
		}
		if f.Scope == ScopeCluster {
			e.family(f, cs)
		}
	}
	// Both priorities' resource managers exist whatever the thresholds say
	// (ClusterInfoImpl's ResourceManagers).
	e.scope(ScopeCircuitBreakers, cs+"circuit_breakers.default.", "")
	e.scope(ScopeCircuitBreakers, cs+"circuit_breakers.high.", "")
	if c.GetOutlierDetection() != nil {
		e.scope(ScopeOutlierDetection, cs+"outlier_detection.", "")
	}
	if isTLS(c.GetTransportSocket()) {
		e.scope(ScopeClusterTLS, cs+"ssl.", "")
	}
	if e.grpcClusters[c.GetName()] {
		e.scope(ScopeClusterGRPC, cs+"grpc.", "")
	}
}

// family adds one family under prefix, as scope does for a whole scope.
func (e *enumeration) family(f Family, prefix string) {
	if f.When == OnTraffic && e.tr == nil {
		return
	}
	for _, s := range f.Stats {
		for _, name := range e.expand(s.Name) {
			if full := prefix + name; !e.seen[full] {
				e.seen[full] = true
				e.stats = append(e.stats, Stat{Name: full, Type: s.Type})
			}
		}
	}
}
