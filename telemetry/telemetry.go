// Package telemetry is the one model of Weft's golden metrics: the query a
// person asks (`weft stat deploy -n shop`), the table every source answers
// with, the math that turns what Envoy reports into rates, success and
// percentiles, and the printer the CLI uses. The embedded path (proxies push
// through Envoy's metrics_service sink into the control plane) and the
// Prometheus path both answer a Query with a Table through Source, so the
// CLI and the dashboard print the same numbers whichever path produced them.
package telemetry

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Resource kinds a Query asks for.
const (
	ResourceNamespace  = "namespace"
	ResourceDeployment = "deployment"
	ResourcePod        = "pod"
	ResourceService    = "service"
	ResourceRoute      = "route"
	ResourceEdge       = "edge"
)

// DefaultRoute names the row of requests no profile route matched, as Linkerd does.
const DefaultRoute = "[DEFAULT]"

// DefaultWindow is how far back a Query looks when it does not say.
const DefaultWindow = time.Minute

// Query is what a person asks: one resource kind, optionally one name, in one
// namespace or all, optionally only traffic from or to one resource.
type Query struct {
	Resource      string        `json:"resource"`
	Namespace     string        `json:"namespace,omitempty"`
	AllNamespaces bool          `json:"allNamespaces,omitempty"`
	Name          string        `json:"name,omitempty"`
	From          string        `json:"from,omitempty"` // "deploy/web", "pod/web-0", "svc/web", "ns/shop"
	To            string        `json:"to,omitempty"`
	Window        time.Duration `json:"window,omitempty"`
}

// Row is one line of a table. Which fields mean something depends on the
// table's resource: routes fill the Effective/Actual pair and Dst, edges fill
// Src, Dst, DstNamespace, the identities and Secured.
type Row struct {
	// Namespace is the resource's namespace; for an edge, the source's.
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Meshed is "meshed pods/pods" ("2/2"); empty where it does not apply (routes, edges).
	Meshed string `json:"meshed,omitempty"`
	// SuccessRate is the share of responses not classified as failures, 0..1;
	// nil when there was no traffic in the window (printed "-").
	SuccessRate *float64 `json:"successRate,omitempty"`
	// RPS is responses per second over the window.
	RPS float64 `json:"rps"`
	// P50, P95, P99 are latency percentiles; 0 means no data ("-").
	P50 time.Duration `json:"p50,omitempty"`
	P95 time.Duration `json:"p95,omitempty"`
	P99 time.Duration `json:"p99,omitempty"`
	// TCPConnections is the number of open TCP connections at the window's end.
	TCPConnections int `json:"tcpConnections"`

	// Routes: Effective is what the client saw (one outcome per request, after
	// retries), Actual counts every attempt. SuccessRate/RPS repeat Effective.
	EffectiveSuccess *float64 `json:"effectiveSuccess,omitempty"`
	ActualSuccess    *float64 `json:"actualSuccess,omitempty"`
	EffectiveRPS     float64  `json:"effectiveRps,omitempty"`
	ActualRPS        float64  `json:"actualRps,omitempty"`

	// Edges: Secured is true when the connection is mutual TLS, false when it
	// is not, nil when there is no evidence either way. Src and Dst are
	// resource names (for routes Dst is the route's service); the identities
	// are SPIFFE IDs or ServiceAccount names.
	Secured      *bool  `json:"secured,omitempty"`
	Src          string `json:"src,omitempty"`
	Dst          string `json:"dst,omitempty"`
	DstNamespace string `json:"dstNamespace,omitempty"`
	ClientID     string `json:"clientId,omitempty"`
	ServerID     string `json:"serverId,omitempty"`
}

// Table is the answer to a Query: Resource repeats Query.Resource.
type Table struct {
	Resource string `json:"resource"`
	Rows     []Row  `json:"rows"`
	// Skipped names rows a source left out because their data could not be
	// trusted (garbage, a counter reset inside the window with no baseline):
	// shown to the user instead of a wrong number.
	Skipped []string `json:"skipped,omitempty"`
}

// Source answers queries: the embedded store in the control plane, or Prometheus.
type Source interface {
	Query(ctx context.Context, q Query) (Table, error)
}

// resourceAliases maps what people type (Linkerd's and kubectl's short names)
// to resource kinds.
var resourceAliases = map[string]string{
	"ns": ResourceNamespace, "namespace": ResourceNamespace, "namespaces": ResourceNamespace,
	"deploy": ResourceDeployment, "deployment": ResourceDeployment, "deployments": ResourceDeployment,
	"po": ResourcePod, "pod": ResourcePod, "pods": ResourcePod,
	"svc": ResourceService, "service": ResourceService, "services": ResourceService,
	"route": ResourceRoute, "routes": ResourceRoute, "rt": ResourceRoute,
	"edge": ResourceEdge, "edges": ResourceEdge,
}

// ParseResource turns "deploy", "svc", "pods"... into a resource kind.
func ParseResource(s string) (string, error) {
	if r, ok := resourceAliases[strings.ToLower(s)]; ok {
		return r, nil
	}
	return "", fmt.Errorf("unknown resource %q: want ns, deploy, pod or svc", s)
}

// Target is one named resource, "deploy/web" parsed.
type Target struct {
	Resource, Name string
}

func (t Target) String() string {
	if t.Resource == "" {
		return ""
	}
	return shortNames[t.Resource] + "/" + t.Name
}

var shortNames = map[string]string{
	ResourceNamespace: "ns", ResourceDeployment: "deploy", ResourcePod: "pod",
	ResourceService: "svc", ResourceRoute: "route", ResourceEdge: "edge",
}

// ParseTarget parses "deploy/web"; the empty string is the empty Target.
func ParseTarget(s string) (Target, error) {
	if s == "" {
		return Target{}, nil
	}
	kind, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return Target{}, fmt.Errorf("%q: want KIND/NAME, e.g. deploy/web", s)
	}
	r, err := ParseResource(kind)
	if err != nil {
		return Target{}, fmt.Errorf("%q: %w", s, err)
	}
	if r == ResourceRoute || r == ResourceEdge {
		return Target{}, fmt.Errorf("%q: want a namespace, deployment, pod or service", s)
	}
	return Target{Resource: r, Name: name}, nil
}

// Validate names the field of a query that cannot be answered.
func (q Query) Validate() error {
	switch q.Resource {
	case ResourceNamespace, ResourceDeployment, ResourcePod, ResourceService, ResourceRoute, ResourceEdge:
	default:
		return fmt.Errorf("query.resource %q: want one of namespace, deployment, pod, service, route, edge", q.Resource)
	}
	if _, err := ParseTarget(q.From); err != nil {
		return fmt.Errorf("query.from: %w", err)
	}
	if _, err := ParseTarget(q.To); err != nil {
		return fmt.Errorf("query.to: %w", err)
	}
	if q.From != "" && q.To != "" {
		return fmt.Errorf("query: from %q and to %q: give at most one", q.From, q.To)
	}
	if q.Window < 0 {
		return fmt.Errorf("query.window %s: must not be negative", q.Window)
	}
	if q.Resource == ResourceRoute && q.Name == "" {
		return fmt.Errorf("query.name: routes need a service name")
	}
	return nil
}

// WindowOrDefault is the window a source should use.
func (q Query) WindowOrDefault() time.Duration {
	if q.Window <= 0 {
		return DefaultWindow
	}
	return q.Window
}
