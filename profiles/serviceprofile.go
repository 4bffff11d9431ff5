package profiles

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ServiceProfileGroupVersion is Linkerd's group/version, kept as is.
var ServiceProfileGroupVersion = schema.GroupVersion{Group: "linkerd.io", Version: "v1alpha2"}

// ServiceProfile describes the routes of one service, named by its FQDN
// (svc.ns.svc.<clusterDomain>). A profile in the client's namespace wins over
// one in the server's.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ServiceProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServiceProfileSpec `json:"spec"`
}

// ServiceProfileList is a list of ServiceProfiles.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ServiceProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []ServiceProfile `json:"items"`
}

// ServiceProfileSpec is Linkerd's spec, field for field.
type ServiceProfileSpec struct {
	Routes       []*RouteSpec        `json:"routes,omitempty"`
	RetryBudget  *RetryBudget        `json:"retryBudget,omitempty"`
	DstOverrides []*WeightedDst      `json:"dstOverrides,omitempty"`
	OpaquePorts  map[uint32]struct{} `json:"opaquePorts,omitempty"`
}

// RouteSpec is one route; the first route whose condition matches wins.
type RouteSpec struct {
	Name            string           `json:"name"`
	Condition       *RequestMatch    `json:"condition"`
	ResponseClasses []*ResponseClass `json:"responseClasses,omitempty"`
	IsRetryable     bool             `json:"isRetryable,omitempty"`
	// Timeout is a Go duration covering the whole request, retries included.
	Timeout string `json:"timeout,omitempty"`
}

// RequestMatch: several fields set in one match act as an implicit All.
type RequestMatch struct {
	All       []*RequestMatch `json:"all,omitempty"`
	Not       *RequestMatch   `json:"not,omitempty"`
	Any       []*RequestMatch `json:"any,omitempty"`
	PathRegex string          `json:"pathRegex,omitempty"`
	Method    string          `json:"method,omitempty"`
}

// ResponseClass marks responses matching Condition as failures (or not).
type ResponseClass struct {
	Condition *ResponseMatch `json:"condition"`
	IsFailure bool           `json:"isFailure,omitempty"`
}

// ResponseMatch: several fields set in one match act as an implicit All.
type ResponseMatch struct {
	All    []*ResponseMatch `json:"all,omitempty"`
	Not    *ResponseMatch   `json:"not,omitempty"`
	Any    []*ResponseMatch `json:"any,omitempty"`
	Status *Range           `json:"status,omitempty"`
}

// Range is an inclusive HTTP status range; a zero bound is open.
type Range struct {
	Min uint32 `json:"min,omitempty"`
	Max uint32 `json:"max,omitempty"`
}

// RetryBudget limits retries to a share of original requests.
type RetryBudget struct {
	RetryRatio          float32 `json:"retryRatio"`
	MinRetriesPerSecond uint32  `json:"minRetriesPerSecond"`
	TTL                 string  `json:"ttl"`
}

// WeightedDst sends a share of traffic to another authority
// (svc.ns.svc.cluster.local:port). Weight is a Kubernetes quantity; 0 sends none.
type WeightedDst struct {
	Authority string           `json:"authority"`
	Weight    resourceQuantity `json:"weight"`
}
