package tokens

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// metadataEndpoint is a metadata token endpoint on loopback that records
// the method, query and headers of the last request.
type metadataEndpoint struct {
	server *httptest.Server

	mu      sync.Mutex
	answer  func(w http.ResponseWriter)
	method  string
	query   url.Values
	headers http.Header
}

func newMetadataEndpoint(t *testing.T) *metadataEndpoint {
	t.Helper()
	m := &metadataEndpoint{}
	m.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.method, m.query, m.headers = r.Method, r.URL.Query(), r.Header.Clone()
		answer := m.answer
		m.mu.Unlock()
		answer(w)
	}))
	t.Cleanup(m.server.Close)
	return m
}

// SetRaw makes the endpoint respond with status and a JSON body.
func (m *metadataEndpoint) SetRaw(status int, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func (m *metadataEndpoint) Last() (method string, query url.Values, headers http.Header) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.method, m.query, m.headers
}

// imdsResponse is an Azure IMDS token response, in which every number is a string.
const imdsResponse = `{"access_token":"imds-token","refresh_token":"","expires_in":"3599",` +
	`"expires_on":"1767323045","not_before":"1767319145","resource":"https://dicom.healthcareapis.azure.com",` +
	`"token_type":"Bearer"}`

func TestManagedIdentityRequest(t *testing.T) {
	tests := []struct {
		name         string
		config       Config
		wantResource string
		wantClientID string
	}{
		{
			name:         "system assigned",
			config:       Config{Resource: "https://dicom.healthcareapis.azure.com"},
			wantResource: "https://dicom.healthcareapis.azure.com",
		},
		{
			name:         "user assigned",
			config:       Config{Resource: "https://dicom.healthcareapis.azure.com", ClientID: "3f6e1c2a-client"},
			wantResource: "https://dicom.healthcareapis.azure.com", wantClientID: "3f6e1c2a-client",
		},
		{
			name:         "scope as resource",
			config:       Config{Scopes: []string{"https://dicom.example.test/.default"}},
			wantResource: "https://dicom.example.test",
		},
		{
			name:         "azure preset",
			config:       Config{Provider: ProviderAzure},
			wantResource: "https://dicom.healthcareapis.azure.com",
		},
	}
	m := newMetadataEndpoint(t)
	m.SetRaw(http.StatusOK, imdsResponse)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.config
			c.Grant = GrantManagedIdentity
			c.Endpoint = m.server.URL + "/metadata/identity/oauth2/token"
			c.SetDefaults()

			tok, err := newTestSource(t, &c).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.AccessToken != "imds-token" {
				t.Errorf("access token = %q, want imds-token", tok.AccessToken)
			}
			if got := tok.Lifetime(); got != 3599*time.Second {
				t.Errorf("lifetime = %v, want 3599s from the string expires_in", got)
			}

			method, query, headers := m.Last()
			if method != http.MethodGet {
				t.Errorf("method = %s, want GET", method)
			}
			if got := headers.Get("Metadata"); got != "true" {
				t.Errorf("Metadata header = %q, want true", got)
			}
			if got := query.Get("api-version"); got != "2018-02-01" {
				t.Errorf("api-version = %q, want 2018-02-01", got)
			}
			if got := query.Get("resource"); got != tt.wantResource {
				t.Errorf("resource = %q, want %q", got, tt.wantResource)
			}
			if got := query.Get("client_id"); got != tt.wantClientID {
				t.Errorf("client_id = %q, want %q", got, tt.wantClientID)
			}
			if query.Has("client_id") != (tt.wantClientID != "") {
				t.Errorf("client_id sent = %v, want %v", query.Has("client_id"), tt.wantClientID != "")
			}
		})
	}
}

func TestMetadataServerRequest(t *testing.T) {
	m := newMetadataEndpoint(t)
	m.SetRaw(http.StatusOK, `{"access_token":"ya29.test-token","expires_in":3599,"token_type":"Bearer"}`)
	c := &Config{
		Grant:    GrantMetadataServer,
		Endpoint: m.server.URL + "/computeMetadata/v1/instance/service-accounts/default/token",
		Scopes:   []string{"a", "b"},
	}
	c.SetDefaults()

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

	method, query, headers := m.Last()
	if method != http.MethodGet {
		t.Errorf("method = %s, want GET", method)
	}
	if got := headers.Get("Metadata-Flavor"); got != "Google" {
		t.Errorf("Metadata-Flavor header = %q, want Google", got)
	}
	if got := query.Get("scopes"); got != "a,b" {
		t.Errorf("scopes = %q, want a,b", got)
	}
}

// TestMetadataServerKeepsEndpointQuery: parameters already in the endpoint
// URL are kept beside the ones the grant adds.
func TestMetadataServerKeepsEndpointQuery(t *testing.T) {
	m := newMetadataEndpoint(t)
	m.SetRaw(http.StatusOK, `{"access_token":"t","expires_in":60,"token_type":"Bearer"}`)
	c := &Config{Grant: GrantMetadataServer, Endpoint: m.server.URL + "/token?audience=dicom", Scopes: []string{"a"}}
	c.SetDefaults()

	if _, err := newTestSource(t, c).Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	_, query, _ := m.Last()
	if got := query.Get("audience"); got != "dicom" {
		t.Errorf("audience = %q, want dicom from the endpoint URL", got)
	}
	if got := query.Get("scopes"); got != "a" {
		t.Errorf("scopes = %q, want a", got)
	}
}

func TestMetadataErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantClass ErrorClass
		wantCode  string
		wantIn    []string
	}{
		{
			name: "identity not found", status: http.StatusBadRequest,
			body:      `{"error":"invalid_request","error_description":"Identity not found"}`,
			wantClass: ClassConfig, wantCode: "invalid_request", wantIn: []string{"400", "Identity not found"},
		},
		{
			name: "unknown resource", status: http.StatusBadRequest,
			body: `{"error":"invalid_resource",` +
				`"error_description":"AADSTS500011: The resource principal named x was not found."}`,
			wantClass: ClassConfig, wantCode: "invalid_resource", wantIn: []string{"AADSTS500011"},
		},
		{
			name: "throttled", status: http.StatusTooManyRequests, body: `{"error":"too_many_requests"}`,
			wantClass: ClassRateLimited, wantCode: "too_many_requests",
		},
		{
			name: "server error", status: http.StatusInternalServerError, body: `upstream failure`,
			wantClass: ClassTransient, wantIn: []string{"500", "upstream failure"},
		},
		{
			name: "updating", status: http.StatusNotFound, body: `IMDS is updating`,
			wantClass: ClassTransient, wantIn: []string{"404"},
		},
		{
			name: "gone", status: http.StatusGone, body: ``,
			wantClass: ClassTransient, wantIn: []string{"410"},
		},
		{
			name: "not a token", status: http.StatusOK, body: `<html>captive portal</html>`,
			wantClass: ClassBadResponse, wantIn: []string{"not a token", "captive portal"},
		},
		{
			name: "no access token", status: http.StatusOK, body: `{"expires_in":"3599"}`,
			wantClass: ClassBadResponse, wantIn: []string{"access_token"},
		},
	}
	m := newMetadataEndpoint(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.SetRaw(tt.status, tt.body)
			c := &Config{Grant: GrantManagedIdentity, Endpoint: m.server.URL + "/token", Resource: "https://dicom.example.test"}
			c.SetDefaults()

			_, err := newTestSource(t, c).Fetch(context.Background())
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
				t.Errorf("code = %q, want %q", fe.Code, tt.wantCode)
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
