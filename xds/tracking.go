package xds

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// Nack is one rejection of a response by a proxy.
type Nack struct {
	Node    NodeInfo
	TypeURL string
	// Version is the version the proxy rejected ("" if the server no
	// longer remembers the response the NACK refers to).
	Version string
	Nonce   string
	Detail  *rpcstatus.Status
	At      time.Time
}

// sentKeep bounds the responses remembered per stream and type while their
// ACK is outstanding; a proxy answers each response before long, so only
// the last few can still be acknowledged.
const sentKeep = 8

type streamKey struct {
	delta bool
	id    int64
}

type streamState struct {
	ctx      context.Context
	handle   *streamHandle
	openedAt time.Time
	node     *nodeState // nil until the first request is validated
	types    map[string]*streamType
	// claimed is the node id the stream's first request named, counted in
	// Server.claims from before validation until the stream closes.
	claimed string
	// nodeMsg is the Node of the stream's first request (see request).
	nodeMsg *corev3.Node
}

type streamType struct {
	sent []sentResponse // oldest first
	// edsObserved is the newest endpoint change already accounted for on
	// this stream, so a CLA re-sent later is not measured twice.
	edsObserved time.Time
	// lastNonce is the nonce of the latest response sent, and answered
	// whether the proxy has ACKed or NACKed it (see settledLocked).
	lastNonce string
	answered  bool
}

type sentResponse struct {
	nonce   string
	version string
	// changeSeen is the oldest change this response delivers to a proxy that
	// was connected when the change was seen; zero when none.
	changeSeen time.Time
}

type pendingChange struct {
	version    string
	changeSeen time.Time
}

type nodeState struct {
	info           NodeInfo
	userAgent      string
	connectedSince time.Time
	streams        map[streamKey]*streamState
	types          map[string]*typeStatus
	// pending are snapshot-type changes not yet ACKed, by type URL.
	pending map[string]pendingChange
}

type typeStatus struct {
	versionSent  string
	sentAt       time.Time
	versionAcked string
	ackedAt      time.Time
	pushes       int
	nacks        int
	lastNack     *Nack
}

func (n *nodeState) typ(typeURL string) *typeStatus {
	t := n.types[typeURL]
	if t == nil {
		t = &typeStatus{}
		n.types[typeURL] = t
	}
	return t
}

func (st *streamState) typ(typeURL string) *streamType {
	t := st.types[typeURL]
	if t == nil {
		t = &streamType{}
		st.types[typeURL] = t
	}
	return t
}

// takeSent removes and returns the remembered response with this nonce.
func (t *streamType) takeSent(nonce string) (sentResponse, bool) {
	for i, r := range t.sent {
		if r.nonce == nonce {
			t.sent = append(t.sent[:i], t.sent[i+1:]...)
			return r, true
		}
	}
	return sentResponse{}, false
}

