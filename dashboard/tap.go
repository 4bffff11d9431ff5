package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/telemetry"
)

// Tapper runs tap sessions for the tap page: the control plane's /api/tap,
// as `weft tap` asks it. A session lasts until ctx ends, which is when the
// page stops it or goes away: the control plane then takes the logger off
// the proxies.
type Tapper interface {
	// Tap watches target ("deploy/web") in namespace, calling onProxies
	// once with the proxies tapped and onEvent for every request, and
	// returns the session's last line (why it ended).
	Tap(ctx context.Context, namespace, target string, onProxies func([]string), onEvent func(tap.Event) error) (tap.Line, error)
}

// TapRows is how many requests the tap page keeps on screen; older ones
// scroll away, so a long session costs the browser nothing more.
const TapRows = 200

// tapRow is one request as the tap page shows it: every cell already
// formatted, so the page only places text.
type tapRow struct {
	Time      string `json:"time"`
	Direction string `json:"direction"`
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	// DstDetail is the endpoint an outbound request went to, under the
	// authority it named.
	DstDetail string `json:"dstDetail,omitempty"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Status    string `json:"status"`
	Latency   string `json:"latency"`
	TLS       string `json:"tls"`
	// Health colours the row's status: good or bad, as top counts success.
	Health string `json:"health"`
}

func rowOf(e tap.Event) tapRow {
	r := tapRow{
		Direction: map[string]string{"in": "inbound", "out": "outbound"}[e.Direction],
		Src:       e.Src,
		Dst:       e.Dst,
		Method:    e.Method,
		Path:      e.Path,
		Status:    "no response",
		Latency:   telemetry.FormatLatency(e.Latency),
		TLS:       map[string]string{"true": "yes", "false": "no"}[e.TLS],
		Health:    "bad",
	}
	if r.TLS == "" {
		r.TLS = "unknown"
	}
	if !e.Start.IsZero() {
		r.Time = e.Start.Local().Format("15:04:05.000")
	}
	if e.Direction == "out" && e.Authority != "" {
		r.Dst, r.DstDetail = e.Authority, e.Dst
	}
	if e.Status != 0 {
		r.Status = strconv.FormatUint(uint64(e.Status), 10)
	}
	if e.GRPCStatus != "" {
		r.Status += " · " + e.GRPCStatus
	}
	if e.Success() {
		r.Health = "good"
	}
	return r
}

// tapPage serves the page; its script opens tapEvents.
func (h *Handler) tapPage(w http.ResponseWriter, r *http.Request) {
	p, ns, name := h.detail(r, "Deployment")
	p.Title = "Live tap of deployment " + name
	p.Crumbs = append(p.Crumbs[:len(p.Crumbs)-1], crumb{name, deploymentPath(ns, name)}, crumb{"tap", ""})
	p.Refresh = 0 // a reload would end the session and start another
	p.TapEvents = deploymentPath(ns, name) + "/tap/events"
	p.TapRows = TapRows
	h.render(w, "tap.html", p)
}

func deploymentPath(ns, name string) string {
	return "/namespaces/" + url.PathEscape(ns) + "/deployments/" + url.PathEscape(name)
}

// tapEvents streams a session as Server-Sent Events: "proxies" once, a
// message per request (a tapRow), and "end" with why the session ended,
// after which the page closes the stream instead of letting the browser
// reconnect. The session is the request's: when the page closes the
// stream, the request's context ends and so does the session.
func (h *Handler) tapEvents(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "this server cannot stream", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding a tap %s event: %w", event, err)
		}
		if event != "" {
			if _, err := fmt.Fprintf(w, "event: %s\n", event); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	end, err := h.tapper.Tap(r.Context(), ns, "deploy/"+name, func(p []string) {
		_ = send("proxies", p)
	}, func(e tap.Event) error {
		return send("", rowOf(e))
	})
	if err != nil {
		if errors.Is(r.Context().Err(), context.Canceled) {
			return // the page went away: nobody to tell
		}
		h.log.Warn("dashboard tap failed", "namespace", ns, "deployment", name, "err", err)
		_ = send("end", map[string]string{"reason": err.Error(), "failed": "true"})
		return
	}
	_ = send("end", map[string]string{"reason": end.Ended("the page")})
}
