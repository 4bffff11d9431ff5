package translate

import (
	"cmp"
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/mesh"
)

// EndpointMetadataKey is the endpoint filter_metadata key carrying the pod
// behind an address: {"pod", "namespace", "serviceAccount"}, plus
// "terminating": true on the fallback endpoints described at
// selectEndpoints.
const EndpointMetadataKey = "weft.io/endpoint"

// DefaultZone is the locality zone of endpoints whose EndpointSlice names no
// zone: grpc-go NACKs a locality without any ID.
const DefaultZone = "default"

// selectEndpoints picks the endpoints that receive traffic, following
// Kubernetes' own rules (kube-proxy, KEP-1669):
//
//   - ready endpoints, when there is at least one;
//   - otherwise, endpoints that are terminating but still serving, so a
//     service whose pods are all shutting down keeps answering until they
//     stop serving instead of failing at once.
//
// Everything else (starting, terminating while another pod is ready,
// terminating and no longer serving) is left out of EDS entirely rather than
// sent with a health status. In Envoy 1.40 an EDS status of DRAINING
// excludes the host from balancing (only panic mode would still use it,
// which is an accident, not a policy) and grpc-go ignores every endpoint
// whose status is not HEALTHY or UNKNOWN; so DRAINING would make the
// fallback above silently not work on proxyless clients. The fallback
// endpoints are therefore sent as HEALTHY and marked terminating in the
// metadata. Leaving an endpoint out does not cut requests already running
// on it: Envoy drains connections of removed hosts.
func selectEndpoints(eps []mesh.Endpoint) (selected []mesh.Endpoint, fallback bool) {
	for _, e := range eps {
		if e.Ready {
			selected = append(selected, e)
		}
	}
	if len(selected) > 0 {
		return selected, false
	}
	for _, e := range eps {
		if e.Serving && e.Terminating {
			selected = append(selected, e)
		}
	}
	return selected, len(selected) > 0
}

type endpointKey struct {
	addr netip.Addr
	port uint32
}

// loadAssignment builds the ClusterLoadAssignment of one service port:
// localities sorted by zone, endpoints by address, no address twice (the
// same pod can appear in two EndpointSlices while they are being replaced).
func loadAssignment(name string, sp mesh.ServicePort, eps []mesh.Endpoint) *endpointv3.ClusterLoadAssignment {
	selected, fallback := selectEndpoints(eps)
	byZone := map[string][]mesh.Endpoint{}
	seen := map[endpointKey]bool{}
	for _, e := range selected {
		port := e.Port
		if port == 0 {
			port = sp.TargetPort
		}
		if port == 0 {
			port = sp.Port
		}
		addr, err := netip.ParseAddr(e.Address)
		if err != nil {
			continue // Envoy refuses anything but an IP on an EDS cluster
		}
		k := endpointKey{addr.Unmap(), port}
		if seen[k] {
			continue
		}
		seen[k] = true
		e.Port = port
		e.Address = k.addr.String()
		zone := e.Zone
		if zone == "" {
			zone = DefaultZone
		}
		byZone[zone] = append(byZone[zone], e)
	}
	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	slices.Sort(zones)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, z := range zones {
		list := byZone[z]
		slices.SortFunc(list, func(a, b mesh.Endpoint) int {
			aa, _ := netip.ParseAddr(a.Address)
			ba, _ := netip.ParseAddr(b.Address)
			return cmp.Or(aa.Compare(ba), cmp.Compare(a.Port, b.Port))
		})
		lle := &endpointv3.LocalityLbEndpoints{
			Locality: &corev3.Locality{Zone: z},
			// grpc-go drops a locality without weight; Envoy only reads
			// locality weights with locality-weighted balancing, which is off.
			LoadBalancingWeight: wrapperspb.UInt32(uint32(len(list))),
		}
		for _, e := range list {
			lle.LbEndpoints = append(lle.LbEndpoints, lbEndpoint(e, fallback))
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

func lbEndpoint(e mesh.Endpoint, terminating bool) *endpointv3.LbEndpoint {
	lb := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(e.Address, e.Port),
		}},
		HealthStatus: corev3.HealthStatus_HEALTHY,
	}
	fields := map[string]*structpb.Value{}
	if e.Pod != "" {
		fields["pod"] = structpb.NewStringValue(e.Pod)
	}
	if !e.Identity.IsZero() {
		fields["namespace"] = structpb.NewStringValue(e.Identity.Namespace)
		fields["serviceAccount"] = structpb.NewStringValue(e.Identity.ServiceAccount)
	}
	if terminating {
		fields["terminating"] = structpb.NewBoolValue(true)
	}
	if len(fields) > 0 {
		lb.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			EndpointMetadataKey: {Fields: fields},
		}}
	}
	return lb
}

// serviceLoadAssignments builds one ClusterLoadAssignment per service port,
// in port order; a port without endpoints gets an empty one so its cluster
// finishes warming.
func serviceLoadAssignments(svc *mesh.Service, eps *mesh.ServiceEndpoints, domain string) []*endpointv3.ClusterLoadAssignment {
	out := make([]*endpointv3.ClusterLoadAssignment, 0, len(svc.Ports))
	for _, sp := range svc.Ports {
		var list []mesh.Endpoint
		if eps != nil {
			list = eps.ByPort[sp.Name]
		}
		out = append(out, loadAssignment(OutboundClusterName(svc.Key, sp.Port, domain), sp, list))
	}
	return out
}

func computeEndpoints(e *serviceEntry[[]*endpointv3.ClusterLoadAssignment]) {
	if err := guard(func() error {
		e.val = serviceLoadAssignments(e.deps.svc, e.deps.endpoints, e.deps.domain)
		return nil
	}); err != nil {
		e.val = nil
	}
}
