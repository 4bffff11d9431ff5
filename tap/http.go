package tap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Path is where the control plane's admin server serves sessions:
// GET /api/tap?namespace=NS&target=deploy/web&to=&path=&method=&max=1m
// streams Line values, one JSON object per line, until the client goes
// away or max (default and cap MaxDuration) passes; the session's proxies
// are untapped then.
const Path = "/api/tap"

// MaxDuration bounds a session: a forgotten `weft tap` must not keep
// proxies logging forever.
const MaxDuration = 30 * time.Minute

// TargetError is a target that cannot be tapped: Code is the HTTP status
// and the message the user's answer.
type TargetError struct {
	Code int
	Msg  string
}

func (e *TargetError) Error() string { return e.Msg }

// Resolver turns a namespace and a target ("deploy/web") into the node ids
// of the sidecars to tap, or a *TargetError.
type Resolver func(namespace, target string) ([]string, error)

// Handler serves Path with sessions on h.
func (h *Hub) Handler(resolve Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		jsonError := func(code int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
		}
		ns := q.Get("namespace")
		if ns == "" {
			ns = "default"
		}
		limit := MaxDuration
		if s := q.Get("max"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				jsonError(http.StatusBadRequest, fmt.Sprintf("max %q: want a positive duration such as 30s", s))
				return
			}
			limit = min(d, MaxDuration)
		}
		nodes, err := resolve(ns, q.Get("target"))
		if err != nil {
			code := http.StatusInternalServerError
			var te *TargetError
			if errors.As(err, &te) {
				code = te.Code
			}
			jsonError(code, err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), limit)
		defer cancel()
		watcher, err := h.Watch(ctx, nodes, Filter{To: q.Get("to"), Path: q.Get("path"), Method: q.Get("method")})
		if err != nil {
			jsonError(http.StatusBadRequest, err.Error())
			return
		}
		defer watcher.Close()
		w.Header().Set("Content-Type", "application/x-ndjson")
		flusher, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		send := func(l Line) bool {
			if err := enc.Encode(l); err != nil {
				return false
			}
			if flusher != nil {
				flusher.Flush()
			}
			return true
		}
		if !send(Line{Proxies: nodes}) {
			return
		}
		for ev := range watcher.Events {
			if !send(Line{Event: &ev}) {
				return
			}
		}
		end := "client gone"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			end = fmt.Sprintf("session reached its maximum of %s", limit)
		}
		send(Line{End: end, Dropped: watcher.Dropped()})
	})
}
