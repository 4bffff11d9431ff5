// Package proxy names a data-plane proxy the way every layer of Weft must agree on: the node
// id it sends on its xDS stream and the kind of xDS client it is.
//
// It sits at the top of the module, apart from the layers that use it, because those layers
// must not import each other to share it: the mesh model (which imports the ServiceProfile
// types) sets a proxy's kind from pod annotations, translate and its checker shape and check
// resources for that kind, xds parses node ids and tells kinds from a node's user agent
// (and must know nothing of ServiceProfiles), the controller binds node ids to pods, and the
// weft command builds node ids from what an operator types. It imports nothing of Weft, so
// any of them may import it.
package proxy

import (
	"fmt"
	"strings"
)

// NodeID is the node.id the proxy of a pod sends: "<pod>.<namespace>".
func NodeID(pod, namespace string) string { return pod + "." + namespace }

// ParseNodeID splits a node id into pod and namespace. A namespace is a DNS label (no dots)
// while a pod name may contain dots, so the split is at the last dot.
func ParseNodeID(id string) (pod, namespace string, err error) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", "", fmt.Errorf("node id %q is not \"<pod>.<namespace>\"", id)
	}
	return id[:i], id[i+1:], nil
}

// Kind is the kind of xDS client a proxy is. It decides what translate emits and which rules
// the checker applies: proxyless grpc-go reads a subset of xDS and refuses things Envoy
// accepts (docs/envoy-rejects.md).
type Kind int

const (
	// Envoy is an Envoy sidecar; the zero Kind, as a pod without an annotation gets one.
	Envoy Kind = iota
	// GRPC is a proxyless grpc-go client or server (or another gRPC language's xDS client).
	GRPC
)

// String is the name the control plane shows for a kind (logs, /debug/proxies, weft
// proxies).
func (k Kind) String() string {
	switch k {
	case Envoy:
		return "envoy"
	case GRPC:
		return "grpc"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Valid says whether k is one of the kinds above.
func (k Kind) Valid() bool { return k == Envoy || k == GRPC }

// KindOfUserAgent tells a kind from the user_agent_name a node sends: Envoy sends "envoy",
// grpc-go "gRPC Go", and other gRPC languages "gRPC <language>".
func KindOfUserAgent(userAgent string) Kind {
	if strings.Contains(strings.ToLower(userAgent), "grpc") {
		return GRPC
	}
	return Envoy
}

// GRPCServerListenerTemplate is the server_listener_resource_name_template
// a proxyless grpc-go server's xDS bootstrap must carry. grpc-go requires
// one (xds.NewGRPCServer refuses a bootstrap without it), replaces %s with
// the address it listens on, host:port as net.JoinHostPort writes it
// (xds/server.go, Serve), and subscribes to the listener of that name.
const GRPCServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"
