package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// Outbound: per service, its clusters and its frontend (routes, and the
// sidecars' filter chains or the proxyless clients' API listeners), each a
// function of the service's declared inputs (serviceInputs).

// frontend is a service's outbound routes and listener parts for one kind
// of proxy.
type frontend struct {
	routes       []*routev3.RouteConfiguration
	groups       []chainGroup           // sidecars
	apiListeners []*listenerv3.Listener // proxyless
	errs         []error
}

// servicePorts drops ports that repeat an earlier port number: the cluster
// and route names would collide.
func servicePorts(svc *mesh.Service) ([]mesh.ServicePort, []error) {
	var out []mesh.ServicePort
	var errs []error
	seen := map[uint32]bool{}
	for i, sp := range svc.Ports {
		if sp.Port == 0 || sp.Port > 65535 || seen[sp.Port] {
			errs = append(errs, mesh.ConfigError{
				Object: mesh.ObjectRef{Kind: "Service", Namespace: svc.Key.Namespace, Name: svc.Key.Name},
				Err:    fmt.Errorf("spec.ports[%d]: port %d is invalid or repeated; skipped", i, sp.Port),
			})
			continue
		}
		seen[sp.Port] = true
		out = append(out, sp)
	}
	return out, errs
}

func portIsOpaque(sp mesh.ServicePort, profile *mesh.Profile, port uint32) bool {
	if sp.Protocol == mesh.ProtocolOpaque {
		return true
	}
	return profile != nil && slices.Contains(profile.OpaquePorts, port)
}

// clusterList is a service's clusters, one per port.
type clusterList struct {
	clusters []*clusterv3.Cluster
	errs     []error
}

func (t *Translator) computeClusters(e *serviceEntry[clusterList], kind proxy.Kind, compiled *compiledProfile) {
	err := guard(func() error {
		e.val = serviceClusters(e.deps, compiled, t.features, featureInputs{trustDomain: t.opts.TrustDomain, kind: kind})
		return nil
	})
	if err != nil {
		e.val = clusterList{errs: []error{serviceError(e.deps.svc, err)}}
	}
}

// serviceClusters builds the EDS cluster of each port of d.svc; base holds
// the features' inputs that are not the service's.
func serviceClusters(d serviceInputs, compiled *compiledProfile, ft *featureTable, base featureInputs) clusterList {
	var out clusterList
	budget := mesh.DefaultRetryBudget
	profile := d.profile
	if compiled == nil {
		profile = nil // an unusable profile is skipped entirely
	}
	if profile != nil && profile.RetryBudget != nil {
		budget = *profile.RetryBudget
	}
	ports, _ := servicePorts(d.svc)
	for _, sp := range ports {
		proto := sp.Protocol
		if portIsOpaque(sp, profile, sp.Port) {
			proto = mesh.ProtocolOpaque
		}
		c := outboundCluster(d.svc, sp, proto, budget, d.domain)
		in := base
		in.service, in.port = d, sp
		c.TransportSocket = ft.transportSocket(onOutboundCluster, in)
		out.clusters = append(out.clusters, c)
	}
	return out
}

func serviceError(svc *mesh.Service, err error) error {
	return mesh.ConfigError{Object: mesh.ObjectRef{Kind: "Service", Namespace: svc.Key.Namespace, Name: svc.Key.Name}, Err: err}
}

func (t *Translator) computeFrontend(e *serviceEntry[frontend], kind proxy.Kind, compiled *compiledProfile, profErr error) {
	var val frontend
	err := guard(func() error {
		val = buildFrontend(e.deps, kind, compiled, profErr, t.features)
		return nil
	})
	if err != nil {
		val = frontend{errs: []error{serviceError(e.deps.svc, err)}}
	}
	e.val = val
}

