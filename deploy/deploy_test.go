// Package deploy_test checks the deployment files in this folder without a
// network, a cluster or a Docker engine. Each file is decoded strictly into
// the schema of the software that reads it, so a misspelled field fails.
// The tests also follow the files' references to each other and run every
// dicomweb-oauth configuration through the service's own check-config.
//
// NOTE: these checks prove structure and consistency only. Nothing here
// starts Kubernetes, Istio, Traefik or Docker Compose.
package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// secretPlaceholder is what the tests write into client secret files so
// that check-config can read them. It is not a secret.
const secretPlaceholder = "placeholder-written-by-deploy-test"

var (
	buildDir   string
	buildOnce  sync.Once
	binaryPath string
	buildErr   error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploy-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating a temporary folder: %v\n", err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// serviceBinary builds the dicomweb-oauth command once per test run and
// returns its path.
func serviceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binaryPath = filepath.Join(buildDir, "dicomweb-oauth")
		cmd := exec.Command("go", "build", "-o", binaryPath, "../cmd/dicomweb-oauth")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ../cmd/dicomweb-oauth failed: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binaryPath
}

// resolvedConfig is the part of check-config's output, the configuration
// with defaults filled in and variables expanded, that the deployment files
// must agree with.
type resolvedConfig struct {
	Listen struct {
		GRPC  string `yaml:"grpc"`
		HTTP  string `yaml:"http"`
		Admin string `yaml:"admin"`
	} `yaml:"listen"`
	DecisionTimeout string `yaml:"decision_timeout"`
	Clusters        map[string]struct {
		Hosts []string `yaml:"hosts"`
	} `yaml:"clusters"`
}

// decisionTimeout returns decision_timeout as a duration.
func (c resolvedConfig) decisionTimeout(t *testing.T) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(c.DecisionTimeout)
	if err != nil {
		t.Fatalf("check-config printed an invalid decision_timeout %q: %v", c.DecisionTimeout, err)
	}
	return d
}

// secretFiles returns the secret files a service configuration reads at
// startup: admin.token_file, and the client_secret_file of each cluster by
// cluster name.
func secretFiles(t *testing.T, name string, config []byte) map[string]string {
	t.Helper()
	var doc struct {
		Admin struct {
			TokenFile string `yaml:"token_file"`
		} `yaml:"admin"`
		Clusters map[string]struct {
			Token struct {
				ClientSecretFile string `yaml:"client_secret_file"`
			} `yaml:"token"`
		} `yaml:"clusters"`
	}
	if err := yaml.Unmarshal(config, &doc); err != nil {
		t.Fatalf("%s: invalid YAML: %v", name, err)
	}
	files := map[string]string{}
	if doc.Admin.TokenFile != "" {
		// Keyed by a name no cluster can have, since cluster names have no spaces.
		files["admin token"] = doc.Admin.TokenFile
	}
	for cluster, c := range doc.Clusters {
		if c.Token.ClientSecretFile != "" {
			files[cluster] = c.Token.ClientSecretFile
		}
	}
	return files
}

// checkServiceConfig runs check-config on a dicomweb-oauth configuration as
// the deployment would see it, and returns the resolved configuration. Each
// client_secret_file must lie in one of secretDirs, the folders where the
// deployment mounts secrets. The test writes a placeholder file for it in a
// temporary folder and rewrites the path. Only the variables in env are set.
func checkServiceConfig(t *testing.T, name string, config []byte, secretDirs []string,
	env map[string]string) resolvedConfig {
	t.Helper()
	tmp := t.TempDir()
	text := string(config)

	files := secretFiles(t, name, config)
	paths := make([]string, 0, len(files))
	for cluster, path := range files {
		if !inAnyDir(path, secretDirs) {
			t.Errorf("%s: clusters.%s.token.client_secret_file %s is not in a folder where a secret is mounted %v",
				name, cluster, path, secretDirs)
			continue
		}
		paths = append(paths, path)
	}
	// Longest first, so that no path is rewritten inside a longer one.
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, path := range paths {
		local := filepath.Join(tmp, "secrets", filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte(secretPlaceholder+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, path, local)
	}

	configPath := filepath.Join(tmp, "config.yaml")
	if err := os.WriteFile(configPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(serviceBinary(t), "check-config", "--config", configPath)
	cmd.Dir = tmp
	cmd.Env = make([]string, 0, len(env))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("check-config rejects %s: %v\n%s", name, err, stderr.String())
	}

	var resolved resolvedConfig
	if err := yaml.Unmarshal(stdout.Bytes(), &resolved); err != nil {
		t.Fatalf("check-config output for %s is not YAML: %v\n%s", name, err, stdout.String())
	}
	return resolved
}

func inAnyDir(path string, dirs []string) bool {
	for _, dir := range dirs {
		if strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/") {
			return true
		}
	}
	return false
}

