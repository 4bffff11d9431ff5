package generate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// source is a YAML or JSON input file kept as a node tree, so that what
// goes wrong in it can be reported at its line: the libraries that read the
// document's meaning (kin-openapi) do not know lines.
type source struct {
	file string
	root *yaml.Node // the top-level mapping
}

// parseSource reads data as JSON (when it starts like JSON) or YAML, and
// requires a mapping at the top.
func parseSource(file string, data []byte) (*source, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, &FileError{File: file, Msg: "the file is empty; want an OpenAPI document in YAML or JSON"}
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		// The JSON parser's errors say which token it expected; YAML's
		// reading of broken JSON would say less.
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			var syn *json.SyntaxError
			if errors.As(err, &syn) {
				// Offset counts the offending byte.
				line, col := lineColumn(data, syn.Offset-1)
				return nil, &FileError{File: file, Line: line, Column: col, Msg: "not valid JSON: " + syn.Error()}
			}
			return nil, &FileError{File: file, Msg: "not valid JSON: " + err.Error()}
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		var le *yaml.LoadError
		if errors.As(err, &le) {
			msg := le.Message
			if le.ContextMsg != "" && le.ContextMark.Line > 0 {
				msg = fmt.Sprintf("%s (%s at line %d)", msg, le.ContextMsg, le.ContextMark.Line)
			}
			return nil, &FileError{File: file, Line: le.Mark.Line, Column: le.Mark.Column, Msg: "neither YAML nor JSON: " + msg}
		}
		return nil, &FileError{File: file, Msg: "neither YAML nor JSON: " + err.Error()}
	}
	if len(doc.Content) == 0 {
		return nil, &FileError{File: file, Msg: "the file is empty; want an OpenAPI document in YAML or JSON"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &FileError{File: file, Line: root.Line, Column: root.Column,
			Msg: fmt.Sprintf("not an OpenAPI document: found %s, want a mapping with swagger: \"2.0\" or openapi: 3.x", describeNode(root))}
	}
	return &source{file: file, root: root}, nil
}

// lineColumn converts a byte offset into a 1-based line and column.
func lineColumn(data []byte, offset int64) (int, int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("the text %q", truncate(n.Value, 40))
	default:
		return "an alias"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// child is the value under key in a mapping, or the element at a decimal
// index in a list, with the node that names it (the key; the element
// itself in a list), nil when absent.
func child(n *yaml.Node, key string) (name, value *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i], n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(key); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i], n.Content[i]
		}
	}
	return nil, nil
}

// errorAt is a FileError at the deepest node of path that exists.
func (s *source) errorAt(path []string, format string, args ...any) *FileError {
	at := s.root
	n := s.root
	for _, key := range path {
		name, value := child(n, key)
		if name == nil {
			break
		}
		at, n = name, value
	}
	return &FileError{File: s.file, Line: at.Line, Column: at.Column, Msg: fmt.Sprintf(format, args...)}
}

// topString is a top-level scalar ("" when absent or not a scalar).
func (s *source) topString(key string) string {
	_, v := child(s.root, key)
	if v == nil || v.Kind != yaml.ScalarNode {
		return ""
	}
	return v.Value
}

// checkRefs resolves every $ref in the document itself, so that a broken
// one is reported at its line with what the document does have there.
// References to other files or URLs are refused: the output must not depend
// on what else is on the disk or the network.
func (s *source) checkRefs() error {
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Value == "$ref" && v.Kind == yaml.ScalarNode {
					if err := s.checkRef(v); err != nil {
						return err
					}
				}
			}
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(s.root)
}

func (s *source) checkRef(ref *yaml.Node) error {
	at := func(format string, args ...any) error {
		return &FileError{File: s.file, Line: ref.Line, Column: ref.Column, Msg: fmt.Sprintf(format, args...)}
	}
	fragment, ok := strings.CutPrefix(ref.Value, "#")
	if !ok {
		return at("$ref %q points outside this file; only references inside it (#/...) are supported", ref.Value)
	}
	fragment, err := url.PathUnescape(fragment)
	if err != nil {
		return at("$ref %q is not a valid JSON pointer: %v", ref.Value, err)
	}
	if fragment == "" {
		return nil
	}
	if !strings.HasPrefix(fragment, "/") {
		return at("$ref %q is not a JSON pointer: want #/ followed by the path", ref.Value)
	}
	n := s.root
	walked := "#"
	for _, token := range strings.Split(fragment[1:], "/") {
		key := strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
		_, next := child(n, key)
		if next == nil {
			return at("$ref %q does not resolve: %s has no %q%s", ref.Value, walked, key, available(n))
		}
		n, walked = next, walked+"/"+token
	}
	return nil
}

// available lists what a mapping or list holds, for an error about a key
// it lacks.
func available(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		var keys []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			keys = append(keys, strconv.Quote(n.Content[i].Value))
		}
		slices.Sort(keys)
		if len(keys) == 0 {
			return " (it is empty)"
		}
		if len(keys) > 8 {
			keys = append(keys[:8], "...")
		}
		return " (it has " + strings.Join(keys, ", ") + ")"
	case yaml.SequenceNode:
		return fmt.Sprintf(" (it is a list of %d)", len(n.Content))
	default:
		return " (it is " + describeNode(n) + ")"
	}
}
