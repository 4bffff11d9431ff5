package translate

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
)

// Per-proxy assembly: a sidecar's inbound side, its outbound listener (its
// view's chains minus the ports it skips) and its listener and cluster
// lists. Each is shared by the proxies it is the same for.

type assemblyKey struct {
	view     *viewEntry
	inbound  *inboundEntry
	outbound *listenerv3.Listener
}

// assembly is a sidecar's listener and cluster lists.
type assembly struct {
	once      sync.Once
	listeners []*listenerv3.Listener
	clusters  []*clusterv3.Cluster
	conv      *converted
}

// assemble returns the listener and cluster lists of a sidecar, or of a
// proxyless client (out nil: its view's API listeners plus the server
// listeners of its inbound side). The replicas of a deployment have the
// same ports: their lists are one pair of slices, not a copy each; a
// proxyless pod that serves nothing shares its view's lists as they are.
func (t *Translator) assemble(v *viewEntry, in *inboundEntry, out *listenerv3.Listener) *assembly {
	ak := assemblyKey{view: v, inbound: in, outbound: out}
	t.mu.Lock()
	a := entryLocked(t.assemblies, ak)
	t.mu.Unlock()
	a.once.Do(func() {
		if out == nil {
			a.listeners, a.clusters = v.apiListeners, v.clusters
			if len(in.servers) > 0 {
				a.listeners = append(slices.Clip(v.apiListeners), in.servers...)
			}
		} else {
			a.listeners = []*listenerv3.Listener{in.listener, out}
			a.clusters = make([]*clusterv3.Cluster, 0, len(in.clusters)+len(v.clusters)+1)
			a.clusters = append(a.clusters, in.clusters...)
			a.clusters = append(a.clusters, v.clusters...)
			a.clusters = append(a.clusters, t.passthrough)
		}
		// Routes and endpoints are the view's, and so are a proxyless
		// pod's clusters (and listeners, when it serves nothing): their
		// conversions are the view's too.
		vc := v.conv
		a.conv = &converted{
			listeners: a.listeners, anyListeners: asResources(a.listeners, vc.listeners, vc.anyListeners),
			routes: vc.routes, anyRoutes: vc.anyRoutes,
			clusters: a.clusters, anyClusters: asResources(a.clusters, vc.clusters, vc.anyClusters),
			endpoints: vc.endpoints, anyEndpoints: vc.anyEndpoints,
		}
	})
	return a
}

type outboundKey struct {
	view *viewEntry
	skip string
}

type listenerEntry struct {
	once     sync.Once
	listener *listenerv3.Listener
}

func portsKey(ports []uint32) string {
	s := slices.Clone(ports)
	slices.Sort(s)
	s = slices.Compact(s)
	var b strings.Builder
	for i, p := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(p), 10))
	}
	return b.String()
}

func (t *Translator) outboundFor(v *viewEntry, p *mesh.Proxy) *listenerv3.Listener {
	k := outboundKey{view: v, skip: portsKey(p.SkipOutboundPorts)}
	t.mu.Lock()
	e := entryLocked(t.outbound, k)
	t.mu.Unlock()
	e.once.Do(func() {
		var chains []*listenerv3.FilterChain
		var httpPorts, opaquePorts []uint32
		for _, g := range v.groups {
			if slices.Contains(p.SkipOutboundPorts, g.port) {
				continue
			}
			chains = append(chains, g.chains...)
			if g.http {
				httpPorts = append(httpPorts, g.port)
			} else {
				opaquePorts = append(opaquePorts, g.port)
			}
		}
		e.listener = outboundListener(chains, detectionPorts(httpPorts, opaquePorts))
	})
	return e.listener
}

type inboundEntry struct {
	once     sync.Once
	listener *listenerv3.Listener
	clusters []*clusterv3.Cluster
	// servers are a proxyless server's listeners, one per served port
	// (a proxyless pod has no listener or clusters of the sidecar kind).
	servers    []*listenerv3.Listener
	generation uint64
}

// inboundFor returns the inbound side of p, keyed by its ports and mTLS
// mode, and for a proxyless pod its kind and IP, which its listeners are
// named by and bound to: what the ProxyOwn product and the features placed
// on inbound chains may read of it.
func (t *Translator) inboundFor(p *mesh.Proxy) (*inboundEntry, []error) {
	ports, errs := inboundPorts(p)
	// The key is built on every call, for every proxy: sized once, no fmt.
	var b strings.Builder
	b.Grow(4 + len(p.IP) + 16*len(ports))
	b.WriteString(strconv.FormatUint(uint64(p.MTLSMode), 10))
	b.WriteByte(';')
	if p.Kind == proxy.GRPC {
		b.WriteString("grpc@")
		b.WriteString(p.IP)
		b.WriteByte(';')
	}
	for _, ip := range ports {
		b.WriteString(strconv.FormatUint(uint64(ip.port), 10))
		b.WriteByte('/')
		b.WriteString(string(ip.protocol))
		b.WriteByte(';')
	}
	k := b.String()
	t.mu.Lock()
	e := entryLocked(t.inbound, k)
	e.generation = t.generation
	t.mu.Unlock()
	e.once.Do(func() {
		in := featureInputs{mode: p.MTLSMode, trustDomain: t.opts.TrustDomain, kind: p.Kind}
		if p.Kind == proxy.GRPC {
			// A pod without an IP yet serves nothing anyone can reach.
			if p.IP != "" {
				for _, ip := range ports {
					e.servers = append(e.servers, grpcServerListener(p.IP, ip, t.features, in))
				}
			}
			return
		}
		e.listener = inboundListener(ports, t.features, in)
		for _, ip := range ports {
			e.clusters = append(e.clusters, inboundCluster(ip.port, ip.protocol))
		}
		slices.SortFunc(e.clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.Name, b.Name) })
	})
	return e, errs
}