// readFile reads a file of the repository, relative to this folder.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// yamlDocuments splits a multi-document YAML file.
func yamlDocuments(t *testing.T, path string) [][]byte {
	t.Helper()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(readFile(t, path))))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s has no YAML document", path)
	}
	return docs
}

// stripComments drops whole-line comments, to tell an empty document from
// one that holds only a header comment.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}

// decodeKubernetesYAML decodes a YAML document the way the Kubernetes API
// server decodes JSON with strict field validation: keys match field names
// case-sensitively, and an unknown or duplicate key is an error.
// (encoding/json, which sigs.k8s.io/yaml.UnmarshalStrict uses, would accept
// runAsNonroot for runAsNonRoot.)
func decodeKubernetesYAML(doc []byte, out any) error {
	data, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(data, out, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// decodeKnownFields decodes YAML into out and fails on any key that out
// does not declare.
func decodeKnownFields(data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(out)
}

var (
	excerptMarker = regexp.MustCompile(`^<!-- excerpt: (\S+) -->$`)
	relativeLink  = regexp.MustCompile(`\]\(([^)\s#]+)(#[^)\s]*)?\)`)
)

// TestDocsExcerptsMatchFiles checks that every code block marked with
// <!-- excerpt: PATH --> in docs/ appears, as it is, in the shipped file.
func TestDocsExcerptsMatchFiles(t *testing.T) {
	pages := docPages(t)
	checked := 0
	for _, page := range pages {
		lines := strings.Split(string(readFile(t, page)), "\n")
		for i := 0; i < len(lines); i++ {
			m := excerptMarker.FindStringSubmatch(strings.TrimSpace(lines[i]))
			if m == nil {
				continue
			}
			block, end, ok := fencedBlock(lines, i+1)
			if !ok {
				t.Errorf("%s:%d: an excerpt marker must be followed by a fenced code block", page, i+1)
				continue
			}
			shipped := string(readFile(t, filepath.Join("..", m[1])))
			if !strings.Contains(shipped, block) {
				t.Errorf("%s:%d: the code block differs from %s; copy it again from the file", page, i+1, m[1])
			}
			checked++
			i = end
		}
	}
	if checked == 0 {
		t.Error("no excerpt marker found in docs/")
	}
}

// docPages returns every Markdown page under docs/, subfolders included.
func docPages(t *testing.T) []string {
	t.Helper()
	var pages []string
	err := filepath.WalkDir("../docs", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".md") {
			pages = append(pages, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return pages
}

// fencedBlock returns the text of the fenced code block that opens at
// lines[start], and the index of its closing fence.
func fencedBlock(lines []string, start int) (string, int, bool) {
	if start >= len(lines) || !strings.HasPrefix(lines[start], "```") {
		return "", 0, false
	}
	for end := start + 1; end < len(lines); end++ {
		if strings.HasPrefix(lines[end], "```") {
			return strings.Join(lines[start+1:end], "\n") + "\n", end, true
		}
	}
	return "", 0, false
}

// TestDocsLinksExist checks that the relative links of docs/ and of the
// README lead to files that exist.
func TestDocsLinksExist(t *testing.T) {
	pages := append(docPages(t), "../README.md")
	for _, page := range pages {
		for i, line := range strings.Split(string(readFile(t, page)), "\n") {
			for _, m := range relativeLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path := filepath.Join(filepath.Dir(page), filepath.FromSlash(target))
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s:%d: link target %s does not exist", page, i+1, target)
				}
			}
		}
	}
}
