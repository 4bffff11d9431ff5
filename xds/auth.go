package xds

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Identity is what an Authenticator proved about the caller of a stream,
// for example from a TokenReview of a projected ServiceAccount token bound
// to a pod. Empty fields are "not proven" and are not compared.
type Identity struct {
	Namespace      string
	ServiceAccount string
	// Pod is set when the credential is bound to one pod (a projected token
	// carries it in authentication.kubernetes.io/pod-name).
	Pod string
}

// Authenticator verifies the caller of a new xDS stream before any request
// is read. Returning an error ends the stream with codes.Unauthenticated
// (or with the error's own gRPC status if it has one).
type Authenticator func(ctx context.Context) (Identity, error)

// bindIdentity refuses a node whose id the stream's identity may not claim:
// trusting node.id without binding it to a verified identity lets any pod
// fetch any other pod's config and secrets.
func bindIdentity(id Identity, node NodeInfo) error {
	if id.Namespace != "" && id.Namespace != node.Namespace {
		return status.Errorf(codes.PermissionDenied,
			"stream authenticated in namespace %s may not act as node %s", id.Namespace, node.ID)
	}
	if id.Pod != "" && id.Pod != node.Pod {
		return status.Errorf(codes.PermissionDenied,
			"stream authenticated as pod %s may not act as node %s", id.Pod, node.ID)
	}
	if id.ServiceAccount != "" && node.ServiceAccount != "" && id.ServiceAccount != node.ServiceAccount {
		return status.Errorf(codes.PermissionDenied,
			"stream authenticated as service account %s may not act as node %s (service account %s)",
			id.ServiceAccount, node.ID, node.ServiceAccount)
	}
	return nil
}

func authStatus(err error) error {
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Errorf(codes.Unauthenticated, "authenticating xDS stream: %v", err)
}

// streamHandle travels in a stream's context from admission (where the
// Authenticator ran) to streamOpened, which only sees the context, and
// lets the server end the stream from outside (ClearNode, shutdown).
type streamHandle struct {
	identity      Identity
	authenticated bool
	cancel        context.CancelCauseFunc
	// freeSlot gives back the stream's syncing slot (see waitForSlot); it
	// may be called more than once. nil when admission is unbounded.
	freeSlot func()
}

func (h *streamHandle) settled() {
	if h.freeSlot != nil {
		h.freeSlot()
	}
}

type handleKey struct{}

func handleFrom(ctx context.Context) *streamHandle {
	h, _ := ctx.Value(handleKey{}).(*streamHandle)
	return h
}

// end makes the stream return st to the proxy.
func (h *streamHandle) end(st *status.Status) { h.cancel(st.Err()) }

// result picks what the proxy sees: a cause set by end wins over the nil that
// go-control-plane returns when its context is cancelled.
func (h *streamHandle) result(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		if _, ok := status.FromError(cause); ok {
			return cause
		}
	}
	return err
}

// StreamIdentity is the identity the Authenticator proved for the stream
// whose context ctx is (the context a NodeValidator is given), and whether
// the stream was authenticated at all. Anything delivered per identity
// (SDS secrets) must come from this, never from the node id a stream claims.
func StreamIdentity(ctx context.Context) (Identity, bool) {
	h := handleFrom(ctx)
	if h == nil || !h.authenticated {
		return Identity{}, false
	}
	return h.identity, true
}

// CheckIdentity is the server's binding rule, for a NodeValidator that acts
// on the node (pushes its config and secrets) before the server binds the
// stream: it refuses a node id that id may not claim, with PermissionDenied.
func CheckIdentity(id Identity, node NodeInfo) error { return bindIdentity(id, node) }
