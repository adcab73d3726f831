package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder fills Go values from a YAML node tree and collects every problem
// with its key path, instead of stopping at the first.
type decoder struct {
	file string
	errs []*Error
	// invalid is the set of key paths whose values could not be decoded.
	invalid map[string]bool
}

// fail records a value that could not be decoded.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if d.invalid == nil {
		d.invalid = map[string]bool{}
	}
	d.invalid[path] = true
	d.failKey(n, path, format, args...)
}

// failKey records a problem with a key, such as an unknown or duplicate key,
// whose value is not the cause.
func (d *decoder) failKey(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// decodeFailed reports whether the value at path, or at a key above it,
// could not be decoded. Validation would then repeat that problem, for
// example as "missing" for a key that is present with an invalid value.
func (d *decoder) decodeFailed(path string) bool {
	for p := path; ; {
		if d.invalid[p] {
			return true
		}
		if p == "" {
			return false
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			i = 0
		}
		p = p[:i]
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode stores node into v, which must be settable.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}

	switch {
	case v.Type() == durationType:
		d.decodeDuration(n, v, path)
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case v.Kind() == reflect.Map:
		d.decodeMap(n, v, path)
	case v.Kind() == reflect.Slice:
		d.decodeSlice(n, v, path)
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case v.Kind() == reflect.String:
		if s, ok := d.scalar(n, path); ok {
			v.SetString(s)
		}
	case v.Kind() == reflect.Bool:
		d.decodeBool(n, v, path)
	default:
		d.fail(n, path, "unsupported configuration type %s", v.Type())
	}
}

// scalar returns a scalar's value with environment variables expanded.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected a single value, got %s", kindName(n))
		return "", false
	}
	s, err := expandEnv(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return "", false
	}
	return s, true
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.fail(n, path, "invalid duration %q; use a number with a unit, such as 90s, 5m or 1h", s)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) decodeBool(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		d.fail(n, path, "invalid boolean %q; use true or false", s)
		return
	}
	v.SetBool(b)
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "expected a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of names to values, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keyNode, valueNode := n.Content[i], n.Content[i+1]
		key := keyNode.Value
		keyPath := join(path, key)
		if seen[key] {
			d.failKey(keyNode, keyPath, "duplicate key")
			continue
		}
		seen[key] = true

		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(valueNode, elem, keyPath)
		v.SetMapIndex(reflect.ValueOf(key), elem)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of keys to values, got %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keyNode, valueNode := n.Content[i], n.Content[i+1]
		key := keyNode.Value
		keyPath := join(path, key)

		index, known := fields[key]
		switch {
		case !known:
			d.failKey(keyNode, keyPath, "unknown key%s", suggest(key, fields))
		case seen[key]:
			d.failKey(keyNode, keyPath, "duplicate key")
		default:
			seen[key] = true
			d.decode(valueNode, v.Field(index), keyPath)
		}
	}
}

// structFields maps yaml tag names to field indexes.
func structFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// suggest returns "; did you mean X?" for the known key closest to key.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(key, name); dist < bestDist || (dist == bestDist && name < best) {
			best, bestDist = name, dist
		}
	}
	if best == "" {
		names := make([]string, 0, len(fields))
		for name := range fields {
			names = append(names, name)
		}
		sort.Strings(names)
		return "; known keys: " + strings.Join(names, ", ")
	}
	return "; did you mean " + best + "?"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
