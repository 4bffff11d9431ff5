package crds

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	schemavalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/profiles"
)

// apiServer does, in-process, what kube-apiserver does with a custom
// resource write: prune unknown fields (reported, as kubectl's default
// Strict field validation does), then OpenAPI schema validation, then the
// CEL rules.
type apiServer struct {
	crd *apiextensions.CustomResourceDefinition
}

func loadCRD(t *testing.T, name string) apiServer {
	t.Helper()
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range all {
		if crd.Name != name {
			continue
		}
		var internal apiextensions.CustomResourceDefinition
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, &internal, nil); err != nil {
			t.Fatal(err)
		}
		return apiServer{crd: &internal}
	}
	t.Fatalf("no CRD %s", name)
	return apiServer{}
}

func (a apiServer) validate(t *testing.T, version string, data []byte) field.ErrorList {
	t.Helper()
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(j, &obj); err != nil {
		t.Fatal(err)
	}
	v, err := apiextensions.GetSchemaForVersion(a.crd, version)
	if err != nil || v == nil {
		t.Fatalf("no schema for %s: %v", version, err)
	}
	structural, err := structuralschema.NewStructural(v.OpenAPIV3Schema)
	if err != nil {
		t.Fatal(err)
	}
	var errs field.ErrorList
	for _, p := range pruning.PruneWithOptions(obj, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		errs = append(errs, field.Forbidden(field.NewPath(p), "unknown field"))
	}
	validator, _, err := schemavalidation.NewSchemaValidator(v.OpenAPIV3Schema)
	if err != nil {
		t.Fatal(err)
	}
	errs = append(errs, schemavalidation.ValidateCustomResource(nil, obj, validator)...)
	celErrs, _ := cel.NewValidator(structural, true, celconfig.PerCallLimit).
		Validate(context.Background(), nil, structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

func TestCRDsAreValid(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d CRDs, want 2", len(all))
	}
	for _, crd := range all {
		t.Run(crd.Name, func(t *testing.T) {
			var internal apiextensions.CustomResourceDefinition
			if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, &internal, nil); err != nil {
				t.Fatal(err)
			}
			// The API server's own CRD validation: structural schema, CEL
			// compilation and cost limits, versions. storedVersions is set
			// by the server on create.
			for _, v := range crd.Spec.Versions {
				if v.Storage {
					internal.Status.StoredVersions = []string{v.Name}
				}
			}
			if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), &internal); len(errs) > 0 {
				t.Fatalf("the API server would refuse this CRD: %v", errs)
			}
			storage := 0
			for _, v := range crd.Spec.Versions {
				if v.Storage {
					storage++
				}
				if !v.Served {
					t.Errorf("version %s not served", v.Name)
				}
				if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					t.Fatalf("version %s has no schema", v.Name)
				}
				assertNoPreserveUnknown(t, v.Name, v.Schema.OpenAPIV3Schema)
			}
			if storage != 1 {
				t.Errorf("%d storage versions", storage)
			}
		})
	}
}

func assertNoPreserveUnknown(t *testing.T, path string, s *apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	if s == nil {
		return
	}
	if s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields {
		t.Errorf("%s: x-kubernetes-preserve-unknown-fields", path)
	}
	for name, p := range s.Properties {
		assertNoPreserveUnknown(t, path+"."+name, &p)
	}
	if s.Items != nil {
		assertNoPreserveUnknown(t, path+"[]", s.Items.Schema)
	}
	if s.AdditionalProperties != nil {
		assertNoPreserveUnknown(t, path+"{}", s.AdditionalProperties.Schema)
	}
}

func testdata(t *testing.T, pattern string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "profiles", "testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata %s: %v", pattern, err)
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

func TestServiceProfileSchemaAcceptsGoodProfiles(t *testing.T) {
	api := loadCRD(t, "serviceprofiles.linkerd.io")
	for name, data := range testdata(t, "good/*.yaml") {
		for _, version := range []string{"v1alpha2", "v1alpha1"} {
			t.Run(name+"/"+version, func(t *testing.T) {
				if errs := api.validate(t, version, data); len(errs) > 0 {
					t.Errorf("schema refuses a good profile: %v", errs)
				}
			})
		}
	}
}

