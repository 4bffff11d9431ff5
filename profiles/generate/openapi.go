package generate

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	yamlv4 "go.yaml.in/yaml/v4"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/profiles"
)

// The vendor extensions read on an operation. Linkerd's are read too, so a
// document written for `linkerd profile --open-api` gives the same routes.
const (
	extRetryable        = "x-weft-retryable"
	extTimeout          = "x-weft-timeout"
	extLinkerdRetryable = "x-linkerd-retryable"
	extLinkerdTimeout   = "x-linkerd-timeout"
)

// Result is a generated profile and what the caller should tell the user
// about it (parts of the input that were left out or look wrong).
type Result struct {
	Profile  *profiles.ServiceProfile
	Warnings []string
}

// FromOpenAPI generates a profile from a Swagger 2.0 or OpenAPI 3.x
// document (YAML or JSON) read from file: one route per path and method,
// named "METHOD /path" with the base path in front, in Linkerd's order
// (paths sorted as strings, then methods sorted by name).
func FromOpenAPI(file string, data []byte, t Target) (*Result, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	src, err := parseSource(file, data)
	if err != nil {
		return nil, err
	}
	if err := src.checkRefs(); err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, &FileError{File: file, Msg: "neither YAML nor JSON: " + err.Error()}
	}
	g := &openAPIGen{src: src}
	var doc *openapi3.T
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	switch swagger, openapi := src.topString("swagger"), src.topString("openapi"); {
	case swagger == "2.0":
		var doc2 openapi2.T
		if err := json.Unmarshal(j, &doc2); err != nil {
			return nil, &FileError{File: file, Msg: "reading the Swagger 2.0 document: " + err.Error()}
		}
		if doc, err = openapi2conv.ToV3WithLoader(&doc2, loader, nil); err != nil {
			return nil, &FileError{File: file, Msg: "reading the Swagger 2.0 document: " + err.Error()}
		}
		g.basePath = doc2.BasePath
	case strings.HasPrefix(openapi, "3."):
		if doc, err = loader.LoadFromData(j); err != nil {
			return nil, &FileError{File: file, Msg: "reading the OpenAPI " + openapi + " document: " + err.Error()}
		}
		if g.basePath, err = g.serversBasePath(doc.Servers); err != nil {
			return nil, err
		}
	case swagger != "":
		return nil, src.errorAt([]string{"swagger"}, "swagger: %q is not supported; want \"2.0\" (or an OpenAPI 3.x document)", swagger)
	case openapi != "":
		return nil, src.errorAt([]string{"openapi"}, "openapi: %q is not supported; want 3.x (or a Swagger 2.0 document)", openapi)
	default:
		return nil, &FileError{File: file, Line: src.root.Line, Column: src.root.Column,
			Msg: "not an OpenAPI document: want swagger: \"2.0\" or openapi: 3.x at the top"}
	}
	sp := newProfile(t)
	if doc.Paths != nil {
		items := doc.Paths.Map()
		for _, rel := range slices.Sorted(maps.Keys(items)) {
			routes, err := g.pathRoutes(rel, items[rel])
			if err != nil {
				return nil, err
			}
			sp.Spec.Routes = append(sp.Spec.Routes, routes...)
		}
	}
	if len(sp.Spec.Routes) == 0 {
		g.warnings = append(g.warnings, fmt.Sprintf("%s: the profile has no routes: no operation under paths could become one", file))
	}
	sp, err = validated(sp, t)
	if err != nil {
		return nil, err
	}
	return &Result{Profile: sp, Warnings: g.warnings}, nil
}

type openAPIGen struct {
	src *source
	// basePath is put in front of every path (without its trailing /).
	basePath string
	warnings []string
}

