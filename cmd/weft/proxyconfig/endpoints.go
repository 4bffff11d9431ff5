package proxyconfig

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/proxy"
)

// EndpointMetadataKey is the filter_metadata key under which translate
// records an endpoint's pod (translate.EndpointMetadataKey; a test keeps
// them equal).
const EndpointMetadataKey = "weft.io/endpoint"

// endpointSet is one cluster's endpoints: from EDS, or inline in a
// STATIC/DNS cluster.
type endpointSet struct {
	name string
	cla  *endpointv3.ClusterLoadAssignment
	// missing: an EDS cluster names it but no CLA was received.
	missing bool
	inline  bool
}

func endpointSets(cfg *config) []endpointSet {
	seen := map[string]bool{}
	var out []endpointSet
	for _, c := range cfg.clas {
		out = append(out, endpointSet{name: c.GetClusterName(), cla: c})
		seen[c.GetClusterName()] = true
	}
	for _, c := range cfg.clusters {
		switch {
		case c.GetType() == clusterv3.Cluster_EDS:
			name := cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName())
			if !seen[name] {
				out = append(out, endpointSet{name: name, missing: true})
				seen[name] = true
			}
		case c.GetLoadAssignment() != nil:
			// Inline endpoints are named after their cluster, whatever
			// cluster_name the CLA says.
			out = append(out, endpointSet{name: c.GetName(), cla: c.GetLoadAssignment(), inline: true})
		}
	}
	slices.SortStableFunc(out, func(a, b endpointSet) int { return cmp.Compare(a.name, b.name) })
	return out
}

func renderEndpoints(w io.Writer, cfg *config) {
	sets := endpointSets(cfg)
	fmt.Fprintf(w, "ENDPOINTS (%d clusters)\n", len(sets))
	for _, p := range cfg.problems[resourcev3.EndpointType] {
		fmt.Fprintln(w, p)
	}
	if len(sets) == 0 {
		fmt.Fprintln(w, "(none)")
		return
	}
	t := newTable(w, "", "CLUSTER", "ADDRESS", "HEALTH", "WEIGHT", "ZONE", "POD")
	for _, s := range sets {
		name := s.name
		if s.inline {
			name += " (static)"
		}
		switch {
		case s.missing:
			// No empty cells after the note: tabwriter would pad them.
			t.row(name, "(no ClusterLoadAssignment received: no endpoints)")
			continue
		case countEndpoints(s.cla) == 0:
			t.row(name, "(no endpoints)")
			continue
		}
		for _, loc := range s.cla.GetEndpoints() {
			zone := locality(loc.GetLocality())
			if loc.GetPriority() > 0 {
				zone += fmt.Sprintf(" (priority %d)", loc.GetPriority())
			}
			for _, ep := range loc.GetLbEndpoints() {
				t.row(name, endpointAddress(ep), health(ep), weight(loc, ep), zone, pod(ep))
				name = ""
			}
		}
	}
	t.flush()
}

func countEndpoints(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, loc := range cla.GetEndpoints() {
		n += len(loc.GetLbEndpoints())
	}
	return n
}

func endpointAddress(ep *endpointv3.LbEndpoint) string {
	switch h := ep.GetHostIdentifier().(type) {
	case *endpointv3.LbEndpoint_Endpoint:
		s := address(h.Endpoint.GetAddress())
		if hn := h.Endpoint.GetHostname(); hn != "" {
			s += " (" + hn + ")"
		}
		return s
	case *endpointv3.LbEndpoint_EndpointName:
		return "named " + h.EndpointName
	}
	return "-"
}

func health(ep *endpointv3.LbEndpoint) string {
	s := strings.ToLower(ep.GetHealthStatus().String())
	if v, ok := endpointMeta(ep)["terminating"]; ok && v.GetBoolValue() {
		s += ", terminating"
	}
	return s
}

// weight is the endpoint's weight, and its locality's when that is not 1:
// Envoy balances between localities by their weight first.
func weight(loc *endpointv3.LocalityLbEndpoints, ep *endpointv3.LbEndpoint) string {
	s := fmt.Sprint(u32Or(ep.GetLoadBalancingWeight(), 1))
	if lw := loc.GetLoadBalancingWeight(); lw != nil && lw.GetValue() != 1 {
		s += fmt.Sprintf(" (zone %d)", lw.GetValue())
	}
	return s
}

func locality(l *corev3.Locality) string {
	var parts []string
	for _, p := range []string{l.GetRegion(), l.GetZone(), l.GetSubZone()} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "/")
}

func endpointMeta(ep *endpointv3.LbEndpoint) map[string]*structpb.Value {
	return ep.GetMetadata().GetFilterMetadata()[EndpointMetadataKey].GetFields()
}

// pod is "<pod>.<namespace>" (a node id), or the pod alone when the
// namespace is not recorded.
func pod(ep *endpointv3.LbEndpoint) string {
	m := endpointMeta(ep)
	p := m["pod"].GetStringValue()
	if p == "" {
		return "-"
	}
	if ns := m["namespace"].GetStringValue(); ns != "" {
		return proxy.NodeID(p, ns)
	}
	return p
}
