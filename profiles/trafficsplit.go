package profiles

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type resourceQuantity = resource.Quantity

var (
	TrafficSplitV1alpha1 = schema.GroupVersion{Group: "split.smi-spec.io", Version: "v1alpha1"}
	TrafficSplitV1alpha2 = schema.GroupVersion{Group: "split.smi-spec.io", Version: "v1alpha2"}
)

// TrafficSplitV1 is SMI split.smi-spec.io/v1alpha1: weights are quantities ("500m").
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TrafficSplitV1 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TrafficSplitV1Spec `json:"spec"`
}

type TrafficSplitV1Spec struct {
	// Service is the apex service clients address.
	Service  string                  `json:"service"`
	Backends []TrafficSplitV1Backend `json:"backends"`
}

type TrafficSplitV1Backend struct {
	Service string            `json:"service"`
	Weight  resource.Quantity `json:"weight"`
}

// TrafficSplitV2 is SMI split.smi-spec.io/v1alpha2: weights are integers.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TrafficSplitV2 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TrafficSplitV2Spec `json:"spec"`
}

type TrafficSplitV2Spec struct {
	Service  string                  `json:"service"`
	Backends []TrafficSplitV2Backend `json:"backends"`
}

type TrafficSplitV2Backend struct {
	Service string `json:"service"`
	Weight  int    `json:"weight"`
}

// TrafficSplit is the version-independent form both SMI versions convert to.
// Weight keeps the source's unit exactly: milli-units for v1alpha1
// quantities ("500m" -> 500), the integer itself for v1alpha2.
type TrafficSplit struct {
	// Version is the apiVersion it was read from, for error messages.
	Version schema.GroupVersion
	metav1.ObjectMeta
	Service  string
	Backends []SplitBackend
}

type SplitBackend struct {
	Service string
	Weight  int64
}
