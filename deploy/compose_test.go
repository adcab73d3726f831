package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile declares the Compose Specification keys that compose.yaml
// uses. Decoding with known fields makes a misspelled key fail.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]*struct{} `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Restart     string            `yaml:"restart"`
	NetworkMode string            `yaml:"network_mode"`
	DependsOn   []string          `yaml:"depends_on"`
	ReadOnly    bool              `yaml:"read_only"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Secrets     []string          `yaml:"secrets"`
	Command     []string          `yaml:"command"`
}

// composeDir is the folder that relative paths in compose.yaml start from.
const composeDir = "compose"

// mountSource returns the host path of a bind mount "SOURCE:TARGET[:ro]",
// relative to this folder, and its target. A named volume has no host path,
// so its source is "".
func mountSource(volume string) (source, target string) {
	parts := strings.Split(volume, ":")
	if len(parts) < 2 {
		return "", ""
	}
	if !strings.HasPrefix(parts[0], ".") && !strings.HasPrefix(parts[0], "/") {
		return "", parts[1]
	}
	return filepath.Join(composeDir, parts[0]), parts[1]
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := decodeKnownFields(readFile(t, filepath.Join(composeDir, "compose.yaml")), &c); err != nil {
		t.Fatalf("compose/compose.yaml: %v", err)
	}
	for _, name := range []string{"orthanc", "envoy", "dicomweb-oauth"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("compose/compose.yaml has no service %s", name)
		}
	}
	return c
}

var envoyTag = regexp.MustCompile(`^envoyproxy/envoy:v(\d+)\.(\d+)\.(\d+)$`)

func TestComposeFileReferences(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(composeDir, s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s builds from a missing Dockerfile: %v", name, err)
			}
		} else if i := strings.LastIndex(s.Image, ":"); i < 0 || s.Image[i+1:] == "latest" {
			t.Errorf("service %s: image %q must carry a version tag", name, s.Image)
		}
		for _, v := range s.Volumes {
			source, _ := mountSource(v)
			if source == "" {
				named := strings.Split(v, ":")[0]
				if _, ok := c.Volumes[named]; !ok {
					t.Errorf("service %s mounts volume %q, which is not declared", name, named)
				}
				continue
			}
			if filepath.IsAbs(source) {
				t.Errorf("service %s mounts %s; mount files of the repository, by relative path", name, source)
			} else if _, err := os.Stat(source); err != nil {
				t.Errorf("service %s mounts %s, which does not exist in the repository", name, source)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q; bind it to 127.0.0.1", name, p)
			}
		}
		if owner, ok := strings.CutPrefix(s.NetworkMode, "service:"); ok {
			if _, exists := c.Services[owner]; !exists {
				t.Errorf("service %s shares the network of %q, which does not exist", name, owner)
			}
			if len(s.Ports) > 0 {
				t.Errorf("service %s shares a network namespace; publish its ports on %s", name, owner)
			}
		}
		for _, dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("service %s depends on %q, which does not exist", name, dep)
			}
		}
		for k, v := range s.Environment {
			upper := strings.ToUpper(k)
			if (strings.Contains(upper, "SECRET") || strings.Contains(upper, "PASSWORD") ||
				strings.Contains(upper, "USERS")) && !strings.Contains(v, "${") {
				t.Errorf("service %s: %s holds a literal value; take it from .env with ${...}", name, k)
			}
		}
	}

	m := envoyTag.FindStringSubmatch(c.Services["envoy"].Image)
	if m == nil {
		t.Fatalf("envoy image %q must be envoyproxy/envoy:vMAJOR.MINOR.PATCH", c.Services["envoy"].Image)
	}
	if major, _ := strconv.Atoi(m[1]); major == 1 {
		if minor, _ := strconv.Atoi(m[2]); minor < 30 {
			t.Errorf("envoy image %s: the request_attributes of envoy/ext-proc.yaml need Envoy 1.30 or later", m[0])
		}
	}
}

// TestComposeSecrets checks that the secrets come from files that git
// ignores and reach the paths the service configuration reads.
func TestComposeSecrets(t *testing.T) {
	c := loadCompose(t)
	ignored := string(readFile(t, filepath.Join(composeDir, ".gitignore")))
	for name, s := range c.Secrets {
		dir := strings.Split(strings.TrimPrefix(s.File, "./"), "/")[0] + "/"
		if !strings.Contains(ignored, "\n"+dir+"\n") {
			t.Errorf("secret %s comes from %s; list %s in compose/.gitignore", name, s.File, dir)
		}
	}

	service := c.Services["dicomweb-oauth"]
	for _, name := range service.Secrets {
		if _, ok := c.Secrets[name]; !ok {
			t.Errorf("service dicomweb-oauth uses secret %q, which is not declared", name)
		}
	}
	config := composeServiceConfig(t, c)
	for cluster, path := range secretFiles(t, "compose/dicomweb-oauth.yaml", config) {
		name, ok := strings.CutPrefix(path, "/run/secrets/")
		if !ok || !containsString(service.Secrets, name) {
			t.Errorf("clusters.%s.token.client_secret_file %s is not a secret of the service", cluster, path)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// composeServiceConfig returns the dicomweb-oauth configuration that
// compose.yaml mounts where the image's command reads it.
func composeServiceConfig(t *testing.T, c composeFile) []byte {
	t.Helper()
	const target = "/etc/dicomweb-oauth/config.yaml"
	if !strings.Contains(string(readFile(t, "../Dockerfile")), target) {
		t.Fatalf("the Dockerfile no longer reads %s", target)
	}
	for _, v := range c.Services["dicomweb-oauth"].Volumes {
		if source, mountedAt := mountSource(v); mountedAt == target && source != "" {
			return readFile(t, source)
		}
	}
	t.Fatalf("service dicomweb-oauth does not mount its configuration at %s", target)
	return nil
}

// TestComposeChain follows a DICOMweb request: Orthanc's server URL, the
// Envoy listener and route, the dicomweb_oauth cluster, and the service
// configuration with its clusters.
func TestComposeChain(t *testing.T) {
	c := loadCompose(t)
	env := map[string]string{
		"AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
		"AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
	}
	for k, v := range keycloakEnv {
		env[k] = v
	}
	for k := range env {
		if !strings.Contains(c.Services["dicomweb-oauth"].Environment[k], "${"+k) {
			t.Errorf("service dicomweb-oauth must pass %s from .env", k)
		}
	}
	config := checkServiceConfig(t, "compose/dicomweb-oauth.yaml", composeServiceConfig(t, c),
		[]string{"/run/secrets"}, env)

	bootstrap := composeEnvoyBootstrap(t, c)
	if got := envoyClusterEndpoint(bootstrap, "dicomweb_oauth"); got != config.Listen.GRPC {
		t.Errorf("Envoy's dicomweb_oauth cluster points at %q, but the service listens on %s", got, config.Listen.GRPC)
	}
	routes := map[string]string{}
	collectRoutes(bootstrap, routes)
	var routed, configured []string
	for _, cluster := range routes {
		routed = append(routed, cluster)
	}
	for name := range config.Clusters {
		configured = append(configured, name)
	}
	sort.Strings(routed)
	sort.Strings(configured)
	if strings.Join(routed, ",") != strings.Join(configured, ",") {
		t.Errorf("Envoy routes to clusters %v, the service configures %v", routed, configured)
	}

	checkOrthancServers(t, routes, envoyListenerPort(bootstrap))
}

// checkOrthancServers checks that every DicomWeb.Servers URL of
// orthanc.json goes to Envoy's listener and matches one of its routes.
func checkOrthancServers(t *testing.T, routes map[string]string, listenerPort string) {
	t.Helper()
	var orthanc struct {
		HTTPTimeout int `json:"HttpTimeout"`
		DicomWeb    struct {
			Servers map[string]struct {
				URL string `json:"Url"`
			} `json:"Servers"`
		} `json:"DicomWeb"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(composeDir, "orthanc.json")), &orthanc); err != nil {
		t.Fatalf("compose/orthanc.json: %v", err)
	}
	// Orthanc 1.10.1 ends every HTTP request it sends after HttpTimeout
	// seconds, 60 by default, even while data still flows.
	if orthanc.HTTPTimeout <= 60 {
		t.Errorf("compose/orthanc.json: HttpTimeout %d would cut long transfers", orthanc.HTTPTimeout)
	}
	if len(orthanc.DicomWeb.Servers) == 0 {
		t.Fatal("compose/orthanc.json has no DicomWeb.Servers")
	}
	for name, server := range orthanc.DicomWeb.Servers {
		u, err := url.Parse(server.URL)
		if err != nil || u.Host != "127.0.0.1:"+listenerPort {
			t.Errorf("server %s: %q must go to Envoy on 127.0.0.1:%s", name, server.URL, listenerPort)
			continue
		}
		matched := false
		for prefix := range routes {
			matched = matched || strings.HasPrefix(u.Path, prefix)
		}
		if !matched {
			t.Errorf("server %s: path %s matches no Envoy route", name, u.Path)
		}
	}
}

