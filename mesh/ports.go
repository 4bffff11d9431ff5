package mesh

// Ports the sidecar listens on inside every meshed pod. They are Linkerd's
// numbers, so that skip-port habits and firewall rules carry over.
const (
	// ProxyInboundPort receives all inbound traffic redirected by iptables.
	ProxyInboundPort uint32 = 4143
	// ProxyOutboundPort receives all outbound traffic redirected by iptables.
	ProxyOutboundPort uint32 = 4140
	// ProxyAdminPort serves Envoy's admin interface (stats, config_dump).
	ProxyAdminPort uint32 = 4191
	// ProxyUID is the user the proxy runs as; iptables lets its own traffic out.
	ProxyUID int64 = 2102
)
