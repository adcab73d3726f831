package extproc

import (
	"strings"
	"testing"
)

// twoClusters returns clusters "a" and "b" with one host each.
func twoClusters(hostA, hostB string) map[string][]string {
	return map[string][]string{"a": {hostA}, "b": {hostB}}
}

func TestNewRouterDuplicateHost(t *testing.T) {
	tests := []struct {
		name  string
		hosts map[string][]string
	}{
		{"same host", twoClusters("pacs.example.test", "pacs.example.test")},
		{"case", twoClusters("pacs.example.test", "PACS.Example.Test")},
		{"trailing dot", twoClusters("pacs.example.test", "pacs.example.test.")},
		{"same host and port", twoClusters("pacs.example.test:8443", "pacs.example.test:8443")},
		{"trailing dot and port", twoClusters("pacs.example.test:8443", "PACS.example.test.:8443")},
		{"ipv6", twoClusters("[::1]:8443", "[::1]:8443")},
		{"ipv6 brackets", twoClusters("::1", "[::1]")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			router, err := NewRouter(tt.hosts)
			if err == nil {
				t.Fatalf("NewRouter(%v) = %v, want an error", tt.hosts, router)
			}
			for _, cluster := range []string{`"a"`, `"b"`} {
				if !strings.Contains(err.Error(), cluster) {
					t.Errorf("error %q does not name cluster %s", err, cluster)
				}
			}
		})
	}
}

func TestNewRouterAcceptsDistinctHosts(t *testing.T) {
	tests := []struct {
		name  string
		hosts map[string][]string
	}{
		{"same host in one cluster", map[string][]string{"a": {"pacs.example.test", "PACS.example.test"}}},
		{"host and host:port", twoClusters("pacs.example.test", "pacs.example.test:8443")},
		{"different ports", twoClusters("pacs.example.test:443", "pacs.example.test:8443")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRouter(tt.hosts); err != nil {
				t.Errorf("NewRouter(%v): %v, want no error", tt.hosts, err)
			}
		})
	}
}

func TestRouterCluster(t *testing.T) {
	router, err := NewRouter(map[string][]string{
		"any-port":  {"pacs.example.test"},
		"port-8443": {"pacs.example.test:8443", "10.0.0.5:8443"},
		"ipv6":      {"[::1]:8443", "fd00::5"},
		"no-hosts":  nil,
	})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}

	tests := []struct {
		name      string
		named     string
		authority string
		want      string
		wantOK    bool
	}{
		{"named", "no-hosts", "", "no-hosts", true},
		{"named wins over authority", "ipv6", "pacs.example.test", "ipv6", true},
		{"named unknown", "pacs-z", "pacs.example.test", "pacs-z", false},
		{"empty", "", "", "", false},
		{"host", "", "pacs.example.test", "any-port", true},
		{"host any port", "", "pacs.example.test:80", "any-port", true},
		{"host:port before host", "", "pacs.example.test:8443", "port-8443", true},
		{"uppercase", "", "PACS.EXAMPLE.TEST:8443", "port-8443", true},
		{"trailing dot", "", "pacs.example.test.", "any-port", true},
		{"trailing dot with port", "", "pacs.example.test.:8443", "port-8443", true},
		{"spaces", "", " pacs.example.test ", "any-port", true},
		{"ipv4 with port", "", "10.0.0.5:8443", "port-8443", true},
		{"ipv4 other port", "", "10.0.0.5:9443", "", false},
		{"ipv4 no port", "", "10.0.0.5", "", false},
		{"ipv6 with port", "", "[::1]:8443", "ipv6", true},
		{"ipv6 other port", "", "[::1]:9443", "", false},
		{"ipv6 host any port", "", "[fd00::5]:443", "ipv6", true},
		{"ipv6 host brackets", "", "[FD00::5]", "ipv6", true},
		{"unknown host", "", "other.example.test", "", false},
		{"suffix is not a match", "", "evil-pacs.example.test", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := router.Cluster(tt.named, tt.authority)
			if ok != tt.wantOK {
				t.Errorf("Cluster(%q, %q) ok = %v, want %v", tt.named, tt.authority, ok, tt.wantOK)
			}
			if ok && got != tt.want {
				t.Errorf("Cluster(%q, %q) = %q, want %q", tt.named, tt.authority, got, tt.want)
			}
		})
	}
}
