package harness

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"text/template"
)

// nginxPath is where the Debian package nginx-light installs nginx.
const nginxPath = "/usr/sbin/nginx"

//go:embed nginx.conf.tmpl
var nginxTemplateText string

var nginxTemplate = template.Must(template.New("nginx.conf").Parse(nginxTemplateText))

//go:embed nginx-shipped.conf.tmpl
var shippedNginxTemplateText string

// shippedNginxTemplate wraps the rendered shipped server block.
var shippedNginxTemplate = template.Must(template.New("nginx.conf").Parse(shippedNginxTemplateText))

// shippedNginxTemplateData is what nginx-shipped.conf.tmpl expects.
type shippedNginxTemplateData struct {
	Prefix      string
	ServerFile  string
	ReadyListen string
	// WorkerUser is the user of the worker processes, set only when the
	// test runs as root.
	WorkerUser string
}

// InjectionMode selects how nginx sets the Authorization header.
type InjectionMode string

const (
	// InjectFromService requests the header from the service's HTTP check
	// endpoint with auth_request.
	InjectFromService InjectionMode = "auth_request"
	// InjectStatic sets a fixed header value.
	InjectStatic InjectionMode = "static"
	// InjectNone forwards requests without an Authorization header.
	InjectNone InjectionMode = "none"
)

// NginxConfig sets the template values of the nginx configuration.
type NginxConfig struct {
	Mode InjectionMode
	// Upstream is the host:port that requests are forwarded to (the gate).
	Upstream string
	// CheckURL is the service's check URL of the cluster, for InjectFromService.
	CheckURL string
	// Cluster is named in the 503 body that nginx sends when no token is available.
	Cluster string
	// StaticAuthorization is the header value for InjectStatic.
	StaticAuthorization string
}

// Nginx is a running nginx.
type Nginx struct {
	URL string
	// Prefix is the folder with the configuration, the logs and the
	// temporary files.
	Prefix     string
	ConfigPath string
	Process    *Process
}

// FindNginx returns the nginx binary, or an error naming the package to install.
func FindNginx() (string, error) {
	binary, err := exec.LookPath("nginx")
	if err != nil {
		binary = nginxPath
	}
	if _, err := os.Stat(binary); err != nil {
		return "", fmt.Errorf("nginx binary not found in PATH or at %s (Debian package nginx-light)", nginxPath)
	}
	return binary, nil
}

// safeNginxValue matches values that can go inside a double-quoted nginx
// string or a URL without escaping.
var safeNginxValue = regexp.MustCompile(`^[A-Za-z0-9 ._~:/=+-]*$`)

// validate rejects values that the template would have to escape. The error
// names the field but not the value, which can be a token.
func (cfg NginxConfig) validate() error {
	fields := []struct{ name, value string }{
		{"Upstream", cfg.Upstream},
		{"CheckURL", cfg.CheckURL},
		{"Cluster", cfg.Cluster},
		{"StaticAuthorization", cfg.StaticAuthorization},
	}
	for _, field := range fields {
		if !safeNginxValue.MatchString(field.value) {
			return fmt.Errorf("harness: NginxConfig.%s has a character that needs escaping in nginx.conf", field.name)
		}
	}
	return nil
}

// nginxTemplateData is what nginx.conf.tmpl expects.
type nginxTemplateData struct {
	NginxConfig
	Prefix string
	Listen string
}

// StartNginx writes the configuration into a new folder of the Env, starts
// nginx with that folder as prefix and waits until it serves requests. The pid file,
// logs and temporary files all stay in that folder.
func (e *Env) StartNginx(ctx context.Context, cfg NginxConfig) (*Nginx, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	prefix, err := e.makeNginxPrefix("nginx")
	if err != nil {
		return nil, err
	}
	addrs, err := FreeAddrs(1)
	if err != nil {
		return nil, err
	}

	configPath := filepath.Join(prefix, "nginx.conf")
	data := nginxTemplateData{NginxConfig: cfg, Prefix: prefix, Listen: addrs[0]}
	if err := writeTemplate(configPath, nginxTemplate, data); err != nil {
		return nil, err
	}
	return e.runNginx(ctx, "nginx", prefix, configPath, addrs[0], "/_e2e_ready", 204)
}

