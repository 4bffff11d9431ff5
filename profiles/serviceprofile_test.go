package profiles

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

const clusterDomain = "cluster.local"

func readTestdata(t testing.TB, pattern string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata matching %s: %v", pattern, err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func TestGoodProfiles(t *testing.T) {
	for name, data := range readTestdata(t, "good/*.yaml") {
		t.Run(name, func(t *testing.T) {
			sp, err := DecodeServiceProfile(data)
			if err != nil {
				t.Fatal(err)
			}
			if errs := ValidateServiceProfile(sp, clusterDomain); len(errs) > 0 {
				t.Fatalf("valid profile rejected: %v", errs)
			}
			if len(sp.Spec.Routes) == 0 && len(sp.Spec.DstOverrides) == 0 {
				t.Error("decoded nothing")
			}
		})
	}
}

func TestDecodedValues(t *testing.T) {
	files := readTestdata(t, "good/*.yaml")
	sp, err := DecodeServiceProfile(files["client-override-dstoverrides.yaml"])
	if err != nil {
		t.Fatal(err)
	}
	if sp.Namespace != "booksapp-client" || sp.Name != "webapp.booksapp.svc.cluster.local" {
		t.Errorf("metadata = %s/%s", sp.Namespace, sp.Name)
	}
	if _, ok := sp.Spec.OpaquePorts[3306]; !ok || len(sp.Spec.OpaquePorts) != 1 {
		t.Errorf("opaquePorts = %v", sp.Spec.OpaquePorts)
	}
	var weights []uint32
	for _, d := range sp.Spec.DstOverrides {
		w, err := WeightMilli(d.Weight)
		if err != nil {
			t.Fatal(err)
		}
		weights = append(weights, w)
	}
	if !reflect.DeepEqual(weights, []uint32{500, 500, 0}) {
		t.Errorf("weights = %v", weights)
	}
	if sp.Spec.Routes[0].Timeout != "2.5s" || sp.Spec.Routes[0].Condition.Method != "GET" {
		t.Errorf("route = %+v", sp.Spec.Routes[0])
	}

	books, err := DecodeServiceProfile(files["booksapp-books.yaml"])
	if err != nil {
		t.Fatal(err)
	}
	want := &RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: "10s"}
	if !reflect.DeepEqual(books.Spec.RetryBudget, want) {
		t.Errorf("retryBudget = %+v, want %+v", books.Spec.RetryBudget, want)
	}
	if r := books.Spec.Routes[4].ResponseClasses[0]; !r.IsFailure || *r.Condition.Status != (Range{Min: 500, Max: 599}) {
		t.Errorf("responseClass = %+v", r)
	}
}

// profileYAML is a valid profile header around the given spec (indented by
// two spaces per level, starting at column 2).
func profileYAML(name, spec string) []byte {
	return []byte("apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata:\n  name: " + name +
		"\n  namespace: ns\nspec:\n" + spec)
}

const okRoute = "  routes:\n  - name: r\n    condition:\n      method: GET\n"

