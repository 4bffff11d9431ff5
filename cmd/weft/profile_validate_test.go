package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	validProfile = `apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web.ns.svc.cluster.local, namespace: ns}
spec:
  routes:
  - name: books
    condition: {method: GET, pathRegex: '/books/[^/]*'}
    timeout: 2s
`
	validSplit = `apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: web, namespace: ns}
spec:
  service: web
  backends:
  - {service: web-v1, weight: 900m}
  - {service: web-v2, weight: 100m}
`
	service = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec:
  ports: [{port: 80}]
`
	// invalidProfile is wrong in three places.
	invalidProfile = `apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web.ns.svc.cluster.local, namespace: ns}
spec:
  routes:
  - name: ok
    condition: {method: GET}
  - name: bad
    condition: {pathRegex: '/api/(?=books)'}
    timeout: one-second
    tmeout: 1s
`
)

func TestProfileValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", service+"---\n"+validProfile+"---\n"+validSplit)
	bad := write("bad.yaml", validProfile+"---\n"+invalidProfile)
	json := write("split.json", `{"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": {"name": "s"},
 "spec": {"service": "web", "backends": [{"service": "a", "weight": -1}, {"service": "b", "weight": 1}]}}`)
	broken := write("broken.yaml", validProfile+"---\nspec:\n  routes: [\n")
	text := write("notes.txt", "just some notes\n")
	tests := []struct {
		name    string
		args    []string
		stdin   string
		wantOut string
		wantErr string // "" when the command succeeds
	}{
		{name: "valid files", args: []string{good}, wantOut: "OK: 1 ServiceProfile, 1 TrafficSplit (1 object of other kinds skipped)\n"},
		{name: "every error of every document", args: []string{good, bad, json}, wantErr: "2 of 5 objects invalid",
			wantOut: bad + ": document 2 (ServiceProfile web.ns.svc.cluster.local): spec.routes[1].tmeout: Forbidden: unknown field: the ServiceProfile schema has no such field (names are case-sensitive)\n" +
				bad + ": document 2 (ServiceProfile web.ns.svc.cluster.local): spec.routes[1].condition.pathRegex: Invalid value: \"/api/(?=books)\": not a valid RE2 regular expression: error parsing regexp: invalid or unsupported Perl syntax: `(?=`\n" +
				bad + ": document 2 (ServiceProfile web.ns.svc.cluster.local): spec.routes[1].timeout: Invalid value: \"one-second\": route \"bad\" has an invalid timeout: time: invalid duration \"one-second\"\n" +
				json + ": document 1 (TrafficSplit s): spec.backends[0].weight: Invalid value: -1: must not be negative\n"},
		{name: "stdin", args: []string{"-"}, stdin: invalidProfile, wantErr: "1 of 1 objects invalid",
			wantOut: "<stdin>: document 1 (ServiceProfile web.ns.svc.cluster.local): spec.routes[1].tmeout: Forbidden: unknown field: the ServiceProfile schema has no such field (names are case-sensitive)\n" +
				"<stdin>: document 1 (ServiceProfile web.ns.svc.cluster.local): spec.routes[1].condition.pathRegex: Invalid value: \"/api/(?=books)\": not a valid RE2 regular expression: error parsing regexp: invalid or unsupported Perl syntax: `(?=`\n" +
				"<stdin>: document 1 (ServiceProfile web.ns.svc.cluster.local): spec.routes[1].timeout: Invalid value: \"one-second\": route \"bad\" has an invalid timeout: time: invalid duration \"one-second\"\n"},
		{name: "other cluster domain", args: []string{"--cluster-domain", "example.org", good}, wantErr: "1 of 2 objects invalid",
			wantOut: good + ": document 2 (ServiceProfile web.ns.svc.cluster.local): metadata.name: Invalid value: \"web.ns.svc.cluster.local\": must be <service>.<namespace>.svc.example.org\n"},
		{name: "not YAML", args: []string{good, broken}, wantErr: broken + ": not YAML or JSON: yaml: line 11: did not find expected node content"},
		{name: "not an object", args: []string{text}, wantErr: text + ": document 1 (line 1): want a Kubernetes object (a mapping with apiVersion and kind), found a plain value (!!str)"},
		{name: "duplicate key", args: []string{"-"}, stdin: validProfile + "---\n" + strings.Replace(validProfile, "    timeout: 2s\n", "    timeout: 2s\n    timeout: 3s\n", 1),
			wantErr: `<stdin>: document 2: line 18: key "timeout" already set on line 17`},
		{name: "nothing to check", args: []string{"-"}, stdin: service, wantErr: "no ServiceProfile or TrafficSplit found (1 object of other kinds)"},
		{name: "missing file", args: []string{filepath.Join(dir, "absent.yaml")}, wantErr: "reading " + filepath.Join(dir, "absent.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runStdin(t, tt.stdin, append([]string{"profile", "validate"}, tt.args...)...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none; output:\n%s", err, out)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q; output:\n%s", err, tt.wantErr, out)
			}
			if out != tt.wantOut {
				t.Errorf("output:\n%s\nwant:\n%s", out, tt.wantOut)
			}
		})
	}
}
