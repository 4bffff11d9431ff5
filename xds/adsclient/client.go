// Package adsclient is a minimal state-of-the-world ADS client that
// subscribes the way Envoy does: listeners and clusters by wildcard, then
// the route configurations its listeners' HTTP connection managers name
// and the load assignments its EDS clusters name, ACKing every response
// (unless told to NACK some).
//
// It stands in for a sidecar where no Envoy binary exists (the demo, tests):
// it makes the control plane compute and serve a pod's config and keeps the
// stream open so the proxy shows up as connected.
package adsclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Client is one ADS stream for one node. Its methods are safe for
// concurrent use.
type Client struct {
	conn   *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	done   chan struct{} // closed when the receive loop ends
	reject func(*discoveryv3.DiscoveryResponse) string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
	types   map[string]*typeState
	err     error // why the stream ended
}

type typeState struct {
	names     []string // subscribed names, sorted; unused for wildcard types
	version   string   // last ACKed version
	nonce     string
	acks      int
	nacks     int
	resources map[string]types.Resource
}

// Option changes how Dial's client presents itself or answers.
type Option func(*Client, *corev3.Node)

// WithUserAgent sends name as the node's user agent instead of "envoy"; a
// name containing "grpc" makes the server treat the client as grpc-go.
func WithUserAgent(name string) Option {
	return func(_ *Client, n *corev3.Node) { n.UserAgentName = name }
}

// WithNACK rejects every response for which reject returns a non-empty
// message, sending it as the NACK's error detail; the client keeps what it
// held before, as Envoy does.
func WithNACK(reject func(*discoveryv3.DiscoveryResponse) string) Option {
	return func(c *Client, _ *corev3.Node) { c.reject = reject }
}

// Dial opens an ADS stream to addr (plaintext) as nodeID and subscribes to
// listeners and clusters. The stream lives until Close or until ctx ends.
func Dial(ctx context.Context, addr, nodeID string, opts ...Option) (*Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing the ADS server at %s: %w", addr, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("opening an ADS stream to %s as %s: %w", addr, nodeID, err)
	}
	c := &Client{conn: conn, stream: stream, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}), types: map[string]*typeState{}}
	for _, t := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType, resourcev3.EndpointType} {
		c.types[t] = &typeState{resources: map[string]types.Resource{}}
	}
	// The node goes on the first request only, as Envoy sends it by default.
	node := nodeFor(nodeID)
	for _, o := range opts {
		o(c, node)
	}
	for i, req := range []*discoveryv3.DiscoveryRequest{
		{Node: node, TypeUrl: resourcev3.ListenerType},
		{TypeUrl: resourcev3.ClusterType},
	} {
		err := stream.Send(req)
		if errors.Is(err, io.EOF) {
			// The server already ended the stream (it refused the node):
			// gRPC reports why through Recv, which the receive loop reads
			// and WaitSynced returns.
			break
		}
		if err != nil {
			cancel()
			conn.Close()
			return nil, fmt.Errorf("subscribing to %s as %s (request %d): %w", addr, nodeID, i, err)
		}
	}
	// Only the receive loop sends from here on, so sends need no lock.
	go c.receive()
	return c, nil
}

// Close ends the stream and waits for the client's goroutines to end.
func (c *Client) Close() {
	c.cancel()
	<-c.done
	c.conn.Close()
}

func (c *Client) receive() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err == nil {
			err = c.handle(resp)
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.notifyLocked()
			c.mu.Unlock()
			return
		}
	}
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// handle stores a response, ACKs it and sends the RDS or EDS subscription
// it implies, as Envoy does after applying LDS or CDS; or NACKs it.
func (c *Client) handle(resp *discoveryv3.DiscoveryResponse) error {
	t := resp.GetTypeUrl()
	got := make(map[string]types.Resource, len(resp.GetResources()))
	var follow []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("decoding a %s resource: %w", t, err)
		}
		got[cachev3.GetResourceName(m)] = m
		follow = append(follow, Subscriptions(m)...)
	}
	var nack string
	if c.reject != nil {
		nack = c.reject(resp)
	}

	c.mu.Lock()
	st, ok := c.types[t]
	if !ok {
		c.mu.Unlock()
		return fmt.Errorf("received %s, which was never asked for", t)
	}
	st.nonce = resp.GetNonce()
	reqs := []*discoveryv3.DiscoveryRequest{{TypeUrl: t, ResponseNonce: st.nonce, ResourceNames: st.names}}
	if nack != "" {
		st.nacks++
		reqs[0].VersionInfo = st.version
		reqs[0].ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: nack}
	} else {
		st.acks++
		st.version = resp.GetVersionInfo()
		reqs[0].VersionInfo = st.version
		if t == resourcev3.ListenerType || t == resourcev3.ClusterType {
			st.resources = got // wildcard: each response is the whole set
		} else {
			for name, r := range got {
				st.resources[name] = r
			}
		}
		switch t {
		case resourcev3.ListenerType:
			reqs = append(reqs, c.subscribeLocked(resourcev3.RouteType, follow)...)
		case resourcev3.ClusterType:
			reqs = append(reqs, c.subscribeLocked(resourcev3.EndpointType, follow)...)
		}
	}
	c.notifyLocked()
	c.mu.Unlock()

	for _, req := range reqs {
		if err := c.stream.Send(req); err != nil {
			return fmt.Errorf("sending a %s request: %w", req.GetTypeUrl(), err)
		}
	}
	return nil
}

