package dashboard

import (
	"cmp"
	"fmt"
	"html/template"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/weftmesh/weft/telemetry"
)

// Layout of the topology drawing, in SVG user units.
const (
	nodeW, nodeH     = 150, 36
	colGap, rowGap   = 150, 28
	marginX, marginY = 20, 30
)

// node is one box in the drawing: a source or destination of an edge.
type node struct {
	id, label, href string
	depth, row      int
}

// topology draws a namespace's edges left to right: callers before the things they
// call, each column one step further down the call chain, every edge labelled with its
// request rate and success rate and coloured by health. It is drawn on the server so
// the page needs no script and the picture is the same in every browser.
func topology(ns string, edges []telemetry.Row) template.HTML {
	if len(edges) == 0 {
		return `<p class="empty">No edges seen in this window.</p>`
	}
	nodes := map[string]*node{}
	add := func(nsName, name string) *node {
		nsName = cmp.Or(nsName, ns)
		id := nsName + "/" + name
		if n, ok := nodes[id]; ok {
			return n
		}
		label := name
		if nsName != ns {
			label = name + "." + nsName
		}
		n := &node{id: id, label: label, href: "/namespaces/" + url.PathEscape(nsName) + "/deployments/" + url.PathEscape(name)}
		nodes[id] = n
		return n
	}
	type link struct {
		from, to *node
		row      telemetry.Row
	}
	var links []link
	for _, e := range edges {
		from, to := add(e.Namespace, e.Src), add(e.DstNamespace, e.Dst)
		links = append(links, link{from, to, e})
	}
	// Longest-path layering, bounded by the node count so a cycle cannot loop forever.
	for range len(nodes) {
		changed := false
		for _, l := range links {
			if l.from != l.to && l.to.depth < l.from.depth+1 && l.from.depth+1 < len(nodes) {
				l.to.depth = l.from.depth + 1
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	perDepth := map[int]int{}
	maxDepth, maxRows := 0, 0
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		n := nodes[id]
		n.row = perDepth[n.depth]
		perDepth[n.depth]++
		maxDepth, maxRows = max(maxDepth, n.depth), max(maxRows, perDepth[n.depth])
	}
	pos := func(n *node) (x, y int) {
		return marginX + n.depth*(nodeW+colGap), marginY + n.row*(nodeH+rowGap)
	}
	width := 2*marginX + (maxDepth+1)*nodeW + maxDepth*colGap
	height := 2*marginY + maxRows*nodeH + (maxRows-1)*rowGap
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="topology" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="Topology of namespace %s">`,
		width, height, width, height, template.HTMLEscapeString(ns))
	b.WriteString(`<defs>`)
	for _, h := range []string{"good", "warn", "bad", "none"} {
		fmt.Fprintf(&b, `<marker id="arrow-%s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrow %s"/></marker>`, h, h)
	}
	b.WriteString(`</defs>`)
	for _, l := range links {
		x1, y1 := pos(l.from)
		x2, y2 := pos(l.to)
		h := health(l.row.SuccessRate)
		sx, sy, ex, ey := x1+nodeW, y1+nodeH/2, x2, y2+nodeH/2
		if l.from == l.to || ex <= sx {
			// A call to itself or back up the chain: loop under the boxes.
			ex, ey = x2+nodeW/2, y2+nodeH
			sx, sy = x1+nodeW/2, y1+nodeH
			fmt.Fprintf(&b, `<path class="edge %s" data-src="%s" data-dst="%s" d="M%d,%d C%d,%d %d,%d %d,%d" marker-end="url(#arrow-%s)"/>`,
				h, esc(l.from.id), esc(l.to.id), sx, sy, sx, sy+rowGap, ex, ey+rowGap, ex, ey, h)
		} else {
			mx := (sx + ex) / 2
			fmt.Fprintf(&b, `<path class="edge %s" data-src="%s" data-dst="%s" d="M%d,%d C%d,%d %d,%d %d,%d" marker-end="url(#arrow-%s)"/>`,
				h, esc(l.from.id), esc(l.to.id), sx, sy, mx, sy, mx, ey, ex, ey, h)
		}
		label := telemetry.FormatRPS(l.row.RPS)
		if l.row.SuccessRate != nil {
			label += " · " + telemetry.FormatSuccess(l.row.SuccessRate)
		}
		if l.row.Secured != nil && *l.row.Secured {
			label += " · mTLS"
		}
		fmt.Fprintf(&b, `<text class="edge-label" x="%d" y="%d" text-anchor="middle">%s</text>`, (sx+ex)/2, (sy+ey)/2-6, esc(label))
	}
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		n := nodes[id]
		x, y := pos(n)
		fmt.Fprintf(&b, `<a href="%s"><g class="node" data-id="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="6"/><text x="%d" y="%d" text-anchor="middle">%s</text></g></a>`,
			esc(n.href), esc(n.id), x, y, nodeW, nodeH, x+nodeW/2, y+nodeH/2+5, esc(n.label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every name in it went through esc
}

func esc(s string) string { return template.HTMLEscapeString(s) }
