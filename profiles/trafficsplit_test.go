package profiles

import (
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

func TestDecodeTrafficSplit(t *testing.T) {
	files := readTestdata(t, "trafficsplits/*.yaml")
	tests := []struct {
		file string
		want *TrafficSplit
	}{
		{
			file: "v1alpha1-canary.yaml",
			want: &TrafficSplit{
				Version:    TrafficSplitV1alpha1,
				ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: "test"},
				Service:    "podinfo",
				Backends:   []SplitBackend{{Service: "podinfo-primary", Weight: 900}, {Service: "podinfo-canary", Weight: 100}},
			},
		},
		{
			file: "v1alpha2-web.yaml",
			want: &TrafficSplit{
				Version:    TrafficSplitV1alpha2,
				ObjectMeta: metav1.ObjectMeta{Name: "web-svc-ts", Namespace: "emojivoto"},
				Service:    "web-svc",
				Backends:   []SplitBackend{{Service: "web-svc", Weight: 500}, {Service: "web-svc-2", Weight: 500}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := DecodeTrafficSplit(files[tt.file])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeTrafficSplit =\n%+v\nwant\n%+v", got, tt.want)
			}
			if errs := ValidateTrafficSplit(got); len(errs) > 0 {
				t.Errorf("valid split rejected: %v", errs)
			}

			var u unstructured.Unstructured
			if err := yaml.Unmarshal(files[tt.file], &u.Object); err != nil {
				t.Fatal(err)
			}
			fromU, err := TrafficSplitFromUnstructured(&u)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromU, tt.want) {
				t.Errorf("TrafficSplitFromUnstructured =\n%+v\nwant\n%+v", fromU, tt.want)
			}
		})
	}
}

func splitYAML(version, backends string) []byte {
	return []byte("apiVersion: split.smi-spec.io/" + version + "\nkind: TrafficSplit\nmetadata: {name: s, namespace: ns}\n" +
		"spec:\n  service: web\n  backends:\n" + backends)
}

func TestBadTrafficSplits(t *testing.T) {
	tests := []struct {
		name      string
		yaml      []byte
		decodeErr []string
		wantPaths []string
	}{
		{name: "v1alpha1 weight finer than milli", yaml: splitYAML("v1alpha1", "  - {service: a, weight: 1u}\n"),
			decodeErr: []string{"spec.backends[0].weight", "whole number of milli-units", `TrafficSplit "s" in namespace "ns" (split.smi-spec.io/v1alpha1)`}},
		{name: "v1alpha1 weight not a quantity", yaml: splitYAML("v1alpha1", "  - {service: a, weight: half}\n"),
			decodeErr: []string{"spec.backends[0].weight", "not a Kubernetes quantity"}},
		{name: "v1alpha2 weight neither integer nor quantity", yaml: splitYAML("v1alpha2", "  - {service: a, weight: half}\n"),
			decodeErr: []string{"spec.backends[0].weight", "not an integer nor a Kubernetes quantity"}},
		{name: "v1alpha2 fractional weight", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 1.5}\n"),
			decodeErr: []string{"weight"}},
		{name: "unknown field", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 1, port: 80}\n"),
			decodeErr: []string{`unknown field "spec.backends[0].port"`}},
		{name: "matches is v1alpha3, not supported", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 1}\n  matches: []\n"),
			decodeErr: []string{`unknown field "spec.matches"`}},
		{name: "unsupported version", yaml: splitYAML("v1alpha3", "  - {service: a, weight: 1}\n"),
			decodeErr: []string{`apiVersion is "split.smi-spec.io/v1alpha3"`}},
		{name: "weight missing", yaml: splitYAML("v1alpha2", "  - {service: a}\n"),
			decodeErr: []string{"spec.backends[0].weight: Required value"}},
		{name: "service missing", yaml: []byte("apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s}\nspec:\n  backends: [{service: a, weight: 1}]\n"),
			decodeErr: []string{"spec.service: Required value"}},

		{name: "negative weight", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 1}\n  - {service: b, weight: -1}\n"),
			wantPaths: []string{"spec.backends[1].weight"}},
		{name: "negative quantity", yaml: splitYAML("v1alpha1", "  - {service: a, weight: -100m}\n"),
			wantPaths: []string{"spec.backends[0].weight"}},
		{name: "weight too large", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 4294967296}\n"),
			wantPaths: []string{"spec.backends[0].weight"}},
		{name: "sum too large", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 4294967295}\n  - {service: b, weight: 1}\n"),
			wantPaths: []string{"spec.backends"}},
		{name: "all zero", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 0}\n"),
			wantPaths: []string{"spec.backends"}},
		{name: "no backends", yaml: splitYAML("v1alpha2", "    []\n"),
			wantPaths: []string{"spec.backends"}},
		{name: "duplicate backend", yaml: splitYAML("v1alpha2", "  - {service: a, weight: 1}\n  - {service: a, weight: 2}\n"),
			wantPaths: []string{"spec.backends[1].service"}},
		{name: "bad backend name", yaml: splitYAML("v1alpha2", "  - {service: A_b, weight: 1}\n"),
			wantPaths: []string{"spec.backends[0].service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := DecodeTrafficSplit(tt.yaml)
			if tt.decodeErr != nil {
				if err == nil {
					t.Fatalf("decoded %+v, want an error", ts)
				}
				for _, want := range tt.decodeErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, e := range ValidateTrafficSplit(ts) {
				paths = append(paths, e.Field)
			}
			if !reflect.DeepEqual(paths, tt.wantPaths) {
				t.Errorf("error paths = %v, want %v", paths, tt.wantPaths)
			}
		})
	}
}

