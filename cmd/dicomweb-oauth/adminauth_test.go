package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminBearerToken(t *testing.T) {
	t.Parallel()
	const accessToken = "test-access-token-bearer"
	idp, idpRequests := countingIdP(t, func(int64) string { return accessToken })
	s := startService(t, withAdminToken(t, serviceConfig("info", map[string]string{"pacs": idp.URL + "/token"})))
	s.waitReady(t)
	right := "Bearer " + testAdminToken
	missing := `Bearer realm="dicomweb-oauth admin"`
	invalid := `Bearer realm="dicomweb-oauth admin", error="invalid_token"`

	tests := []struct {
		name          string
		call          adminCall
		wantStatus    int
		wantChallenge string
	}{
		{"healthz without token", adminCall{method: http.MethodGet, path: "/healthz"}, http.StatusOK, ""},
		{"readyz without token", adminCall{method: http.MethodGet, path: "/readyz"}, http.StatusOK, ""},
		{"healthz with wrong token", adminCall{http.MethodGet, "/healthz", "Bearer wrong"}, http.StatusOK, ""},
		{"status without token", adminCall{method: http.MethodGet, path: "/status"}, http.StatusUnauthorized, missing},
		{"status with wrong token", adminCall{http.MethodGet, "/status", "Bearer wrong"}, http.StatusUnauthorized, invalid},
		{"status with token prefix", adminCall{http.MethodGet, "/status", right[:len(right)-1]},
			http.StatusUnauthorized, invalid},
		{"status with token and suffix", adminCall{http.MethodGet, "/status", right + "x"},
			http.StatusUnauthorized, invalid},
		{"status with empty bearer", adminCall{http.MethodGet, "/status", "Bearer "}, http.StatusUnauthorized, missing},
		{"status with token as Basic", adminCall{http.MethodGet, "/status",
			"Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+testAdminToken))},
			http.StatusUnauthorized, missing},
		{"status with token", adminCall{http.MethodGet, "/status", right}, http.StatusOK, ""},
		{"status with lower-case scheme", adminCall{http.MethodGet, "/status", "bearer " + testAdminToken},
			http.StatusOK, ""},
		{"metrics without token", adminCall{method: http.MethodGet, path: "/metrics"}, http.StatusUnauthorized, missing},
		{"metrics with token", adminCall{http.MethodGet, "/metrics", right}, http.StatusOK, ""},
		{"refresh without token", adminCall{method: http.MethodPost, path: "/clusters/pacs/refresh"},
			http.StatusUnauthorized, missing},
		{"refresh with wrong token", adminCall{http.MethodPost, "/clusters/pacs/refresh", "Bearer wrong"},
			http.StatusUnauthorized, invalid},
		{"unknown path without token", adminCall{method: http.MethodGet, path: "/debug/pprof/"},
			http.StatusUnauthorized, missing},
		{"unknown path with token", adminCall{http.MethodGet, "/debug/pprof/", right}, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp := tt.call.send(t, s)

			if resp.status != tt.wantStatus {
				t.Errorf("%s %s returned %d, expected %d: %s", tt.call.method, tt.call.path, resp.status,
					tt.wantStatus, resp.body)
			}
			if got := resp.header.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate is %q, expected %q", got, tt.wantChallenge)
			}
			if resp.status == http.StatusUnauthorized {
				assertUnauthorizedBody(t, resp)
			}
			for name, secret := range secretsOf(accessToken) {
				if strings.Contains(resp.body, secret) {
					t.Errorf("the response contains the %s", name)
				}
			}
		})
	}
	// Only the startup request: no refresh without the token got through.
	if got := idpRequests.Load(); got != 1 {
		t.Errorf("the token endpoint got %d requests, expected 1", got)
	}
}

// assertUnauthorizedBody checks the JSON body of a 401 response.
func assertUnauthorizedBody(t *testing.T, resp response) {
	t.Helper()
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type is %q, expected application/json", ct)
	}
	var body errorResponse
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("the 401 body is not JSON: %v\n%s", err, resp.body)
	}
	if body.Error == nil || body.Error.Class != classUnauthorized {
		t.Errorf("error is %+v, expected class %s", body.Error, classUnauthorized)
	}
}

func TestServeAdminTokenFileErrors(t *testing.T) {
	t.Parallel()
	const spaced = "test admin token with spaces"
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing file", missing, "admin.token_file: open " + missing + ": no such file or directory"},
		{"empty file", writeFile(t, "empty", "\n"), "is empty; write the admin bearer token into it"},
		{"token with spaces", writeFile(t, "spaced", spaced+"\n"), "the token has a space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := "admin:\n  token_file: " + tt.path + "\n" +
				serviceConfig("info", map[string]string{"pacs": "http://" + closedAddr(t) + "/token"})

			// A service that starts in spite of the file stops after
			// waitTimeout and fails the test with exit code 0.
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			var out bytes.Buffer
			code := Main(ctx, []string{"serve", "--config", writeFile(t, "dicomweb-oauth.yaml", cfg)}, io.Discard, &out)
			stderr := out.String()

			if code != exitFailed {
				t.Errorf("exit code is %d, expected %d", code, exitFailed)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not contain %q:\n%s", tt.want, stderr)
			}
			if strings.Contains(stderr, `"msg":"listening"`) {
				t.Errorf("serve opened its listeners before reading admin.token_file:\n%s", stderr)
			}
			if strings.Contains(stderr, spaced) {
				t.Errorf("stderr contains the admin token:\n%s", stderr)
			}
		})
	}
}

func TestReadAdminToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{"final newline", "test-admin-token\n", "test-admin-token", ""},
		{"white space around", "  test-admin-token \r\n", "test-admin-token", ""},
		{"empty", "", "", "is empty"},
		{"only newlines", "\n\n", "", "is empty"},
		{"two words", "test admin", "", "character at byte 4"},
		{"two lines", "test\nadmin\n", "", "character at byte 4"},
		{"non-ASCII", "test-tökén", "", "non-ASCII character at byte 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "admin-token", tt.content)

			got, err := readAdminToken(path)

			if got != tt.want {
				t.Errorf("token is %q, expected %q", got, tt.want)
			}
			if tt.wantErr == "" && err != nil {
				t.Errorf("error %v, expected none", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error is %v, expected one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadAdminTokenMissingFile(t *testing.T) {
	t.Parallel()
	_, err := readAdminToken(filepath.Join(t.TempDir(), "missing"))

	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error is %v, expected fs.ErrNotExist", err)
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   string
		wantOK bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			got, ok := bearerToken(tt.header)

			if got != tt.want {
				t.Errorf("bearerToken(%q) token is %q, expected %q", tt.header, got, tt.want)
			}
			if ok != tt.wantOK {
				t.Errorf("bearerToken(%q) ok is %v, expected %v", tt.header, ok, tt.wantOK)
			}
		})
	}
}
