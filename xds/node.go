package xds

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy"
)

// NodeInfo is what the server knows about a node (one pod's proxy).
type NodeInfo struct {
	// ID is node.id, "<pod>.<namespace>".
	ID        string
	Pod       string
	Namespace string
	// ServiceAccount is the pod's service account when the NodeValidator
	// knows it; an Identity naming another one is refused.
	ServiceAccount string
	Kind           proxy.Kind
}

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
	pod, ns, err := proxy.ParseNodeID(node.GetId())
	if err != nil {
		return NodeInfo{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return NodeInfo{ID: node.GetId(), Pod: pod, Namespace: ns, Kind: proxy.KindOfUserAgent(node.GetUserAgentName())}, nil
}

// validationStatus turns a NodeValidator error into the status the proxy sees.
func validationStatus(nodeID string, err error) error {
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Errorf(codes.Unavailable, "validating node %s: %v", nodeID, err)
}
