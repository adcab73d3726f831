// Package config loads and checks the service's YAML (or JSON) configuration
// file, and reports every problem at once with its key path and line.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// Default listener addresses. All are on loopback, so nothing is exposed
// until an operator chooses to.
const (
	DefaultGRPCAddr  = "127.0.0.1:9001"
	DefaultHTTPAddr  = "127.0.0.1:9002"
	DefaultAdminAddr = "127.0.0.1:9901"
)

// File is the whole configuration.
type File struct {
	Listen Listen `yaml:"listen"`
	Admin  Admin  `yaml:"admin,omitempty"`
	Log    Log    `yaml:"log"`
	// DecisionTimeout bounds how long a proxy request waits for a token.
	DecisionTimeout time.Duration `yaml:"decision_timeout"`
	// Clusters maps an upstream cluster name, as the proxy names it, to how
	// its requests are authorized.
	Clusters map[string]*Cluster `yaml:"clusters"`
}

// Listen holds the listener addresses, each host:port.
type Listen struct {
	// GRPC serves ext_proc, ext_authz and gRPC health.
	GRPC string `yaml:"grpc"`
	// HTTP serves the auth-request endpoint.
	HTTP string `yaml:"http"`
	// Admin serves /healthz, /readyz, /metrics, /status and
	// POST /clusters/{name}/refresh.
	Admin string `yaml:"admin"`
}

// Admin sets who may use the admin listener.
type Admin struct {
	// TokenFile is the path of a file that contains the bearer token every
	// admin path except /healthz and /readyz then requires. The service
	// reads it at startup. It is required when listen.admin is not a
	// loopback address.
	TokenFile string `yaml:"token_file,omitempty"`
}

// Log sets the log output.
type Log struct {
	// Level is debug, info (the default), warn or error.
	Level string `yaml:"level"`
	// Format is json (the default) or text.
	Format string `yaml:"format"`
}

// Cluster is one upstream that needs tokens.
type Cluster struct {
	// Hosts are the authorities (host or host:port) whose requests belong to
	// this cluster when the proxy does not name the cluster.
	Hosts []string      `yaml:"hosts"`
	Token tokens.Config `yaml:"token"`
}

// Error is one configuration problem.
type Error struct {
	File string
	Line int
	// Path is the key path, such as clusters.azure-dicom.token.token_url.
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration file.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes and validates a configuration file. Its error is an
// Errors value listing every problem, or an I/O error.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates configuration data; name is used in messages.
func Parse(name string, data []byte) (*File, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{{File: name, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, Errors{{File: name, Msg: "the file is empty; it needs at least a clusters section"}}
	}

	d := &decoder{file: name}
	var f File
	d.decode(root.Content[0], reflect.ValueOf(&f).Elem(), "")
	lineOf := keyLines(root.Content[0], "")
	f.setDefaults()
	for _, e := range f.validate() {
		if repeatsDecodeError(d, e.Path) {
			continue
		}
		e.File = name
		e.Line = closestLine(lineOf, e.Path)
		d.errs = append(d.errs, e)
	}

	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
		return nil, Errors(d.errs)
	}
	return &f, nil
}

// repeatsDecodeError reports whether a validation error at path only repeats
// a decoding error. Validate reports a client secret that is set neither way
// under client_secret_file, so a client_secret that failed to decode counts
// as well.
func repeatsDecodeError(d *decoder, path string) bool {
	if d.decodeFailed(path) {
		return true
	}
	if token, ok := strings.CutSuffix(path, ".client_secret_file"); ok {
		return d.decodeFailed(token + ".client_secret")
	}
	return false
}

func (f *File) setDefaults() {
	if f.Listen.GRPC == "" {
		f.Listen.GRPC = DefaultGRPCAddr
	}
	if f.Listen.HTTP == "" {
		f.Listen.HTTP = DefaultHTTPAddr
	}
	if f.Listen.Admin == "" {
		f.Listen.Admin = DefaultAdminAddr
	}
	if f.Log.Level == "" {
		f.Log.Level = "info"
	}
	if f.Log.Format == "" {
		f.Log.Format = "json"
	}
	if f.DecisionTimeout == 0 {
		f.DecisionTimeout = extproc.DefaultDecisionTimeout
	}
	for _, c := range f.Clusters {
		if c != nil {
			c.Token.SetDefaults()
		}
	}
}

func (f *File) validate() []*Error {
	var errs []*Error
	add := func(path, format string, args ...any) {
		errs = append(errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}

	addrs := map[string]string{}
	for _, l := range []struct{ key, addr string }{
		{"listen.grpc", f.Listen.GRPC}, {"listen.http", f.Listen.HTTP}, {"listen.admin", f.Listen.Admin},
	} {
		if err := checkAddr(l.addr); err != nil {
			add(l.key, "%v", err)
		} else if other, dup := addrs[l.addr]; dup && !strings.HasSuffix(l.addr, ":0") {
			add(l.key, "%s is also used by %s; each listener needs its own address", l.addr, other)
		}
		addrs[l.addr] = l.key
	}

	if f.Admin.TokenFile == "" && checkAddr(f.Listen.Admin) == nil && !IsLoopback(f.Listen.Admin) {
		add("admin.token_file", "missing; listen.admin %s is not a loopback address, so set "+
			"admin.token_file to a file that contains the bearer token the admin API then requires", f.Listen.Admin)
	}

	switch f.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "invalid level %q; use debug, info, warn or error", f.Log.Level)
	}
	if f.Log.Format != "json" && f.Log.Format != "text" {
		add("log.format", "invalid format %q; use json or text", f.Log.Format)
	}
	if f.DecisionTimeout < 0 {
		add("decision_timeout", "must not be negative, got %s", f.DecisionTimeout)
	}

	if len(f.Clusters) == 0 {
		add("clusters", "missing; configure at least one cluster")
	}
	errs = append(errs, f.validateClusters()...)
	return errs
}

