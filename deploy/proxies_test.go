package deploy_test

import (
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Traefik structs below declare only the fields these files use. Their
// names come from Traefik v3's reference documentation: the routing pages
// for routers, forwardAuth, stripPrefix, addPrefix, services and
// serversTransports, and the install pages for entryPoints and
// providers.file. Decoding with known fields makes a misspelled key fail.

type traefikStatic struct {
	EntryPoints map[string]struct {
		Address   string `yaml:"address"`
		Transport struct {
			RespondingTimeouts struct {
				ReadTimeout  string `yaml:"readTimeout"`
				WriteTimeout string `yaml:"writeTimeout"`
				IdleTimeout  string `yaml:"idleTimeout"`
			} `yaml:"respondingTimeouts"`
		} `yaml:"transport"`
	} `yaml:"entryPoints"`
	Providers struct {
		File struct {
			Filename string `yaml:"filename"`
			Watch    bool   `yaml:"watch"`
		} `yaml:"file"`
	} `yaml:"providers"`
}

type traefikDynamic struct {
	HTTP struct {
		Routers map[string]struct {
			EntryPoints []string `yaml:"entryPoints"`
			Rule        string   `yaml:"rule"`
			Middlewares []string `yaml:"middlewares"`
			Service     string   `yaml:"service"`
		} `yaml:"routers"`
		Middlewares map[string]struct {
			ForwardAuth *struct {
				Address             string   `yaml:"address"`
				AuthResponseHeaders []string `yaml:"authResponseHeaders"`
			} `yaml:"forwardAuth"`
			StripPrefix *struct {
				Prefixes []string `yaml:"prefixes"`
			} `yaml:"stripPrefix"`
			AddPrefix *struct {
				Prefix string `yaml:"prefix"`
			} `yaml:"addPrefix"`
		} `yaml:"middlewares"`
		Services map[string]struct {
			LoadBalancer struct {
				Servers []struct {
					URL string `yaml:"url"`
				} `yaml:"servers"`
				PassHostHeader   *bool  `yaml:"passHostHeader"`
				ServersTransport string `yaml:"serversTransport"`
			} `yaml:"loadBalancer"`
		} `yaml:"services"`
		ServersTransports map[string]struct {
			ServerName         string `yaml:"serverName"`
			ForwardingTimeouts struct {
				DialTimeout           string `yaml:"dialTimeout"`
				ResponseHeaderTimeout string `yaml:"responseHeaderTimeout"`
				IdleConnTimeout       string `yaml:"idleConnTimeout"`
			} `yaml:"forwardingTimeouts"`
		} `yaml:"serversTransports"`
	} `yaml:"http"`
}

// checkAuthAddress checks that a check URL, such as
// http://127.0.0.1:9002/check/pacs, reaches the service's HTTP listener and
// names a configured cluster.
func checkAuthAddress(t *testing.T, where, address string, config resolvedConfig) {
	t.Helper()
	u, err := url.Parse(address)
	if err != nil {
		t.Errorf("%s: invalid check address %q: %v", where, address, err)
		return
	}
	if u.Host != config.Listen.HTTP {
		t.Errorf("%s: the check goes to %s, but the service's HTTP listener is %s", where, u.Host, config.Listen.HTTP)
	}
	cluster, found := strings.CutPrefix(u.Path, "/check/")
	if !found || cluster == "" || strings.Contains(cluster, "/") {
		t.Errorf("%s: check path %q must be /check/CLUSTER", where, u.Path)
		return
	}
	if _, ok := config.Clusters[cluster]; !ok {
		t.Errorf("%s: cluster %q is not in the service configuration", where, cluster)
	}
}

func TestTraefikConfigs(t *testing.T) {
	var static traefikStatic
	if err := decodeKnownFields(readFile(t, "traefik/traefik.yaml"), &static); err != nil {
		t.Fatalf("traefik/traefik.yaml: %v", err)
	}
	var dynamic traefikDynamic
	if err := decodeKnownFields(readFile(t, "traefik/dynamic.yaml"), &dynamic); err != nil {
		t.Fatalf("traefik/dynamic.yaml: %v", err)
	}
	config := checkServiceConfig(t, "traefik/dicomweb-oauth.yaml", readFile(t, "traefik/dicomweb-oauth.yaml"),
		[]string{"/etc/dicomweb-oauth"}, keycloakEnv)

	if path.Base(static.Providers.File.Filename) != "dynamic.yaml" {
		t.Errorf("providers.file.filename %q must be the dynamic.yaml of this folder", static.Providers.File.Filename)
	}
	for name, ep := range static.EntryPoints {
		if host, _, err := net.SplitHostPort(ep.Address); err != nil || host != "127.0.0.1" {
			t.Errorf("entry point %s listens on %q; keep it on 127.0.0.1", name, ep.Address)
		}
		if ep.Transport.RespondingTimeouts.ReadTimeout != "0s" {
			t.Errorf("entry point %s: readTimeout %q would cut STOW-RS uploads; set 0s", name,
				ep.Transport.RespondingTimeouts.ReadTimeout)
		}
	}

	h := dynamic.HTTP
	if len(h.Routers) == 0 {
		t.Fatal("traefik/dynamic.yaml has no router")
	}
	for name, r := range h.Routers {
		for _, ep := range r.EntryPoints {
			if _, ok := static.EntryPoints[ep]; !ok {
				t.Errorf("router %s uses entry point %q, which traefik.yaml does not define", name, ep)
			}
		}
		authFirst := len(r.Middlewares) > 0 && h.Middlewares[r.Middlewares[0]].ForwardAuth != nil
		if !authFirst {
			t.Errorf("router %s: the first middleware must be the forwardAuth one", name)
		}
		for _, m := range r.Middlewares {
			if _, ok := h.Middlewares[m]; !ok {
				t.Errorf("router %s uses middleware %q, which is not defined", name, m)
			}
		}
		if _, ok := h.Services[r.Service]; !ok {
			t.Errorf("router %s uses service %q, which is not defined", name, r.Service)
		}
	}

	for name, m := range h.Middlewares {
		if m.ForwardAuth == nil {
			continue
		}
		checkAuthAddress(t, "middleware "+name, m.ForwardAuth.Address, config)
		if !slices.ContainsFunc(m.ForwardAuth.AuthResponseHeaders, func(s string) bool {
			return strings.EqualFold(s, "Authorization")
		}) {
			t.Errorf("middleware %s must copy Authorization with authResponseHeaders", name)
		}
	}

	for name, s := range h.Services {
		lb := s.LoadBalancer
		if lb.PassHostHeader == nil || *lb.PassHostHeader {
			t.Errorf("service %s must set passHostHeader: false, so the upstream gets its own Host", name)
		}
		transport, ok := h.ServersTransports[lb.ServersTransport]
		if !ok {
			t.Errorf("service %s uses serversTransport %q, which is not defined", name, lb.ServersTransport)
			continue
		}
		for _, server := range lb.Servers {
			u, err := url.Parse(server.URL)
			if err != nil || u.Scheme != "https" || u.Hostname() != transport.ServerName {
				t.Errorf("service %s: server %q must be https://%s", name, server.URL, transport.ServerName)
			}
		}
	}
}

// keycloakEnv are the variables the Keycloak clusters of the shipped service
// configurations need; they have no defaults, so that a forgotten one is an
// error and never a request to a placeholder host.
var keycloakEnv = map[string]string{"KEYCLOAK_HOST": "keycloak.example.test", "KEYCLOAK_CLIENT_ID": "orthanc-egress"}

var nginxCheckPass = regexp.MustCompile(`proxy_pass\s+(http://\S+/check/\S+);`)

// TestNginxConfig checks only what ties deploy/nginx to the service: the
// auth_request locations and the service configuration.
func TestNginxConfig(t *testing.T) {
	config := checkServiceConfig(t, "nginx/dicomweb-oauth.yaml", readFile(t, "nginx/dicomweb-oauth.yaml"),
		[]string{"/etc/dicomweb-oauth"}, keycloakEnv)
	matches := nginxCheckPass.FindAllStringSubmatch(string(readFile(t, "nginx/dicomweb-oauth.conf")), -1)
	if len(matches) == 0 {
		t.Fatal("nginx/dicomweb-oauth.conf has no proxy_pass to /check/CLUSTER")
	}
	for _, m := range matches {
		checkAuthAddress(t, "nginx/dicomweb-oauth.conf", m[1], config)
	}
}
