package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// FieldManager is the server-side apply field manager of everything testenv applies.
const FieldManager = "weft-testenv"

// kindTimeout bounds how long Apply waits for a kind to appear in discovery: a CRD applied in
// the same call (or just before) takes a moment to be served.
const kindTimeout = 30 * time.Second

// Decode splits a multi-document YAML (or JSON) stream into objects, skipping empty documents.
func Decode(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding document %d: %w", i, err)
		}
		if len(raw) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{Object: raw}
		if obj.GetKind() == "" || obj.GetAPIVersion() == "" {
			return nil, fmt.Errorf("decoding document %d: apiVersion and kind are required", i)
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("decoding document %d (%s): metadata.name is required", i, obj.GetKind())
		}
		objs = append(objs, obj)
	}
}

// Apply server-side-applies every object in a multi-document YAML stream, in order, and
// returns them as the apiserver stored them. Any kind works, custom resources included;
// namespaced objects without a namespace go to "default".
func (e *Env) Apply(ctx context.Context, manifests []byte) ([]*unstructured.Unstructured, error) {
	objs, err := Decode(manifests)
	if err != nil {
		return nil, err
	}
	applied := make([]*unstructured.Unstructured, 0, len(objs))
	for _, obj := range objs {
		out, err := e.ApplyObject(ctx, obj)
		if err != nil {
			return applied, err
		}
		applied = append(applied, out)
	}
	return applied, nil
}

// ApplyFile is Apply on the contents of a file.
func (e *Env) ApplyFile(ctx context.Context, path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", path, err)
	}
	objs, err := e.Apply(ctx, data)
	if err != nil {
		return objs, fmt.Errorf("applying %s: %w", path, err)
	}
	return objs, nil
}

// ApplyObject server-side-applies one object (forcing ownership of conflicting fields).
func (e *Env) ApplyObject(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	gvk := obj.GroupVersionKind()
	describe := func() string {
		if obj.GetNamespace() != "" {
			return fmt.Sprintf("%s %s/%s", gvk.Kind, obj.GetNamespace(), obj.GetName())
		}
		return fmt.Sprintf("%s %s", gvk.Kind, obj.GetName())
	}
	mapping, err := e.restMapping(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", describe(), err)
	}
	obj = obj.DeepCopy()
	res := e.Dynamic.Resource(mapping.Resource)
	var client dynamic.ResourceInterface = res
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
		client = res.Namespace(obj.GetNamespace())
	} else {
		obj.SetNamespace("")
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("applying %s: encoding: %w", describe(), err)
	}
	force := true
	out, err := client.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", describe(), err)
	}
	return out, nil
}

// restMapping finds the resource for an object's kind, re-reading discovery while the kind is
// unknown: it may be a custom resource whose CRD was installed a moment ago.
func (e *Env) restMapping(ctx context.Context, obj *unstructured.Unstructured) (*meta.RESTMapping, error) {
	gvk := obj.GroupVersionKind()
	var mapping *meta.RESTMapping
	err := e.WaitFor(ctx, kindTimeout, fmt.Sprintf("kind %s to be served", gvk), func(context.Context) (bool, error) {
		m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			mapping = m
			return true, nil
		}
		if !meta.IsNoMatchError(err) {
			return false, Permanent(err)
		}
		e.mapper.Reset()
		return false, err
	})
	return mapping, err
}

// InstallCRDs applies the CustomResourceDefinitions found at path (a YAML file, or a
// directory whose *.yaml, *.yml and *.json files are read in name order; nothing else may be
// in them) and waits until each is Established and its kind is served. It returns the CRD names.
func (e *Env) InstallCRDs(ctx context.Context, path string) ([]string, error) {
	files, err := manifestFiles(path)
	if err != nil {
		return nil, fmt.Errorf("installing CRDs from %s: %w", path, err)
	}
	var crds []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("installing CRDs: %w", err)
		}
		objs, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("installing CRDs from %s: %w", f, err)
		}
		for _, o := range objs {
			if o.GroupVersionKind() != apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition") {
				return nil, fmt.Errorf("installing CRDs from %s: %s %s is not an apiextensions.k8s.io/v1 CustomResourceDefinition", f, o.GetKind(), o.GetName())
			}
			crds = append(crds, o)
		}
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("installing CRDs from %s: no CustomResourceDefinition found", path)
	}

	names := make([]string, 0, len(crds))
	for _, crd := range crds {
		if _, err := e.ApplyObject(ctx, crd); err != nil {
			return nil, fmt.Errorf("installing CRDs: %w", err)
		}
		names = append(names, crd.GetName())
	}
	for _, name := range names {
		if err := e.WaitFor(ctx, kindTimeout, "CRD "+name+" to be Established", e.crdEstablished(name)); err != nil {
			return nil, fmt.Errorf("installing CRDs: %w", err)
		}
	}
	e.mapper.Reset()
	// Established means the apiserver accepts the kind; discovery may lag behind it a little.
	for _, crd := range crds {
		if _, err := e.restMapping(ctx, crdExample(crd)); err != nil {
			return nil, fmt.Errorf("installing CRDs: %w", err)
		}
	}
	return names, nil
}

func (e *Env) crdEstablished(name string) Condition {
	return func(ctx context.Context) (bool, error) {
		crd, err := e.APIExtensions.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.NamesAccepted && c.Status == apiextensionsv1.ConditionFalse {
				return false, Permanent(fmt.Errorf("CRD %s names not accepted: %s", name, c.Message))
			}
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, fmt.Errorf("CRD %s not Established yet", name)
	}
}

// crdExample is an empty object of a CRD's storage-version kind, for looking its mapping up.
func crdExample(crd *unstructured.Unstructured) *unstructured.Unstructured {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	version := ""
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if served, _ := m["served"].(bool); served {
			version, _ = m["name"].(string)
			if storage, _ := m["storage"].(bool); storage {
				break
			}
		}
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(group + "/" + version)
	u.SetKind(kind)
	return u
}

func manifestFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, en := range entries {
		ext := strings.ToLower(filepath.Ext(en.Name()))
		if en.Type().IsRegular() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			files = append(files, filepath.Join(path, en.Name()))
		}
	}
	slices.Sort(files)
	return files, nil
}
