package tokens

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// discoveryServer is an identity provider on loopback that serves JSON
// documents by path, returns 404 elsewhere, and counts requests per path.
type discoveryServer struct {
	server *httptest.Server

	mu     sync.Mutex
	docs   map[string]func() (int, any)
	counts map[string]int
}

func newDiscoveryServer(t *testing.T) *discoveryServer {
	t.Helper()
	d := &discoveryServer{docs: map[string]func() (int, any){}, counts: map[string]int{}}
	d.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.counts[r.URL.Path]++
		doc, ok := d.docs[r.URL.Path]
		d.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		status, body := doc()
		writeJSONBody(w, status, body)
	}))
	t.Cleanup(d.server.Close)
	return d
}

func (d *discoveryServer) URL() string { return d.server.URL }

// Serve responds to GET path with status and body.
func (d *discoveryServer) Serve(path string, status int, body any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docs[path] = func() (int, any) { return status, body }
}

// ServeToken serves a token endpoint at path.
func (d *discoveryServer) ServeToken(path, token string) {
	d.Serve(path, http.StatusOK, map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 3600})
}

func (d *discoveryServer) Count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[path]
}

func discoveryConfig(issuer string) *Config {
	c := &Config{Issuer: issuer, ClientID: "orthanc-egress", ClientSecret: "test-secret-value"}
	c.SetDefaults()
	return c
}

func TestDiscoveryOpenIDConfiguration(t *testing.T) {
	d := newDiscoveryServer(t)
	d.Serve("/.well-known/openid-configuration", http.StatusOK, map[string]string{
		"issuer": d.URL(), "token_endpoint": d.URL() + "/oauth2/token",
	})
	d.ServeToken("/oauth2/token", "discovered-token")
	src := newTestSource(t, discoveryConfig(d.URL()))

	for i := range 3 {
		tok, err := src.Fetch(context.Background())
		if err != nil {
			t.Fatalf("Fetch %d: %v", i+1, err)
		}
		if tok.AccessToken != "discovered-token" {
			t.Errorf("access token = %q, want discovered-token", tok.AccessToken)
		}
	}
	if n := d.Count("/.well-known/openid-configuration"); n != 1 {
		t.Errorf("discovery document fetched %d times, want 1 (cached)", n)
	}
	if n := d.Count("/oauth2/token"); n != 3 {
		t.Errorf("token endpoint saw %d requests, want 3", n)
	}
}

// TestDiscoveryRFC8414: an issuer with a path and no OpenID configuration is
// looked up at the RFC 8414 URL, with the well-known part before the path.
func TestDiscoveryRFC8414(t *testing.T) {
	d := newDiscoveryServer(t)
	issuer := d.URL() + "/realms/x"
	d.Serve("/.well-known/oauth-authorization-server/realms/x", http.StatusOK, map[string]string{
		"issuer": issuer, "token_endpoint": issuer + "/token",
	})
	d.ServeToken("/realms/x/token", "rfc8414-token")

	tok, err := newTestSource(t, discoveryConfig(issuer)).Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if tok.AccessToken != "rfc8414-token" {
		t.Errorf("access token = %q, want rfc8414-token", tok.AccessToken)
	}
	if n := d.Count("/realms/x/.well-known/openid-configuration"); n != 1 {
		t.Errorf("OpenID configuration requested %d times, want 1 (tried first)", n)
	}
}

