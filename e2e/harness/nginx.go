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
	URL        string
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
	binary, err := FindNginx()
	if err != nil {
		return nil, err
	}

	prefix, err := e.MakeDir("nginx")
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if _, err := e.MakeDir(filepath.Join("nginx", "temp", name)); err != nil {
			return nil, err
		}
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

	// -e sets the error log used before the configuration is read, which
	// otherwise is the compiled-in default outside the prefix.
	args := []string{"-p", prefix, "-c", configPath, "-e", filepath.Join(prefix, "error.log")}
	p, err := e.Start(ProcessSpec{
		Name:     "nginx",
		Path:     binary,
		Args:     args,
		Dir:      prefix,
		LogFiles: []string{filepath.Join(prefix, "error.log"), filepath.Join(prefix, "access.log")},
	})
	if err != nil {
		return nil, err
	}
	baseURL := "http://" + addrs[0]
	if err := WaitHTTP(ctx, baseURL+"/_e2e_ready", 204, p); err != nil {
		return nil, err
	}
	return &Nginx{URL: baseURL, ConfigPath: configPath, Process: p}, nil
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