// composeEnvoyBootstrap reads the Envoy configuration that compose.yaml
// mounts. Its schema is checked by envoy/config_test.go; this test reads it
// as plain YAML.
func composeEnvoyBootstrap(t *testing.T, c composeFile) map[string]any {
	t.Helper()
	for _, v := range c.Services["envoy"].Volumes {
		source, target := mountSource(v)
		if source == "" || target != "/etc/envoy/envoy.yaml" {
			continue
		}
		var bootstrap map[string]any
		if err := yaml.Unmarshal(readFile(t, source), &bootstrap); err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		return bootstrap
	}
	t.Fatal("service envoy does not mount a configuration at /etc/envoy/envoy.yaml, where its command reads it")
	return nil
}

// field walks nested maps and lists by key or index.
func field(v any, path ...any) any {
	for _, p := range path {
		switch key := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[key]
		case int:
			l, _ := v.([]any)
			if key >= len(l) {
				return nil
			}
			v = l[key]
		}
	}
	return v
}

func socketAddress(v any) string {
	sa := field(v, "address", "socket_address")
	return fmt.Sprintf("%v:%v", field(sa, "address"), field(sa, "port_value"))
}

func envoyClusterEndpoint(bootstrap map[string]any, name string) string {
	clusters, _ := field(bootstrap, "static_resources", "clusters").([]any)
	for _, c := range clusters {
		if field(c, "name") == name {
			return socketAddress(field(c, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint"))
		}
	}
	return ""
}

func envoyListenerPort(bootstrap map[string]any) string {
	return fmt.Sprint(field(bootstrap, "static_resources", "listeners", 0, "address", "socket_address", "port_value"))
}

// collectRoutes records, for every route with a prefix match, the cluster it
// sends to.
func collectRoutes(v any, routes map[string]string) {
	switch node := v.(type) {
	case map[string]any:
		prefix, hasPrefix := field(node, "match", "prefix").(string)
		cluster, hasCluster := field(node, "route", "cluster").(string)
		if hasPrefix && hasCluster {
			routes[prefix] = cluster
		}
		for _, child := range node {
			collectRoutes(child, routes)
		}
	case []any:
		for _, child := range node {
			collectRoutes(child, routes)
		}
	}
}
