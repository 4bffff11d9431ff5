package translate

import (
	"errors"
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// The feature seam. The core builds chains and clusters; a feature adds an
// HTTP filter, a network filter or a transport socket to them. Each feature
// lives in a file of its own (feature_<name>.go), declares the inputs it
// reads, and appears once in featureOrder, whose order is the order its
// filters run in. Nothing registers itself: what runs, and in which order,
// is read in one place.

// featureOrder is every feature, in order. Envoy runs a chain's filters in
// list order, so the order here is a decision, and each entry says why it
// sits where it does.
var featureOrder = []feature{
	// HTTP filters, in the order a request meets them.
	//
	// Authorization (an RBAC filter fed by the peer identity) will go here,
	// before the router: a denied request must never be forwarded.

	// gRPC status counts read the response on its way back; before the
	// router like every non-terminal filter. Two entries: the outbound one
	// is per service port, the inbound one per pod port.
	grpcStatsOutbound,
	grpcStatsInbound,

	// The router forwards the request, so it is last: Envoy refuses a
	// terminal filter that is not last ("terminal filter named ... must be
	// the last filter") and a last filter that is not terminal.
	router,

	// Network filters run before the chain's terminal filter (the HTTP
	// connection manager or tcp_proxy), which the core appends: none yet.

	// Transport sockets, one per chain or cluster. mTLS is alone there: it
	// originates TLS on clusters to meshed services and terminates it on
	// inbound chains (two entries, since one product is per service and the
	// other per proxy). Their order among filters does not matter (a socket
	// wraps the connection under every filter), and Envoy takes a single
	// socket, so another one would have to replace them, not join them.
	mtlsOrigination,
	mtlsTermination,
}

// builtinFeatures is featureOrder checked; a table that breaks an ordering
// rule is a programming error, caught by any test of the package.
// withoutIdentity is the same table less the features that need a trust
// domain: without one they add nothing, and what they declare they read
// would only make the dependency index recompute proxies for nothing (an
// endpoint that is not a meshed pod would reach every proxy).
var (
	builtinFeatures = mustFeatureTable(featureOrder)
	withoutIdentity = mustFeatureTable(slices.DeleteFunc(slices.Clone(featureOrder), func(f feature) bool { return f.needsTrustDomain }))
)

// featuresFor is the feature table a translator with opts runs.
func featuresFor(opts Options) *featureTable {
	if opts.TrustDomain == "" {
		return withoutIdentity
	}
	return builtinFeatures
}

// place is where a feature adds to the core's output.
type place uint8

const (
	// onOutboundChain: a sidecar's outbound chains of one service port (or
	// headless endpoint): HTTP filters of their HCM, network filters.
	onOutboundChain place = 1 << iota
	// onProxylessListener: the HCM of a proxyless client's API listeners
	// of one service port: HTTP filters.
	onProxylessListener
	// onOutboundCluster: a service port's EDS cluster: transport socket.
	onOutboundCluster
	// onInboundChain: the inbound chains of one port of a pod: HTTP filters,
	// network filters, and TLS (inboundTLS): the core then adds chains that
	// match TLS and terminate it, beside or instead of the plaintext ones.
	onInboundChain
)

var places = []place{onOutboundChain, onProxylessListener, onOutboundCluster, onInboundChain}

func (p place) String() string {
	switch p {
	case onOutboundChain:
		return "outbound chains"
	case onProxylessListener:
		return "proxyless API listeners"
	case onOutboundCluster:
		return "outbound clusters"
	case onInboundChain:
		return "inbound chains"
	}
	return fmt.Sprintf("place(%d)", uint8(p))
}

// product is the cached product a place is part of: what a feature placed
// there reads becomes an input of that product.
func (p place) product() Product {
	switch p {
	case onOutboundChain, onProxylessListener:
		return ServiceFrontend
	case onOutboundCluster:
		return ServiceClusters
	}
	return ProxyOwn
}

// featureInputs are what a feature builds from. At a per-service place,
// service holds only the inputs the feature declares, and port is the
// service port; at onInboundChain, inbound is the pod's port and mode the
// proxy's mTLS mode (the part of InputProxy the inbound side is keyed by).
// trustDomain is the translator's (Options.TrustDomain), the same for
// every product; kind is the client's at a place keyed by kind, else zero.
type featureInputs struct {
	service     serviceInputs
	port        mesh.ServicePort
	inbound     inboundPort
	mode        mesh.MTLSMode
	trustDomain string
	kind        proxy.Kind
}

// inboundTLS is what a feature asks of the connections to one inbound
// port: TLS terminated by socket, and, when strict, nothing else.
type inboundTLS struct {
	socket *corev3.TransportSocket
	strict bool
}

// feature adds one thing to chains or clusters. Exactly one of httpFilter,
// networkFilter, transportSocket and inboundTLS is set; a nil (zero) result
// adds nothing for that port.
type feature struct {
	// name is the filter's name: non-empty and unique, as grpc-go demands
	// of HTTP filters.
	name string
	// reads are the model inputs the feature reads. They become inputs of
	// the products of its places: cache keys and the dependency index
	// cover them.
	reads Inputs
	on    place
	// terminal marks the HTTP filter that ends the chain (the router). It
	// must add itself wherever it is placed.
	terminal bool
	// needsTrustDomain marks a feature that adds nothing without
	// Options.TrustDomain (identity): it is then left out (featuresFor).
	needsTrustDomain bool
	// byClientKind marks a feature whose addition to a cluster differs for
	// sidecars and proxyless clients (what each consumes): the clusters are
	// then built, and cached, per kind of client.
	byClientKind bool

	httpFilter      func(featureInputs) *hcmv3.HttpFilter
	networkFilter   func(featureInputs) *listenerv3.Filter
	transportSocket func(featureInputs) *corev3.TransportSocket
	inboundTLS      func(featureInputs) inboundTLS
}

// allowed are the places each kind of addition may go.
const (
	httpPlaces    = onOutboundChain | onProxylessListener | onInboundChain
	networkPlaces = onOutboundChain | onInboundChain
	socketPlaces  = onOutboundCluster
	tlsPlaces     = onInboundChain
)

// featureTable is a checked feature order with the reads it implies.
type featureTable struct {
	features []feature
	reads    Reads
	// clustersByKind: a feature on outbound clusters differs by kind of
	// client, so clusters are keyed by it.
	clustersByKind bool
}

func mustFeatureTable(list []feature) *featureTable {
	ft, err := newFeatureTable(list)
	if err != nil {
		panic(err)
	}
	return ft
}

// newFeatureTable checks the ordering rules Envoy and grpc-go enforce, and
// that every feature reads only what its places can key on.
func newFeatureTable(list []feature) (*featureTable, error) {
	ft := &featureTable{features: list, reads: productInputs}
	var errs []error
	names := map[string]bool{}
	for i, f := range list {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("feature [%d] %q: %s", i, f.name, fmt.Sprintf(format, args...)))
		}
		if f.name == "" || names[f.name] {
			bad("name empty or repeated")
		}
		names[f.name] = true
		kinds, allowed := 0, place(0)
		if f.httpFilter != nil {
			kinds, allowed = kinds+1, httpPlaces
		}
		if f.networkFilter != nil {
			kinds, allowed = kinds+1, networkPlaces
		}
		if f.transportSocket != nil {
			kinds, allowed = kinds+1, socketPlaces
		}
		if f.inboundTLS != nil {
			kinds, allowed = kinds+1, tlsPlaces
		}
		switch {
		case kinds != 1:
			bad("must add exactly one of an HTTP filter, a network filter, a transport socket and inbound TLS")
			continue
		case f.on == 0:
			bad("placed nowhere")
			continue
		case f.on&^allowed != 0:
			bad("cannot be placed on %s", f.on&^allowed)
			continue
		case f.terminal && f.httpFilter == nil:
			bad("only an HTTP filter can be terminal: the chain's terminal network filter is the core's")
		}
		if f.byClientKind && f.on&onOutboundCluster != 0 {
			ft.clustersByKind = true
		}
		for _, p := range places {
			if f.on&p == 0 {
				continue
			}
			prod := p.product()
			switch {
			case prod == ProxyOwn && f.reads&^InputsOf(InputProxy) != 0:
				bad("reads %v on %s, which are keyed by the proxy's ports only", f.reads&^InputsOf(InputProxy), p)
			case prod != ProxyOwn && f.reads.Has(InputProxy):
				bad("reads the proxy on %s, which every proxy shares", p)
			}
			ft.reads[prod] |= f.reads
		}
	}
	for _, p := range places {
		var http []feature
		sockets := 0
		for _, f := range list {
			if f.on&p == 0 {
				continue
			}
			if f.httpFilter != nil {
				http = append(http, f)
			}
			if f.transportSocket != nil || f.inboundTLS != nil {
				sockets++
			}
		}
		if sockets > 1 {
			errs = append(errs, fmt.Errorf("%s: %d transport sockets, Envoy takes one", p, sockets))
		}
		if p&httpPlaces == 0 {
			continue
		}
		for i, f := range http {
			last := i == len(http)-1
			switch {
			case f.terminal && !last:
				errs = append(errs, fmt.Errorf("%s: terminal HTTP filter %q must be the last filter, Envoy refuses the listener otherwise", p, f.name))
			case !f.terminal && last:
				errs = append(errs, fmt.Errorf("%s: HTTP filter %q is last but not terminal: Envoy refuses the listener", p, f.name))
			}
		}
		if len(http) == 0 {
			errs = append(errs, fmt.Errorf("%s: no HTTP filters: without the router nothing is forwarded", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("translate: feature table: %w", err)
	}
	return ft, nil
}

// narrow gives f only what it declares.
func (f *feature) narrow(in featureInputs) featureInputs {
	in.service = in.service.only(f.reads)
	return in
}

// additions runs, in table order, the builders pick finds on the features
// placed at p, and returns what they added.
func additions[T comparable](ft *featureTable, p place, in featureInputs, pick func(*feature) func(featureInputs) T) []T {
	var out []T
	var none T
	for i := range ft.features {
		f := &ft.features[i]
		if build := pick(f); f.on&p != 0 && build != nil {
			if x := build(f.narrow(in)); x != none {
				out = append(out, x)
			}
		}
	}
	return out
}

// httpFilters returns the HTTP filters of an HCM at p, in table order.
func (ft *featureTable) httpFilters(p place, in featureInputs) []*hcmv3.HttpFilter {
	return additions(ft, p, in, func(f *feature) func(featureInputs) *hcmv3.HttpFilter { return f.httpFilter })
}

// networkFilters returns the filters of a chain at p: the features', in
// table order, then the chain's terminal filter.
func (ft *featureTable) networkFilters(p place, in featureInputs, terminal *listenerv3.Filter) []*listenerv3.Filter {
	return append(additions(ft, p, in, func(f *feature) func(featureInputs) *listenerv3.Filter { return f.networkFilter }), terminal)
}

// transportSocket returns the transport socket at p, or nil.
func (ft *featureTable) transportSocket(p place, in featureInputs) *corev3.TransportSocket {
	if s := additions(ft, p, in, func(f *feature) func(featureInputs) *corev3.TransportSocket { return f.transportSocket }); len(s) > 0 {
		return s[0]
	}
	return nil
}

// inboundTLS returns what the features ask of an inbound port's
// connections; the zero value (no TLS) when nothing.
func (ft *featureTable) inboundTLS(in featureInputs) inboundTLS {
	if s := additions(ft, onInboundChain, in, func(f *feature) func(featureInputs) inboundTLS { return f.inboundTLS }); len(s) > 0 {
		return s[0]
	}
	return inboundTLS{}
}