func (f *File) validateClusters() []*Error {
	var errs []*Error
	hostOwner := map[string]string{}

	for _, name := range f.ClusterNames() {
		c := f.Clusters[name]
		path := "clusters." + name
		if err := checkClusterName(name); err != nil {
			errs = append(errs, &Error{Path: path, Msg: err.Error()})
		}
		if c == nil {
			errs = append(errs, &Error{Path: path + ".token", Msg: "missing"})
			continue
		}
		for i, h := range c.Hosts {
			hostPath := fmt.Sprintf("%s.hosts[%d]", path, i)
			if err := checkHost(h); err != nil {
				errs = append(errs, &Error{Path: hostPath, Msg: err.Error()})
				continue
			}
			key := extproc.NormalizeHost(h)
			if other, dup := hostOwner[key]; dup && other == name {
				errs = append(errs, &Error{Path: hostPath, Msg: fmt.Sprintf("host %q is listed twice; remove one", h)})
			} else if dup {
				errs = append(errs, &Error{Path: hostPath,
					Msg: fmt.Sprintf("host %q is also listed by cluster %q; a host belongs to one cluster", h, other)})
			}
			hostOwner[key] = name
		}
		errs = append(errs, tokenErrors(path+".token", &c.Token)...)
	}
	return errs
}

func tokenErrors(path string, c *tokens.Config) []*Error {
	err := c.Validate()
	if err == nil {
		return nil
	}
	var errs []*Error
	for _, e := range unjoin(err) {
		var fe *tokens.FieldError
		if errors.As(e, &fe) {
			errs = append(errs, &Error{Path: path + "." + fe.Key, Msg: fe.Msg})
		} else {
			errs = append(errs, &Error{Path: path, Msg: e.Error()})
		}
	}
	return errs
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ClusterNames returns the cluster names in sorted order.
func (f *File) ClusterNames() []string {
	names := make([]string, 0, len(f.Clusters))
	for name := range f.Clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// ClusterHosts returns each cluster's hosts, the form extproc.NewRouter takes.
func (f *File) ClusterHosts() map[string][]string {
	out := make(map[string][]string, len(f.Clusters))
	for name, c := range f.Clusters {
		out[name] = c.Hosts
	}
	return out
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q; use host:port, such as 127.0.0.1:9001", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port in %q", addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, "/: ") {
		return fmt.Errorf("invalid host in %q", addr)
	}
	return nil
}

// IsLoopback reports whether the host of addr (host:port) is a loopback
// address: 127.0.0.0/8, ::1 or the name localhost. An empty host, which
// listens on every interface, and any other name are not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkClusterName rejects names that cannot be sent in a URL path segment
// or an Envoy context extension.
func checkClusterName(name string) error {
	if name == "" {
		return errors.New("a cluster name must not be empty")
	}
	if strings.ContainsAny(name, "/?#% \t\r\n") {
		return fmt.Errorf("invalid cluster name %q; use the Envoy cluster name, without /, ?, #, %% or spaces", name)
	}
	return nil
}

func checkHost(h string) error {
	if h == "" {
		return errors.New("a host must not be empty")
	}
	if strings.Contains(h, "://") || strings.ContainsAny(h, "/?# ") {
		return fmt.Errorf("invalid host %q; write the host name and optional port only, without scheme or path", h)
	}
	if _, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("invalid port in host %q", h)
		}
	}
	return nil
}

// Redacted is the placeholder shown instead of a secret.
const Redacted = "[redacted]"

// Redacted returns a copy of the configuration, defaults applied, whose
// secrets are replaced by Redacted, for check-config to print.
func (f *File) Redacted() *File {
	out := *f
	out.Clusters = make(map[string]*Cluster, len(f.Clusters))
	for name, c := range f.Clusters {
		cc := *c
		if cc.Token.ClientSecret != "" {
			cc.Token.ClientSecret = Redacted
		}
		if cc.Token.RefreshToken != "" {
			cc.Token.RefreshToken = Redacted
		}
		out.Clusters[name] = &cc
	}
	return &out
}
