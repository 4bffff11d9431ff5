package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Tapper puts a proxy in the model's tap set or takes it out
// (controller.Store.SetTapped).
type Tapper interface {
	SetTapped(nodeID string, on bool) bool
}

// Filter narrows what a session sees; empty fields match everything.
type Filter struct {
	// To matches the request's :authority by prefix ("web" matches
	// "web.shop.svc.cluster.local:80").
	To string
	// Path matches :path by prefix.
	Path string
	// Method matches :method exactly (case-insensitive).
	Method string
}

// Match reports whether e passes f.
func (f Filter) Match(e Event) bool {
	return strings.HasPrefix(e.Authority, f.To) && strings.HasPrefix(e.Path, f.Path) &&
		(f.Method == "" || strings.EqualFold(e.Method, f.Method))
}

// DefaultBuffer is how many events a watcher may fall behind by before
// further ones are dropped (and counted): a slow watcher must never hold
// up the access log streams, which are the proxies'.
const DefaultBuffer = 1024

// Hub holds the tap sessions and receives the proxies' access logs.
type Hub struct {
	log    *slog.Logger
	tapper Tapper
	// Authorize, when set, decides whether the caller of an access log
	// stream may speak for nodeID (the xDS server's token check).
	Authorize func(ctx context.Context, nodeID string) error
	// Buffer is each watcher's buffer; 0 means DefaultBuffer.
	Buffer int

	mu       sync.Mutex
	sessions map[uint64]*Watcher
	byNode   map[string]int
	nextID   uint64

	// badEntries counts access log entries that could not be read.
	badEntries atomic.Uint64
}

// NewHub returns a Hub that taps proxies through tapper.
func NewHub(tapper Tapper, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.Default()
	}
	return &Hub{log: log, tapper: tapper, sessions: map[uint64]*Watcher{}, byNode: map[string]int{}}
}

// Watcher is one session: Events delivers what its proxies log and its
// filter passes, until the session ends (the channel is then closed).
type Watcher struct {
	Events <-chan Event

	hub     *Hub
	id      uint64
	nodes   []string
	filter  Filter
	ch      chan Event
	seq     atomic.Uint64
	dropped atomic.Uint64
	once    sync.Once
}

// Dropped is how many events were dropped because the watcher lagged.
func (w *Watcher) Dropped() uint64 { return w.dropped.Load() }

// Watch starts a session on the proxies nodes (node ids). It ends when ctx
// does or Close is called; then proxies no other session watches are
// untapped.
func (h *Hub) Watch(ctx context.Context, nodes []string, f Filter) (*Watcher, error) {
	if len(nodes) == 0 {
		return nil, errors.New("tap: no proxies to watch")
	}
	buf := h.Buffer
	if buf <= 0 {
		buf = DefaultBuffer
	}
	w := &Watcher{hub: h, nodes: nodes, filter: f, ch: make(chan Event, buf)}
	w.Events = w.ch
	h.mu.Lock()
	h.nextID++
	w.id = h.nextID
	h.sessions[w.id] = w
	var first []string
	for _, n := range nodes {
		h.byNode[n]++
		if h.byNode[n] == 1 {
			first = append(first, n)
		}
	}
	h.mu.Unlock()
	for _, n := range first {
		h.tapper.SetTapped(n, true)
	}
	h.log.Info("tap session started", "session", w.id, "proxies", nodes, "to", f.To, "path", f.Path, "method", f.Method)
	context.AfterFunc(ctx, w.Close)
	return w, nil
}

// Close ends the session.
func (w *Watcher) Close() {
	w.once.Do(func() {
		h := w.hub
		h.mu.Lock()
		delete(h.sessions, w.id)
		var last []string
		for _, n := range w.nodes {
			if h.byNode[n]--; h.byNode[n] <= 0 {
				delete(h.byNode, n)
				last = append(last, n)
			}
		}
		// Closed under the lock publish holds while sending: no send
		// after close.
		close(w.ch)
		h.mu.Unlock()
		for _, n := range last {
			h.tapper.SetTapped(n, false)
		}
		h.log.Info("tap session ended", "session", w.id, "dropped", w.Dropped())
	})
}

// Tapped reports whether a session watches nodeID.
func (h *Hub) Tapped(nodeID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byNode[nodeID] > 0
}

// BadEntries counts the access log entries refused as unreadable.
func (h *Hub) BadEntries() uint64 { return h.badEntries.Load() }

// publish hands ev to the sessions watching its proxy, never blocking.
func (h *Hub) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.sessions {
		if !slices.Contains(w.nodes, ev.Proxy) || !w.filter.Match(ev) {
			continue
		}
		e := ev
		e.ID = strconv.FormatUint(w.id, 10) + ":" + strconv.FormatUint(w.seq.Add(1), 10)
		select {
		case w.ch <- e:
		default:
			w.dropped.Add(1)
		}
	}
}

// Register adds the access log service (envoy.service.accesslog.v3
// AccessLogService) to a gRPC server, the xDS server's, which the proxies'
// bootstrap already reaches.
func (h *Hub) Register(gs grpc.ServiceRegistrar) {
	accesslogv3.RegisterAccessLogServiceServer(gs, alsServer{h: h})
}

type alsServer struct {
	accesslogv3.UnimplementedAccessLogServiceServer
	h *Hub
}

// StreamAccessLogs reads one proxy's stream. Envoy sends the identifier
// (node and log_name) in the first message only
// (StreamAccessLogsMessage.identifier, api/envoy/service/accesslog/v3/als.proto).
func (s alsServer) StreamAccessLogs(stream accesslogv3.AccessLogService_StreamAccessLogsServer) error {
	h := s.h
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	id := first.GetIdentifier()
	node := id.GetNode().GetId()
	dir, ok := direction(id.GetLogName())
	switch {
	case node == "":
		return status.Error(codes.InvalidArgument, "access log stream: the first message has no identifier.node.id")
	case !ok:
		return status.Errorf(codes.InvalidArgument, "access log stream of %s: unknown log_name %q", node, id.GetLogName())
	}
	if h.Authorize != nil {
		if err := h.Authorize(stream.Context(), node); err != nil {
			return err
		}
	}
	msg := first
	for {
		for _, e := range msg.GetHttpLogs().GetLogEntry() {
			if !h.Tapped(node) {
				// A session just ended; the logger goes with the next
				// push. Nothing to read.
				break
			}
			ev, err := eventFrom(dir, e)
			if err != nil {
				if h.badEntries.Add(1) == 1 {
					h.log.Warn("unreadable access log entry skipped (logged once)", "node", node, "error", err)
				}
				continue
			}
			ev.Proxy = node
			h.publish(ev)
		}
		msg, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return fmt.Errorf("access log stream of %s: %w", node, err)
		}
		if msg.GetIdentifier() != nil && msg.GetIdentifier().GetNode().GetId() != node {
			return status.Errorf(codes.InvalidArgument, "access log stream of %s: a later message names node %q", node, msg.GetIdentifier().GetNode().GetId())
		}
	}
}
