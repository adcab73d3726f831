package tokens

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

func TestTokenEndpointURL(t *testing.T) {
	d := newDiscoveryServer(t)
	d.Serve("/.well-known/openid-configuration", http.StatusOK, map[string]string{
		"issuer": d.URL(), "token_endpoint": d.URL() + "/discovered/token",
	})
	keyFile := writeServiceAccountKey(t, "https://oauth2.example.test/token")

	tests := []struct {
		name   string
		config *Config
		want   string
	}{
		{"token_url", &Config{TokenURL: "https://idp.example.test/token", ClientID: "c", ClientSecret: "s"},
			"https://idp.example.test/token"},
		{"issuer discovery", &Config{Issuer: d.URL(), ClientID: "c", ClientSecret: "s"},
			d.URL() + "/discovered/token"},
		{"service account key", &Config{Grant: GrantJWTBearer, ServiceAccountKeyFile: keyFile,
			Scopes: []string{googleHealthcareScope}}, "https://oauth2.example.test/token"},
		{"managed identity", &Config{Grant: GrantManagedIdentity, Endpoint: "http://127.0.0.1:1/token",
			Resource: "https://dicom.example.test"}, "http://127.0.0.1:1/token"},
		{"file", &Config{Grant: GrantFile, TokenFile: "/run/token"}, ""},
		{"exec", &Config{Grant: GrantExec, Command: []string{"/bin/true"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.config.SetDefaults()
			if err := tt.config.Validate(); err != nil {
				t.Fatalf("invalid config: %v", err)
			}

			got, err := TokenEndpointURL(context.Background(), tt.config)

			if err != nil {
				t.Fatalf("TokenEndpointURL: %v", err)
			}
			if got != tt.want {
				t.Errorf("TokenEndpointURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTokenEndpointURLDiscoveryFails(t *testing.T) {
	d := newDiscoveryServer(t)
	c := discoveryConfig(d.URL())

	_, err := TokenEndpointURL(context.Background(), c)

	wantFetchError(t, err, "discovery document", "404")
}

func TestTLSClientConfig(t *testing.T) {
	ca := newCertAuthority()
	caFile := writePEMFile(t, t.TempDir(), "ca.pem", certPEM(ca.cert))

	config, err := TLSClientConfig(&Config{TLS: TLSConfig{CAFile: caFile}})

	if err != nil {
		t.Fatalf("TLSClientConfig: %v", err)
	}
	if config.RootCAs == nil {
		t.Error("RootCAs is nil, want the pool of tls.ca_file")
	}
	if config.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", config.MinVersion)
	}
}

func TestTLSClientConfigMissingCAFile(t *testing.T) {
	_, err := TLSClientConfig(&Config{TLS: TLSConfig{CAFile: "/nonexistent/ca.pem"}})

	if err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Errorf("error = %v, want one that names tls.ca_file", err)
	}
}

func TestVerifyAccessToken(t *testing.T) {
	d := newDiscoveryServer(t)
	serveJWKS(d)
	claims := accessTokenClaims{
		Issuer: verifyIssuer, Audience: jwt.Audience{verifyAudience},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}
	token := signAccessToken(t, testRSAKey(), "k1", claims)
	config := func(audience string) *Config {
		return &Config{Verify: VerifyConfig{JWKSURL: d.URL() + "/jwks", Issuer: verifyIssuer, Audience: audience}}
	}

	if err := VerifyAccessToken(context.Background(), config(verifyAudience), token); err != nil {
		t.Errorf("VerifyAccessToken of a valid token: %v", err)
	}

	err := VerifyAccessToken(context.Background(), config("pacs"), token)
	if err == nil || !strings.Contains(err.Error(), `expected it to contain "pacs"`) {
		t.Errorf("error = %v, want the audience mismatch", err)
	}

	if err := VerifyAccessToken(context.Background(), &Config{}, "not-a-jwt"); err != nil {
		t.Errorf("VerifyAccessToken without verify settings = %v, want nil", err)
	}
}
