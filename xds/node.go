package xds

import (
	"context"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ProxyKind says which xDS client a node is. It picks the checker's peer:
// proxyless grpc-go refuses things Envoy accepts (see envoy-rejects.md).
type ProxyKind int

const (
	// ProxyEnvoy is an Envoy sidecar.
	ProxyEnvoy ProxyKind = iota
	// ProxyGRPC is a proxyless grpc-go (or other gRPC xDS) client.
	ProxyGRPC
)

func (k ProxyKind) String() string {
	switch k {
	case ProxyEnvoy:
		return "envoy"
	case ProxyGRPC:
		return "grpc"
	default:
		return fmt.Sprintf("ProxyKind(%d)", int(k))
	}
}

// KindOfNode guesses the kind from what the client says about itself:
// Envoy sends user_agent_name "envoy", grpc-go "gRPC Go" (other gRPC
// languages say "gRPC <lang>").
func KindOfNode(node *corev3.Node) ProxyKind {
	if strings.Contains(strings.ToLower(node.GetUserAgentName()), "grpc") {
		return ProxyGRPC
	}
	return ProxyEnvoy
}

// NodeInfo is what the server knows about a node (one pod's proxy).
type NodeInfo struct {
	// ID is node.id, "<pod>.<namespace>".
	ID        string
	Pod       string
	Namespace string
	// ServiceAccount is the pod's service account when the NodeValidator
	// knows it; an Identity naming another one is refused.
	ServiceAccount string
	Kind           ProxyKind
}

// ParseNodeID splits "<pod>.<namespace>". A namespace is a DNS label (no
// dots) while a pod name may contain dots, so the split is at the last dot.
func ParseNodeID(id string) (pod, namespace string, err error) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", "", fmt.Errorf("node id %q is not \"<pod>.<namespace>\"", id)
	}
	return id[:i], id[i+1:], nil
}

// NodeID is the node.id a proxy for this pod must send.
func NodeID(pod, namespace string) string { return pod + "." + namespace }

// NodeValidator resolves a connecting node to a known pod. Returning a
// *NodeNotFoundError (or any error carrying a gRPC status) ends the stream
// with that status; other errors end it with codes.Unavailable so the proxy
// retries (an informer not yet synced is not the proxy's fault).
type NodeValidator func(ctx context.Context, node *corev3.Node) (NodeInfo, error)

// NodeNotFoundError says no pod matches a node id.
type NodeNotFoundError struct {
	Pod       string
	Namespace string
}

func (e *NodeNotFoundError) Error() string {
	return fmt.Sprintf("no pod %s in namespace %s", e.Pod, e.Namespace)
}

// GRPCStatus makes the proxy see codes.NotFound with the message above.
func (e *NodeNotFoundError) GRPCStatus() *status.Status {
	return status.New(codes.NotFound, e.Error())
}

// ParsingNodeValidator accepts any well-formed node id without asking
// Kubernetes whether the pod exists. It is the default for tests and for a
// server run without a controller.
func ParsingNodeValidator(_ context.Context, node *corev3.Node) (NodeInfo, error) {
	pod, ns, err := ParseNodeID(node.GetId())
	if err != nil {
		return NodeInfo{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return NodeInfo{ID: node.GetId(), Pod: pod, Namespace: ns, Kind: KindOfNode(node)}, nil
}

// validationStatus turns a NodeValidator error into the status the proxy sees.
func validationStatus(nodeID string, err error) error {
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Errorf(codes.Unavailable, "validating node %s: %v", nodeID, err)
}
