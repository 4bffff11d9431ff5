package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/injector"
	"github.com/weftmesh/weft/mesh"
)

// injectOptions are the flags of `weft inject`; all but manual shape the
// sidecar --manual writes, as cp's flags shape the webhook's.
type injectOptions struct {
	manual       bool
	proxyImage   string
	captureImage string
	logLevel     string
	xdsAddress   string
	serverName   string
	bundleFile   string
}

func newInjectCommand() *cobra.Command {
	var o injectOptions
	cmd := &cobra.Command{
		Use:   "inject [file|dir|-]...",
		Short: "Add Weft's injection annotation (or, with --manual, the sidecar) to Kubernetes YAML",
		Long: `inject reads Kubernetes YAML from files, directories (their .yaml, .yml and
.json files, recursively) or stdin ("-" or no argument): multi-document
streams and List kinds. It prints it back with weft.io/inject: enabled on
every Namespace and on the pod template of every Deployment, StatefulSet,
DaemonSet, ReplicaSet, Job, CronJob and Pod, so the webhook injects them; with
--manual the pod templates get the sidecar itself, exactly as the webhook
would make it. Each resource is reported on stderr; the rest of the YAML
keeps its order and comments.

  kubectl get deploy -n emojivoto -o yaml | weft inject - | kubectl apply -f -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := o.injector()
			if err != nil {
				return err
			}
			return transformInputs(cmd, args, transformer{
				template:  func(t *podTemplate) (string, []string) { return injectTemplate(t, in, o.manual) },
				namespace: annotateNamespace,
			})
		},
		SilenceUsage: true,
	}
	def := injector.DefaultConfig()
	f := cmd.Flags()
	f.BoolVar(&o.manual, "manual", false, "write the sidecar into the pod templates instead of the annotation")
	f.StringVar(&o.proxyImage, "proxy-image", def.ProxyImage, "Envoy image (with --manual)")
	f.StringVar(&o.captureImage, "capture-image", def.CaptureImage, "traffic capture image (with --manual)")
	f.StringVar(&o.logLevel, "proxy-log-level", def.LogLevel, "Envoy log level (with --manual)")
	f.StringVar(&o.xdsAddress, "proxy-xds-address", def.ControlPlaneAddress, "xDS address the proxy dials (with --manual)")
	f.StringVar(&o.serverName, "xds-server-name", "", "TLS name of the xDS server; empty: plaintext xDS, as cp without --identity (with --manual)")
	f.StringVar(&o.bundleFile, "trust-bundle-file", "", "PEM trust anchors verifying the xDS server, required with --xds-server-name (with --manual)")
	return cmd
}

func (o injectOptions) injector() (*injector.Injector, error) {
	cfg := injector.DefaultConfig()
	cfg.ProxyImage, cfg.CaptureImage, cfg.LogLevel = o.proxyImage, o.captureImage, o.logLevel
	cfg.ControlPlaneAddress, cfg.ServerName = o.xdsAddress, o.serverName
	cfg.Version = version
	if !slices.Contains(mesh.EnvoyLogLevels, o.logLevel) {
		return nil, fmt.Errorf("--proxy-log-level %q: not one of %s", o.logLevel, strings.Join(mesh.EnvoyLogLevels, ", "))
	}
	if o.serverName != "" {
		if o.bundleFile == "" {
			return nil, errors.New("--xds-server-name needs --trust-bundle-file: the proxy must verify the server it names")
		}
		pem, err := os.ReadFile(o.bundleFile)
		if err != nil {
			return nil, fmt.Errorf("reading the trust bundle: %w", err)
		}
		cfg.TrustBundlePEM = pem
	}
	return injector.New(cfg)
}

func newUninjectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "uninject [file|dir|-]...",
		Short: "Remove Weft's sidecar and injection annotation from Kubernetes YAML",
		Long: `uninject reads YAML as inject does and removes what inject (with or without
--manual) or the webhook added: the proxy and capture containers, the token
volume, the annotations recording the injection and weft.io/inject: enabled.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return transformInputs(cmd, args, transformer{template: uninjectTemplate, namespace: unannotateNamespace})
		},
		SilenceUsage: true,
	}
}