// ShippedNginxConfig sets how StartShippedNginx renders ShippedNginxFile.
type ShippedNginxConfig struct {
	// Name labels the process and its folder. Empty means "nginx".
	Name string
	// Source is the content of the shipped file.
	Source []byte
	// Upstream, CheckAddr and TrustedCA replace the shipped values; see
	// ShippedNginxValues.
	Upstream  string
	CheckAddr string
	TrustedCA string
	// Edits are applied after the address replacements, for tests that
	// change the shipped file on purpose. Each Old must occur exactly once.
	Edits []Replacement
}

// StartShippedNginx renders the shipped server block with a free listen
// address and the given upstream, service and CA, wraps it in a minimal
// nginx.conf, and starts nginx in a new folder of the Env. The wrapper adds
// a second server with a readiness probe on another free port, because
// every location of the shipped server needs the service or the upstream.
func (e *Env) StartShippedNginx(ctx context.Context, cfg ShippedNginxConfig) (*Nginx, error) {
	name := cfg.Name
	if name == "" {
		name = "nginx"
	}
	prefix, err := e.makeNginxPrefix(name)
	if err != nil {
		return nil, err
	}
	addrs, err := FreeAddrs(2)
	if err != nil {
		return nil, err
	}

	values := ShippedNginxValues{
		Listen:    addrs[0],
		Upstream:  cfg.Upstream,
		CheckAddr: cfg.CheckAddr,
		TrustedCA: cfg.TrustedCA,
	}
	server, err := RenderShippedNginx(cfg.Source, values, cfg.Edits...)
	if err != nil {
		return nil, err
	}
	serverPath := filepath.Join(prefix, "dicomweb-oauth.conf")
	if err := os.WriteFile(serverPath, []byte(server), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", serverPath, err)
	}
	configPath := filepath.Join(prefix, "nginx.conf")
	data := shippedNginxTemplateData{Prefix: prefix, ServerFile: serverPath, ReadyListen: addrs[1]}
	if os.Geteuid() == 0 {
		data.WorkerUser = "root"
	}
	if err := writeTemplate(configPath, shippedNginxTemplate, data); err != nil {
		return nil, err
	}
	n, err := e.runNginx(ctx, name, prefix, configPath, addrs[1], "/_e2e_ready", 204)
	if err != nil {
		return nil, err
	}
	n.URL = "http://" + addrs[0]
	return n, nil
}

// makeNginxPrefix creates the prefix folder of an nginx and its folders for
// temporary files.
func (e *Env) makeNginxPrefix(name string) (string, error) {
	prefix, err := e.MakeDir(name)
	if err != nil {
		return "", err
	}
	for _, temp := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if _, err := e.MakeDir(filepath.Join(name, "temp", temp)); err != nil {
			return "", err
		}
	}
	return prefix, nil
}

// runNginx starts nginx with the configuration and waits until readyPath on
// listen returns readyStatus.
func (e *Env) runNginx(ctx context.Context, name, prefix, configPath, listen, readyPath string,
	readyStatus int) (*Nginx, error) {
	binary, err := FindNginx()
	if err != nil {
		return nil, err
	}
	// -e sets the error log used before the configuration is read, which
	// otherwise is the compiled-in default outside the prefix.
	args := []string{"-p", prefix, "-c", configPath, "-e", filepath.Join(prefix, "error.log")}
	p, err := e.Start(ProcessSpec{
		Name:     name,
		Path:     binary,
		Args:     args,
		Dir:      prefix,
		LogFiles: []string{filepath.Join(prefix, "error.log"), filepath.Join(prefix, "access.log")},
	})
	if err != nil {
		return nil, err
	}
	baseURL := "http://" + listen
	if err := WaitHTTP(ctx, baseURL+readyPath, readyStatus, p); err != nil {
		return nil, err
	}
	return &Nginx{URL: baseURL, Prefix: prefix, ConfigPath: configPath, Process: p}, nil
}

// AccessLog returns the content of the access log.
func (n *Nginx) AccessLog() (string, error) {
	return readLog(filepath.Join(n.Prefix, "access.log"))
}

// ErrorLog returns the content of the error log.
func (n *Nginx) ErrorLog() (string, error) {
	return readLog(filepath.Join(n.Prefix, "error.log"))
}

func readLog(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read nginx log: %w", err)
	}
	return string(data), nil
}

func writeTemplate(path string, tmpl *template.Template, data any) error {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return fmt.Errorf("render %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
