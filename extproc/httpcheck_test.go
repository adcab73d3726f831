package extproc

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// startHTTPCheck serves HTTPCheck over source on 127.0.0.1 with a port
// picked at run time, closed in t.Cleanup.
func startHTTPCheck(t *testing.T, source HeaderSource) *httptest.Server {
	t.Helper()
	log, _ := newTestLogger()
	server := httptest.NewServer(&HTTPCheck{Decider: newTestDecider(t, source, log)})
	t.Cleanup(server.Close)
	return server
}

// checkResponse is the part of an HTTP check response that the tests read.
type checkResponse struct {
	status int
	header http.Header
	body   []byte
}

func doCheck(t *testing.T, server *httptest.Server, method, path, host string,
	header http.Header, body string) checkResponse {
	t.Helper()
	req, err := http.NewRequest(method, server.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	// The Host header is a value only: the connection goes to server.URL.
	if host != "" {
		req.Host = host
	}
	for key, values := range header {
		req.Header[key] = values
	}

	resp, err := server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return checkResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

func TestHTTPCheckAllowed(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		host   string
		header http.Header
		body   string
		want   string
	}{
		{"cluster in path", "GET", "/check/pacs-a", "", nil, "", "Bearer test-token-a"},
		{"extra path", "GET", "/check/pacs-b/dicom-web/studies/1.2.3", "", nil, "",
			"Bearer test-token-b"},
		{"forwarded host", "GET", "/check", "",
			http.Header{"X-Forwarded-Host": {"pacs-b.example.test:8443"}}, "", "Bearer test-token-b"},
		{"forwarded host trailing slash", "GET", "/check/", "",
			http.Header{"X-Forwarded-Host": {"PACS-A.example.test"}}, "", "Bearer test-token-a"},
		{"forwarded host wins", "GET", "/check", "pacs-a.example.test",
			http.Header{"X-Forwarded-Host": {"[::1]:8443"}}, "", "Bearer test-token-v6"},
		{"host header", "GET", "/check", "pacs-a.example.test:8042", nil, "",
			"Bearer test-token-a"},
		{"post with body", "POST", "/check/pacs-a", "",
			http.Header{"Content-Type": {"application/dicom"}}, "--fake-body--", "Bearer test-token-a"},
		{"head", "HEAD", "/check/pacs-a", "", nil, "", "Bearer test-token-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := startHTTPCheck(t, &fakeSource{})

			resp := doCheck(t, server, tt.method, tt.path, tt.host, tt.header, tt.body)

			if resp.status != http.StatusOK {
				t.Fatalf("status = %d (body %q), want 200", resp.status, resp.body)
			}
			if got := resp.header.Values("Authorization"); len(got) != 1 || got[0] != tt.want {
				t.Errorf("Authorization = %q, want [%s]", got, tt.want)
			}
			if got := resp.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		})
	}
}

func TestHTTPCheckDenied(t *testing.T) {
	tests := []struct {
		name       string
		source     *fakeSource
		path       string
		header     http.Header
		wantStatus int
		wantError  string
		wantInMsg  string
	}{
		{"unknown cluster", &fakeSource{}, "/check/pacs-z", nil,
			403, OutcomeUnknownCluster, `"pacs-z"`},
		{"unknown host", &fakeSource{}, "/check",
			http.Header{"X-Forwarded-Host": {"other.example.test"}},
			403, OutcomeUnknownCluster, `"other.example.test"`},
		{"source error", &fakeSource{err: errSourceFake},
			"/check/pacs-a", nil, 503, OutcomeUnavailable, "token endpoint returned 500 (fake)"},
		{"slow source", &fakeSource{block: true}, "/check/pacs-a", nil,
			503, OutcomeUnavailable, "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := startHTTPCheck(t, tt.source)

			resp := doCheck(t, server, "GET", tt.path, "", tt.header, "")

			if resp.status != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.status, tt.wantStatus)
			}
			if got := resp.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got := resp.header.Get("X-Dicomweb-Oauth-Error"); got != tt.wantError {
				t.Errorf("X-Dicomweb-Oauth-Error = %q, want %q", got, tt.wantError)
			}
			if got := resp.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if got := resp.header.Values("Authorization"); len(got) != 0 {
				t.Errorf("Authorization = %q, want none", got)
			}
			body := decodeDenial(t, resp.body)
			if body.Error != tt.wantError {
				t.Errorf("body error = %q, want %q", body.Error, tt.wantError)
			}
			if !strings.Contains(body.Message, tt.wantInMsg) {
				t.Errorf("body message %q does not contain %s", body.Message, tt.wantInMsg)
			}
		})
	}
}

func TestHTTPCheckNotFound(t *testing.T) {
	server := startHTTPCheck(t, &fakeSource{})
	paths := []string{"/", "/checks", "/checkpacs-a", "/healthz", "/dicom-web/check/pacs-a"}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			resp := doCheck(t, server, "GET", path, "pacs-a.example.test", nil, "")

			if resp.status != http.StatusNotFound {
				t.Errorf("status = %d, want 404", resp.status)
			}
			if got := resp.header.Values("Authorization"); len(got) != 0 {
				t.Errorf("Authorization = %q, want none", got)
			}
		})
	}
}
