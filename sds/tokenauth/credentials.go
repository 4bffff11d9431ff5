package tokenauth

import (
	"context"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
)

// FileCredentials sends the token in a file as "authorization: Bearer
// <token>", reading the file on every new stream. Kubelet replaces a
// projected token (an atomic symlink swap) before it expires; reading it
// once at start, as Envoy Gateway's client did (its issue 6988), leaves a
// proxy that reconnects after the rotation with a dead token. This is the
// grpc-go side (proxyless clients and a Weft agent beside Envoy).
type FileCredentials struct {
	// Path is the projected token's file, e.g.
	// /var/run/secrets/weft/tokens/weft-token.
	Path string
}

var _ credentials.PerRPCCredentials = FileCredentials{}

// GetRequestMetadata reads the token now.
func (f FileCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("reading ServiceAccount token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, fmt.Errorf("reading ServiceAccount token: %s is empty", f.Path)
	}
	return map[string]string{Header: "Bearer " + token}, nil
}

// RequireTransportSecurity is true: a bearer token is a password.
func (FileCredentials) RequireTransportSecurity() bool { return true }
