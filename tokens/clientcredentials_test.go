package tokens

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func testConfig(tokenURL string) *Config {
	c := &Config{
		TokenURL:     tokenURL,
		ClientID:     "orthanc-egress",
		ClientSecret: "test-secret-value",
		Scopes:       []string{"dicom.read", "dicom.write"},
	}
	c.SetDefaults()
	return c
}

func newTestSource(t *testing.T, c *Config) Source {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatalf("invalid test config: %v", err)
	}
	s, err := NewSource(c)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return s
}

func TestClientCredentialsAuthMethods(t *testing.T) {
	e := newFakeEndpoint(t)

	t.Run("basic", func(t *testing.T) {
		c := testConfig(e.URL())
		c.AuthMethod = AuthClientSecretBasic
		if _, err := newTestSource(t, c).Fetch(context.Background()); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		form, auth := e.Last()
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("orthanc-egress:test-secret-value"))
		if auth != want {
			t.Errorf("Authorization = %q, want %q", auth, want)
		}
		if form.Get("client_secret") != "" {
			t.Error("client_secret sent in the body with client_secret_basic")
		}
	})

	t.Run("post", func(t *testing.T) {
		c := testConfig(e.URL())
		c.AuthMethod = AuthClientSecretPost
		if _, err := newTestSource(t, c).Fetch(context.Background()); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		form, auth := e.Last()
		if auth != "" {
			t.Errorf("Authorization header %q sent with client_secret_post", auth)
		}
		if form.Get("client_id") != "orthanc-egress" || form.Get("client_secret") != "test-secret-value" {
			t.Errorf("client_id/client_secret in body = %q/%q", form.Get("client_id"), form.Get("client_secret"))
		}
	})
}

func TestClientCredentialsParameters(t *testing.T) {
	e := newFakeEndpoint(t)
	c := testConfig(e.URL())
	c.Audience = "https://dicom.example.test"
	c.Resource = "https://dicom.healthcareapis.example.test"
	c.Params = map[string]string{"tenant": "t1"}

	tok, err := newTestSource(t, c).Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if tok.AccessToken != "test-token-1" {
		t.Errorf("access token = %q, want test-token-1", tok.AccessToken)
	}

	form, _ := e.Last()
	for key, want := range map[string]string{
		"grant_type": "client_credentials",
		"scope":      "dicom.read dicom.write",
		"audience":   "https://dicom.example.test",
		"resource":   "https://dicom.healthcareapis.example.test",
		"tenant":     "t1",
	} {
		if got := form.Get(key); got != want {
			t.Errorf("form %s = %q, want %q", key, got, want)
		}
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		header      map[string]string
		wantClass   ErrorClass
		wantInError []string
		wantRetry   time.Duration
	}{
		{
			name: "invalid client with entra codes", status: 401, contentType: "application/json",
			body:      `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]}`,
			wantClass: ClassConfig, wantInError: []string{"invalid_client", "AADSTS7000215", "Invalid client secret"},
		},
		{
			name: "okta invalid scope", status: 400, contentType: "application/json",
			body:      `{"error":"invalid_scope","error_description":"Custom scopes are not allowed for this request."}`,
			wantClass: ClassConfig, wantInError: []string{"invalid_scope", "Custom scopes are not allowed"},
		},
		{
			name: "429 plain text", status: 429, contentType: "text/plain", body: "Too Many Requests",
			header:    map[string]string{"Retry-After": "60"},
			wantClass: ClassRateLimited, wantInError: []string{"429", "Too Many Requests"}, wantRetry: time.Minute,
		},
		{
			name: "503 with retry-after", status: 503, contentType: "text/html", body: "<html>down</html>",
			header:    map[string]string{"Retry-After": "7"},
			wantClass: ClassRateLimited, wantInError: []string{"503"}, wantRetry: 7 * time.Second,
		},
		{
			name: "500", status: 500, contentType: "application/json", body: `{}`,
			wantClass: ClassTransient, wantInError: []string{"500"},
		},
		{
			name: "200 html", status: 200, contentType: "text/html", body: "<html><body>Sign in</body></html>",
			wantClass: ClassBadResponse, wantInError: []string{"<html><body>Sign in", "text/html"},
		},
		{
			name: "200 empty", status: 200, contentType: "application/json", body: "",
			wantClass: ClassBadResponse, wantInError: []string{"empty body"},
		},
		{
			name: "200 no access token", status: 200, contentType: "application/json", body: `{"token_type":"Bearer"}`,
			wantClass: ClassBadResponse, wantInError: []string{"access_token"},
		},
		{
			name: "200 mac token", status: 200, contentType: "application/json",
			body:      `{"access_token":"abc","token_type":"mac","expires_in":60}`,
			wantClass: ClassBadResponse, wantInError: []string{`"mac"`},
		},
		{
			name: "200 oversized", status: 200, contentType: "application/json",
			body:      `{"access_token":"` + strings.Repeat("a", maxResponseBytes) + `"}`,
			wantClass: ClassBadResponse, wantInError: []string{"larger than"},
		},
		{
			name: "redirect", status: 302, contentType: "text/html", body: "moved",
			header:    map[string]string{"Location": "http://127.0.0.1:1/elsewhere"},
			wantClass: ClassTransient, wantInError: []string{"302"},
		},
	}
	e := newFakeEndpoint(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetRaw(tt.status, tt.contentType, tt.body, tt.header)
			_, err := newTestSource(t, testConfig(e.URL())).Fetch(context.Background())
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
			for _, s := range tt.wantInError {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if fe.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", fe.RetryAfter, tt.wantRetry)
			}
			if strings.Contains(err.Error(), "test-secret-value") {
				t.Error("error message contains the client secret")
			}
			if strings.Contains(err.Error(), "Trace ID") {
				t.Error("error message keeps the provider's trace lines")
			}
		})
	}
}

