package mesh

// Ports the sidecar listens on inside every meshed pod. They are Linkerd's
// numbers, so that skip-port habits and firewall rules carry over.
const (
	// ProxyInboundPort receives all inbound traffic redirected by iptables.
	ProxyInboundPort uint32 = 4143
	// ProxyOutboundPort receives all outbound traffic redirected by iptables.
	ProxyOutboundPort uint32 = 4140
	// ProxyAdminPort serves Envoy's admin interface (stats, config_dump), on 127.0.0.1 only:
	// the admin API can change the proxy, so nothing outside the pod may reach it.
	ProxyAdminPort uint32 = 4191
	// ProxyHealthPort serves Envoy's readiness (/ready) on the pod IP for kubelet's probe, a
	// static listener that exposes that one path and nothing else of the admin interface.
	ProxyHealthPort uint32 = 4192
	// ProxyUID is the user the proxy runs as; iptables lets its own traffic out.
	ProxyUID int64 = 2102
)
