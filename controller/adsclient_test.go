package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// adsClient is a SotW ADS client that subscribes the way Envoy does:
// listeners and clusters by wildcard, then the routes its listeners name
// and the load assignments its EDS clusters name; every response is ACKed
// unless nack says otherwise. It keeps the latest state per type.
type adsClient struct {
	node   string
	conn   *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	done   chan struct{}
	// nack, if set, decides to reject a response: a non-empty message NACKs.
	nack func(typeURL string, resp *discoveryv3.DiscoveryResponse) string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
	state   map[string]*typeState
	err     error // why the stream ended
	sendMu  sync.Mutex
}

type typeState struct {
	version   string // last ACKed version
	nonce     string
	names     []string // subscribed names (nil: wildcard)
	resources map[string]proto.Message
	responses int
	acks      int
	nacks     int
}

var adsTypes = []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType, resourcev3.EndpointType}

type adsOption func(*adsClient, *corev3.Node)

func withNack(f func(typeURL string, resp *discoveryv3.DiscoveryResponse) string) adsOption {
	return func(c *adsClient, _ *corev3.Node) { c.nack = f }
}

func asGRPCClient() adsOption {
	return func(_ *adsClient, n *corev3.Node) { n.UserAgentName = "gRPC Go" }
}

func dialADS(ctx context.Context, addr, nodeID string, opts ...adsOption) (*adsClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("opening ADS: %w", err)
	}
	c := &adsClient{
		node: nodeID, conn: conn, stream: stream, cancel: cancel, done: make(chan struct{}),
		changed: make(chan struct{}), state: map[string]*typeState{},
	}
	node := &corev3.Node{Id: nodeID, Cluster: "test", UserAgentName: "envoy"}
	for _, o := range opts {
		o(c, node)
	}
	for _, t := range adsTypes {
		c.state[t] = &typeState{resources: map[string]proto.Message{}}
	}
	// The node goes on the first request only, as Envoy does by default.
	if err := c.send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType}); err != nil {
		c.Close()
		return nil, err
	}
	go c.recvLoop()
	return c, nil
}

func (c *adsClient) send(req *discoveryv3.DiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(req)
}

func (c *adsClient) Close() {
	c.cancel()
	c.conn.Close()
	<-c.doneOrNil()
}

func (c *adsClient) doneOrNil() <-chan struct{} {
	select {
	case <-c.done:
	default:
		// recvLoop may not have started (dial failed before it).
	}
	return c.done
}

func (c *adsClient) recvLoop() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.notifyLocked()
			c.mu.Unlock()
			return
		}
		c.handle(resp)
	}
}

func (c *adsClient) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *adsClient) handle(resp *discoveryv3.DiscoveryResponse) {
	t := resp.GetTypeUrl()
	decoded := map[string]proto.Message{}
	var subRoutes, subEDS []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		switch r := m.(type) {
		case *listenerv3.Listener:
			decoded[r.GetName()] = r
			subRoutes = append(subRoutes, routeNames(r)...)
		case *clusterv3.Cluster:
			decoded[r.GetName()] = r
			if r.GetType() == clusterv3.Cluster_EDS {
				name := r.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = r.GetName()
				}
				subEDS = append(subEDS, name)
			}
		case *routev3.RouteConfiguration:
			decoded[r.GetName()] = r
		case *endpointv3.ClusterLoadAssignment:
			decoded[r.GetClusterName()] = r
		}
	}
	nackMsg := ""
	if c.nack != nil {
		nackMsg = c.nack(t, resp)
	}

	c.mu.Lock()
	st := c.state[t]
	if st == nil {
		st = &typeState{resources: map[string]proto.Message{}}
		c.state[t] = st
	}
	st.responses++
	st.nonce = resp.GetNonce()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce(), ResourceNames: st.names}
	if nackMsg != "" {
		st.nacks++
		req.VersionInfo = st.version
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: nackMsg}
	} else {
		st.acks++
		st.version = resp.GetVersionInfo()
		if t == resourcev3.ListenerType || t == resourcev3.ClusterType {
			st.resources = decoded // SotW: the full set
		} else {
			for name, m := range decoded {
				st.resources[name] = m
			}
		}
		req.VersionInfo = st.version
	}
	// Follow-up subscriptions, as Envoy derives them from LDS and CDS.
	var follow []*discoveryv3.DiscoveryRequest
	if nackMsg == "" {
		if t == resourcev3.ListenerType {
			follow = append(follow, c.subscribeLocked(resourcev3.RouteType, subRoutes))
		}
		if t == resourcev3.ClusterType {
			follow = append(follow, c.subscribeLocked(resourcev3.EndpointType, subEDS))
		}
	}
	c.notifyLocked()
	c.mu.Unlock()

	_ = c.send(req)
	for _, f := range follow {
		if f != nil {
			_ = c.send(f)
		}
	}
}

