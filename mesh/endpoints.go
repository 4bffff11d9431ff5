package mesh

import (
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// EndpointsFrom converts the EndpointSlices of one service. Slices of other
// services (by namespace and the kubernetes.io/service-name label), FQDN
// slices, non-TCP ports and ports the Service does not declare are ignored.
//
// pods resolves an endpoint's pod target to the pod and its namespace, to
// find its ServiceAccount and whether it is meshed; it may be nil or return
// a nil pod, and the endpoint then has no identity and is not meshed (the
// pod is not known yet). An endpoint listed in two slices (the controller
// moves endpoints between slices in two writes) appears once: the ready copy
// wins, else the one from the slice whose name sorts first.
//
// Endpoints are sorted by address then port, so equal input gives equal
// output whatever order the informer delivered slices in.
func EndpointsFrom(svc *Service, slicesIn []*discoveryv1.EndpointSlice, pods PodLookup) *ServiceEndpoints {
	out := &ServiceEndpoints{Service: svc.Key, ByPort: map[string][]Endpoint{}}
	portNames := make(map[string]bool, len(svc.Ports))
	for _, p := range svc.Ports {
		portNames[p.Name] = true
	}

	ordered := make([]*discoveryv1.EndpointSlice, 0, len(slicesIn))
	for _, s := range slicesIn {
		if s == nil || s.Namespace != svc.Key.Namespace || s.Labels[discoveryv1.LabelServiceName] != svc.Key.Name {
			continue
		}
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		ordered = append(ordered, s)
	}
	slices.SortFunc(ordered, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })

	type key struct {
		portName string
		address  string
		port     uint32
	}
	seen := map[key]int{} // index into out.ByPort[portName]
	for _, s := range ordered {
		for _, sp := range s.Ports {
			if sp.Port == nil || *sp.Port < 1 || *sp.Port > 65535 {
				// A nil port means "all ports", which the mesh cannot route.
				continue
			}
			if sp.Protocol != nil && *sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			portName := ""
			if sp.Name != nil {
				portName = *sp.Name
			}
			if !portNames[portName] {
				continue
			}
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) == 0 {
					continue
				}
				e := endpointFrom(ep, uint32(*sp.Port), s.Namespace, pods)
				k := key{portName, e.Address, e.Port}
				if i, dup := seen[k]; dup {
					if !out.ByPort[portName][i].Ready && e.Ready {
						out.ByPort[portName][i] = e
					}
					continue
				}
				seen[k] = len(out.ByPort[portName])
				out.ByPort[portName] = append(out.ByPort[portName], e)
			}
		}
	}
	for name, eps := range out.ByPort {
		slices.SortFunc(eps, compareEndpoints)
		out.ByPort[name] = eps
	}
	out.Peers = PeersOf(out.ByPort)
	return out
}

// PodLookup returns the pod of that namespace and name and its Namespace
// object; either may be nil when not known.
type PodLookup func(namespace, name string) (*corev1.Pod, *corev1.Namespace)

func endpointFrom(ep discoveryv1.Endpoint, port uint32, namespace string, pods PodLookup) Endpoint {
	e := Endpoint{
		// Addresses are fungible per the API; consumers may use the first.
		Address: ep.Addresses[0],
		Port:    port,
		// Per the API: nil ready and nil serving mean true, nil terminating false.
		Ready:       ep.Conditions.Ready == nil || *ep.Conditions.Ready,
		Serving:     ep.Conditions.Serving == nil || *ep.Conditions.Serving,
		Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
	}
	if ep.Zone != nil {
		e.Zone = *ep.Zone
	}
	if ep.NodeName != nil {
		e.Node = *ep.NodeName
	}
	if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" && ref.Name != "" {
		podNS := ref.Namespace
		if podNS == "" {
			podNS = namespace
		}
		e.Pod = ref.Name
		if pods != nil {
			if pod, ns := pods(podNS, ref.Name); pod != nil {
				e.Identity = podIdentity(pod)
				e.Meshed = PodTerminatesMTLS(pod, ns)
			}
		}
	}
	return e
}

// podIdentity is the pod's ServiceAccount; the API server defaults an empty
// one to "default", and hand-built objects may not have been defaulted.
func podIdentity(pod *corev1.Pod) Identity {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return Identity{Namespace: pod.Namespace, ServiceAccount: sa}
}

func compareEndpoints(a, b Endpoint) int {
	if c := compareAddresses(a.Address, b.Address); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// compareAddresses orders IPs numerically (10.0.0.9 before 10.0.0.10) and
// anything unparsable after them, as strings.
func compareAddresses(a, b string) int {
	ia, errA := netip.ParseAddr(a)
	ib, errB := netip.ParseAddr(b)
	switch {
	case errA == nil && errB == nil:
		return ia.Compare(ib)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	default:
		return cmp.Compare(a, b)
	}
}
