package translate

import (
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// router is the terminal HTTP filter of every HTTP connection manager: it
// forwards the request to the cluster the route chose. It reads nothing
// from the model: routes and clusters carry everything it acts on.
var router = feature{
	name:       wellknown.Router,
	on:         onOutboundChain | onProxylessListener | onInboundChain,
	terminal:   true,
	httpFilter: func(featureInputs) *hcmv3.HttpFilter { return routerFilter() },
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}
}
