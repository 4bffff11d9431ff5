// Package dashboard is Weft's web dashboard: namespaces, the deployments of a
// namespace with their golden metrics, a deployment with its pods, a service
// with its routes, and the topology of a namespace's edges drawn as SVG. It
// reads nothing but a telemetry.Source, so it shows what `weft stat` prints,
// whichever path (the control plane's embedded window or Prometheus) answers.
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/weftmesh/weft/telemetry"
)

//go:embed templates/*.html
var templateFS embed.FS

// Handler serves the dashboard's pages.
type Handler struct {
	src     telemetry.Source
	window  time.Duration
	refresh time.Duration
	pages   *template.Template
	mux     *http.ServeMux
	log     *slog.Logger
	tapper  Tapper
}

// Options tune a Handler; the zero value is usable.
type Options struct {
	// Window is how far back the numbers look (telemetry.DefaultWindow if 0).
	Window time.Duration
	// Refresh is how often a page reloads itself (10 s if 0).
	Refresh time.Duration
	Logger  *slog.Logger
	// Tapper, when set, gives every deployment a live tap page.
	Tapper Tapper
}

// New returns the dashboard over src.
func New(src telemetry.Source, o Options) (*Handler, error) {
	h := &Handler{
		src:     src,
		window:  o.Window,
		refresh: o.Refresh,
		log:     o.Logger,
		mux:     http.NewServeMux(),
		tapper:  o.Tapper,
	}
	if h.refresh <= 0 {
		h.refresh = 10 * time.Second
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	funcs := template.FuncMap{
		"success": telemetry.FormatSuccess,
		"rps":     telemetry.FormatRPS,
		"latency": telemetry.FormatLatency,
		"secured": telemetry.FormatSecured,
		"health":  health,
		"path":    url.PathEscape,
	}
	pages, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("parsing the dashboard's templates: %w", err)
	}
	h.pages = pages
	h.mux.HandleFunc("GET /{$}", h.namespaces)
	h.mux.HandleFunc("GET /namespaces/{ns}", h.namespace)
	h.mux.HandleFunc("GET /namespaces/{ns}/deployments/{name}", h.deployment)
	h.mux.HandleFunc("GET /namespaces/{ns}/services/{name}", h.service)
	h.mux.HandleFunc("GET /namespaces/{ns}/topology.svg", h.topologySVG)
	if h.tapper != nil {
		h.mux.HandleFunc("GET /namespaces/{ns}/deployments/{name}/tap", h.tapPage)
		h.mux.HandleFunc("GET /namespaces/{ns}/deployments/{name}/tap/events", h.tapEvents)
	}
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// page is what every template gets.
type page struct {
	Title       string
	Crumbs      []crumb
	Refresh     int
	Window      string
	Error       string
	Namespace   string
	Name        string
	Tables      []section
	TopologySVG template.HTML
	// TapHref links a deployment's page to its tap page.
	TapHref string
	// TapEvents is the tap page's event stream, TapRows how many rows it keeps.
	TapEvents string
	TapRows   int
}

type crumb struct{ Label, Href string }

// section is one titled table on a page.
type section struct {
	Title    string
	Resource string
	Rows     []telemetry.Row
	// Link makes a row's name a link to its own page.
	Link func(telemetry.Row) string
	Note string
}

// RowLink exists so templates can call the section's link function.
func (s section) RowLink(r telemetry.Row) string {
	if s.Link == nil {
		return ""
	}
	return s.Link(r)
}

func (h *Handler) query(ctx context.Context, q telemetry.Query) ([]telemetry.Row, error) {
	q.Window = h.window
	t, err := h.src.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	// Sources answer in any order; a page lists rows as the CLI prints them.
	return telemetry.SortedRows(t), nil
}

func (h *Handler) base(title string, crumbs ...crumb) page {
	w := h.window
	if w <= 0 {
		w = telemetry.DefaultWindow
	}
	return page{Title: title, Crumbs: append([]crumb{{"Namespaces", "/"}}, crumbs...), Refresh: int(h.refresh / time.Second), Window: w.String()}
}

// rows asks the source for q; an error is added to the page's and leaves no rows.
func (h *Handler) rows(ctx context.Context, p *page, what string, q telemetry.Query) []telemetry.Row {
	rows, err := h.query(ctx, q)
	p.Error = joinErr(p.Error, h.explain(err, what))
	return rows
}

// detail is the page of one named resource of a namespace.
func (h *Handler) detail(r *http.Request, kind string) (p page, ns, name string) {
	ns, name = r.PathValue("ns"), r.PathValue("name")
	p = h.base(kind+" "+name, crumb{ns, "/namespaces/" + url.PathEscape(ns)}, crumb{name, ""})
	p.Namespace, p.Name = ns, name
	return p, ns, name
}

func (h *Handler) namespaces(w http.ResponseWriter, r *http.Request) {
	p := h.base("Namespaces")
	rows := h.rows(r.Context(), &p, "namespaces", telemetry.Query{Resource: telemetry.ResourceNamespace, AllNamespaces: true})
	p.Tables = []section{{Title: "Namespaces", Resource: telemetry.ResourceNamespace, Rows: rows,
		Link: func(r telemetry.Row) string { return "/namespaces/" + url.PathEscape(r.Name) }}}
	h.render(w, "list.html", p)
}

func (h *Handler) namespace(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	p := h.base("Namespace "+ns, crumb{ns, ""})
	p.Namespace = ns
	deploys := h.rows(r.Context(), &p, "deployments", telemetry.Query{Resource: telemetry.ResourceDeployment, Namespace: ns})
	svcs := h.rows(r.Context(), &p, "services", telemetry.Query{Resource: telemetry.ResourceService, Namespace: ns})
	edges := h.rows(r.Context(), &p, "edges", telemetry.Query{Resource: telemetry.ResourceEdge, Namespace: ns})
	p.TopologySVG = topology(ns, edges)
	p.Tables = []section{
		{Title: "Deployments", Resource: telemetry.ResourceDeployment, Rows: deploys, Link: func(r telemetry.Row) string {
			return deploymentPath(ns, r.Name)
		}},
		{Title: "Services", Resource: telemetry.ResourceService, Rows: svcs,
			Link: func(r telemetry.Row) string {
				return "/namespaces/" + url.PathEscape(ns) + "/services/" + url.PathEscape(r.Name)
			}},
		{Title: "Edges", Resource: telemetry.ResourceEdge, Rows: edges},
	}
	h.render(w, "list.html", p)
}

func (h *Handler) deployment(w http.ResponseWriter, r *http.Request) {
	p, ns, name := h.detail(r, "Deployment")
	deploy := h.rows(r.Context(), &p, "deployment "+name, telemetry.Query{Resource: telemetry.ResourceDeployment, Namespace: ns, Name: name})
	pods := h.rows(r.Context(), &p, "pods", telemetry.Query{Resource: telemetry.ResourcePod, Namespace: ns})
	// A pod belongs to the deployment when its name is the ReplicaSet's: <deployment>-<hash>-<suffix>.
	pods = slices.DeleteFunc(pods, func(r telemetry.Row) bool { return !ownedBy(r.Name, name) })
	p.Tables = []section{
		{Title: "Golden metrics", Resource: telemetry.ResourceDeployment, Rows: deploy},
		{Title: "Pods", Resource: telemetry.ResourcePod, Rows: pods},
	}
	if h.tapper != nil {
		p.TapHref = deploymentPath(ns, name) + "/tap"
	}
	h.render(w, "list.html", p)
}

func (h *Handler) service(w http.ResponseWriter, r *http.Request) {
	p, ns, name := h.detail(r, "Service")
	svc := h.rows(r.Context(), &p, "service "+name, telemetry.Query{Resource: telemetry.ResourceService, Namespace: ns, Name: name})
	routes := h.rows(r.Context(), &p, "routes", telemetry.Query{Resource: telemetry.ResourceRoute, Namespace: ns, Name: name})
	p.Tables = []section{
		{Title: "Golden metrics", Resource: telemetry.ResourceService, Rows: svc},
		{Title: "Routes", Resource: telemetry.ResourceRoute, Rows: routes, Note: "effective: as the client saw it, after retries; actual: every attempt"},
	}
	h.render(w, "list.html", p)
}

func (h *Handler) topologySVG(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	edges, err := h.query(r.Context(), telemetry.Query{Resource: telemetry.ResourceEdge, Namespace: ns})
	if err != nil {
		http.Error(w, h.explain(err, "edges"), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = w.Write([]byte(topology(ns, edges)))
}

// explain turns a source's error into the sentence a page shows, and logs it.
func (h *Handler) explain(err error, what string) string {
	if err == nil {
		return ""
	}
	h.log.Warn("dashboard query failed", "what", what, "err", err)
	return fmt.Sprintf("%s: %v", what, err)
}

func joinErr(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n" + b
}

func (h *Handler) render(w http.ResponseWriter, name string, p page) {
	var buf bytes.Buffer
	if err := h.pages.ExecuteTemplate(&buf, name, p); err != nil {
		h.log.Error("rendering a dashboard page", "page", name, "err", err)
		http.Error(w, "rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}

// health classes a success rate for colour: good, warn (under 95%), bad (under 80%), none.
func health(s *float64) string {
	switch {
	case s == nil:
		return "none"
	case *s < 0.8:
		return "bad"
	case *s < 0.95:
		return "warn"
	}
	return "good"
}

// ownedBy says whether pod is named as one of deployment's: <deployment>-<rs hash>-<pod suffix>.
func ownedBy(pod, deployment string) bool {
	rest, ok := strings.CutPrefix(pod, deployment+"-")
	if !ok {
		return false
	}
	hash, suffix, ok := strings.Cut(rest, "-")
	return ok && hash != "" && suffix != "" && !strings.Contains(suffix, "-")
}