// transformer is what inject or uninject does to a pod template and to a
// Namespace's metadata; each returns the outcome reported ("injected",
// "skipped: <why>") and warnings.
type transformer struct {
	template  func(*podTemplate) (string, []string)
	namespace func(*metav1.ObjectMeta) string
}

func annotateNamespace(meta *metav1.ObjectMeta) string {
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[mesh.AnnotationInject] = mesh.InjectEnabled
	return "annotated"
}

func unannotateNamespace(meta *metav1.ObjectMeta) string {
	if meta.Annotations[mesh.AnnotationInject] != mesh.InjectEnabled {
		return "skipped: not annotated"
	}
	delete(meta.Annotations, mesh.AnnotationInject)
	if len(meta.Annotations) == 0 {
		meta.Annotations = nil
	}
	return "uninjected"
}

// podTemplate is one pod (template) found in a document, decoded; the
// transform changes it and the YAML node follows.
type podTemplate struct {
	template corev1.PodTemplateSpec
	// namespace is the resource's namespace, for the injector's decisions.
	namespace string
}

// injectTemplate annotates the template, or with manual injects it; both
// are decided, and warned about, by the webhook's Inject, so a template the
// webhook would skip is reported skipped either way.
func injectTemplate(t *podTemplate, in *injector.Injector, manual bool) (string, []string) {
	meta := &t.template.ObjectMeta
	if meta.Annotations[mesh.AnnotationInject] == mesh.InjectDisabled || meta.Annotations[mesh.LinkerdAnnotationInject] == mesh.InjectDisabled {
		return "skipped: " + injector.SkipDisabled, nil
	}
	pod := &corev1.Pod{ObjectMeta: *meta.DeepCopy(), Spec: t.template.Spec}
	pod.Namespace = t.namespace
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[mesh.AnnotationInject] = mesh.InjectEnabled
	res, warnings := in.Inject(pod, nil)
	if res.Pod == nil {
		return "skipped: " + res.Skipped, warnings
	}
	if !manual {
		t.template.Annotations = pod.Annotations
		return "injected", warnings
	}
	res.Pod.Namespace = meta.Namespace
	t.template.ObjectMeta, t.template.Spec = res.Pod.ObjectMeta, res.Pod.Spec
	return "injected", warnings
}

func uninjectTemplate(t *podTemplate) (string, []string) {
	pod := &corev1.Pod{ObjectMeta: t.template.ObjectMeta, Spec: t.template.Spec}
	changed := injector.Uninject(pod)
	// "disabled" is the user's, not something inject wrote.
	if pod.Annotations[mesh.AnnotationInject] == mesh.InjectEnabled {
		delete(pod.Annotations, mesh.AnnotationInject)
		changed = true
	}
	if len(pod.Annotations) == 0 {
		pod.Annotations = nil
	}
	if !changed {
		return "skipped: not injected", nil
	}
	t.template.ObjectMeta, t.template.Spec = pod.ObjectMeta, pod.Spec
	return "uninjected", nil
}

// transformInputs runs transform on every pod template of the inputs and
// writes the result to stdout only when every document parsed: nothing is
// half written.
func transformInputs(cmd *cobra.Command, args []string, transform transformer) error {
	if len(args) == 0 {
		args = []string{"-"}
	}
	var out, report bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	for _, arg := range args {
		files, err := inputFiles(arg)
		if err != nil {
			return err
		}
		for _, file := range files {
			var r io.Reader = cmd.InOrStdin()
			name := "stdin"
			if file != "-" {
				data, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("reading %s: %w", file, err)
				}
				r, name = bytes.NewReader(data), file
			}
			if err := transformStream(r, name, enc, &report, transform); err != nil {
				return err
			}
		}
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("writing YAML: %w", err)
	}
	if _, err := cmd.OutOrStdout().Write(out.Bytes()); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	_, err := cmd.ErrOrStderr().Write(report.Bytes())
	return err
}

