package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/injector"
	"github.com/weftmesh/weft/mesh"
)

var updateInject = flag.Bool("update", false, "rewrite testdata/inject golden files")

const injectInput = "testdata/inject/multi.yaml"

// runStdin is run with stdin.
func runStdin(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand(func(string) string { return "" }, time.Now)
	var out, errOut bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// weft inject and uninject on a multi-document file (a Namespace, a
// Deployment, a Service, a List of a CronJob and a hostNetwork DaemonSet, a
// Pod with bad annotations and a UDP port): output and report are golden,
// and the same on every run.
func TestInjectGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"multi.annotated", []string{"inject", injectInput}},
		{"multi.manual", []string{"inject", "--manual", injectInput}},
		{"multi.manual.uninjected", []string{"uninject", "testdata/inject/multi.manual.yaml"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			stdout, stderr, err := run(t, nil, tc.args...)
			if err != nil {
				t.Fatalf("%v: %v\n%s", tc.args, err, stderr)
			}
			again, _, _ := run(t, nil, tc.args...)
			if again != stdout {
				t.Fatal("two runs gave different output")
			}
			for ext, got := range map[string]string{".yaml": stdout, ".report": stderr} {
				path := filepath.Join("testdata", "inject", tc.golden+ext)
				if *updateInject {
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to write it)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from the output:\n%s", path, got)
				}
			}
		})
	}
}

// uninject gives back the original file, byte for byte, from both modes.
func TestUninjectRestoresTheOriginal(t *testing.T) {
	original, err := os.ReadFile(injectInput)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range [][]string{{"inject"}, {"inject", "--manual"}} {
		injected, _, err := run(t, nil, append(mode, injectInput)...)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := runStdin(t, injected, "uninject")
		if err != nil {
			t.Fatal(err)
		}
		if back != string(original) {
			t.Errorf("%v then uninject:\n%s\nwant the original:\n%s", mode, back, original)
		}
	}
}

// --manual writes the pod spec the webhook makes: the same Inject, on the
// pod the apiserver would send for the template.
func TestManualInjectIsTheWebhooksPodSpec(t *testing.T) {
	manual, _, err := run(t, nil, "inject", "--manual", injectInput)
	if err != nil {
		t.Fatal(err)
	}
	got := deploymentTemplate(t, manual)
	original, err := os.ReadFile(injectInput)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := deploymentTemplate(t, string(original))
	in, err := injector.New(injector.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Name, pod.Namespace = "web-7d9f8c6b5-x2x9q", "emojivoto"
	ns := &corev1.Namespace{}
	ns.Name, ns.Annotations = "emojivoto", map[string]string{mesh.AnnotationInject: mesh.InjectEnabled}
	res, _ := in.Inject(pod, ns)
	if res.Pod == nil {
		t.Fatalf("the webhook would skip the pod: %s", res.Skipped)
	}
	if !equality.Semantic.DeepEqual(got.Spec, res.Pod.Spec) {
		t.Errorf("--manual pod spec differs from the webhook's:\n%+v\n%+v", got.Spec, res.Pod.Spec)
	}
	for _, k := range []string{mesh.AnnotationCreatedBy, mesh.AnnotationProxyVersionInjected} {
		if got.Annotations[k] != res.Pod.Annotations[k] {
			t.Errorf("annotation %s: --manual %q, webhook %q", k, got.Annotations[k], res.Pod.Annotations[k])
		}
	}
}

func deploymentTemplate(t *testing.T, stream string) corev1.PodTemplateSpec {
	t.Helper()
	for _, doc := range strings.Split(stream, "\n---\n") {
		var d struct {
			Kind string
			Spec struct{ Template corev1.PodTemplateSpec }
		}
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" {
			return d.Spec.Template
		}
	}
	t.Fatal("no Deployment")
	return corev1.PodTemplateSpec{}
}

// Unparseable or non-Kubernetes input is an error naming the document and
// line; nothing is written to stdout, not even the documents before it.
func TestInjectRefusesBadYAML(t *testing.T) {
	good := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
	for _, tc := range []struct {
		name, input string
		want        []string
	}{
		{"a mapping where a value belongs in document 2", good + "---\napiVersion: v1\nkind: Pod\nmetadata: name: b\n", []string{"stdin: document 2", "line 8"}},
		{"an unterminated string at the end", good + "---\nkind: Pod\nmetadata:\n  name: \"b\n", []string{"stdin: document 2", "line 8", "unexpected end of stream"}},
		{"tab indentation in document 1", "kind: Pod\nmetadata:\n\tname: x\n", []string{"stdin: document 1", "line 3"}},
		{"a scalar document", good + "---\njust text\n", []string{"stdin: document 2 (line 6): not a Kubernetes object"}},
		{"no kind", good + "---\nmetadata: {name: x}\n", []string{`document 2 (line 6): no "kind"`}},
		{"a pod spec of the wrong shape", good + "---\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: 3\n", []string{"document 2 (line 6): spec.template."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cmd := range []string{"inject", "uninject"} {
				stdout, _, err := runStdin(t, tc.input, cmd, "-")
				if err == nil {
					t.Fatalf("%s accepted it", cmd)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q lacks %q", cmd, err, w)
					}
				}
				if stdout != "" {
					t.Errorf("%s wrote to stdout despite the error:\n%s", cmd, stdout)
				}
			}
		})
	}
}

// Directories are read recursively in name order; stdin is "-".
func TestInjectReadsDirectoriesAndStdin(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"b.yaml":        "kind: Namespace\nmetadata: {name: b}\n",
		"a/one.yml":     "kind: Namespace\nmetadata: {name: a}\n",
		"ignored.txt":   "kind: Namespace\nmetadata: {name: ignored}\n",
		"c/deploy.json": `{"kind": "Pod", "metadata": {"name": "c"}, "spec": {"containers": [{"name": "app", "image": "x"}]}}`,
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, report, err := runStdin(t, "kind: Namespace\nmetadata: {name: stdin}\n", "inject", dir, "-")
	if err != nil {
		t.Fatal(err)
	}
	want := "namespace \"a\" annotated\nnamespace \"b\" annotated\npod \"c\" injected\nnamespace \"stdin\" annotated\n"
	if report != want {
		t.Errorf("report:\n%s\nwant:\n%s", report, want)
	}
}