func spYAML(name, spec string) []byte {
	return []byte("apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata:\n  name: " + name +
		"\n  namespace: ns\nspec:\n" + spec)
}

const okRoute = "  routes:\n  - name: r\n    condition: {method: GET}\n"

func TestServiceProfileSchemaRefusesBadProfiles(t *testing.T) {
	const fqdn = "web.ns.svc.cluster.local"
	api := loadCRD(t, "serviceprofiles.linkerd.io")
	tests := []struct {
		name string
		yaml []byte
		// want is a substring of one error, naming its path.
		want string
		// goAlsoRefuses: the Go decoder/validator refuses it too (most cases;
		// a few are the schema's own stricter forms).
		goAlsoRefuses bool
	}{
		{"no spec", []byte("apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: " + fqdn + "}\n"), "spec: Required value", true},
		{"name not an FQDN", spYAML("web", okRoute), "metadata.name must be <service>.<namespace>.svc.<cluster domain>", true},
		{"unknown field", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    timeot: 1s\n"), "spec.routes[0].timeot: Forbidden: unknown field", true},
		{"route without name", spYAML(fqdn, "  routes:\n  - condition: {method: GET}\n"), "spec.routes[0].name: Required value", true},
		{"route without condition", spYAML(fqdn, "  routes:\n  - name: r\n"), "spec.routes[0].condition: Required value", true},
		{"empty condition", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {}\n"), "spec.routes[0].condition: Invalid value", true},
		{"bad method", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: 'GET POST'}\n"), "spec.routes[0].condition.method in body should match", true},
		{"nested bad method", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {all: [{not: {any: [{method: 'a b'}]}}]}\n"), "spec.routes[0].condition.all[0].not.any[0].method", true},
		{"nested too deep", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {not: {not: {not: {not: {not: {method: GET}}}}}}\n"), "spec.routes[0].condition.not.not.not.not.not: Forbidden: unknown field", true},
		{"bad timeout", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    timeout: one-second\n"), "spec.routes[0].timeout in body should match", true},
		{"status below 100", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {status: {min: 99}}\n"), "spec.routes[0].responseClasses[0].condition.status.min: Invalid value: 99: spec.routes[0].responseClasses[0].condition.status.min in body should be greater than or equal to 100", true},
		{"status above 599", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {any: [{status: {max: 600}}]}\n"), "spec.routes[0].responseClasses[0].condition.any[0].status.max", true},
		{"status max below min", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: {status: {min: 500, max: 400}}\n"), "status max must not be smaller than min", true},
		{"response class without condition", spYAML(fqdn, "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - isFailure: true\n"), "spec.routes[0].responseClasses[0].condition: Required value", true},
		{"retry budget incomplete", spYAML(fqdn, "  retryBudget: {retryRatio: 0.2, ttl: 10s}\n"), "spec.retryBudget.minRetriesPerSecond: Required value", true},
		{"negative retry ratio", spYAML(fqdn, "  retryBudget: {retryRatio: -1, minRetriesPerSecond: 1, ttl: 10s}\n"), "spec.retryBudget.retryRatio", true},
		{"bad ttl", spYAML(fqdn, "  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 1, ttl: ten}\n"), "spec.retryBudget.ttl in body should match", true},
		{"bad authority", spYAML(fqdn, "  dstOverrides:\n  - {authority: 'web:80', weight: 1}\n"), "spec.dstOverrides[0].authority in body should match", true},
		{"negative weight", spYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: -1}\n"), "spec.dstOverrides[0].weight", true},
		{"negative quantity", spYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: '-500m'}\n"), "spec.dstOverrides[0].weight in body should match", true},
		{"weight not a quantity", spYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: lots}\n"), "spec.dstOverrides[0].weight in body should match", true},
		{"weight missing", spYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local}\n"), "spec.dstOverrides[0].weight: Required value", true},
		{"opaque port 0", spYAML(fqdn, "  opaquePorts:\n    \"0\": {}\n"), "opaquePorts keys must be port numbers in 1..65535", true},
		{"opaque port not a number", spYAML(fqdn, "  opaquePorts:\n    mysql: {}\n"), "opaquePorts keys must be port numbers in 1..65535", true},
		{"opaque port value not empty", spYAML(fqdn, "  opaquePorts:\n    \"80\": {x: 1}\n"), "spec.opaquePorts.80.x: Forbidden: unknown field", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := api.validate(t, "v1alpha2", tt.yaml)
			if !strings.Contains(errs.ToAggregate().Error(), tt.want) {
				t.Errorf("errors %v\ndo not contain %q", errs, tt.want)
			}
			if !tt.goAlsoRefuses {
				return
			}
			sp, err := profiles.DecodeServiceProfile(tt.yaml)
			if err == nil && len(profiles.ValidateServiceProfile(sp, "cluster.local")) == 0 {
				t.Error("the schema refuses it but the Go validation accepts it")
			}
		})
	}
}

func TestTrafficSplitSchema(t *testing.T) {
	api := loadCRD(t, "trafficsplits.split.smi-spec.io")
	for name, data := range testdata(t, "trafficsplits/*.yaml") {
		version := strings.SplitN(name, "-", 2)[0]
		t.Run(name, func(t *testing.T) {
			if errs := api.validate(t, version, data); len(errs) > 0 {
				t.Errorf("schema refuses a good split: %v", errs)
			}
		})
	}
	ts := func(version, backends string) []byte {
		return []byte("apiVersion: split.smi-spec.io/" + version + "\nkind: TrafficSplit\nmetadata: {name: s, namespace: ns}\n" +
			"spec:\n  service: web\n  backends:\n" + backends)
	}
	tests := []struct {
		name, version string
		yaml          []byte
		want          string // "" means accepted
	}{
		{"v1alpha2 integers", "v1alpha2", ts("v1alpha2", "  - {service: a, weight: 900}\n  - {service: b, weight: 4294967295}\n"), ""},
		// What a v1alpha1 object looks like read back as v1alpha2; an update
		// through v1alpha2 must still pass.
		{"v1alpha2 quantity string", "v1alpha2", ts("v1alpha2", "  - {service: a, weight: 900m}\n"), ""},
		{"v1alpha1 integer", "v1alpha1", ts("v1alpha1", "  - {service: a, weight: 1}\n"), ""},
		{"v1alpha1 quantity", "v1alpha1", ts("v1alpha1", "  - {service: a, weight: 1.5k}\n"), ""},
		{"v1alpha2 weight too large", "v1alpha2", ts("v1alpha2", "  - {service: a, weight: 4294967296}\n"), "spec.backends[0].weight"},
		{"v1alpha2 negative", "v1alpha2", ts("v1alpha2", "  - {service: a, weight: -1}\n"), "spec.backends[0].weight"},
		{"v1alpha1 negative quantity", "v1alpha1", ts("v1alpha1", "  - {service: a, weight: -1m}\n"), "spec.backends[0].weight in body should match"},
		{"v1alpha2 garbage string", "v1alpha2", ts("v1alpha2", "  - {service: a, weight: half}\n"), "spec.backends[0].weight in body should match"},
		{"no backends", "v1alpha2", ts("v1alpha2", "    []\n"), "spec.backends: Invalid value"},
		{"backend weight missing", "v1alpha1", ts("v1alpha1", "  - {service: a}\n"), "spec.backends[0].weight: Required value"},
		{"bad service name", "v1alpha2", ts("v1alpha2", "  - {service: A_b, weight: 1}\n"), "spec.backends[0].service in body should match"},
		{"duplicate backend", "v1alpha2", ts("v1alpha2", "  - {service: a, weight: 1}\n  - {service: a, weight: 1}\n"), "each backend service may appear only once"},
		{"matches (v1alpha3) unknown", "v1alpha2", ts("v1alpha2", "  - {service: a, weight: 1}\n  matches: []\n"), "spec.matches: Forbidden: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := api.validate(t, tt.version, tt.yaml)
			if tt.want == "" {
				if len(errs) > 0 {
					t.Errorf("refused: %v", errs)
				}
				// What the schema accepts, Weft must be able to read.
				if _, err := profiles.DecodeTrafficSplit(tt.yaml); err != nil {
					t.Errorf("schema accepts it, DecodeTrafficSplit does not: %v", err)
				}
				return
			}
			if !strings.Contains(errs.ToAggregate().Error(), tt.want) {
				t.Errorf("errors %v\ndo not contain %q", errs, tt.want)
			}
		})
	}
}
