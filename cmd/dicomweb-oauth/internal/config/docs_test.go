package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// serviceConfigMarker precedes, on its own line, every complete service
// configuration in docs/ that a reader may copy as it is.
const serviceConfigMarker = "<!-- service-config -->"

// docsPlaceholder is the value of every ${VAR} in the documented
// configurations. It is valid wherever the docs use a variable: in an ID, a
// file path, and a host name or path segment of a URL.
const docsPlaceholder = "placeholder"

// fenceStart matches the opening fence of a YAML code block.
var fenceStart = regexp.MustCompile("^```ya?ml\\s*$")

// configBlock is a marked configuration in a Markdown page.
type configBlock struct {
	// page is the Markdown file's path relative to the repository root.
	page string
	// line is the 1-based line of the opening fence, so the YAML's line n
	// is the page's line + n.
	line int
	yaml string
}

// TestDocsServiceConfigsParse loads every configuration in docs/ that is
// marked as complete, so that a copied block is known to load.
func TestDocsServiceConfigsParse(t *testing.T) {
	saved := lookupEnv
	lookupEnv = func(string) (string, bool) { return docsPlaceholder, true }
	t.Cleanup(func() { lookupEnv = saved })

	root := filepath.Join("..", "..", "..", "..")
	blocks := findMarkedBlocks(t, root, "docs")

	inProviders := 0
	for _, b := range blocks {
		if strings.HasPrefix(b.page, "docs/providers/") {
			inProviders++
		}
	}
	if inProviders == 0 {
		t.Errorf("no block marked %s found in docs/providers/; mark each complete configuration there", serviceConfigMarker)
	}
	t.Logf("%d marked configurations, %d of them in docs/providers/", len(blocks), inProviders)

	for _, b := range blocks {
		if _, err := Parse(b.page, []byte(b.yaml)); err != nil {
			t.Errorf("%s:%d: the marked configuration does not load:\n%s", b.page, b.line,
				pageLines(err, b.page, b.line))
		}
	}
}

// findMarkedBlocks returns the YAML block after every marker in the
// Markdown files under root/dir. A marker without a YAML block after it is
// a test failure.
func findMarkedBlocks(t *testing.T, root, dir string) []configBlock {
	t.Helper()
	var blocks []configBlock
	err := fs.WalkDir(os.DirFS(root), dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".md" {
			return err
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path)))
		if err != nil {
			return err
		}
		lines := strings.Split(string(data), "\n")
		for i, line := range lines {
			if strings.TrimSpace(line) != serviceConfigMarker {
				continue
			}
			block, ok := yamlBlockAt(lines, i+1)
			if !ok {
				t.Errorf("%s:%d: %s must be followed directly by a ```yaml code block",
					path, i+1, serviceConfigMarker)
				continue
			}
			blocks = append(blocks, configBlock{page: path, line: i + 2, yaml: block})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	return blocks
}

// yamlBlockAt returns the content of the YAML code block whose opening
// fence is lines[start], and whether there is a closed one.
func yamlBlockAt(lines []string, start int) (string, bool) {
	if start >= len(lines) || !fenceStart.MatchString(lines[start]) {
		return "", false
	}
	for end := start + 1; end < len(lines); end++ {
		if strings.HasPrefix(lines[end], "```") {
			return strings.Join(lines[start+1:end], "\n") + "\n", true
		}
	}
	return "", false
}

// pageLines formats the errors of Parse with the page's line numbers in
// place of the block's, so that each points at the Markdown line to fix.
func pageLines(err error, page string, fenceLine int) string {
	var errs Errors
	if !errors.As(err, &errs) {
		return err.Error()
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		shifted := *e
		shifted.File = page
		if shifted.Line > 0 {
			shifted.Line += fenceLine
		}
		out = append(out, "  "+shifted.Error())
	}
	return strings.Join(out, "\n")
}