func TestClientCredentialsStalledEndpoint(t *testing.T) {
	e := newFakeEndpoint(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.Set(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})

	c := testConfig(e.URL())
	c.Timeout = 50 * time.Millisecond
	_, err := newTestSource(t, c).Fetch(context.Background())
	var fe *FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v, want a *FetchError", err)
	}
	if fe.Class != ClassTransient {
		t.Errorf("class = %q, want transient", fe.Class)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"60", time.Minute},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"999999999", 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.value, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

func TestClientCredentialsResponseShapes(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		wantToken   string
		wantExpiry  time.Duration
	}{
		{"number", "application/json", `{"access_token":"t1","token_type":"Bearer","expires_in":3599}`, "t1", 3599 * time.Second},
		{"string", "application/json", `{"access_token":"t2","token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1671217329"}`, "t2", 3599 * time.Second},
		{"lowercase bearer", "application/json", `{"access_token":"t3","token_type":"bearer","expires_in":300}`, "t3", 5 * time.Minute},
		{"missing expires_in", "application/json", `{"access_token":"t4","token_type":"Bearer"}`, "t4", DefaultLifetime},
		{"zero expires_in", "application/json", `{"access_token":"t5","token_type":"Bearer","expires_in":0}`, "t5", DefaultLifetime},
		{"negative expires_in", "application/json", `{"access_token":"t6","token_type":"Bearer","expires_in":-1}`, "t6", DefaultLifetime},
		{"extra fields", "application/json", `{"access_token":"t7","token_type":"Bearer","expires_in":60,"scope":"a b","refresh_token":"r","id_token":"x","not-before-policy":0}`, "t7", time.Minute},
		{"form encoded", "application/x-www-form-urlencoded", `access_token=t8&token_type=bearer&expires_in=120`, "t8", 2 * time.Minute},
		{"charset parameter", "application/json; charset=utf-8", `{"access_token":"t9","token_type":"Bearer","expires_in":60}`, "t9", time.Minute},
	}
	e := newFakeEndpoint(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetRaw(http.StatusOK, tt.contentType, tt.body, nil)
			before := time.Now()
			tok, err := newTestSource(t, testConfig(e.URL())).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.AccessToken != tt.wantToken {
				t.Errorf("access token = %q, want %q", tok.AccessToken, tt.wantToken)
			}
			if got := tok.Expiry.Sub(tok.Received); got != tt.wantExpiry {
				t.Errorf("lifetime = %v, want %v", got, tt.wantExpiry)
			}
			if tok.Received.Before(before) {
				t.Errorf("received %v before the request at %v", tok.Received, before)
			}
		})
	}
}

func TestClientCredentialsBrokenAnswers(t *testing.T) {
	e := newFakeEndpoint(t)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    ErrorClass
		wantIn  string
	}{
		{"malformed json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"t1",`))
		}, ClassBadResponse, "could not be parsed"},
		{"connection dropped", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, ClassTransient, "EOF"},
		{"truncated body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "500")
			_, _ = w.Write([]byte(`{"access_token":`))
		}, ClassTransient, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.Set(tt.handler)
			_, err := newTestSource(t, testConfig(e.URL())).Fetch(context.Background())
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("error = %v, want a *FetchError", err)
			}
			if fe.Class != tt.want {
				t.Errorf("class = %q, want %q (error: %v)", fe.Class, tt.want, err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not contain %q", err, tt.wantIn)
			}
		})
	}
}