// inputFiles expands a directory into its YAML and JSON files, sorted.
func inputFiles(arg string) ([]string, error) {
	if arg == "-" {
		return []string{"-"}, nil
	}
	info, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{arg}, nil
	}
	var files []string
	err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", arg, err)
	}
	slices.Sort(files)
	return files, nil
}

func transformStream(r io.Reader, name string, enc *yaml.Encoder, report io.Writer, transform transformer) error {
	dec := yaml.NewDecoder(r)
	for doc := 1; ; doc++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", name, doc, err)
		}
		if len(node.Content) == 0 {
			continue
		}
		if err := transformResource(node.Content[0], report, transform); err != nil {
			return fmt.Errorf("%s: document %d (line %d): %w", name, doc, node.Content[0].Line, err)
		}
		if err := enc.Encode(&node); err != nil {
			return fmt.Errorf("%s: document %d: writing: %w", name, doc, err)
		}
	}
}

// templatePaths are where each kind keeps its pod template.
var templatePaths = map[string][]string{
	"Pod":         nil,
	"Deployment":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"DaemonSet":   {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
}

func transformResource(res *yaml.Node, report io.Writer, transform transformer) error {
	if res.Kind != yaml.MappingNode {
		return fmt.Errorf("not a Kubernetes object (a YAML %s)", nodeKindName(res.Kind))
	}
	kind := mapValue(res, "kind")
	var meta struct{ Name, Namespace string }
	if m := mapValue(res, "metadata"); m != nil {
		_ = m.Decode(&meta)
	}
	if kind == nil {
		return errors.New(`no "kind"`)
	}
	label := fmt.Sprintf("%s %q", strings.ToLower(kind.Value), meta.Name)
	switch k := kind.Value; {
	case strings.HasSuffix(k, "List"):
		items := mapValue(res, "items")
		if items == nil || items.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range items.Content {
			if err := transformResource(item, report, transform); err != nil {
				return fmt.Errorf("items[%d]: %w", i, err)
			}
		}
		return nil
	case k == "Namespace":
		return transformNamespace(res, label, report, transform)
	}
	path, ok := templatePaths[kind.Value]
	if !ok {
		fmt.Fprintf(report, "%s skipped: not a workload\n", label)
		return nil
	}
	node := res
	for _, key := range path {
		if node = mapValue(node, key); node == nil {
			return fmt.Errorf("no pod template at %s", strings.Join(path, "."))
		}
	}
	t := &podTemplate{namespace: meta.Namespace}
	if err := decodeNode(node, &t.template); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(append(path, ""), "."), err)
	}
	before, err := generic(t.template)
	if err != nil {
		return err
	}
	outcome, warnings := transform.template(t)
	after, err := generic(t.template)
	if err != nil {
		return err
	}
	if err := mergeNode(node, before, after); err != nil {
		return err
	}
	fmt.Fprintf(report, "%s %s\n", label, outcome)
	for _, w := range warnings {
		fmt.Fprintf(report, "%s: warning: %s\n", label, w)
	}
	return nil
}

func transformNamespace(res *yaml.Node, label string, report io.Writer, transform transformer) error {
	metaNode := mapValue(res, "metadata")
	if metaNode == nil {
		return errors.New(`no "metadata"`)
	}
	var meta metav1.ObjectMeta
	if err := decodeNode(metaNode, &meta); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	before, err := generic(meta)
	if err != nil {
		return err
	}
	outcome := transform.namespace(&meta)
	after, err := generic(meta)
	if err != nil {
		return err
	}
	if err := mergeNode(metaNode, before, after); err != nil {
		return err
	}
	fmt.Fprintf(report, "%s %s\n", label, outcome)
	return nil
}

func nodeKindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "sequence"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// decodeNode reads a YAML node into a Kubernetes type, by its JSON names.
func decodeNode(n *yaml.Node, into any) error {
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	// Not strict: a field the types do not know is left alone, not refused
	// (mergeNode keeps what it does not understand).
	return sigsyaml.Unmarshal(data, into)
}

