// Package mesh is Weft's model of the mesh: plain Go values built from
// Kubernetes objects, which translate turns into Envoy configuration.
//
// Every value reachable from a Model is immutable once built. A change to an
// object replaces the pointer to its value (a new *Service, a new
// *Profile...), so pointer identity is a valid cache key: translate caches
// per-service output keyed by those pointers and recomputes only what a change
// touched.
package mesh

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/weftmesh/weft/proxy"
)

// Model is everything the mesh knows at one instant.
type Model struct {
	// ClusterDomain is the DNS suffix of services, normally "cluster.local".
	ClusterDomain string
	Services      map[ServiceKey]*Service
	// Endpoints per service; absent means none known yet.
	Endpoints map[ServiceKey]*ServiceEndpoints
	// Profiles by where they live and what they describe; ProfileFor says
	// which one applies to a client.
	Profiles map[ProfileKey]*Profile
	// Splits by apex service (SMI TrafficSplits live in the apex's
	// namespace): one per apex, chosen by ResolveSplitClaims.
	Splits map[ServiceKey]*Split
	// Tapped are the proxies, by node id, whose traffic someone is
	// watching (`weft tap`, `weft top`): a tap session is an input of
	// translation like any other, so that starting and ending one goes
	// down the same path as every other change.
	Tapped map[string]bool
}

// ServiceKey names a Service.
type ServiceKey struct {
	Namespace string
	Name      string
}

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// FQDN is svc.ns.svc.<domain>, the name Linkerd profiles are named after.
func (k ServiceKey) FQDN(domain string) string {
	return fmt.Sprintf("%s.%s.svc.%s", k.Name, k.Namespace, domain)
}

// ProfileKey says which service a profile describes and which namespace it lives in.
type ProfileKey struct {
	Namespace string
	Service   ServiceKey
}

// ObjectRef names the Kubernetes object a model value came from, for errors.
type ObjectRef struct {
	Kind      string
	Namespace string
	Name      string
}

func (r ObjectRef) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// Protocol is how traffic on a port is handled.
type Protocol string

const (
	// ProtocolHTTP1 is the default for ports nothing else says about.
	ProtocolHTTP1 Protocol = "http1"
	ProtocolHTTP2 Protocol = "http2"
	ProtocolGRPC  Protocol = "grpc"
	// ProtocolOpaque is plain TCP: no protocol detection, no HTTP routing.
	ProtocolOpaque Protocol = "opaque"
)

// IsHTTP reports whether the port gets an HTTP connection manager.
func (p Protocol) IsHTTP() bool { return p != ProtocolOpaque }

// DefaultOpaquePorts are Linkerd's: server-speaks-first or binary protocols
// where detection would stall.
var DefaultOpaquePorts = []uint32{25, 587, 3306, 4444, 5432, 6379, 9300, 11211}

// Service is a Kubernetes Service as the mesh sees it.
type Service struct {
	Key ServiceKey
	// ClusterIPs is empty for headless services.
	ClusterIPs []string
	Headless   bool
	Ports      []ServicePort
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string
	Port     uint32
	Protocol Protocol
	// TargetPort is the numeric target when the Service says one; 0 when it
	// names a container port (the endpoints carry the number then).
	TargetPort uint32
}

// ServiceEndpoints are the endpoints of one service, per service port name.
type ServiceEndpoints struct {
	Service ServiceKey
	// ByPort is keyed by ServicePort.Name ("" for a single unnamed port).
	ByPort map[string][]Endpoint
	// Peers are who serves behind the endpoints: PeersOf(ByPort), kept
	// apart so that endpoint churn which keeps the same peers is told from
	// a change of who serves by comparing values this small.
	Peers Peers
}

// Peers is what a client's TLS must know of a service's endpoints.
type Peers struct {
	// Meshed: the service has endpoints and every one is a pod that
	// terminates mTLS (Endpoint.Meshed), so a client can require
	// mTLS of every connection it opens to the service.
	Meshed bool
	// Identities of the endpoints' pods, sorted and without repeats. Every
	// endpoint counts, ready or not: one that is starting is in the set
	// before it takes traffic.
	Identities []Identity
}

// Equal reports whether p and o are the same peers.
func (p Peers) Equal(o Peers) bool {
	return p.Meshed == o.Meshed && slices.Equal(p.Identities, o.Identities)
}

// PeersOf summarises the endpoints of a service.
func PeersOf(byPort map[string][]Endpoint) Peers {
	var ids []Identity
	some, all := false, true
	for _, eps := range byPort {
		for _, e := range eps {
			some = true
			all = all && e.Meshed
			if !e.Identity.IsZero() {
				ids = append(ids, e.Identity)
			}
		}
	}
	slices.SortFunc(ids, func(a, b Identity) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.ServiceAccount, b.ServiceAccount))
	})
	return Peers{Meshed: some && all, Identities: slices.Clip(slices.Compact(ids))}
}

