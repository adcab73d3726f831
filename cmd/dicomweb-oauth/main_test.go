package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dicomweb-oauth/dicomweb-oauth/cmd/dicomweb-oauth/internal/config"
)

// testSecret is the client secret of the test configurations. Tests assert
// that it never appears in output.
const testSecret = "test-secret-value"

// syncBuffer is a bytes.Buffer that is safe for concurrent use, for output
// written by a running service while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runMain runs a command that ends by itself and returns its exit code and
// output.
func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// writeFile writes content to a new file in the test's directory and returns
// its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkConfigYAML is a valid configuration for check-config.
const checkConfigYAML = `clusters:
  pacs:
    hosts: [dicom.example.test]
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: orthanc
      client_secret: test-secret-value
`

func TestMainUsageErrors(t *testing.T) {
	t.Parallel()
	configPath := writeFile(t, "dicomweb-oauth.yaml", checkConfigYAML)

	tests := []struct {
		name string
		args []string
		// want is a part of stderr besides the usage.
		want string
	}{
		{"no arguments", nil, ""},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"serve without config", []string{"serve"}, "serve needs --config FILE"},
		{"check-config without config", []string{"check-config"}, "check-config needs --config FILE"},
		{"empty config flag", []string{"serve", "--config", ""}, "serve needs --config FILE"},
		{"extra argument", []string{"check-config", "--config", configPath, "extra"}, "no other arguments"},
		{"unknown flag", []string{"serve", "--listen", ":9001"}, "flag provided but not defined: -listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runMain(t, tt.args...)

			if code != exitUsage {
				t.Errorf("exit code is %d, expected %d", code, exitUsage)
			}
			if !strings.Contains(stderr, "usage: dicomweb-oauth COMMAND --config FILE") {
				t.Errorf("stderr has no usage:\n%s", stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not contain %q:\n%s", tt.want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout is %q, expected nothing", stdout)
			}
		})
	}
}

func TestMainHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"help", "-h", "--help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			code, stdout, _ := runMain(t, arg)

			if code != exitOK {
				t.Errorf("exit code is %d, expected %d", code, exitOK)
			}
			if !strings.Contains(stdout, "check-config") {
				t.Errorf("stdout does not list the commands:\n%s", stdout)
			}
		})
	}
}

func TestMainVersion(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runMain(t, "version")

	if code != exitOK {
		t.Errorf("exit code is %d, expected %d; stderr: %s", code, exitOK, stderr)
	}
	if strings.TrimSpace(stdout) == "" {
		t.Error("version printed nothing")
	}
}

func TestCheckConfigValid(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "dicomweb-oauth.yaml", checkConfigYAML)

	code, stdout, stderr := runMain(t, "check-config", "--config", path)

	if code != exitOK {
		t.Fatalf("exit code is %d, expected %d; stderr:\n%s", code, exitOK, stderr)
	}
	for _, want := range []string{
		"configuration is valid",
		"client_secret: '" + config.Redacted + "'",
		"client_id: orthanc",
		"refresh_before: 5m0s",
		"admin: " + config.DefaultAdminAddr,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout does not contain %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, testSecret) {
		t.Errorf("stdout contains the client secret:\n%s", stdout)
	}
	if strings.Contains(stderr, testSecret) {
		t.Errorf("stderr contains the client secret:\n%s", stderr)
	}
}

func TestCheckConfigSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretPath := filepath.Join(dir, "pacs-secret")
	if err := os.WriteFile(secretPath, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withFile := func(path string) string {
		return strings.Replace(checkConfigYAML, "client_secret: test-secret-value", "client_secret_file: "+path, 1)
	}
	emptyPath := filepath.Join(dir, "empty-secret")
	if err := os.WriteFile(emptyPath, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		yaml     string
		wantCode int
		// wantErr is a part of stderr, or "" for none.
		wantErr string
	}{
		{"file exists", withFile(secretPath), exitOK, ""},
		{"file missing", withFile(filepath.Join(dir, "missing")), exitFailed,
			"clusters.pacs.token.client_secret_file: open " + filepath.Join(dir, "missing")},
		{"file empty", withFile(emptyPath), exitFailed,
			"clusters.pacs.token.client_secret_file: " + emptyPath + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "dicomweb-oauth.yaml", tt.yaml)

			code, stdout, stderr := runMain(t, "check-config", "--config", path)

			if code != tt.wantCode {
				t.Errorf("exit code is %d, expected %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if tt.wantErr != "" && !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantErr, stderr)
			}
			if tt.wantErr == "" && stderr != "" {
				t.Errorf("stderr is %q, expected nothing", stderr)
			}
			if tt.wantCode != exitOK && strings.Contains(stdout, "configuration is valid") {
				t.Errorf("check-config failed but printed that the configuration is valid:\n%s", stdout)
			}
			if strings.Contains(stdout+stderr, testSecret) {
				t.Errorf("the output contains the client secret:\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
		})
	}
}

func TestCheckConfigInvalid(t *testing.T) {
	t.Parallel()
	typo := strings.Replace(checkConfigYAML, "token_url:", "tokne_url:", 1)

	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "key typo",
			yaml: typo,
			want: []string{
				"invalid configuration:",
				":5: clusters.pacs.token.tokne_url: unknown key; did you mean token_url?",
				":4: clusters.pacs.token.token_url: missing",
			},
		},
		{
			name: "invalid YAML",
			yaml: "clusters:\n  pacs: a\n   token: b\n",
			want: []string{"invalid configuration:", "invalid YAML: line 3"},
		},
		{
			name: "empty file",
			yaml: "",
			want: []string{"the file is empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "dicomweb-oauth.yaml", tt.yaml)

			code, stdout, stderr := runMain(t, "check-config", "--config", path)

			if code != exitFailed {
				t.Errorf("exit code is %d, expected %d", code, exitFailed)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr)
				}
			}
			if stdout != "" {
				t.Errorf("stdout is %q, expected nothing", stdout)
			}
			if strings.Contains(stderr, testSecret) {
				t.Errorf("stderr contains the client secret:\n%s", stderr)
			}
		})
	}
}

func TestCheckConfigMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "missing.yaml")

	code, _, stderr := runMain(t, "check-config", "--config", path)

	if code != exitFailed {
		t.Errorf("exit code is %d, expected %d", code, exitFailed)
	}
	if !strings.Contains(stderr, "reading the configuration: open "+path) {
		t.Errorf("stderr does not name the missing file %s:\n%s", path, stderr)
	}
}

func TestHealthcheck(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"ready":true}`))
	}))
	t.Cleanup(ready.Close)
	pending := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"ready":false,"pending":["pacs"]}`))
	}))
	t.Cleanup(pending.Close)

	tests := []struct {
		name       string
		url        string
		wantCode   int
		wantStderr string
	}{
		{"ready", ready.URL, exitOK, ""},
		{"not ready", pending.URL, exitFailed, "pacs"},
		{"nothing listening", closedAddrURL(t), exitFailed, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(t, "healthcheck", "--url", tt.url)
			if code != tt.wantCode {
				t.Errorf("exit code %d, expected %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q, expected it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

// closedAddrURL returns an http URL on a loopback port that nothing listens on.
func closedAddrURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr + "/readyz"
}
