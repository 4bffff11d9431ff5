// Package proxyconfig prints what a proxy is served (listeners, routes,
// clusters, endpoints, secrets) as a summary people read, in the spirit of
// `istioctl proxy-config` and `linkerd diagnostics proxy-metrics`: one table
// per section, sorted, the same input always giving the same text.
//
// It reads Envoy resources, not the mesh model, so it shows what the proxy
// would actually receive, including anything translate got wrong.
package proxyconfig

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Section is one part of the summary.
type Section string

// The sections, in the order they are printed.
const (
	Listeners Section = "listeners"
	Routes    Section = "routes"
	Clusters  Section = "clusters"
	Endpoints Section = "endpoints"
	Secrets   Section = "secrets"
)

// AllSections lists every Section in print order.
var AllSections = []Section{Listeners, Routes, Clusters, Endpoints, Secrets}

// ParseSection accepts a section name, singular or plural, in any case.
func ParseSection(s string) (Section, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	for _, sec := range AllSections {
		if l == string(sec) || l+"s" == string(sec) {
			return sec, nil
		}
	}
	names := make([]string, len(AllSections))
	for i, sec := range AllSections {
		names[i] = string(sec)
	}
	return "", fmt.Errorf("unknown section %q (want one of %s)", s, strings.Join(names, ", "))
}

// Options tune Render. The zero value prints everything.
type Options struct {
	// Sections to print (always in AllSections order); empty: all.
	Sections []Section
	// Domains is how many of a virtual host's domains are listed before
	// "(+N)"; host:port forms are counted but not listed. 0 means 3,
	// negative means all (with their ports).
	Domains int
}

func (o Options) wants(s Section) bool {
	return len(o.Sections) == 0 || slices.Contains(o.Sections, s)
}

func (o Options) domains() int {
	if o.Domains == 0 {
		return 3
	}
	return o.Domains
}

// Render writes the summary of res (keyed by xDS type URL, as
// xds.Server.NodeConfig and translate.Resources.ByType return it) to w.
// Content never makes it fail: what it cannot interpret is printed as
// such. It returns the first write error.
func Render(w io.Writer, res map[string][]types.Resource, opts Options) error {
	ew := &errWriter{w: w}
	cfg := index(res)
	first := true
	for _, sec := range AllSections {
		if !opts.wants(sec) {
			continue
		}
		if !first {
			fmt.Fprintln(ew)
		}
		first = false
		switch sec {
		case Listeners:
			renderListeners(ew, cfg)
		case Routes:
			renderRoutes(ew, cfg, opts)
		case Clusters:
			renderClusters(ew, cfg)
		case Endpoints:
			renderEndpoints(ew, cfg)
		case Secrets:
			renderSecrets(ew, cfg)
		}
	}
	return ew.err
}

// errWriter keeps the first error so that the renderers can write freely.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// table is a tabwriter whose rows are written cell by cell.
type table struct {
	tw     *tabwriter.Writer
	indent string
}

func newTable(w io.Writer, indent string, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), indent: indent}
	t.row(header...)
	return t
}

// cellEscaper keeps a tab or newline inside a cell from breaking the columns.
var cellEscaper = strings.NewReplacer("\t", " ", "\n", `\n`)

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cellEscaper.Replace(c)
	}
	fmt.Fprintln(t.tw, t.indent+strings.Join(cells, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() } // errors surface through errWriter

// badResource describes an entry of the wrong type (or nil) in a type's list.
func badResource(typeURL string, i int, r types.Resource) string {
	want := strings.TrimPrefix(typeURL, resourcev3.APITypePrefix)
	if r == nil || !r.ProtoReflect().IsValid() {
		return fmt.Sprintf("! %s[%d] is empty", shortType(typeURL), i)
	}
	return fmt.Sprintf("! %s[%d] is a %s, not a %s", shortType(typeURL), i, proto.MessageName(r), want)
}

func shortType(typeURL string) string {
	s := strings.TrimPrefix(typeURL, resourcev3.APITypePrefix)
	return s[strings.LastIndexByte(s, '.')+1:]
}
