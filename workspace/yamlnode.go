package workspace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The file is edited as a YAML tree, not re-encoded from Go values, so that
// hand-written comments, key order and entries this build does not touch
// survive a save.

func scalarNode(value, tag string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

func docRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return doc
}

func getKey(m *yaml.Node, key string) *yaml.Node {
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

func setKey(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalarNode(key, "!!str"), v)
}

// encode turns a Go value into a YAML tree.
func encode(v any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return &n, nil
}

// upsert replaces the entry named name in the list under key, or appends it.
func upsert(doc *yaml.Node, key, name string, v any) error {
	root := docRoot(doc)
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("tether.yaml: expected an object at the top")
	}
	nv, err := encode(v)
	if err != nil {
		return err
	}
	list := getKey(root, key)
	if list == nil || list.Kind != yaml.SequenceNode {
		list = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		setKey(root, key, list)
	}
	for _, item := range list.Content {
		if n := getKey(item, "name"); n != nil && n.Value == name {
			merge(item, nv)
			return nil
		}
	}
	list.Content = append(list.Content, nv)
	return nil
}

func remove(doc *yaml.Node, key, name string) {
	list := getKey(docRoot(doc), key)
	if list == nil {
		return
	}
	for i, item := range list.Content {
		if n := getKey(item, "name"); n != nil && n.Value == name {
			list.Content = append(list.Content[:i], list.Content[i+1:]...)
			return
		}
	}
}

// merge makes dst hold src's value while keeping dst's comments and the
// order of keys that stay.
func merge(dst, src *yaml.Node) {
	switch {
	case dst.Kind == yaml.MappingNode && src.Kind == yaml.MappingNode:
		var out []*yaml.Node
		used := map[string]bool{}
		for i := 0; i+1 < len(dst.Content); i += 2 {
			k := dst.Content[i]
			if sv := getKey(src, k.Value); sv != nil {
				merge(dst.Content[i+1], sv)
				out = append(out, k, dst.Content[i+1])
				used[k.Value] = true
			}
		}
		for i := 0; i+1 < len(src.Content); i += 2 {
			if !used[src.Content[i].Value] {
				out = append(out, src.Content[i], src.Content[i+1])
			}
		}
		dst.Content = out
	case dst.Kind == yaml.SequenceNode && src.Kind == yaml.SequenceNode:
		for i := range src.Content {
			if i < len(dst.Content) {
				merge(dst.Content[i], src.Content[i])
			} else {
				dst.Content = append(dst.Content, src.Content[i])
			}
		}
		dst.Content = dst.Content[:len(src.Content)]
	case dst.Kind == yaml.ScalarNode && src.Kind == yaml.ScalarNode:
		if dst.Value != src.Value || dst.Tag != src.Tag {
			dst.Value, dst.Tag, dst.Style = src.Value, src.Tag, src.Style
		}
	default:
		head, line, foot := dst.HeadComment, dst.LineComment, dst.FootComment
		*dst = *src
		dst.HeadComment, dst.LineComment, dst.FootComment = head, line, foot
	}
}

// lookup finds the node at a problem path (configurations[2].java.mainClass).
func lookup(doc *yaml.Node, path string) *yaml.Node {
	n := docRoot(doc)
	if path == "" {
		return n
	}
	for _, part := range strings.Split(path, ".") {
		name, idx, _ := strings.Cut(part, "[")
		if name != "" {
			if n = getKey(n, name); n == nil {
				return nil
			}
		}
		for idx != "" {
			var num string
			num, idx, _ = strings.Cut(idx, "]")
			idx = strings.TrimPrefix(idx, "[")
			i, err := strconv.Atoi(num)
			if err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return nil
			}
			n = n.Content[i]
		}
	}
	return n
}

// NodeFromJSON converts JSON (a config or proxy sent by the IDE) into a YAML
// tree so that the same schema check names its problems.
func NodeFromJSON(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return jsonNode(v), nil
}

func jsonNode(v any) *yaml.Node {
	switch v := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.Content = append(n.Content, scalarNode(k, "!!str"), jsonNode(v[k]))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range v {
			n.Content = append(n.Content, jsonNode(e))
		}
		return n
	case string:
		return scalarNode(v, "!!str")
	case json.Number:
		if _, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return scalarNode(string(v), "!!int")
		}
		return scalarNode(string(v), "!!float")
	case bool:
		return scalarNode(strconv.FormatBool(v), "!!bool")
	default:
		return scalarNode("null", "!!null")
	}
}

// DecodeConfig checks and decodes a run configuration sent as JSON. The
// problems name fields relative to the configuration.
func DecodeConfig(data []byte) (RunConfig, Problems, error) {
	var rc RunConfig
	ps, err := decodeChecked(data, runConfigSchema, &rc)
	return rc, ps, err
}

// DecodeProxy checks and decodes a proxy sent as JSON.
func DecodeProxy(data []byte) (Proxy, Problems, error) {
	var px Proxy
	ps, err := decodeChecked(data, proxySchema, &px)
	return px, ps, err
}

func decodeChecked(data []byte, s *Schema, v any) (Problems, error) {
	n, err := NodeFromJSON(data)
	if err != nil {
		return nil, err
	}
	var ps Problems
	s.Check(n, "", &ps)
	for i := range ps {
		ps[i].Line = 0 // lines of the synthetic tree mean nothing
	}
	if len(ps) > 0 {
		return ps, nil
	}
	return nil, n.Decode(v)
}