func TestBadProfiles(t *testing.T) {
	const fqdn = "web.ns.svc.cluster.local"
	tests := []struct {
		name string
		yaml []byte
		// decode failures are checked for substrings; validation failures
		// for exactly one field error at wantPath.
		decodeErr []string
		wantPath  string
		wantType  field.ErrorType
		detail    string
	}{
		{name: "unknown field", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    timeot: 1s\n"),
			decodeErr: []string{`unknown field "spec.routes[0].timeot"`, `ServiceProfile "web.ns.svc.cluster.local" in namespace "ns"`}},
		{name: "field name case differs", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {Method: GET}\n"),
			decodeErr: []string{`unknown field "spec.routes[0].condition.Method"`}},
		{name: "duplicate key", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    name: s\n    condition: {method: GET}\n"),
			decodeErr: []string{`"name" already set`, `ServiceProfile "web.ns.svc.cluster.local" in namespace "ns"`}},
		{name: "wrong type", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    isRetryable: maybe\n"),
			decodeErr: []string{"isRetryable"}},
		{name: "wrong kind", yaml: []byte("apiVersion: linkerd.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: x}\nspec: {}\n"),
			decodeErr: []string{`kind is "TrafficSplit"`}},
		{name: "wrong apiVersion", yaml: []byte("apiVersion: linkerd.io/v1\nkind: ServiceProfile\nmetadata: {name: x}\nspec: {}\n"),
			decodeErr: []string{`apiVersion is "linkerd.io/v1"`}},
		{name: "no spec", yaml: []byte("apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: x}\n"),
			decodeErr: []string{"spec: Required value"}},
		{name: "retry budget field missing", yaml: profileYAML(fqdn, "  retryBudget:\n    retryRatio: 0.2\n    ttl: 10s\n"),
			decodeErr: []string{"spec.retryBudget.minRetriesPerSecond: Required value"}},
		{name: "dstOverride weight missing", yaml: profileYAML(fqdn, "  dstOverrides:\n  - authority: a.ns.svc.cluster.local\n"),
			decodeErr: []string{"spec.dstOverrides[0].weight: Required value"}},
		{name: "route condition missing", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n"),
			decodeErr: []string{"spec.routes[0].condition: Required value"}},
		{name: "bad quantity", yaml: profileYAML(fqdn, "  dstOverrides:\n  - authority: a.ns.svc.cluster.local\n    weight: lots\n"),
			decodeErr: []string{"spec.dstOverrides[0].weight: Invalid value: \"lots\": not a Kubernetes quantity"}},
		{name: "opaque port not a number", yaml: profileYAML(fqdn, "  opaquePorts:\n    mysql: {}\n"),
			decodeErr: []string{"opaquePorts"}},
		{name: "not yaml", yaml: []byte("{{{"), decodeErr: []string{"decoding ServiceProfile"}},

		{name: "name not an FQDN", yaml: profileYAML("web", okRoute), wantPath: "metadata.name", wantType: field.ErrorTypeInvalid},
		{name: "name in another cluster domain", yaml: profileYAML("web.ns.svc.example.org", okRoute), wantPath: "metadata.name", wantType: field.ErrorTypeInvalid},
		{name: "name with bad service label", yaml: profileYAML("Web_1.ns.svc.cluster.local", okRoute), wantPath: "metadata.name", wantType: field.ErrorTypeInvalid},
		{name: "name with extra label", yaml: profileYAML("a.web.ns.svc.cluster.local", okRoute), wantPath: "metadata.name", wantType: field.ErrorTypeInvalid},
		{name: "route name empty", yaml: profileYAML(fqdn, "  routes:\n  - name: \"\"\n    condition: {method: GET}\n"),
			wantPath: "spec.routes[0].name", wantType: field.ErrorTypeRequired},
		{name: "empty condition", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition: {}\n"),
			wantPath: "spec.routes[1].condition", wantType: field.ErrorTypeRequired, detail: "must have a field set"},
		{name: "bad regex", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition: {pathRegex: '/books/(\\d+'}\n"),
			wantPath: "spec.routes[1].condition.pathRegex", wantType: field.ErrorTypeInvalid, detail: "missing closing )"},
		{name: "perl-only regex (lookahead)", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition: {pathRegex: '/(?=x)'}\n"),
			wantPath: "spec.routes[1].condition.pathRegex", wantType: field.ErrorTypeInvalid, detail: "not a valid RE2"},
		{name: "regex too large for Envoy", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition: {pathRegex: '/a{1000}'}\n"),
			wantPath: "spec.routes[1].condition.pathRegex", wantType: field.ErrorTypeInvalid, detail: "program size"},
		{name: "nested bad regex", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition:\n      all:\n      - method: GET\n      - not:\n          any:\n          - pathRegex: /ok\n          - pathRegex: '['\n"),
			wantPath: "spec.routes[1].condition.all[1].not.any[1].pathRegex", wantType: field.ErrorTypeInvalid},
		{name: "null in all", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition:\n      all: [null]\n"),
			wantPath: "spec.routes[1].condition.all[0]", wantType: field.ErrorTypeRequired},
		{name: "conditions nested too deep", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {not: {not: {not: {not: {not: {method: GET}}}}}}\n"),
			wantPath: "spec.routes[0].condition.not.not.not.not", wantType: field.ErrorTypeForbidden, detail: "at most 4 levels"},
		{name: "response conditions nested too deep", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {all: [{any: [{not: {all: [{any: [{status: {min: 500}}]}]}}]}]}\n"),
			wantPath: "spec.routes[0].responseClasses[0].condition.all[0].any[0].not.all[0]", wantType: field.ErrorTypeForbidden},
		{name: "bad method", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition: {method: 'GET POST'}\n"),
			wantPath: "spec.routes[1].condition.method", wantType: field.ErrorTypeInvalid},
		{name: "bad timeout", yaml: profileYAML(fqdn, okRoute+"  - name: s\n    condition: {method: GET}\n  - name: t\n    condition: {method: GET}\n    timeout: one-second\n"),
			wantPath: "spec.routes[2].timeout", wantType: field.ErrorTypeInvalid, detail: `route "t" has an invalid timeout: time: invalid duration "one-second"`},
		{name: "zero timeout", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    timeout: 0s\n"),
			wantPath: "spec.routes[0].timeout", wantType: field.ErrorTypeInvalid, detail: "must be positive"},
		{name: "negative timeout", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    timeout: -1s\n"),
			wantPath: "spec.routes[0].timeout", wantType: field.ErrorTypeInvalid},
		{name: "response class without condition field set", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {}\n      isFailure: true\n"),
			wantPath: "spec.routes[0].responseClasses[0].condition", wantType: field.ErrorTypeRequired},
		{name: "status below 100", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {status: {min: 99}}\n"),
			wantPath: "spec.routes[0].responseClasses[0].condition.status.min", wantType: field.ErrorTypeInvalid},
		{name: "status above 599", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {not: {status: {max: 600}}}\n"),
			wantPath: "spec.routes[0].responseClasses[0].condition.not.status.max", wantType: field.ErrorTypeInvalid},
		{name: "status max below min", yaml: profileYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {any: [{status: {min: 500, max: 400}}]}\n"),
			wantPath: "spec.routes[0].responseClasses[0].condition.any[0].status.max", wantType: field.ErrorTypeInvalid, detail: "cannot be smaller than minimum"},
		{name: "negative retry ratio", yaml: profileYAML(fqdn, "  retryBudget: {retryRatio: -0.1, minRetriesPerSecond: 1, ttl: 1s}\n"),
			wantPath: "spec.retryBudget.retryRatio", wantType: field.ErrorTypeInvalid},
		{name: "bad ttl", yaml: profileYAML(fqdn, "  retryBudget: {retryRatio: 0.1, minRetriesPerSecond: 1, ttl: ten}\n"),
			wantPath: "spec.retryBudget.ttl", wantType: field.ErrorTypeInvalid, detail: "invalid ttl"},
		{name: "empty ttl", yaml: profileYAML(fqdn, "  retryBudget: {retryRatio: 0.1, minRetriesPerSecond: 1, ttl: ''}\n"),
			wantPath: "spec.retryBudget.ttl", wantType: field.ErrorTypeRequired},
		{name: "authority without cluster domain", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: 'web-v2:80', weight: 1}\n"),
			wantPath: "spec.dstOverrides[0].authority", wantType: field.ErrorTypeInvalid},
		{name: "authority with bad port", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: 'web-v2.ns.svc.cluster.local:0', weight: 1}\n"),
			wantPath: "spec.dstOverrides[0].authority", wantType: field.ErrorTypeInvalid},
		{name: "authority empty", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: '', weight: 1}\n"),
			wantPath: "spec.dstOverrides[0].authority", wantType: field.ErrorTypeRequired},
		{name: "negative weight", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: 1}\n  - {authority: b.ns.svc.cluster.local, weight: -1}\n"),
			wantPath: "spec.dstOverrides[1].weight", wantType: field.ErrorTypeInvalid},
		{name: "weight finer than milli", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: 1500u}\n"),
			wantPath: "spec.dstOverrides[0].weight", wantType: field.ErrorTypeInvalid, detail: "whole number of milli-units"},
		{name: "weight overflows", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: 5M}\n"),
			wantPath: "spec.dstOverrides[0].weight", wantType: field.ErrorTypeInvalid, detail: "at most 4294967295"},
		{name: "weights sum overflows", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: 4M}\n  - {authority: b.ns.svc.cluster.local, weight: 1M}\n"),
			wantPath: "spec.dstOverrides", wantType: field.ErrorTypeInvalid, detail: "sum of the weights"},
		{name: "all weights zero", yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: 0}\n"),
			wantPath: "spec.dstOverrides", wantType: field.ErrorTypeInvalid, detail: "greater than 0"},
		{name: "opaque port 0", yaml: profileYAML(fqdn, "  opaquePorts:\n    \"0\": {}\n"),
			wantPath: "spec.opaquePorts[0]", wantType: field.ErrorTypeInvalid},
		{name: "opaque port too large", yaml: profileYAML(fqdn, "  opaquePorts:\n    \"80\": {}\n    \"65536\": {}\n"),
			wantPath: "spec.opaquePorts[65536]", wantType: field.ErrorTypeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := DecodeServiceProfile(tt.yaml)
			if tt.decodeErr != nil {
				if err == nil {
					t.Fatalf("decoded, want an error containing %q", tt.decodeErr)
				}
				for _, want := range tt.decodeErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			errs := ValidateServiceProfile(sp, clusterDomain)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1 at %s: %v", len(errs), tt.wantPath, errs)
			}
			if errs[0].Field != tt.wantPath || errs[0].Type != tt.wantType {
				t.Errorf("error %q is %s at %s, want %s at %s", errs[0], errs[0].Type, errs[0].Field, tt.wantType, tt.wantPath)
			}
			if !strings.Contains(errs[0].Error(), tt.detail) {
				t.Errorf("error %q does not contain %q", errs[0], tt.detail)
			}
		})
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	sp := &ServiceProfile{}
	sp.Name = "nope"
	sp.Spec.Routes = []*RouteSpec{{}, nil, {Name: "x", Condition: &RequestMatch{Method: "GET"}, Timeout: "soon"}}
	sp.Spec.RetryBudget = &RetryBudget{RetryRatio: -1}
	var got []string
	for _, e := range ValidateServiceProfile(sp, clusterDomain) {
		got = append(got, e.Field)
	}
	want := []string{"metadata.name", "spec.routes[0].name", "spec.routes[0].condition", "spec.routes[1]",
		"spec.routes[2].timeout", "spec.retryBudget.retryRatio", "spec.retryBudget.ttl"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("error paths = %v, want %v", got, want)
	}
}