// ResourceName reads field 1 of a marshalled resource: the name of a
// Listener, Cluster, RouteConfiguration or Secret and the cluster_name of a
// ClusterLoadAssignment, without unmarshalling the rest.
func ResourceName(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

func (s *Server) streamOpened(ctx context.Context, key streamKey) error {
	h := handleFrom(ctx)
	if h == nil {
		return status.Error(codes.Internal, "xDS stream was not admitted")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[key] = &streamState{ctx: ctx, handle: h, openedAt: time.Now(), types: make(map[string]*streamType)}
	return nil
}

func (s *Server) streamClosed(key streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		return
	}
	delete(s.streams, key)
	if id := st.claimed; id != "" {
		s.claims[id]--
		if s.claims[id] <= 0 {
			delete(s.claims, id)
			s.disconnectedLocked(id)
		}
	}
	n := st.node
	if n == nil {
		return
	}
	delete(n.streams, key)
	if len(n.streams) > 0 {
		return
	}
	// The node's state lives as long as it has a stream: debug output is
	// about connected proxies, and per-proxy metric series must not outlive
	// the proxy.
	if s.nodes[n.info.ID] == n {
		delete(s.nodes, n.info.ID)
		s.metrics.connectedProxies.Dec()
		s.metrics.forgetProxy(n.info.ID)
	}
	s.log.Debug("proxy disconnected", "node", n.info.ID)
}

// request handles every discovery request before the stream loop acts on
// it: the first one binds the stream to a validated node; later ones are
// ACKs or NACKs of earlier responses. names are the request's (subscribed)
// resource names; see canonicalNames.
//
// It returns the Node message of the stream's first request, for the
// request to carry in place of its own: every request of a stream then
// carries the same one, whether or not the proxy repeats its node (Envoy
// may), and the endpoint cache knows a stream by it. A node id that
// changed is refused here.
func (s *Server) request(key streamKey, reqNode *corev3.Node, typeURL, versionInfo, nonce string, errDetail *rpcstatus.Status, names []string) (*corev3.Node, error) {
	s.mu.Lock()
	st := s.streams[key]
	var bound *nodeState
	var streamNode *corev3.Node
	if st != nil {
		bound = st.node
		if st.nodeMsg == nil {
			st.nodeMsg = reqNode
		}
		streamNode = st.nodeMsg
	}
	s.mu.Unlock()
	if st == nil {
		return nil, status.Error(codes.Internal, "xDS request on an unknown stream")
	}

	if bound == nil {
		if err := s.bind(key, st, nodeOf(reqNode)); err != nil {
			return nil, err
		}
		// Validated first, so that the controller builds the node's
		// configuration while the stream waits for its turn.
		if err := s.waitForSlot(st.ctx, st.handle); err != nil {
			return nil, err
		}
	} else if n := nodeOf(reqNode); n != nil && n.GetId() != bound.info.ID {
		err := status.Errorf(codes.PermissionDenied, "stream bound to node %s sent a request as node %s", bound.info.ID, n.GetId())
		s.refused(err, bound.info.ID, "node id changed on the stream")
		return nil, err
	}

	now := time.Now()
	var nack *Nack
	var observe func()
	acked := false
	s.mu.Lock()
	n := st.node
	if n == nil { // closed meanwhile
		s.mu.Unlock()
		return streamNode, nil
	}
	ts := n.typ(typeURL)
	stt := st.typ(typeURL)
	switch {
	case nonce == "":
		// A first request for the type. In SotW, version_info is what the
		// proxy already holds (from an earlier stream, maybe an earlier
		// control plane): that is its acknowledged state.
		if versionInfo != "" {
			ts.versionAcked, ts.ackedAt = versionInfo, now
		}
	case errDetail != nil:
		stt.answered = stt.answered || nonce == stt.lastNonce
		sent, ok := stt.takeSent(nonce)
		nack = &Nack{Node: n.info, TypeURL: typeURL, Nonce: nonce, Detail: errDetail, At: now}
		if ok {
			nack.Version = sent.version
		}
		ts.nacks++
		ts.lastNack = nack
	default:
		stt.answered = stt.answered || nonce == stt.lastNonce
		sent, ok := stt.takeSent(nonce)
		switch {
		case ok:
			acked = true
			ts.versionAcked, ts.ackedAt = sent.version, now
			if p, pending := n.pending[typeURL]; pending && p.version == sent.version {
				delete(n.pending, typeURL)
			}
			if !sent.changeSeen.IsZero() {
				latency := now.Sub(sent.changeSeen).Seconds()
				label := TypeLabel(typeURL)
				observe = func() { s.metrics.convergence.WithLabelValues(label).Observe(latency) }
			}
		case versionInfo != "":
			// A SotW request changing subscriptions re-sends the last nonce;
			// its version_info is still the proxy's accepted version.
			ts.versionAcked, ts.ackedAt = versionInfo, now
		}
	}
	nodeID := n.info.ID
	settled := nonce != "" && settledLocked(st)
	s.mu.Unlock()
	if settled {
		st.handle.settled()
	}

	s.canonicalNames(nodeID, typeURL, names)

	if observe != nil {
		observe()
	}
	if acked && s.ackHook != nil {
		s.ackHook(nodeID, typeURL, now)
	}
	if nack != nil {
		s.nacked(nack)
	}
	return streamNode, nil
}

func (s *Server) nacked(n *Nack) {
	label := TypeLabel(n.TypeURL)
	s.metrics.nacks.WithLabelValues(label).Inc()
	s.metrics.proxyNacks.WithLabelValues(n.Node.ID, label).Inc()
	s.log.Warn("proxy rejected configuration (NACK)",
		"node", n.Node.ID, "type", label, "version", n.Version, "nonce", n.Nonce,
		"code", codes.Code(n.Detail.GetCode()).String(), "detail", n.Detail.GetMessage())
	if s.nackReporter != nil {
		s.nackReporter(*n)
	}
}

// bind validates the node a stream's first request claims and attaches the
// stream to it.
func (s *Server) bind(key streamKey, st *streamState, node *corev3.Node) error {
	if node == nil {
		err := status.Error(codes.InvalidArgument, "the first xDS request on a stream must carry node.id")
		s.refused(err, "", "no node id")
		return err
	}
	// The claim is counted before validation: a validator that records the
	// node as connected is then never undone by the OnDisconnect of the
	// node's previous stream (see HasStreams).
	s.mu.Lock()
	if s.streams[key] != st {
		s.mu.Unlock()
		return status.Error(codes.Canceled, "stream closed before validation")
	}
	if st.claimed == "" {
		st.claimed = node.GetId()
		s.claims[st.claimed]++
	}
	s.mu.Unlock()
	info, err := s.validator(st.ctx, node)
	if err != nil {
		err = validationStatus(node.GetId(), err)
		s.refused(err, node.GetId(), "node validation failed")
		return err
	}
	info.ID = node.GetId()
	if st.handle.authenticated {
		if err := bindIdentity(st.handle.identity, info); err != nil {
			s.refused(err, info.ID, "identity does not match node")
			return err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[key] != st {
		return status.Error(codes.Canceled, "stream closed during validation")
	}
	n := s.nodes[info.ID]
	if n == nil {
		n = &nodeState{
			info:           info,
			connectedSince: time.Now(),
			streams:        make(map[streamKey]*streamState),
			types:          make(map[string]*typeStatus),
			pending:        make(map[string]pendingChange),
		}
		s.nodes[info.ID] = n
		s.metrics.connectedProxies.Inc()
		s.log.Info("proxy connected", "node", info.ID, "kind", info.Kind.String(), "user_agent", userAgent(node))
	}
	n.info = info
	n.userAgent = userAgent(node)
	n.streams[key] = st
	st.node = n
	return nil
}

func userAgent(node *corev3.Node) string {
	ua := node.GetUserAgentName()
	if v := node.GetUserAgentVersion(); v != "" {
		ua += "/" + v
	}
	return ua
}

// responded records a response about to be sent. names lists the resources
// in it; it is only called for EDS when an endpoint change may be inside.
func (s *Server) responded(key streamKey, typeURL, version, nonce string, names func() []string) {
	label := TypeLabel(typeURL)
	s.metrics.pushes.WithLabelValues(label).Inc()
	now := time.Now()

	var changeSeen time.Time
	if typeURL == resourcev3.EndpointType {
		s.mu.Lock()
		st := s.streams[key]
		var after time.Time
		if st != nil {
			after = st.openedAt
			if o := st.typ(typeURL).edsObserved; o.After(after) {
				after = o
			}
		}
		s.mu.Unlock()
		if st != nil && s.ep.latestChange().After(after) {
			oldest, newest := s.ep.changeSeenOf(names(), after)
			changeSeen = oldest
			if !newest.IsZero() {
				s.mu.Lock()
				if t := st.typ(typeURL); newest.After(t.edsObserved) {
					t.edsObserved = newest
				}
				s.mu.Unlock()
			}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil || st.node == nil {
		return
	}
	n := st.node
	if p, ok := n.pending[typeURL]; ok && p.version == version {
		changeSeen = p.changeSeen
	}
	stt := st.typ(typeURL)
	stt.sent = append(stt.sent, sentResponse{nonce: nonce, version: version, changeSeen: changeSeen})
	stt.lastNonce, stt.answered = nonce, false
	if len(stt.sent) > sentKeep {
		stt.sent = stt.sent[len(stt.sent)-sentKeep:]
	}
	ts := n.typ(typeURL)
	ts.versionSent, ts.sentAt = version, now
	ts.pushes++
}

// notePending records, for a connected node, that the changed types now
// carry a change seen at changeSeen. An unACKed earlier change keeps its
// older time: the new state of the world delivers it too.
func (s *Server) notePending(nodeID string, snap *nodeSnapshot, changed []string, changeSeen time.Time) {
	if changeSeen.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil || changeSeen.Before(n.connectedSince) {
		// Not connected when the change was seen: its first fetch measures
		// pod start-up, not convergence.
		return
	}
	for _, t := range changed {
		p := pendingChange{version: snap.GetVersion(t), changeSeen: changeSeen}
		if old, ok := n.pending[t]; ok && old.changeSeen.Before(changeSeen) {
			p.changeSeen = old.changeSeen
		}
		n.pending[t] = p
	}
}

// canonicalNames replaces, in the request, each name of a resource the
// server holds with the server's own copy of the string. A stream's
// subscription (go-control-plane's stream.Subscription) is keyed by the
// request's strings, freshly unmarshalled for every SotW request (Envoy
// repeats every EDS name in every ACK): 1,000 proxies subscribed to the
// same 500 CLAs held 500,000 copies of 500 names, a sixth of the heap. Now
// they share one copy. serveSotw passes no names for a request repeating
// the previous ones: its subscription is kept, and so are its strings.
func (s *Server) canonicalNames(nodeID, typeURL string, names []string) {
	if len(names) == 0 {
		return
	}
	if typeURL == resourcev3.EndpointType {
		s.endpoints.canonical(names)
	} else {
		s.snapshots.canonical(nodeID, typeURL, names)
	}
}