// subscribeLocked sets the names asked for of type t: a request when they
// changed, none otherwise.
func (c *Client) subscribeLocked(t string, names []string) []*discoveryv3.DiscoveryRequest {
	slices.Sort(names)
	names = slices.Compact(names)
	if names == nil {
		names = []string{}
	}
	st := c.types[t]
	if st.names != nil && slices.Equal(st.names, names) {
		return nil
	}
	st.names = names
	for name := range st.resources {
		if !slices.Contains(names, name) {
			delete(st.resources, name)
		}
	}
	return []*discoveryv3.DiscoveryRequest{{TypeUrl: t, VersionInfo: st.version, ResponseNonce: st.nonce, ResourceNames: names}}
}

// Subscriptions are the names a resource makes an Envoy-like client ask
// for next: a listener's RDS route configurations, an EDS cluster's load
// assignment; none for other resources.
func Subscriptions(m proto.Message) []string {
	switch r := m.(type) {
	case *listenerv3.Listener:
		return routeNames(r)
	case *clusterv3.Cluster:
		if r.GetType() == clusterv3.Cluster_EDS {
			return []string{cmp.Or(r.GetEdsClusterConfig().GetServiceName(), r.GetName())}
		}
	}
	return nil
}

// routeNames are the RDS names of a listener's HTTP connection managers,
// in its filter chains or, for grpc-go, its API listener.
func routeNames(l *listenerv3.Listener) []string {
	var out []string
	add := func(a *anypb.Any) {
		var hcm hcmv3.HttpConnectionManager
		if a.MessageIs(&hcm) && a.UnmarshalTo(&hcm) == nil {
			if n := hcm.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
		}
	}
	add(l.GetApiListener().GetApiListener())
	chains := append([]*listenerv3.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			add(f.GetTypedConfig())
		}
	}
	return out
}

// WaitSynced blocks until listeners and clusters have been received and
// ACKed, and so has every route configuration and load assignment they
// name; or until ctx ends or the stream does.
func (c *Client) WaitSynced(ctx context.Context) error {
	_, err := c.WaitFor(ctx, "the xDS config", func(v View) bool { return v.Synced })
	return err
}

// View is a copy of the client's state at one moment; its maps are keyed
// by type URL and its resources are shared and must not be mutated.
type View struct {
	Versions  map[string]string                    // last ACKed versions (types never ACKed are absent)
	Resources map[string]map[string]types.Resource // held resources by name
	ACKs      map[string]int
	NACKs     map[string]int
	Synced    bool  // what WaitSynced waits for
	Err       error // why the stream ended; nil while it is open
}

// View copies the client's state.
func (c *Client) View() View {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := View{Versions: map[string]string{}, Resources: map[string]map[string]types.Resource{},
		ACKs: map[string]int{}, NACKs: map[string]int{}, Synced: c.syncedLocked(), Err: c.err}
	for t, st := range c.types {
		if st.acks > 0 {
			v.Versions[t] = st.version
		}
		v.Resources[t] = maps.Clone(st.resources)
		v.ACKs[t], v.NACKs[t] = st.acks, st.nacks
	}
	return v
}

// WaitFor blocks until cond holds on the client's state and returns that
// state; or until ctx ends or the stream does. what names the wait in its
// errors.
func (c *Client) WaitFor(ctx context.Context, what string, cond func(View) bool) (View, error) {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		v := c.View()
		switch {
		case cond(v):
			return v, nil
		case v.Err != nil:
			return v, fmt.Errorf("waiting for %s: stream ended: %w", what, v.Err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, fmt.Errorf("waiting for %s (versions %v): %w", what, v.Versions, ctx.Err())
		}
	}
}

func (c *Client) syncedLocked() bool {
	if c.types[resourcev3.ListenerType].acks == 0 || c.types[resourcev3.ClusterType].acks == 0 {
		return false
	}
	for _, t := range []string{resourcev3.RouteType, resourcev3.EndpointType} {
		st := c.types[t]
		for _, name := range st.names {
			if _, ok := st.resources[name]; !ok {
				return false
			}
		}
	}
	return true
}

// Versions are the last ACKed versions, by type URL (types never answered
// are absent).
func (c *Client) Versions() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for t, st := range c.types {
		if st.acks > 0 {
			out[t] = st.version
		}
	}
	return out
}

// Resources is what the client holds, keyed by type URL like
// xds.Server.NodeConfig, each slice sorted by name. The resources are
// shared and must not be mutated.
func (c *Client) Resources() map[string][]types.Resource {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]types.Resource, len(c.types))
	for t, st := range c.types {
		names := make([]string, 0, len(st.resources))
		for name := range st.resources {
			names = append(names, name)
		}
		slices.Sort(names)
		list := make([]types.Resource, 0, len(names))
		for _, name := range names {
			list = append(list, st.resources[name])
		}
		out[t] = list
	}
	return out
}