func TestRegexProgramSize(t *testing.T) {
	// Go's regexp is RE2; these must agree with what Envoy compiles.
	for _, re := range []string{`/books/[^/]*\.json`, `/emojivoto\.v1\.VotingService/VoteManInBusinessSuitLevitating`, `(?i)/api/v[0-9]+/.*`} {
		if err := checkPathRegex(re); err != nil {
			t.Errorf("%s: %v", re, err)
		}
	}
	if err := checkPathRegex(strings.Repeat("(a|b)", 60)); err == nil {
		t.Error("a regex far over Envoy's program size limit was accepted")
	}
}

func TestWeightMilli(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1", want: 1000},
		{in: "500m", want: 500},
		{in: "0.5", want: 500},
		{in: "1.001", want: 1001},
		{in: "1k", want: 1000000},
		{in: "4294967295m", want: 4294967295},
		{in: "4294967296m", wantErr: "at most"},
		{in: "1E300", wantErr: "at most"},
		{in: "1.0001", wantErr: "whole number"},
		{in: "1n", wantErr: "whole number"},
		{in: "1000000n", want: 1},
		{in: "-1", wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := WeightMilli(resource.MustParse(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WeightMilli(%s) = %d, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("WeightMilli(%s) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseAuthority(t *testing.T) {
	tests := []struct {
		in            string
		svc, ns       string
		port          uint32
		wantErrSubstr string
	}{
		{in: "web.ns.svc.cluster.local:8080", svc: "web", ns: "ns", port: 8080},
		{in: "web.ns.svc.cluster.local", svc: "web", ns: "ns"},
		{in: "web.ns.svc.cluster.local:http", wantErrSubstr: "port"},
		{in: "web.ns.svc.cluster.local:70000", wantErrSubstr: "port"},
		{in: "web.ns:80", wantErrSubstr: "authority must be"},
		{in: "web.ns.svc.other.local:80", wantErrSubstr: "authority must be"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			svc, ns, port, err := ParseAuthority(tt.in, clusterDomain)
			if tt.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErrSubstr)
				}
				return
			}
			if err != nil || svc != tt.svc || ns != tt.ns || port != tt.port {
				t.Errorf("= %q %q %d %v", svc, ns, port, err)
			}
		})
	}
}