// Endpoint is one backend address from an EndpointSlice.
type Endpoint struct {
	Address     string
	Port        uint32
	Ready       bool
	Serving     bool
	Terminating bool
	Zone        string
	Node        string
	// Pod and Identity are empty for endpoints without a pod target, and
	// Identity also while the pod is not known.
	Pod      string
	Identity Identity
	// Meshed: the pod terminates mTLS on every port it serves
	// (PodTerminatesMTLS): a Weft sidecar's, or a strict proxyless pod's.
	Meshed bool
}

// Identity is the workload identity of a pod: one per ServiceAccount.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// IsZero reports an unknown identity.
func (i Identity) IsZero() bool { return i.ServiceAccount == "" }

// SPIFFE is the URI SAN certificates carry for this identity.
func (i Identity) SPIFFE(trustDomain string) string {
	return SPIFFEPrefix(trustDomain) + "ns/" + i.Namespace + "/sa/" + i.ServiceAccount
}

// SPIFFEPrefix is what every identity of the trust domain starts with.
func SPIFFEPrefix(trustDomain string) string { return "spiffe://" + trustDomain + "/" }

// Profile is a validated, converted ServiceProfile.
type Profile struct {
	Source      ObjectRef
	Service     ServiceKey
	Routes      []Route
	RetryBudget *RetryBudget
	// DstOverrides replace the destination with weighted backends.
	DstOverrides []WeightedBackend
	OpaquePorts  []uint32
}

// Route is one profile route; routes are tried in order, first match wins.
type Route struct {
	Name            string
	Match           RequestMatch
	ResponseClasses []ResponseClass
	IsRetryable     bool
	// Timeout covers the whole request including retries; 0 means none.
	Timeout time.Duration
}

// RequestMatch is a tree: every set field must hold (implicit All).
type RequestMatch struct {
	All       []RequestMatch
	Any       []RequestMatch
	Not       *RequestMatch
	PathRegex string // unanchored as written; matching anchors it ^...$
	Method    string
}

// ResponseClass classifies responses for metrics (and retries).
type ResponseClass struct {
	Match     ResponseMatch
	IsFailure bool
}

// ResponseMatch is a tree like RequestMatch.
type ResponseMatch struct {
	All    []ResponseMatch
	Any    []ResponseMatch
	Not    *ResponseMatch
	Status *StatusRange
}

// StatusRange is inclusive; 0 is an open bound.
type StatusRange struct {
	Min, Max uint32
}

// RetryBudget is Linkerd's rate-based budget, mapped by translate onto
// Envoy's concurrency-based retry_budget.
type RetryBudget struct {
	RetryRatio          float64
	MinRetriesPerSecond uint32
	TTL                 time.Duration
}

// DefaultRetryBudget is Linkerd's default.
var DefaultRetryBudget = RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: 10 * time.Second}

// Split is a validated, converted TrafficSplit.
type Split struct {
	Source   ObjectRef
	Apex     ServiceKey
	Backends []WeightedBackend
}

// WeightedBackend is a share of traffic to a service. Weight is kept in the
// source's own unit (milli-units for quantities, integers for v1alpha2), so
// ratios are exact.
type WeightedBackend struct {
	Service ServiceKey
	// Port is the backend's port; 0 means the same port as the apex.
	Port   uint32
	Weight uint32
}

// Proxy is the data-plane node config is built for: one pod.
type Proxy struct {
	Kind      proxy.Kind
	Pod       string
	Namespace string
	IP        string
	Identity  Identity
	// InboundPorts are the pod's own serving ports (container ports).
	InboundPorts []ProxyPort
	// SkipInboundPorts and SkipOutboundPorts bypass the proxy.
	SkipInboundPorts  []uint32
	SkipOutboundPorts []uint32
	// OpaquePorts from the pod/namespace annotation, else DefaultOpaquePorts.
	OpaquePorts []uint32
	// MTLSMode from the pod/namespace annotation: what the inbound side
	// accepts when mTLS is on.
	MTLSMode MTLSMode
}

// MTLSMode is what a meshed pod's inbound side accepts. The zero value is
// the default.
type MTLSMode uint8

const (
	// MTLSPermissive accepts mTLS from meshed clients and plaintext from the
	// others: Linkerd's behaviour, and the default.
	MTLSPermissive MTLSMode = iota
	// MTLSStrict refuses plaintext: only clients with a certificate from the
	// trust bundle get through.
	MTLSStrict
)

func (m MTLSMode) String() string {
	switch m {
	case MTLSPermissive:
		return MTLSModeValuePermissive
	case MTLSStrict:
		return MTLSModeValueStrict
	}
	return fmt.Sprintf("MTLSMode(%d)", uint8(m))
}

// NodeID is how the proxy names itself on the xDS stream.
func (p *Proxy) NodeID() string { return proxy.NodeID(p.Pod, p.Namespace) }

// ProxyPort is a port the pod serves on.
type ProxyPort struct {
	Name     string
	Port     uint32
	Protocol Protocol
}

// ConfigError is bad input that was skipped: which object and what is wrong
// with it (field paths inside Err).
type ConfigError struct {
	Object ObjectRef
	Err    error
}

func (e ConfigError) Error() string { return fmt.Sprintf("%s: %v", e.Object, e.Err) }
func (e ConfigError) Unwrap() error { return e.Err }