// buildFrontend builds a service's routes and chains (sidecars) or API
// listeners (proxyless clients) from d, the profile compiled (nil when
// there is none or it is unusable, profErr saying why).
func buildFrontend(d serviceInputs, kind proxy.Kind, compiled *compiledProfile, profErr error, ft *featureTable) frontend {
	var f frontend
	svc := d.svc
	ports, errs := servicePorts(svc)
	f.errs = append(f.errs, errs...)
	profile := d.profile
	var routes []compiledRoute
	switch {
	case profErr != nil:
		f.errs = append(f.errs, profErr)
		profile = nil
	case compiled != nil && kind == proxy.GRPC:
		if compiled.proxylessErr != nil {
			f.errs = append(f.errs, mesh.ConfigError{Object: profile.Source, Err: fmt.Errorf("routes skipped for proxyless gRPC clients: %w", compiled.proxylessErr)})
		}
		routes = compiled.proxyless
	case compiled != nil:
		routes = compiled.sidecar
	}
	proxyless := kind == proxy.GRPC

	for _, sp := range ports {
		opaque := portIsOpaque(sp, profile, sp.Port)
		clusterName := OutboundClusterName(svc.Key, sp.Port, d.domain)
		routeName := OutboundRouteName(svc.Key, sp.Port, d.domain)
		backends, berrs := backendsFor(d.backends, svc, sp, d.split, profile, d.domain)
		f.errs = append(f.errs, berrs...)
		target := routeTarget{cluster: clusterName, backends: backends}

		if proxyless {
			if opaque {
				continue // gRPC clients cannot use a raw TCP port
			}
			f.routes = append(f.routes, routeConfiguration(routeConfigParams{
				name:      routeName,
				vhostName: svc.Key.FQDN(d.domain) + ":" + portString(sp.Port),
				domains:   serviceDomains(svc, sp.Port, d.domain),
				target:    target,
				grpc:      true,
				proxyless: true,
				routes:    routes,
			}))
			filters := ft.httpFilters(onProxylessListener, featureInputs{service: d, port: sp})
			for _, name := range ProxylessListenerNames(svc.Key, sp.Port, d.domain) {
				f.apiListeners = append(f.apiListeners, apiListener(name, routeName, filters))
			}
			continue
		}

		domains := append(serviceDomains(svc, sp.Port, d.domain), "*")
		if svc.Headless {
			// Clients of a headless service dial a pod they picked (by pod
			// DNS name or IP); the connection goes where it was dialled.
			// Any Host is accepted: the chains, matching the pod's address,
			// already decided this is the service.
			target = routeTarget{cluster: PassthroughClusterName}
			domains = []string{"*"}
		}
		if !opaque {
			f.routes = append(f.routes, routeConfiguration(routeConfigParams{
				name:      routeName,
				vhostName: svc.Key.FQDN(d.domain) + ":" + portString(sp.Port),
				domains:   domains,
				target:    target,
				grpc:      sp.Protocol == mesh.ProtocolGRPC,
				routes:    routes,
			}))
		}

		extras := outboundExtras(ft, featureInputs{service: d, port: sp})
		if svc.Headless {
			f.groups = append(f.groups, headlessChains(svc, sp, profile, d.endpoints, routeName, target, clusterName, extras)...)
			continue
		}
		var addrs []netip.Addr
		for i, ip := range svc.ClusterIPs {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				f.errs = append(f.errs, serviceError(svc, fmt.Errorf("spec.clusterIPs[%d]: %q is not an IP address; skipped", i, ip)))
				continue
			}
			addrs = append(addrs, a.Unmap())
		}
		if len(addrs) == 0 {
			continue
		}
		g := outboundChains(clusterName, addrs, sp.Port, opaque, routeName, target, extras)
		g.owner = svc.Key
		f.groups = append(f.groups, g)
	}
	return f
}

// headlessChains gives each endpoint address of a headless service port its
// own chain (one address per chain, so that two headless services selecting
// the same pods conflict on that address only, and the conflict drops one
// chain rather than a service). Every endpoint is included whatever its
// readiness: the client chose the pod, the proxy only decides how to carry
// the bytes.
func headlessChains(svc *mesh.Service, sp mesh.ServicePort, profile *mesh.Profile, eps *mesh.ServiceEndpoints, routeName string, target routeTarget, clusterName string, extras chainExtras) []chainGroup {
	if eps == nil {
		return nil
	}
	var groups []chainGroup
	seen := map[chainKey]bool{}
	var keys []chainKey
	for _, e := range eps.ByPort[sp.Name] {
		a, err := netip.ParseAddr(e.Address)
		if err != nil {
			continue
		}
		keys = append(keys, chainKey{a.Unmap(), cmp.Or(e.Port, sp.TargetPort, sp.Port)})
	}
	slices.SortFunc(keys, func(a, b chainKey) int { return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port)) })
	for _, k := range keys {
		a, port := k.addr, k.port
		if seen[k] {
			continue
		}
		seen[k] = true
		opaque := portIsOpaque(sp, profile, sp.Port) || portIsOpaque(sp, profile, port)
		g := outboundChains(clusterName+"|"+netip.AddrPortFrom(a, uint16(port)).String(), []netip.Addr{a}, port, opaque, routeName, target, extras)
		g.owner = svc.Key
		groups = append(groups, g)
	}
	return groups
}

// chainKey is a destination a filter chain claims: two chains claiming the
// same one make Envoy refuse the whole listener.
type chainKey struct {
	addr netip.Addr
	port uint32
}

