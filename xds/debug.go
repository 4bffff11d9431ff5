package xds

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
)

// ProxyStatus is what the server knows about one connected proxy; it is the
// JSON of /debug/proxies/<node>.
type ProxyStatus struct {
	Node           string    `json:"node"`
	Pod            string    `json:"pod"`
	Namespace      string    `json:"namespace"`
	Kind           string    `json:"kind"`
	UserAgent      string    `json:"user_agent,omitempty"`
	ConnectedSince time.Time `json:"connected_since"`
	Streams        int       `json:"streams"`
	// Types is keyed by short type name: lds, rds, cds, eds, sds.
	Types map[string]TypeStatus `json:"types"`
}

// TypeStatus is one resource type of one proxy.
type TypeStatus struct {
	TypeURL string `json:"type_url"`
	// VersionSet is the version of the node's current resource set (not
	// for eds, which is shared and versioned per resource).
	VersionSet   string      `json:"version_set,omitempty"`
	VersionSent  string      `json:"version_sent,omitempty"`
	SentAt       *time.Time  `json:"sent_at,omitempty"`
	VersionAcked string      `json:"version_acked,omitempty"`
	AckedAt      *time.Time  `json:"acked_at,omitempty"`
	Pushes       int         `json:"pushes"`
	Nacks        int         `json:"nacks"`
	LastNack     *NackStatus `json:"last_nack,omitempty"`
}

// NackStatus is the last NACK of a type.
type NackStatus struct {
	At      time.Time `json:"at"`
	Version string    `json:"version,omitempty"`
	Nonce   string    `json:"nonce"`
	Code    string    `json:"code"`
	Message string    `json:"message"`
}

// Proxies returns the status of every connected proxy, sorted by node id.
func (s *Server) Proxies() []ProxyStatus {
	s.mu.Lock()
	ids := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	out := make([]ProxyStatus, 0, len(ids))
	for _, id := range ids {
		if p, ok := s.Proxy(id); ok {
			out = append(out, p)
		}
	}
	return out
}

// Proxy returns the status of one connected proxy.
func (s *Server) Proxy(nodeID string) (ProxyStatus, bool) {
	versions := s.NodeVersions(nodeID)

	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil {
		return ProxyStatus{}, false
	}
	p := ProxyStatus{
		Node:           n.info.ID,
		Pod:            n.info.Pod,
		Namespace:      n.info.Namespace,
		Kind:           n.info.Kind.String(),
		UserAgent:      n.userAgent,
		ConnectedSince: n.connectedSince,
		Streams:        len(n.streams),
		Types:          make(map[string]TypeStatus, len(n.types)),
	}
	for typeURL, t := range n.types {
		ts := TypeStatus{
			TypeURL:      typeURL,
			VersionSet:   versions[typeURL],
			VersionSent:  t.versionSent,
			SentAt:       timePtr(t.sentAt),
			VersionAcked: t.versionAcked,
			AckedAt:      timePtr(t.ackedAt),
			Pushes:       t.pushes,
			Nacks:        t.nacks,
		}
		if t.lastNack != nil {
			ts.LastNack = &NackStatus{
				At:      t.lastNack.At,
				Version: t.lastNack.Version,
				Nonce:   t.lastNack.Nonce,
				Code:    codes.Code(t.lastNack.Detail.GetCode()).String(),
				Message: t.lastNack.Detail.GetMessage(),
			}
		}
		p.Types[TypeLabel(typeURL)] = ts
	}
	return p, true
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// DebugHandler serves GET /debug/proxies (every connected proxy),
// GET /debug/proxies/<node> (one) and GET /debug/config/<node> (what the
// node is served: a NodeConfigDocument) as JSON. It matches full paths:
// mount it with mux.Handle("/debug/proxies", h),
// mux.Handle("/debug/proxies/", h) and mux.Handle("/debug/config/", h).
func (s *Server) DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/proxies", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Proxies())
	})
	mux.HandleFunc("GET /debug/proxies/{node}", func(w http.ResponseWriter, r *http.Request) {
		node := r.PathValue("node")
		p, ok := s.Proxy(node)
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no connected proxy " + node})
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	mux.HandleFunc("GET /debug/config/{node}", s.serveConfig)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// The status line is already out; a failed write is the client's loss.
	_ = enc.Encode(v)
}