func TestDiscoveryErrors(t *testing.T) {
	tests := []struct {
		name      string
		issuer    func(d *discoveryServer) string
		serve     func(d *discoveryServer)
		wantClass ErrorClass
		wantIn    func(d *discoveryServer) []string
		// wantTried are the paths that must have been requested.
		wantTried []string
	}{
		{
			name:   "issuer mismatch",
			issuer: func(d *discoveryServer) string { return d.URL() },
			serve: func(d *discoveryServer) {
				d.Serve("/.well-known/openid-configuration", http.StatusOK, map[string]string{
					"issuer": "https://other.example.test", "token_endpoint": d.URL() + "/token",
				})
			},
			wantClass: ClassConfig,
			wantIn: func(d *discoveryServer) []string {
				return []string{`"https://other.example.test"`, `"` + d.URL() + `"`}
			},
		},
		{
			name:      "no document",
			issuer:    func(d *discoveryServer) string { return d.URL() + "/realms/x" },
			serve:     func(*discoveryServer) {},
			wantClass: ClassConfig,
			wantIn: func(d *discoveryServer) []string {
				return []string{"404", d.URL() + "/realms/x/.well-known/openid-configuration"}
			},
			wantTried: []string{
				"/realms/x/.well-known/openid-configuration",
				"/.well-known/oauth-authorization-server/realms/x",
			},
		},
		{
			name:   "no token endpoint",
			issuer: func(d *discoveryServer) string { return d.URL() },
			serve: func(d *discoveryServer) {
				d.Serve("/.well-known/openid-configuration", http.StatusOK, map[string]string{"issuer": d.URL()})
			},
			wantClass: ClassConfig,
			wantIn:    func(*discoveryServer) []string { return []string{"no token_endpoint"} },
		},
		{
			name:   "token endpoint not a URL",
			issuer: func(d *discoveryServer) string { return d.URL() },
			serve: func(d *discoveryServer) {
				d.Serve("/.well-known/openid-configuration", http.StatusOK, map[string]string{
					"issuer": d.URL(), "token_endpoint": "/token",
				})
			},
			wantClass: ClassConfig,
			wantIn:    func(*discoveryServer) []string { return []string{"token_endpoint", `"/token"`} },
		},
		{
			name:   "server error",
			issuer: func(d *discoveryServer) string { return d.URL() },
			serve: func(d *discoveryServer) {
				d.Serve("/.well-known/openid-configuration", http.StatusServiceUnavailable, map[string]string{})
			},
			wantClass: ClassTransient,
			wantIn:    func(*discoveryServer) []string { return []string{"503"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDiscoveryServer(t)
			tt.serve(d)

			_, err := newTestSource(t, discoveryConfig(tt.issuer(d))).Fetch(context.Background())
			if err == nil {
				t.Fatal("Fetch succeeded, want an error")
			}
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FetchError", err, err)
			}
			if fe.Class != tt.wantClass {
				t.Errorf("class = %q, want %q (error: %v)", fe.Class, tt.wantClass, err)
			}
			for _, s := range tt.wantIn(d) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			for _, path := range tt.wantTried {
				if n := d.Count(path); n != 1 {
					t.Errorf("%s requested %d times, want 1", path, n)
				}
			}
		})
	}
}

// TestDiscoveryRetriesAfterFailure: a failed discovery is not cached, so the
// next request tries again.
func TestDiscoveryRetriesAfterFailure(t *testing.T) {
	d := newDiscoveryServer(t)
	d.Serve("/.well-known/openid-configuration", http.StatusServiceUnavailable, map[string]string{})
	d.ServeToken("/token", "late-token")
	src := newTestSource(t, discoveryConfig(d.URL()))

	if _, err := src.Fetch(context.Background()); err == nil {
		t.Fatal("Fetch succeeded while discovery fails, want an error")
	}
	d.Serve("/.well-known/openid-configuration", http.StatusOK, map[string]string{
		"issuer": d.URL(), "token_endpoint": d.URL() + "/token",
	})
	tok, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch after discovery recovered: %v", err)
	}
	if tok.AccessToken != "late-token" {
		t.Errorf("access token = %q, want late-token", tok.AccessToken)
	}
}

func TestDiscoveryURLs(t *testing.T) {
	tests := []struct {
		issuer string
		want   []string
	}{
		{"https://idp.example.test", []string{
			"https://idp.example.test/.well-known/openid-configuration",
			"https://idp.example.test/.well-known/oauth-authorization-server",
		}},
		{"https://idp.example.test/realms/x/", []string{
			"https://idp.example.test/realms/x/.well-known/openid-configuration",
			"https://idp.example.test/.well-known/oauth-authorization-server/realms/x",
		}},
		{"https://login.example.test/tenant-id/v2.0", []string{
			"https://login.example.test/tenant-id/v2.0/.well-known/openid-configuration",
			"https://login.example.test/.well-known/oauth-authorization-server/tenant-id/v2.0",
		}},
	}
	for _, tt := range tests {
		got := discoveryURLs(tt.issuer)
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("discoveryURLs(%q) = %q, want %q", tt.issuer, got, tt.want)
		}
	}
}
