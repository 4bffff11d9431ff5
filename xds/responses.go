package xds

import (
	"context"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// sotwResponse is a SotW response of either cache. Its resources are
// shared with every other response carrying the same content; only the
// envelope is its own, built when the server sends it (the server writes
// the nonce into it).
type sotwResponse struct {
	req       *discoveryv3.DiscoveryRequest
	version   string
	resources []*encoded
	returned  map[string]string
	// sent, if set, runs once when the server takes the returned map,
	// which it does only for a response it sends (see endpointCache).
	sent func()
	once sync.Once
}

var _ cachev3.Response = (*sotwResponse)(nil)

func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return &discoveryv3.DiscoveryResponse{
		VersionInfo: r.version,
		Resources:   anys(r.resources),
		TypeUrl:     r.req.GetTypeUrl(),
	}, nil
}

func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)               { return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string                { return r.version }

func (r *sotwResponse) GetContext() context.Context { return context.Background() }

// deltaResponse is sotwResponse for delta xDS.
type deltaResponse struct {
	req       *discoveryv3.DeltaDiscoveryRequest
	version   string
	resources []*encoded
	removed   []string
	returned  map[string]string
	// set, instead of returned, is what a wildcard delta stream of a
	// per-node type holds once this is sent: the whole set (see
	// deltaSub.held).
	set *typeSet
	// synced, instead of returned, says that once this is sent the
	// client holds every name it subscribes to as of generation gen of
	// the endpoint cache (see deltaSub.synced).
	synced bool
	gen    uint64
	sent   func()
	once   sync.Once
}

var _ cachev3.DeltaResponse = (*deltaResponse)(nil)

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	out := &discoveryv3.DeltaDiscoveryResponse{
		SystemVersionInfo: r.version,
		TypeUrl:           r.req.GetTypeUrl(),
		RemovedResources:  r.removed,
		Resources:         make([]*discoveryv3.Resource, 0, len(r.resources)),
	}
	for _, e := range r.resources {
		out.Resources = append(out.Resources, &discoveryv3.Resource{Name: e.name, Version: e.hash, Resource: e.any})
	}
	return out, nil
}

func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                   { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                          { return r.version }

func (r *deltaResponse) GetContext() context.Context { return context.Background() }

func anys(es []*encoded) []*anypb.Any {
	out := make([]*anypb.Any, len(es))
	for i, e := range es {
		out[i] = e.any
	}
	return out
}

// withoutNames copies what a response needs of its request, without the
// resource names: an open watch or a queued response then does not pin a
// list of hundreds of names (the subscription has them).
func withoutNames(req *discoveryv3.DiscoveryRequest) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{
		VersionInfo:   req.GetVersionInfo(),
		Node:          req.GetNode(),
		TypeUrl:       req.GetTypeUrl(),
		ResponseNonce: req.GetResponseNonce(),
	}
}

// withoutDeltaNames is withoutNames for delta.
func withoutDeltaNames(req *discoveryv3.DeltaDiscoveryRequest) *discoveryv3.DeltaDiscoveryRequest {
	return &discoveryv3.DeltaDiscoveryRequest{
		Node:          req.GetNode(),
		TypeUrl:       req.GetTypeUrl(),
		ResponseNonce: req.GetResponseNonce(),
	}
}

// GetReturnedResources is called by the server as it sends the response.
func (r *sotwResponse) GetReturnedResources() map[string]string {
	if r.sent != nil {
		r.once.Do(r.sent)
	}
	return r.returned
}

// GetReturnedResources is called by the server as it sends the response.
func (r *deltaResponse) GetReturnedResources() map[string]string {
	if r.sent != nil {
		r.once.Do(r.sent)
	}
	return r.returned
}

func (r *deltaResponse) GetNextVersionMap() map[string]string { return r.GetReturnedResources() }