// chainGroup is the filter chains for one destination set (an HTTP chain and
// its TCP fallback), kept or dropped together.
type chainGroup struct {
	keys   []chainKey
	chains []*listenerv3.FilterChain
	owner  mesh.ServiceKey
	port   uint32
	http   bool // has an HCM chain, so http_inspector must run on port
}

// chainExtras are what features add to the outbound chains of one service
// port.
type chainExtras struct {
	ft *featureTable
	in featureInputs
	// httpFilters are the HCM's, router included.
	httpFilters []*hcmv3.HttpFilter
}

func outboundExtras(ft *featureTable, in featureInputs) chainExtras {
	return chainExtras{ft: ft, in: in, httpFilters: ft.httpFilters(onOutboundChain, in)}
}

// filters returns a chain's network filters ending with terminal.
func (x chainExtras) filters(terminal *listenerv3.Filter) []*listenerv3.Filter {
	return x.ft.networkFilters(onOutboundChain, x.in, terminal)
}

func outboundHCM(routeName string, filters []*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	hcm := rdsHCM(OutboundListenerName, routeName, filters)
	hcm.UpgradeConfigs = websocketUpgrade()
	return hcm
}

// outboundChains builds the chains of one destination (a service port's
// cluster IPs, or one headless endpoint): for HTTP an HCM chain for
// connections http_inspector recognised as HTTP plus a TCP chain for the
// rest (an app speaking TLS or anything else to a port nobody declared
// opaque still gets through, balanced); for opaque ports the TCP chain only.
func outboundChains(name string, addrs []netip.Addr, port uint32, opaque bool, routeName string, target routeTarget, extras chainExtras) chainGroup {
	g := chainGroup{port: port, http: !opaque}
	for _, a := range addrs {
		g.keys = append(g.keys, chainKey{a, port})
	}
	match := func(alpn []string) *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{
			DestinationPort:      wrapperspb.UInt32(port),
			PrefixRanges:         prefixRanges(addrs),
			ApplicationProtocols: alpn,
		}
	}
	if !opaque {
		g.chains = append(g.chains, &listenerv3.FilterChain{
			Name:             name + "|http",
			FilterChainMatch: match(httpALPN),
			Filters:          extras.filters(networkFilter(wellknown.HTTPConnectionManager, outboundHCM(routeName, extras.httpFilters))),
		})
	}
	g.chains = append(g.chains, &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: match(nil),
		Filters:          extras.filters(tcpProxyFilter(OutboundListenerName, target)),
	})
	return g
}

// outboundListener takes every connection the app opens (iptables
// redirects them here). The original_dst listener filter restores where the
// connection was going, and chains match on that address: a chain per known
// destination, and a default chain passing everything else through
// untouched. use_original_dst is not set: there are no per-destination
// listeners to hand connections to. Ports in the proxy's skip-outbound list
// never reach the proxy (iptables lets them out directly), so they get no
// chain.
func outboundListener(chains []*listenerv3.FilterChain, detectOn []uint32) *listenerv3.Listener {
	return redirectListener(OutboundListenerName, mesh.ProxyOutboundPort, corev3.TrafficDirection_OUTBOUND, chains,
		detectingFilter(wellknown.HTTPInspector, &httpinspectorv3.HttpInspector{}, detectOn))
}

// apiListener is what a proxyless grpc-go client asks LDS for: no address,
// only an HCM whose routes come over ADS.
func apiListener(name, routeName string, filters []*hcmv3.HttpFilter) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(
			rdsHCM(OutboundListenerName, routeName, filters))},
	}
}

// outboundCluster is the EDS cluster of one service port.
func outboundCluster(svc *mesh.Service, sp mesh.ServicePort, proto mesh.Protocol, budget mesh.RetryBudget, domain string) *clusterv3.Cluster {
	name := OutboundClusterName(svc.Key, sp.Port, domain)
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsConfigSource(),
			ServiceName: name,
		},
		ConnectTimeout:                durationpb.New(outboundConnectTimeout),
		LoadBalancingPolicy:           leastRequestPolicy(),
		OutlierDetection:              outlierDetection(),
		CircuitBreakers:               circuitBreakers(budget),
		TypedExtensionProtocolOptions: upstreamProtocolOptions(proto),
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			ServiceMetadataKey: {Fields: map[string]*structpb.Value{
				"namespace": structpb.NewStringValue(svc.Key.Namespace),
				"name":      structpb.NewStringValue(svc.Key.Name),
				"port":      structpb.NewNumberValue(float64(sp.Port)),
				"protocol":  structpb.NewStringValue(string(proto)),
			}},
		}},
	}
}
