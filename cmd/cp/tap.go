package main

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// tapLogService is how a tapped sidecar reaches this control plane's access
// log service: exactly as its bootstrap reaches xDS (the plaintext static
// cluster, or TLS with the mesh's bundle and the pod's token). With
// identity the bundle is the CA's current one; the controller asks again
// after every change of it.
func (o options) tapLogService(ca interface{ Bundle() []byte }) (*corev3.GrpcService, error) {
	injCfg, err := o.injectorConfig(ca)
	if err != nil {
		return nil, err
	}
	return injCfg.ControlPlaneService()
}
