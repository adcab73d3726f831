package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Files that users copy, relative to the module root. The test bed renders
// them by replacing their concrete addresses, and nothing else.
const (
	ShippedNginxFile   = "deploy/nginx/dicomweb-oauth.conf"
	ShippedServiceFile = "deploy/nginx/dicomweb-oauth.yaml"
)

// Values in the shipped nginx files that the tests depend on. A test fails
// when a shipped file no longer contains one of them.
const (
	// ShippedCluster is the cluster that both shipped nginx files name.
	ShippedCluster = "pacs"
	// ShippedLocation is the nginx location that Orthanc's DicomWeb.Servers
	// URL points at.
	ShippedLocation = "/pacs/"
	// ShippedUpstreamPath is the DICOMweb base path of the upstream server
	// in the shipped proxy_pass.
	ShippedUpstreamPath = "/dcm4chee-arc/aets/DCM4CHEE/rs/"
	// ShippedUpstreamHost is the upstream's name in proxy_ssl_name and in
	// the Host header. The tests never resolve it.
	ShippedUpstreamHost = "pacs.example.org"
)

// Replacement replaces the text Old with New.
type Replacement struct {
	Old, New string
}

// ReplaceEach applies the replacements in order. Each Old must occur exactly
// once in the text it applies to, or ReplaceEach returns an error that names
// it. So an edit of a shipped file fails the test that renders it, instead
// of going untested.
func ReplaceEach(text string, replacements []Replacement) (string, error) {
	for _, r := range replacements {
		if n := strings.Count(text, r.Old); n != 1 {
			return "", fmt.Errorf("harness: %q occurs %d times, want exactly once; "+
				"update the test bed to match the shipped file", r.Old, n)
		}
		text = strings.Replace(text, r.Old, r.New, 1)
	}
	return text, nil
}

// ReadShipped returns the content of a file of the module, such as
// ShippedNginxFile.
func ReadShipped(ctx context.Context, name string) ([]byte, error) {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		return nil, fmt.Errorf("read shipped file: %w", err)
	}
	return data, nil
}

// ShippedNginxValues are the test bed's values for the concrete addresses in
// ShippedNginxFile.
type ShippedNginxValues struct {
	// Listen replaces 127.0.0.1:8080 in the listen directive.
	Listen string
	// Upstream is the host:port of the TLS upstream. It replaces the origin
	// https://pacs.example.org in proxy_pass; the path stays.
	Upstream string
	// CheckAddr replaces the service address 127.0.0.1:9002.
	CheckAddr string
	// TrustedCA replaces the file of proxy_ssl_trusted_certificate.
	TrustedCA string
}

// RenderShippedNginx returns the shipped nginx configuration with its
// addresses replaced, then the further edits applied. It returns an error
// when a value to replace does not occur exactly once, and when the result
// would make nginx listen on or connect to any host but 127.0.0.1.
func RenderShippedNginx(source []byte, values ShippedNginxValues, edits ...Replacement) (string, error) {
	replacements := []Replacement{
		{"listen 127.0.0.1:8080;", "listen " + values.Listen + ";"},
		{"proxy_pass https://" + ShippedUpstreamHost + ShippedUpstreamPath + ";",
			"proxy_pass https://" + values.Upstream + ShippedUpstreamPath + ";"},
		{"proxy_pass http://127.0.0.1:9002/", "proxy_pass http://" + values.CheckAddr + "/"},
		{"proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;",
			"proxy_ssl_trusted_certificate " + values.TrustedCA + ";"},
	}
	for _, value := range []string{values.Listen, values.Upstream, values.CheckAddr, values.TrustedCA} {
		if !safeNginxValue.MatchString(value) || value == "" {
			return "", fmt.Errorf("harness: nginx value %q is empty or needs escaping", value)
		}
	}

	text, err := ReplaceEach(string(source), append(replacements, edits...))
	if err != nil {
		return "", err
	}
	if err := checkNginxLoopback(text); err != nil {
		return "", err
	}
	return text, nil
}

// checkNginxLoopback returns an error when a listen or proxy_pass directive
// names a host other than 127.0.0.1, or when a resolver is configured. nginx
// resolves proxy_pass hosts when it starts, so this check runs before it does.
func checkNginxLoopback(conf string) error {
	scanner := bufio.NewScanner(strings.NewReader(conf))
	for line := 1; scanner.Scan(); line++ {
		fields := strings.Fields(strings.TrimSuffix(strings.TrimSpace(scanner.Text()), ";"))
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch fields[0] {
		case "resolver":
			return fmt.Errorf("harness: line %d configures a resolver; the test bed resolves no names", line)
		case "listen":
			if host, _, err := net.SplitHostPort(fields[1]); err != nil || host != "127.0.0.1" {
				return fmt.Errorf("harness: line %d listens on %q, want 127.0.0.1:PORT", line, fields[1])
			}
		case "proxy_pass":
			target, err := url.Parse(fields[1])
			if err != nil || target.Hostname() != "127.0.0.1" {
				return fmt.Errorf("harness: line %d proxies to %q, want a URL on 127.0.0.1", line, fields[1])
			}
		}
	}
	return scanner.Err()
}