// subscribeLocked changes the names of an explicitly named type; nil when
// they did not change.
func (c *adsClient) subscribeLocked(t string, names []string) *discoveryv3.DiscoveryRequest {
	slices.Sort(names)
	names = slices.Compact(names)
	st := c.state[t]
	if st.names != nil && slices.Equal(st.names, names) {
		return nil
	}
	st.names = names
	for name := range st.resources {
		if !slices.Contains(names, name) {
			delete(st.resources, name)
		}
	}
	if names == nil {
		names = []string{}
	}
	return &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: st.version, ResponseNonce: st.nonce, ResourceNames: names}
}

func routeNames(l *listenerv3.Listener) []string {
	var out []string
	add := func(hcm *hcmv3.HttpConnectionManager) {
		if n := hcm.GetRds().GetRouteConfigName(); n != "" {
			out = append(out, n)
		}
	}
	if a := l.GetApiListener().GetApiListener(); a != nil {
		var hcm hcmv3.HttpConnectionManager
		if a.UnmarshalTo(&hcm) == nil {
			add(&hcm)
		}
	}
	chains := append([]*listenerv3.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			if tc := f.GetTypedConfig(); tc != nil && tc.UnmarshalTo(&hcm) == nil {
				add(&hcm)
			}
		}
	}
	return out
}

// snapshot of the client's state, for assertions.
type adsView struct {
	versions  map[string]string
	resources map[string]map[string]proto.Message
	acks      map[string]int
	nacks     map[string]int
	err       error
}

func (c *adsClient) view() adsView {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := adsView{versions: map[string]string{}, resources: map[string]map[string]proto.Message{}, acks: map[string]int{}, nacks: map[string]int{}, err: c.err}
	for t, st := range c.state {
		v.versions[t] = st.version
		v.resources[t] = make(map[string]proto.Message, len(st.resources))
		for n, m := range st.resources {
			v.resources[t][n] = m
		}
		v.acks[t] = st.acks
		v.nacks[t] = st.nacks
	}
	return v
}

// waitFor blocks until cond holds on the client's state.
func (c *adsClient) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(adsView) bool) (adsView, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		v := c.view()
		if cond(v) {
			return v, nil
		}
		if v.err != nil {
			return v, fmt.Errorf("waiting for %s: stream ended: %w", what, v.err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, fmt.Errorf("waiting for %s: %w (versions %v)", what, ctx.Err(), v.versions)
		}
	}
}

// complete: listeners, clusters, and every subscribed route and CLA arrived.
func (c *adsClient) complete(v adsView) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state[resourcev3.ListenerType].acks == 0 || c.state[resourcev3.ClusterType].acks == 0 {
		return false
	}
	for _, t := range []string{resourcev3.RouteType, resourcev3.EndpointType} {
		for _, n := range c.state[t].names {
			if _, ok := c.state[t].resources[n]; !ok {
				return false
			}
		}
	}
	return true
}
