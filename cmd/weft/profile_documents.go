package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// stdinName is how "-" is named in messages.
const stdinName = "<stdin>"

// manifestDocument is one non-empty YAML or JSON document of an input file.
type manifestDocument struct {
	file  string
	index int // 1-based, counting the file's non-empty documents
	line  int // where the document starts in the file
	json  []byte
}

// where names the document in messages: "web.yaml: document 2".
func (d manifestDocument) where() string { return fmt.Sprintf("%s: document %d", d.file, d.index) }

// readManifestFiles reads every document of every file ("-" is stdin, read
// once). A file that is not YAML or JSON is an error naming it and the line.
func readManifestFiles(names []string, stdin io.Reader) ([]manifestDocument, error) {
	var docs []manifestDocument
	stdinRead := false
	for _, name := range names {
		var data []byte
		var err error
		if name == "-" {
			if stdinRead {
				return nil, errors.New("- (stdin) given more than once")
			}
			stdinRead = true
			name = stdinName
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(name)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		fileDocs, err := splitManifest(name, data)
		if err != nil {
			return nil, err
		}
		docs = append(docs, fileDocs...)
	}
	return docs, nil
}

// splitManifest splits a YAML stream (JSON is YAML) into documents as JSON.
// YAML syntax errors and duplicate keys are reported at their line in the
// file, which the YAML-to-JSON conversion alone could not do for a
// document after the first.
func splitManifest(file string, data []byte) ([]manifestDocument, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var docs []manifestDocument
	for {
		var node yamlv3.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not YAML or JSON: %w", file, err)
		}
		if len(node.Content) == 0 || node.Content[0].Tag == "!!null" {
			continue
		}
		root := node.Content[0]
		doc := manifestDocument{file: file, index: len(docs) + 1, line: root.Line}
		if root.Kind != yamlv3.MappingNode {
			return nil, fmt.Errorf("%s (line %d): want a Kubernetes object (a mapping with apiVersion and kind), found a %s", doc.where(), root.Line, nodeKind(root))
		}
		if err := duplicateKey(root); err != nil {
			return nil, fmt.Errorf("%s: %w", doc.where(), err)
		}
		b, err := yamlv3.Marshal(root)
		if err != nil {
			return nil, fmt.Errorf("%s (line %d): %w", doc.where(), root.Line, err)
		}
		if doc.json, err = yaml.YAMLToJSONStrict(b); err != nil {
			return nil, fmt.Errorf("%s (line %d): %w", doc.where(), root.Line, err)
		}
		docs = append(docs, doc)
	}
}

// duplicateKey reports the first mapping key that appears twice.
func duplicateKey(n *yamlv3.Node) error {
	if n.Kind == yamlv3.MappingNode {
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if first, dup := seen[k.Value]; dup && k.Kind == yamlv3.ScalarNode {
				return fmt.Errorf("line %d: key %q already set on line %d", k.Line, k.Value, first)
			}
			seen[k.Value] = k.Line
		}
	}
	for _, c := range n.Content {
		if err := duplicateKey(c); err != nil {
			return err
		}
	}
	return nil
}

func nodeKind(n *yamlv3.Node) string {
	switch n.Kind {
	case yamlv3.SequenceNode:
		return "list"
	case yamlv3.ScalarNode:
		return "plain value (" + n.ShortTag() + ")"
	case yamlv3.AliasNode:
		return "YAML alias"
	}
	return "YAML node"
}
