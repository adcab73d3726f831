package tokens

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testServiceAccount = "dicomweb-oauth@test-project.iam.gserviceaccount.com"

// writeServiceAccountKey writes a Google service account JSON key with
// testRSAKey and the given token_uri, and returns its path.
func writeServiceAccountKey(t *testing.T, tokenURI string) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(testRSAKey())
	if err != nil {
		t.Fatalf("MarshalPKCS8PrivateKey: %v", err)
	}
	key := map[string]string{
		"type":           "service_account",
		"project_id":     "test-project",
		"private_key_id": "0123456789abcdef",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   testServiceAccount,
		"client_id":      "123456789012345678901",
		"token_uri":      tokenURI,
	}
	data, err := json.Marshal(key)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	path := filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("writing the key file: %v", err)
	}
	return path
}

func jwtBearerConfig(keyFile, subject string) *Config {
	c := &Config{
		Provider:              ProviderGoogle,
		ServiceAccountKeyFile: keyFile,
		Scopes:                []string{googleHealthcareScope, "openid"},
		Subject:               subject,
	}
	c.SetDefaults()
	return c
}

func TestJWTBearerRequest(t *testing.T) {
	for name, subject := range map[string]string{"no subject": "", "subject": "radiologist@example.test"} {
		t.Run(name, func(t *testing.T) {
			e := newFakeEndpoint(t)
			e.SetToken("ya29.test-token", 3599)
			c := jwtBearerConfig(writeServiceAccountKey(t, e.URL()), subject)

			tok, err := newTestSource(t, c).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.AccessToken != "ya29.test-token" {
				t.Errorf("access token = %q, want ya29.test-token", tok.AccessToken)
			}
			if got := tok.Lifetime(); got != 3599*time.Second {
				t.Errorf("lifetime = %v, want 3599s", got)
			}

			form, _ := e.Last()
			if got := form.Get("grant_type"); got != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
				t.Errorf("grant_type = %q, want urn:ietf:params:oauth:grant-type:jwt-bearer", got)
			}
			a := verifyAssertion(t, form.Get("assertion"), testRSAKey().Public())
			if got := a.header["kid"]; got != "0123456789abcdef" {
				t.Errorf("assertion kid = %v, want the private_key_id 0123456789abcdef", got)
			}
			wantClaims := map[string]string{
				"iss":   testServiceAccount,
				"scope": googleHealthcareScope + " openid",
				"aud":   e.URL(),
			}
			for claim, want := range wantClaims {
				if got := a.claims[claim]; got != want {
					t.Errorf("assertion %s = %v, want %q", claim, got, want)
				}
			}
			gotSub, hasSub := a.claims["sub"]
			switch {
			case subject == "" && hasSub:
				t.Errorf("assertion sub = %v, want none without subject", gotSub)
			case subject != "" && gotSub != subject:
				t.Errorf("assertion sub = %v, want %q", gotSub, subject)
			}
			if exp, iat := intClaim(t, a.claims, "exp"), intClaim(t, a.claims, "iat"); exp <= iat {
				t.Errorf("assertion exp %d is not after iat %d", exp, iat)
			}
		})
	}
}

// TestJWTBearerTokenURLOverride: token_url in the configuration replaces the
// key file's token_uri.
func TestJWTBearerTokenURLOverride(t *testing.T) {
	e := newFakeEndpoint(t)
	c := jwtBearerConfig(writeServiceAccountKey(t, "http://127.0.0.1:1/unused"), "")
	c.TokenURL = e.URL()

	if _, err := newTestSource(t, c).Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if n := e.requests.Load(); n != 1 {
		t.Errorf("token_url endpoint saw %d requests, want 1", n)
	}
}

func TestJWTBearerErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantClass ErrorClass
		wantCode  string
		wantIn    []string
	}{
		{
			name: "invalid grant", status: http.StatusBadRequest,
			body:      `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`,
			wantClass: ClassConfig, wantCode: "invalid_grant", wantIn: []string{"400", "Invalid JWT Signature."},
		},
		{
			name: "unauthorized client", status: http.StatusUnauthorized,
			body: `{"error":"unauthorized_client",` +
				`"error_description":"Client is unauthorized to retrieve access tokens using this method."}`,
			wantClass: ClassConfig, wantCode: "unauthorized_client", wantIn: []string{"unauthorized to retrieve"},
		},
		{
			name: "server error", status: http.StatusServiceUnavailable, body: `backend unavailable`,
			wantClass: ClassTransient, wantIn: []string{"503", "backend unavailable"},
		},
	}
	e := newFakeEndpoint(t)
	c := jwtBearerConfig(writeServiceAccountKey(t, e.URL()), "")
	src := newTestSource(t, c)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetRaw(tt.status, "application/json; charset=utf-8", tt.body, nil)

			_, err := src.Fetch(context.Background())
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
			if fe.Code != tt.wantCode {
				t.Errorf("code = %q, want %q (error: %v)", fe.Code, tt.wantCode, err)
			}
			if fe.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", fe.StatusCode, tt.status)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestNewJWTBearerErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatalf("writing %s: %v", path, err)
		}
		return path
	}
	tests := []struct {
		name   string
		file   string
		wantIn []string
	}{
		{"missing file", filepath.Join(dir, "missing.json"), []string{"service_account_key_file", "missing.json"}},
		{"not json", write("not.json", "not json"), []string{"service_account_key_file", "not a service account JSON key"}},
		{"user credentials", write("user.json",
			`{"type":"authorized_user","client_id":"x","client_secret":"y","refresh_token":"z"}`),
			[]string{"service_account_key_file", "not a service account JSON key"}},
		{"token_uri not a URL", write("bad-uri.json",
			`{"type":"service_account","client_email":"a@b","private_key":"x","token_uri":"oauth2.example.test/token"}`),
			[]string{"token_uri", "oauth2.example.test/token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSource(jwtBearerConfig(tt.file, ""))
			if err == nil {
				t.Fatal("NewSource succeeded, want an error")
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}