// unavailableBody matches the body of the shipped 503 response, written as a
// single-quoted nginx string.
var unavailableBody = regexp.MustCompile(`return 503 '([^']*)';`)

// ShippedUnavailableBody returns the body that the shipped nginx
// configuration sends when it gets no token, as nginx sends it: the "\n"
// escape becomes a newline.
func ShippedUnavailableBody(source []byte) (string, error) {
	matches := unavailableBody.FindAllSubmatch(source, -1)
	if len(matches) != 1 {
		return "", fmt.Errorf("harness: found %d \"return 503 '...'\" directives, want 1", len(matches))
	}
	return strings.ReplaceAll(string(matches[0][1]), `\n`, "\n"), nil
}

// ShippedServiceValues are the test bed's values for the addresses, the
// token endpoint and the client in ShippedServiceFile.
type ShippedServiceValues struct {
	Listeners  ServiceListeners
	TokenURL   string
	ClientID   string
	SecretFile string
}

// RenderShippedServiceConfig returns the shipped service configuration with
// its listeners, token_url, client_id and client_secret_file replaced. It
// returns an error when a value to replace does not occur exactly once, and
// when the result would listen on or fetch tokens from a host other than
// 127.0.0.1.
func RenderShippedServiceConfig(source []byte, values ShippedServiceValues) (string, error) {
	replacements := []Replacement{
		{"grpc: 127.0.0.1:9001", "grpc: " + quoteJSON(values.Listeners.GRPC)},
		{"http: 127.0.0.1:9002", "http: " + quoteJSON(values.Listeners.HTTP)},
		{"admin: 127.0.0.1:9901", "admin: " + quoteJSON(values.Listeners.Admin)},
		{"token_url: https://${KEYCLOAK_HOST}/realms/dcm4che/protocol/openid-connect/token",
			"token_url: " + quoteJSON(values.TokenURL)},
		{"client_id: ${KEYCLOAK_CLIENT_ID}", "client_id: " + quoteJSON(values.ClientID)},
		{"client_secret_file: /etc/dicomweb-oauth/pacs-client-secret",
			"client_secret_file: " + quoteJSON(values.SecretFile)},
	}
	text, err := ReplaceEach(string(source), replacements)
	if err != nil {
		return "", err
	}
	if err := checkServiceLoopback([]byte(text)); err != nil {
		return "", err
	}
	return text, nil
}

// quoteJSON writes a JSON string, which YAML reads as a double-quoted scalar
// with the same value.
func quoteJSON(value string) string {
	encoded, _ := json.Marshal(value)
	return string(encoded)
}

// serviceFile is the part of a service configuration that checkServiceLoopback
// and ClusterNames read.
type serviceFile struct {
	Listen   map[string]string `yaml:"listen"`
	Clusters map[string]struct {
		Token struct {
			TokenURL string `yaml:"token_url"`
		} `yaml:"token"`
	} `yaml:"clusters"`
}

func decodeServiceFile(data []byte) (serviceFile, error) {
	var file serviceFile
	if err := yaml.Unmarshal(data, &file); err != nil {
		return file, fmt.Errorf("harness: invalid service configuration: %w", err)
	}
	return file, nil
}

// checkServiceLoopback returns an error when a listener or a token_url of the
// configuration names a host other than 127.0.0.1.
func checkServiceLoopback(data []byte) error {
	file, err := decodeServiceFile(data)
	if err != nil {
		return err
	}
	for name, addr := range file.Listen {
		if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
			return fmt.Errorf("harness: listen.%s is %q, want 127.0.0.1:PORT", name, addr)
		}
	}
	for name, cluster := range file.Clusters {
		target, err := url.Parse(cluster.Token.TokenURL)
		if err != nil || target.Hostname() != "127.0.0.1" {
			return fmt.Errorf("harness: clusters.%s.token.token_url is %q, want a URL on 127.0.0.1",
				name, cluster.Token.TokenURL)
		}
	}
	return nil
}

// ClusterNames returns the sorted cluster names of a service configuration.
func ClusterNames(data []byte) ([]string, error) {
	file, err := decodeServiceFile(data)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(file.Clusters)), nil
}
