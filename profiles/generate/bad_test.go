package generate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weftmesh/weft/profiles/generate"
)

var shop = generate.Target{Service: "notes", Namespace: "shop", ClusterDomain: "cluster.local"}

// TestBadInput: a file that cannot be read as what it should be is an
// error naming the file, the line and what was expected, and no profile.
func TestBadInput(t *testing.T) {
	openAPI := func(file string) func(t *testing.T) (*generate.Result, error) {
		return func(t *testing.T) (*generate.Result, error) { return openAPIFile(t, file, shop) }
	}
	proto := func(file string, services ...string) func(t *testing.T) (*generate.Result, error) {
		return func(t *testing.T) (*generate.Result, error) {
			return generate.FromProto(t.Context(), file, generate.ProtoOptions{ImportPaths: []string{protoPath}, Services: services}, shop)
		}
	}
	for _, c := range []struct {
		name string
		gen  func(t *testing.T) (*generate.Result, error)
		// file and line the error must name (line 0: the file as a whole).
		file string
		line int
		msg  string
	}{
		{"neither YAML nor JSON", openAPI("testdata/bad/not-yaml.txt"), "testdata/bad/not-yaml.txt", 8,
			"neither YAML nor JSON: did not find expected ',' or '}'"},
		{"broken JSON", openAPI("testdata/bad/not-json.json"), "testdata/bad/not-json.json", 6,
			"not valid JSON: invalid character '\"' after object key:value pair"},
		{"broken $ref", openAPI("testdata/bad/broken-ref.swagger.yaml"), "testdata/bad/broken-ref.swagger.yaml", 24,
			`$ref "#/definitions/Notes" does not resolve: #/definitions has no "Notes" (it has "Note")`},
		{"not an OpenAPI document", openAPI("testdata/bad/not-openapi.yaml"), "testdata/bad/not-openapi.yaml", 1,
			`not an OpenAPI document: want swagger: "2.0" or openapi: 3.x at the top`},
		{"timeout not a duration", openAPI("testdata/bad/bad-timeout.openapi.yaml"), "testdata/bad/bad-timeout.openapi.yaml", 11,
			`x-weft-timeout: "one second": want a positive duration such as "2s" or "500ms"`},
		{"status out of range", openAPI("testdata/bad/bad-status.openapi.yaml"), "testdata/bad/bad-status.openapi.yaml", 11,
			`response "6XX": want an HTTP status (100..599), a range 1XX..5XX, or default`},
		{"extensions that disagree", openAPI("testdata/bad/conflicting-extensions.swagger.yaml"), "testdata/bad/conflicting-extensions.swagger.yaml", 12,
			`x-weft-timeout: 2s and x-linkerd-timeout: 5s disagree; keep one`},
		{"Swagger 1.2", openAPI("testdata/bad/old-swagger.json"), "testdata/bad/old-swagger.json", 3,
			`swagger: "1.2" is not supported; want "2.0" (or an OpenAPI 3.x document)`},
		{"proto syntax error", proto("testdata/bad/syntax-error.proto"), "testdata/bad/syntax-error.proto", 8,
			`syntax error: expecting ';'`},
		{"proto service the file does not define", proto("testdata/proto/library/v1/library.proto", "BookService", "AuthorService"),
			"testdata/proto/library/v1/library.proto", 0,
			`no service "AuthorService"; the file defines library.v1.BookService (line 11), library.v1.ShelfService (line 30)`},
		{"proto import not found", func(t *testing.T) (*generate.Result, error) {
			return generate.FromProto(t.Context(), "testdata/proto/library/v1/library.proto", generate.ProtoOptions{}, shop)
		}, "testdata/proto/library/v1/library.proto", 7, `library/v1/types.proto`},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := c.gen(t)
			if err == nil {
				t.Fatalf("no error; profile %+v", res.Profile)
			}
			if res != nil {
				t.Errorf("a result came with the error %v", err)
			}
			t.Log(err)
			var fe *generate.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("%v: not a FileError", err)
			}
			if !strings.HasSuffix(fe.File, c.file) || fe.Line != c.line {
				t.Errorf("error at %s:%d, want %s:%d: %v", fe.File, fe.Line, c.file, c.line, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not say %q", err, c.msg)
			}
		})
	}
}

// TestOpenAPILeavesOutRegexesEnvoyRefuses: a path whose regex Envoy would
// refuse for size is left out with a warning that says so, and the rest of
// the document still becomes routes.
func TestOpenAPILeavesOutRegexesEnvoyRefuses(t *testing.T) {
	const file = "testdata/long-path.openapi.yaml"
	res, err := openAPIFile(t, file, shop)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Profile.Spec.Routes) != 1 || res.Profile.Spec.Routes[0].Name != "GET /reports/tenants/{tenant}" {
		t.Errorf("routes %v, want only GET /reports/tenants/{tenant}", res.Profile.Spec.Routes)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], file+":15:5: GET /reports/tenants/{tenant}/projects/{project}/environments/{environment}/deployments/{deployment}/logs/{stream}: left out") ||
		!strings.Contains(res.Warnings[0], "more than the 100 Envoy accepts") {
		t.Errorf("warnings %q", res.Warnings)
	}
}

// TestBadTarget: a service or namespace the profile name cannot carry is
// refused before any input is read.
func TestBadTarget(t *testing.T) {
	for _, target := range []generate.Target{
		{Service: "Notes", Namespace: "shop", ClusterDomain: "cluster.local"},
		{Service: "notes", Namespace: "shop.eu", ClusterDomain: "cluster.local"},
		{Service: "notes", Namespace: "shop", ClusterDomain: ""},
	} {
		if _, err := generate.Template(target); err == nil {
			t.Errorf("%+v: no error", target)
		}
		if _, err := generate.FromOpenAPI("x.yaml", []byte("openapi: 3.0.0"), target); err == nil {
			t.Errorf("%+v: no error", target)
		}
	}
}
