package harness

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/pki"
)

// Paths of the shipped files relative to this folder.
const (
	shippedNginxPath   = "../../" + ShippedNginxFile
	shippedServicePath = "../../" + ShippedServiceFile
)

var testNginxValues = ShippedNginxValues{
	Listen:    "127.0.0.1:7",
	Upstream:  "127.0.0.1:8",
	CheckAddr: "127.0.0.1:9",
	TrustedCA: "/tmp/e2e/ca.pem",
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestReplaceEach(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		old     string
		want    string
		wantErr string
	}{
		{"once", "listen 8080;", "8080", "listen 9;", ""},
		{"missing", "listen 8080;", "8081", "", "occurs 0 times"},
		{"twice", "8080 8080", "8080", "", "occurs 2 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReplaceEach(tt.text, []Replacement{{tt.old, "9"}})

			if tt.wantErr == "" && err != nil {
				t.Fatalf("ReplaceEach: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ReplaceEach error = %v, want one containing %q", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ReplaceEach = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRenderShippedNginx(t *testing.T) {
	source := readFile(t, shippedNginxPath)

	conf, err := RenderShippedNginx(source, testNginxValues)
	if err != nil {
		t.Fatalf("RenderShippedNginx: %v", err)
	}

	wants := []string{
		"listen 127.0.0.1:7;",
		"proxy_pass https://127.0.0.1:8" + ShippedUpstreamPath + ";",
		"proxy_pass http://127.0.0.1:9/check/" + ShippedCluster + ";",
		"proxy_ssl_trusted_certificate /tmp/e2e/ca.pem;",
		// Kept as shipped, so that SNI and the certificate check use the
		// upstream's name.
		"proxy_ssl_name " + ShippedUpstreamHost + ";",
		"proxy_ssl_server_name on;",
		"proxy_ssl_verify on;",
		"proxy_set_header Host " + ShippedUpstreamHost + ";",
		"location " + ShippedLocation + " {",
	}
	for _, want := range wants {
		if !strings.Contains(conf, want) {
			t.Errorf("rendered configuration lacks %q", want)
		}
	}
	if strings.Contains(conf, "https://"+ShippedUpstreamHost) {
		t.Error("rendered configuration still proxies to the shipped upstream host")
	}
}

// TestRenderedShippedNginxValid checks the rendered shipped server block,
// wrapped as StartShippedNginx wraps it, with "nginx -t". Every address in
// it is on 127.0.0.1, so nginx resolves no name.
func TestRenderedShippedNginxValid(t *testing.T) {
	binary, err := FindNginx()
	if err != nil {
		t.Skipf("nginx -t not run: %v", err)
	}
	prefix, err := NewEnv(t.TempDir()).makeNginxPrefix("nginx")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	values := testNginxValues
	values.TrustedCA = filepath.Join(prefix, "ca.pem")
	if err := ca.WriteCertificate(values.TrustedCA); err != nil {
		t.Fatal(err)
	}
	server, err := RenderShippedNginx(readFile(t, shippedNginxPath), values)
	if err != nil {
		t.Fatalf("RenderShippedNginx: %v", err)
	}
	serverPath := filepath.Join(prefix, "dicomweb-oauth.conf")
	if err := os.WriteFile(serverPath, []byte(server), 0o600); err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(prefix, "nginx.conf")
	data := shippedNginxTemplateData{Prefix: prefix, ServerFile: serverPath, ReadyListen: "127.0.0.1:10"}
	if err := writeTemplate(configPath, shippedNginxTemplate, data); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(binary, "-t", "-q", "-p", prefix, "-c", configPath,
		"-e", filepath.Join(prefix, "error.log"))
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v: %s", err, output)
	}
}

func TestRenderShippedNginxRejects(t *testing.T) {
	source := string(readFile(t, shippedNginxPath))
	tests := []struct {
		name   string
		source string
		values ShippedNginxValues
		edits  []Replacement
		want   string
	}{
		{"edited listen port", strings.Replace(source, "listen 127.0.0.1:8080;", "listen 127.0.0.1:80;", 1),
			testNginxValues, nil, `"listen 127.0.0.1:8080;" occurs 0 times`},
		{"edited upstream path", strings.Replace(source, ShippedUpstreamPath, "/dicom-web/", 1),
			testNginxValues, nil, "occurs 0 times"},
		{"second upstream", source + "\n# proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;\n",
			testNginxValues, nil, "occurs 2 times"},
		{"edit not found", source, testNginxValues, []Replacement{{"no such text", ""}}, "occurs 0 times"},
		{"edit adds a resolver", source, testNginxValues,
			[]Replacement{{"proxy_ssl_server_name on;", "resolver 127.0.0.53;"}}, "resolver"},
		{"edit proxies elsewhere", source, testNginxValues,
			[]Replacement{{"proxy_pass http://127.0.0.1:9/", "proxy_pass http://localhost:9/"}},
			"want a URL on 127.0.0.1"},
		{"value needs escaping", source, ShippedNginxValues{Listen: "127.0.0.1:7; include /x",
			Upstream: "127.0.0.1:8", CheckAddr: "127.0.0.1:9", TrustedCA: "/ca.pem"}, nil, "needs escaping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RenderShippedNginx([]byte(tt.source), tt.values, tt.edits...)

			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RenderShippedNginx error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckNginxLoopback(t *testing.T) {
	tests := []struct {
		name    string
		conf    string
		wantErr bool
	}{
		{"loopback", "listen 127.0.0.1:80;\nproxy_pass https://127.0.0.1:443/x/;", false},
		{"comment", "# proxy_pass https://pacs.example.org/;\nlisten 127.0.0.1:80;", false},
		{"listen on all interfaces", "listen 8080;", true},
		{"listen on a name", "listen localhost:8080;", true},
		{"proxy to a name", "proxy_pass https://pacs.example.org/;", true},
		{"resolver", "resolver 127.0.0.1;", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkNginxLoopback(tt.conf)

			if got := err != nil; got != tt.wantErr {
				t.Errorf("checkNginxLoopback error = %v, want error = %v", err, tt.wantErr)
			}
		})
	}
}

func TestShippedUnavailableBody(t *testing.T) {
	body, err := ShippedUnavailableBody(readFile(t, shippedNginxPath))
	if err != nil {
		t.Fatalf("ShippedUnavailableBody: %v", err)
	}

	if !strings.HasSuffix(body, "}\n") {
		t.Errorf("body %q does not end with a newline after the JSON", body)
	}
	var decoded map[string]any
	if err := json.Unmarshal([]byte(body), &decoded); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if decoded["error"] != "token_unavailable" {
		t.Errorf("error = %v, want token_unavailable", decoded["error"])
	}
}

func TestRenderShippedServiceConfig(t *testing.T) {
	values := ShippedServiceValues{
		Listeners:  ServiceListeners{GRPC: "127.0.0.1:1", HTTP: "127.0.0.1:2", Admin: "127.0.0.1:3"},
		TokenURL:   "http://127.0.0.1:4/token",
		ClientID:   "orthanc-egress",
		SecretFile: "/tmp/e2e/secret",
	}

	text, err := RenderShippedServiceConfig(readFile(t, shippedServicePath), values)
	if err != nil {
		t.Fatalf("RenderShippedServiceConfig: %v", err)
	}

	wants := []string{
		`http: "127.0.0.1:2"`,
		`token_url: "http://127.0.0.1:4/token"`,
		`client_id: "orthanc-egress"`,
		`client_secret_file: "/tmp/e2e/secret"`,
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("rendered configuration lacks %q", want)
		}
	}
	if strings.Contains(text, "${") {
		t.Errorf("rendered configuration still expands a variable:\n%s", text)
	}
}

func TestRenderShippedServiceConfigRejects(t *testing.T) {
	source := readFile(t, shippedServicePath)
	listeners := ServiceListeners{GRPC: "127.0.0.1:1", HTTP: "127.0.0.1:2", Admin: "127.0.0.1:3"}
	tests := []struct {
		name   string
		values ShippedServiceValues
		want   string
	}{
		{"token URL on another host", ShippedServiceValues{Listeners: listeners,
			TokenURL: "https://keycloak.example.org/token", ClientID: "c", SecretFile: "/s"}, "token_url"},
		{"listener on all interfaces", ShippedServiceValues{
			Listeners: ServiceListeners{GRPC: "0.0.0.0:1", HTTP: "127.0.0.1:2", Admin: "127.0.0.1:3"},
			TokenURL:  "http://127.0.0.1:4/token", ClientID: "c", SecretFile: "/s"}, "listen.grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RenderShippedServiceConfig(source, tt.values)

			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RenderShippedServiceConfig error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestShippedFilesNameOneCluster checks that the shipped nginx file and the
// shipped service file agree on the cluster that the tests use.
func TestShippedFilesNameOneCluster(t *testing.T) {
	clusters, err := ClusterNames(readFile(t, shippedServicePath))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(readFile(t, shippedNginxPath))

	if !slices.Equal(clusters, []string{ShippedCluster}) {
		t.Errorf("%s names clusters %v, want [%s]", ShippedServiceFile, clusters, ShippedCluster)
	}
	if !strings.Contains(conf, "/check/"+ShippedCluster+";") {
		t.Errorf("%s does not check cluster %s", ShippedNginxFile, ShippedCluster)
	}
}