// A v1alpha1 object read back through v1alpha2 (no conversion webhook: the
// API server only rewrites apiVersion) carries quantity strings.
func TestDecodeTrafficSplitV1alpha2WithQuantities(t *testing.T) {
	tests := []struct {
		name     string
		backends string
		want     []int64
	}{
		{name: "integers stay integers", backends: "  - {service: a, weight: 4294967295}\n  - {service: b, weight: 0}\n", want: []int64{4294967295, 0}},
		{name: "all strings: milli-units", backends: "  - {service: a, weight: 900m}\n  - {service: b, weight: '100m'}\n", want: []int64{900, 100}},
		{name: "mixed: all milli-units", backends: "  - {service: a, weight: 500m}\n  - {service: b, weight: 1}\n", want: []int64{500, 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := DecodeTrafficSplit(splitYAML("v1alpha2", tt.backends))
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, b := range ts.Backends {
				got = append(got, b.Weight)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("weights = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidateTrafficSplitEmpty(t *testing.T) {
	errs := ValidateTrafficSplit(&TrafficSplit{})
	want := field.ErrorList{
		field.Required(field.NewPath("spec", "service"), "the apex service clients address"),
		field.Required(field.NewPath("spec", "backends"), "a split needs at least one backend"),
	}
	if !reflect.DeepEqual(errs, want) {
		t.Errorf("errors = %v, want %v", errs, want)
	}
}

func TestDeepCopyTrafficSplit(t *testing.T) {
	ts := &TrafficSplit{
		Version:    TrafficSplitV1alpha2,
		ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: map[string]string{"a": "b"}},
		Service:    "web",
		Backends:   []SplitBackend{{Service: "a", Weight: 1}},
	}
	cp := ts.DeepCopy()
	if !reflect.DeepEqual(cp, ts) {
		t.Fatal("copy differs")
	}
	cp.Backends[0].Weight = 2
	cp.Labels["a"] = "c"
	if ts.Backends[0].Weight != 1 || ts.Labels["a"] != "b" {
		t.Error("copy shares memory with the original")
	}

	v1, err := DecodeTrafficSplit(readTestdata(t, "trafficsplits/*.yaml")["v1alpha1-canary.yaml"])
	if err != nil {
		t.Fatal(err)
	}
	typed := &TrafficSplitV1{Spec: TrafficSplitV1Spec{Service: v1.Service, Backends: []TrafficSplitV1Backend{{Service: "a"}}}}
	typed.Spec.Backends[0].Weight.SetMilli(900)
	obj := typed.DeepCopyObject().(*TrafficSplitV1)
	obj.Spec.Backends[0].Weight.SetMilli(1)
	obj.Spec.Backends[0].Service = "b"
	if typed.Spec.Backends[0].Weight.MilliValue() != 900 || typed.Spec.Backends[0].Service != "a" {
		t.Error("TrafficSplitV1 copy shares memory with the original")
	}
	v2 := &TrafficSplitV2List{Items: []TrafficSplitV2{{Spec: TrafficSplitV2Spec{Backends: []TrafficSplitV2Backend{{Service: "a", Weight: 1}}}}}}
	v2c := v2.DeepCopyObject().(*TrafficSplitV2List)
	v2c.Items[0].Spec.Backends[0].Weight = 5
	if v2.Items[0].Spec.Backends[0].Weight != 1 {
		t.Error("TrafficSplitV2List copy shares memory with the original")
	}
}
