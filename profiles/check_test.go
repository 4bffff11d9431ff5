package profiles

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

func TestCheckServiceProfile(t *testing.T) {
	const fqdn = "web.ns.svc.cluster.local"
	tests := []struct {
		name    string
		yaml    []byte
		want    []string // "path type" of each field error, in order
		wantErr string   // a document that cannot be decoded at all
	}{
		{name: "valid", yaml: profileYAML(fqdn, okRoute)},
		{name: "decoding and validation errors together",
			yaml: profileYAML("web", "  routes:\n  - name: r\n    condition: {pathRegex: '(?=a)', Method: GET}\n    timeout: soon\n    timeout: 1s\n"),
			want: []string{"spec.routes[0].condition.Method FieldValueForbidden", "metadata.name FieldValueInvalid", "spec.routes[0].condition.pathRegex FieldValueInvalid"}},
		{name: "duplicate key in JSON",
			yaml: []byte(`{"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile", "metadata": {"name": "web.ns.svc.cluster.local"},
 "spec": {"routes": [{"name": "r", "condition": {"method": "GET"}, "timeout": "0s", "timeout": "1s"}]}}`),
			want: []string{"spec.routes[0].timeout FieldValueDuplicate"}},
		{name: "missing required fields reported once",
			yaml: profileYAML(fqdn, "  routes:\n  - condition: {method: GET}\n  retryBudget: {retryRatio: 0.2}\n"),
			want: []string{"spec.retryBudget.minRetriesPerSecond FieldValueRequired", "spec.retryBudget.ttl FieldValueRequired", "spec.routes[0].name FieldValueRequired"}},
		{name: "bad quantity stops before the typed decode",
			yaml: profileYAML(fqdn, "  dstOverrides:\n  - {authority: a.ns.svc.cluster.local, weight: lots}\n  - {authority: b.ns.svc.cluster.local}\n"),
			want: []string{"spec.dstOverrides[0].weight FieldValueInvalid", "spec.dstOverrides[1].weight FieldValueRequired"}},
		{name: "wrong type", yaml: profileYAML(fqdn, "  routes: {}\n"), wantErr: `ServiceProfile "web.ns.svc.cluster.local" in namespace "ns"`},
		{name: "another kind", yaml: []byte("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"), wantErr: `kind is "Service", want ServiceProfile`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.yaml
			if j[0] != '{' {
				var err error
				if j, err = yaml.YAMLToJSON(tt.yaml); err != nil {
					t.Fatal(err)
				}
			}
			sp, errs, err := CheckServiceProfile(j, clusterDomain)
			checkResult(t, sp != nil, errs, err, tt.want, tt.wantErr)
		})
	}
}

func TestCheckTrafficSplit(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string
		wantErr    string
	}{
		{name: "valid v1alpha1", json: `{"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit", "metadata": {"name": "s"},
 "spec": {"service": "web", "backends": [{"service": "a", "weight": "500m"}, {"service": "b", "weight": "500m"}]}}`},
		{name: "unknown fields and values together", json: `{"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": {"name": "s"},
 "spec": {"service": "web", "matches": [], "backends": [{"service": "a", "weight": -1}, {"service": "a", "weight": 2}]}}`,
			want: []string{"spec.matches FieldValueForbidden", "spec.backends[0].weight FieldValueInvalid", "spec.backends[1].service FieldValueDuplicate"}},
		{name: "missing field", json: `{"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": {"name": "s"}, "spec": {"service": "web"}}`,
			wantErr: "spec.backends: Required value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, errs, err := CheckTrafficSplit([]byte(tt.json))
			checkResult(t, ts != nil, errs, err, tt.want, tt.wantErr)
		})
	}
}

// checkResult compares what a Check function returned with the field
// errors wanted ("path type", in order), or with a decoding error.
func checkResult(t *testing.T, decoded bool, errs field.ErrorList, err error, want []string, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) || decoded {
			t.Fatalf("err = %v (decoded %v), want one containing %q and nothing decoded", err, decoded, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Field+" "+string(e.Type))
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors = %q\nwant %q\n(%v)", got, want, errs)
	}
}
