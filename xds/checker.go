package xds

import (
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate/check"
)

// defaultChecker is what Envoy or grpc-go would refuse in a node's set.
func defaultChecker(node NodeInfo, res map[string][]types.Resource) error {
	return check.Resources(node.Kind, res)
}

// defaultEndpointChecker checks one CLA as grpc-go would: the endpoint cache
// is shared by Envoy and proxyless nodes, and grpc-go refuses more
// (locality without ID, duplicate addresses, zero weights) than Envoy.
func defaultEndpointChecker(cla *endpointv3.ClusterLoadAssignment) error {
	return check.Resources(proxy.GRPC, map[string][]types.Resource{resourcev3.EndpointType: {cla}})
}
