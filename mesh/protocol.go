package mesh

import (
	"slices"
	"strings"
)

// Protocol names as they appear in Service appProtocol values and, as an
// Istio-style prefix, in port names ("grpc-api", "http2", "mysql-primary").
// TLS and server-speaks-first protocols are opaque: the proxy cannot look
// inside them, and waiting for the client to speak first would stall.
var protocolNames = map[string]Protocol{
	"grpc":      ProtocolGRPC,
	"grpc-web":  ProtocolHTTP1,
	"http":      ProtocolHTTP1,
	"http2":     ProtocolHTTP2,
	"h2c":       ProtocolHTTP2,
	"https":     ProtocolOpaque,
	"tls":       ProtocolOpaque,
	"tcp":       ProtocolOpaque,
	"mysql":     ProtocolOpaque,
	"redis":     ProtocolOpaque,
	"mongo":     ProtocolOpaque,
	"postgres":  ProtocolOpaque,
	"memcache":  ProtocolOpaque,
	"smtp":      ProtocolOpaque,
	"kafka":     ProtocolOpaque,
	"zookeeper": ProtocolOpaque,
	"thrift":    ProtocolOpaque,
	"dubbo":     ProtocolOpaque,
	"amqp":      ProtocolOpaque,
	"nats":      ProtocolOpaque,
}

// protocolFromAppProtocol maps a Service port's appProtocol (KEP-3726
// "kubernetes.io/..." values or bare IANA-style names). ok is false for
// values Weft does not know, so the next rule decides.
func protocolFromAppProtocol(appProtocol string) (Protocol, bool) {
	switch ap := strings.ToLower(strings.TrimSpace(appProtocol)); ap {
	case "":
		return "", false
	case "kubernetes.io/h2c":
		return ProtocolHTTP2, true
	case "kubernetes.io/ws":
		return ProtocolHTTP1, true
	case "kubernetes.io/wss":
		return ProtocolOpaque, true
	default:
		p, ok := protocolNames[ap]
		return p, ok
	}
}

// protocolFromPortName applies Istio's naming convention: the name is the
// protocol, or starts with the protocol and a dash. "grpc-web" is tried before
// "grpc" so that it is not taken for gRPC.
func protocolFromPortName(name string) (Protocol, bool) {
	name = strings.ToLower(name)
	if name == "" {
		return "", false
	}
	if name == "grpc-web" || strings.HasPrefix(name, "grpc-web-") {
		return protocolNames["grpc-web"], true
	}
	prefix, _, _ := strings.Cut(name, "-")
	p, ok := protocolNames[prefix]
	return p, ok
}

// portProtocol decides a port's protocol. The order is: the explicit opaque
// list (an annotation), appProtocol, the port name, the default opaque ports
// (only when no annotation gave an opaque list: an annotation replaces the
// defaults, as in Linkerd), else HTTP/1. numbers are the port numbers the
// lists are matched against (a Service port and its numeric target).
func portProtocol(opaque *PortSet, name, appProtocol string, numbers ...uint32) Protocol {
	if opaque != nil {
		for _, n := range numbers {
			if n != 0 && opaque.ContainsPort(name, n) {
				return ProtocolOpaque
			}
		}
	}
	if p, ok := protocolFromAppProtocol(appProtocol); ok {
		return p
	}
	if p, ok := protocolFromPortName(name); ok {
		return p
	}
	if opaque == nil {
		for _, n := range numbers {
			if slices.Contains(DefaultOpaquePorts, n) {
				return ProtocolOpaque
			}
		}
	}
	return ProtocolHTTP1
}
