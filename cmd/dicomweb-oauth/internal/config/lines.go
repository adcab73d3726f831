package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// keyLines maps every key path in a mapping tree to its line.
func keyLines(n *yaml.Node, path string) map[string]int {
	lines := map[string]int{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := join(path, n.Content[i].Value)
				lines[p] = n.Content[i].Line
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				lines[p] = item.Line
				walk(item, p)
			}
		}
	}
	walk(n, path)
	return lines
}

// closestLine returns the line of path, or of its nearest ancestor present in
// the file, or 0.
func closestLine(lines map[string]int, path string) int {
	for p := path; p != ""; {
		if l, ok := lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}
