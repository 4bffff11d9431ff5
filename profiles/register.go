package profiles

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TrafficSplitV1List is a list of v1alpha1 TrafficSplits.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TrafficSplitV1List struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []TrafficSplitV1 `json:"items"`
}

// TrafficSplitV2List is a list of v1alpha2 TrafficSplits.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TrafficSplitV2List struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []TrafficSplitV2 `json:"items"`
}

// AddToScheme registers the typed objects under their groups/versions, for
// typed REST clients and informers. The unified TrafficSplit is not an API
// object: it is what DecodeTrafficSplit and TrafficSplitFromUnstructured
// return.
func AddToScheme(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(ServiceProfileGroupVersion, &ServiceProfile{}, &ServiceProfileList{})
	metav1.AddToGroupVersion(scheme, ServiceProfileGroupVersion)
	scheme.AddKnownTypes(TrafficSplitV1alpha1, &TrafficSplitV1{}, &TrafficSplitV1List{})
	metav1.AddToGroupVersion(scheme, TrafficSplitV1alpha1)
	scheme.AddKnownTypes(TrafficSplitV1alpha2, &TrafficSplitV2{}, &TrafficSplitV2List{})
	metav1.AddToGroupVersion(scheme, TrafficSplitV1alpha2)
	return nil
}
