package mesh

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weftmesh/weft/profiles"
)

// Objects are the Kubernetes objects a Model is built from.
type Objects struct {
	Services        []*corev1.Service
	EndpointSlices  []*discoveryv1.EndpointSlice
	Pods            []*corev1.Pod
	Namespaces      []*corev1.Namespace
	ServiceProfiles []*profiles.ServiceProfile
	TrafficSplits   []*profiles.TrafficSplit
}

// Build converts objects into a Model. Invalid profiles and splits are
// skipped, each reported as a ConfigError naming the object and field path;
// everything else is still built.
func Build(clusterDomain string, objs Objects) (*Model, []ConfigError) {
	panic("TODO: implemented by the profiles/mesh work")
}