// serversBasePath is the path part of the first server URL, server
// variables replaced by their defaults. OpenAPI lists alternatives there;
// when they differ in path, the routes follow the first one, the one tools
// pick by default, and the others are named in a warning.
func (g *openAPIGen) serversBasePath(servers openapi3.Servers) (string, error) {
	var paths []string
	for i, s := range servers {
		if s == nil {
			continue
		}
		p, err := s.BasePath()
		if err != nil {
			return "", g.src.errorAt([]string{"servers", strconv.Itoa(i), "url"}, "servers[%d].url %q: want a URL or an absolute path: %v", i, s.URL, err)
		}
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	switch len(paths) {
	case 0:
		return "", nil
	case 1:
	default:
		g.warnings = append(g.warnings, fmt.Sprintf("%s: the servers have %d different base paths (%s): the routes use the first, %s",
			g.src.file, len(paths), strings.Join(paths, ", "), paths[0]))
	}
	return paths[0], nil
}

// pathRoutes is one route per operation of a path, methods sorted.
func (g *openAPIGen) pathRoutes(rel string, item *openapi3.PathItem) ([]*profiles.RouteSpec, error) {
	at := []string{"paths", rel}
	params, err := templateParams(rel)
	if err != nil {
		return nil, g.src.errorAt(at, "path %q: %v", rel, err)
	}
	base, relPath := strings.TrimRight(g.basePath, "/"), "/"+strings.TrimLeft(rel, "/")
	full := base + relPath
	pathRegex := regexp.QuoteMeta(base) + templateRegex(relPath)
	if item == nil {
		return nil, nil
	}
	// Path-level parameters apply to every operation of the path.
	shared := pathParameters(item.Parameters)
	size, fits := regexFits(pathRegex)
	ops := item.Operations()
	var routes []*profiles.RouteSpec
	for _, method := range slices.Sorted(maps.Keys(ops)) {
		op := ops[method]
		opAt := append(slices.Clone(at), strings.ToLower(method))
		if _, v := child(mustChild(g.src.root, at...), strings.ToLower(method)); v == nil {
			opAt = append(slices.Clone(at), "additionalOperations", method)
		}
		name := method + " " + full
		declared := pathParameters(op.Parameters)
		for _, p := range params {
			if !shared[p] && !declared[p] {
				g.warnings = append(g.warnings, g.src.errorAt(opAt, "%s: path parameter %q is declared neither by the operation nor by the path", name, p).Error())
			}
		}
		if !fits {
			g.warnings = append(g.warnings, g.src.errorAt(opAt, "%s", tooBig(name, pathRegex, size)).Error())
			continue
		}
		route := &profiles.RouteSpec{
			Name:      name,
			Condition: &profiles.RequestMatch{Method: method, PathRegex: pathRegex},
		}
		if route.ResponseClasses, err = g.responseClasses(op, append(slices.Clone(opAt), "responses")); err != nil {
			return nil, err
		}
		if route.IsRetryable, err = g.retryable(op, opAt); err != nil {
			return nil, err
		}
		if route.Timeout, err = g.timeout(op, opAt); err != nil {
			return nil, err
		}
		routes = append(routes, route)
	}
	return routes, nil
}

// mustChild walks a path of keys from n; a missing key gives an empty node.
func mustChild(n *yamlv4.Node, path ...string) *yamlv4.Node {
	for _, k := range path {
		_, v := child(n, k)
		if v == nil {
			return &yamlv4.Node{}
		}
		n = v
	}
	return n
}

func pathParameters(params openapi3.Parameters) map[string]bool {
	out := map[string]bool{}
	for _, p := range params {
		if p != nil && p.Value != nil && p.Value.In == openapi3.ParameterInPath {
			out[p.Value.Name] = true
		}
	}
	return out
}

// tooBig says why a route whose regex does not fit is left out.
func tooBig(route, re string, size int) string {
	return fmt.Sprintf("%s: left out: its pathRegex %s has an RE2 program size of about %d, more than the %d Envoy accepts; its requests fall in [DEFAULT]",
		route, re, size, profiles.MaxRegexProgramSize)
}

// regexFits reports whether Envoy will accept re both as profiles
// validation sees it and as translate emits it (anchored).
func regexFits(re string) (int, bool) {
	size := 0
	for _, form := range []string{re, "^(?:" + re + ")$"} {
		n, err := profiles.RE2ProgramSize(form)
		if err != nil {
			return 0, false
		}
		size = max(size, n)
	}
	return size, size <= profiles.MaxRegexProgramSize
}

// responseClasses is one class per declared status or status range
// (1XX..5XX), narrowest first so that an exact status decides before the
// range around it; 5xx are failures. "default" says nothing about a status
// and is skipped.
func (g *openAPIGen) responseClasses(op *openapi3.Operation, at []string) ([]*profiles.ResponseClass, error) {
	if op.Responses == nil {
		return nil, nil
	}
	var ranges []profiles.Range
	for key := range op.Responses.Map() {
		if key == "default" {
			continue
		}
		r, ok := parseStatusKey(key)
		if !ok {
			return nil, g.src.errorAt(append(at, key), "response %q: want an HTTP status (100..599), a range 1XX..5XX, or default", key)
		}
		ranges = append(ranges, r)
	}
	slices.SortFunc(ranges, func(a, b profiles.Range) int {
		if a.Max-a.Min != b.Max-b.Min {
			return int(a.Max-a.Min) - int(b.Max-b.Min)
		}
		return int(a.Min) - int(b.Min)
	})
	var classes []*profiles.ResponseClass
	for _, r := range ranges {
		classes = append(classes, &profiles.ResponseClass{
			Condition: &profiles.ResponseMatch{Status: &profiles.Range{Min: r.Min, Max: r.Max}},
			IsFailure: r.Min >= 500,
		})
	}
	return classes, nil
}

func parseStatusKey(key string) (profiles.Range, bool) {
	if len(key) != 3 {
		return profiles.Range{}, false
	}
	if rest := strings.ToUpper(key[1:]); rest == "XX" && key[0] >= '1' && key[0] <= '5' {
		lo := uint32(key[0]-'0') * 100
		return profiles.Range{Min: lo, Max: lo + 99}, true
	}
	n, err := strconv.ParseUint(key, 10, 32)
	if err != nil || n < 100 || n > 599 {
		return profiles.Range{}, false
	}
	return profiles.Range{Min: uint32(n), Max: uint32(n)}, true
}

// extension reads an operation's Weft extension, or else Linkerd's; both
// present with different values is an error.
func (g *openAPIGen) extension(op *openapi3.Operation, at []string, weft, linkerd string) (value any, key string, err error) {
	w, hasW := op.Extensions[weft]
	l, hasL := op.Extensions[linkerd]
	switch {
	case hasW && hasL && fmt.Sprint(w) != fmt.Sprint(l):
		return nil, "", g.src.errorAt(append(at, linkerd), "%s: %v and %s: %v disagree; keep one", weft, w, linkerd, l)
	case hasW:
		return w, weft, nil
	case hasL:
		return l, linkerd, nil
	}
	return nil, "", nil
}

func (g *openAPIGen) retryable(op *openapi3.Operation, at []string) (bool, error) {
	v, key, err := g.extension(op, at, extRetryable, extLinkerdRetryable)
	if err != nil || key == "" {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, g.src.errorAt(append(at, key), "%s: %v: want true or false", key, v)
	}
	return b, nil
}

func (g *openAPIGen) timeout(op *openapi3.Operation, at []string) (string, error) {
	v, key, err := g.extension(op, at, extTimeout, extLinkerdTimeout)
	if err != nil || key == "" {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", g.src.errorAt(append(at, key), "%s: %v: want a duration such as \"2s\" or \"500ms\"", key, v)
	}
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return "", g.src.errorAt(append(at, key), "%s: %q: want a positive duration such as \"2s\" or \"500ms\"", key, s)
	}
	return s, nil
}

// templateParams checks the braces of an OpenAPI path template and
// returns its parameter names.
func templateParams(p string) ([]string, error) {
	var params []string
	rest := p
	for {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			return params, nil
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("a } with no { before it")
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return nil, fmt.Errorf("a { with no } after it")
		}
		name := rest[open+1 : open+1+end]
		if name == "" {
			return nil, fmt.Errorf("an empty parameter name {}")
		}
		params = append(params, name)
		rest = rest[open+1+end+1:]
	}
}

// templateRegex is a checked path template with its literal text escaped
// and every parameter replaced by [^/]* (as Linkerd does: a parameter is
// any run of characters within one path segment).
func templateRegex(p string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(p, '{')
		if open < 0 {
			b.WriteString(regexp.QuoteMeta(p))
			return b.String()
		}
		b.WriteString(regexp.QuoteMeta(p[:open]))
		b.WriteString(`[^/]*`)
		p = p[open+strings.IndexByte(p[open:], '}')+1:]
	}
}