// generic is v as JSON sees it, with whole numbers as int64 so they print
// as integers, and without what the types write for nothing: nulls
// (creationTimestamp) and empty metadata and resources, so that a template
// without metadata keeps none after inject and uninject. (Other empty maps
// mean something: emptyDir: {}.)
func generic(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return normalize(out), nil
}

func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalize(e)
			if m, ok := t[k].(map[string]any); t[k] == nil || (ok && len(m) == 0 && (k == "metadata" || k == "resources")) {
				delete(t, k)
			}
		}
	case []any:
		for i, e := range t {
			t[i] = normalize(e)
		}
	case float64:
		if t == float64(int64(t)) {
			return int64(t)
		}
	}
	return v
}

// mergeNode changes n, whose value is old, into new, touching only what
// differs: untouched keys keep their order, style and comments, and list
// items with a "name" (containers, volumes) are matched by it.
func mergeNode(n *yaml.Node, old, new any) error {
	if reflect.DeepEqual(old, new) {
		return nil
	}
	oldMap, okOld := old.(map[string]any)
	newMap, okNew := new.(map[string]any)
	if n.Kind == yaml.MappingNode && okOld && okNew {
		var content []*yaml.Node
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			seen[key.Value] = true
			nv, inNew := newMap[key.Value]
			ov, inOld := oldMap[key.Value]
			switch {
			case !inNew && inOld:
				continue // removed
			case !inNew:
				// Something the Kubernetes types do not carry (a null, an
				// unknown field): not ours to change.
			case inOld:
				if err := mergeNode(val, ov, nv); err != nil {
					return err
				}
			default:
				if err := replaceNode(val, nv); err != nil {
					return err
				}
			}
			content = append(content, key, val)
		}
		keys := make([]string, 0, len(newMap))
		for k := range newMap {
			if !seen[k] {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			val, err := encodeGeneric(newMap[k])
			if err != nil {
				return err
			}
			content = append(content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, val)
		}
		n.Content = content
		return nil
	}
	oldList, okOld := old.([]any)
	newList, okNew := new.([]any)
	if n.Kind == yaml.SequenceNode && okOld && okNew && len(oldList) == len(n.Content) && named(oldList) && named(newList) {
		byName := map[string]int{}
		for i, e := range oldList {
			byName[e.(map[string]any)["name"].(string)] = i
		}
		content := make([]*yaml.Node, 0, len(newList))
		for _, e := range newList {
			if i, ok := byName[e.(map[string]any)["name"].(string)]; ok {
				if err := mergeNode(n.Content[i], oldList[i], e); err != nil {
					return err
				}
				content = append(content, n.Content[i])
				continue
			}
			val, err := encodeGeneric(e)
			if err != nil {
				return err
			}
			content = append(content, val)
		}
		n.Content = content
		return nil
	}
	return replaceNode(n, new)
}

func named(list []any) bool {
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

// replaceNode sets n to v, keeping the comments around it.
func replaceNode(n *yaml.Node, v any) error {
	val, err := encodeGeneric(v)
	if err != nil {
		return err
	}
	val.HeadComment, val.LineComment, val.FootComment = n.HeadComment, n.LineComment, n.FootComment
	*n = *val
	return nil
}

// encodeGeneric is v as a YAML node with keys sorted, "name" first, as
// Kubernetes manifests are usually written.
func encodeGeneric(v any) (*yaml.Node, error) {
	switch t := v.(type) {
	case map[string]any:
		keys := slices.Sorted(maps.Keys(t))
		if i := slices.Index(keys, "name"); i > 0 {
			keys = append([]string{"name"}, slices.Delete(keys, i, i+1)...)
		}
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, k := range keys {
			val, err := encodeGeneric(t[k])
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, val)
		}
		return n, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range t {
			val, err := encodeGeneric(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, val)
		}
		return n, nil
	}
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return n, nil
}