func TestServiceProfileFromUnstructured(t *testing.T) {
	for name, data := range readTestdata(t, "good/*.yaml") {
		t.Run(name, func(t *testing.T) {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal(data, &u.Object); err != nil {
				t.Fatal(err)
			}
			fromU, err := ServiceProfileFromUnstructured(&u)
			if err != nil {
				t.Fatal(err)
			}
			fromYAML, err := DecodeServiceProfile(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromU, fromYAML) {
				t.Errorf("unstructured and YAML decode differ:\n%+v\n%+v", fromU, fromYAML)
			}
		})
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
		"metadata": map[string]any{"name": "a.b.svc.cluster.local", "namespace": "b"},
		"spec":     map[string]any{"routez": []any{}},
	}}
	if _, err := ServiceProfileFromUnstructured(u); err == nil || !strings.Contains(err.Error(), `unknown field "spec.routez"`) {
		t.Errorf("unknown field accepted or badly reported: %v", err)
	}
}

func TestDeepCopyServiceProfile(t *testing.T) {
	sp, err := DecodeServiceProfile(readTestdata(t, "good/*.yaml")["client-override-dstoverrides.yaml"])
	if err != nil {
		t.Fatal(err)
	}
	sp.Spec.RetryBudget = &RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 1, TTL: "1s"}
	sp.Spec.Routes[0].Condition.All = []*RequestMatch{{Not: &RequestMatch{Method: "GET"}}}
	sp.Spec.Routes[0].ResponseClasses = []*ResponseClass{{Condition: &ResponseMatch{Status: &Range{Min: 500}}}}
	sp.Labels = map[string]string{"a": "b"}

	cp := sp.DeepCopy()
	if !reflect.DeepEqual(cp, sp) {
		t.Fatal("copy differs from original")
	}
	obj := sp.DeepCopyObject()
	if !reflect.DeepEqual(obj, sp) {
		t.Fatal("DeepCopyObject differs from original")
	}

	// Mutate every level of the copy; the original must not change.
	cp.Labels["a"] = "changed"
	cp.Spec.Routes[0].Name = "changed"
	cp.Spec.Routes[0].Condition.All[0].Not.Method = "POST"
	cp.Spec.Routes[0].ResponseClasses[0].Condition.Status.Min = 400
	cp.Spec.RetryBudget.TTL = "2s"
	cp.Spec.DstOverrides[0].Authority = "changed"
	cp.Spec.DstOverrides[0].Weight.Add(resource.MustParse("1"))
	delete(cp.Spec.OpaquePorts, 3306)

	switch {
	case sp.Labels["a"] != "b",
		sp.Spec.Routes[0].Name != "GET /books/{id}",
		sp.Spec.Routes[0].Condition.All[0].Not.Method != "GET",
		sp.Spec.Routes[0].ResponseClasses[0].Condition.Status.Min != 500,
		sp.Spec.RetryBudget.TTL != "1s",
		sp.Spec.DstOverrides[0].Authority != "webapp.booksapp.svc.cluster.local:7000",
		sp.Spec.DstOverrides[0].Weight.String() != "500m",
		len(sp.Spec.OpaquePorts) != 1:
		t.Errorf("mutating the copy changed the original: %+v", sp)
	}

	list := &ServiceProfileList{Items: []ServiceProfile{*sp}}
	lc := list.DeepCopyObject().(*ServiceProfileList)
	lc.Items[0].Spec.Routes[0].Name = "changed"
	if list.Items[0].Spec.Routes[0].Name == "changed" {
		t.Error("list copy shares routes")
	}
}

// Linkerd still serves the deprecated v1alpha1 with the same schema, and so
// does the CRD here: old manifests must keep working.
func TestDecodeServiceProfileV1alpha1(t *testing.T) {
	data := []byte("apiVersion: linkerd.io/v1alpha1\nkind: ServiceProfile\nmetadata: {name: web.ns.svc.cluster.local, namespace: ns}\nspec:\n" + okRoute)
	sp, err := DecodeServiceProfile(data)
	if err != nil {
		t.Fatal(err)
	}
	if sp.APIVersion != "linkerd.io/v1alpha1" || len(sp.Spec.Routes) != 1 {
		t.Errorf("decoded %+v", sp)
	}
	if errs := ValidateServiceProfile(sp, clusterDomain); len(errs) > 0 {
		t.Error(errs)
	}
}
