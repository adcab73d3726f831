package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/oidcprovider"
)

// jwtShape matches anything that looks like a JWT: a token or a client
// assertion, whoever issued it.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.`)

// lockedBuffer is a bytes.Buffer safe for a process's output goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoSecretInAnyOutput runs the built service with debug logging and
// traces printed to standard output, through token requests with a client
// secret and with private_key_jwt assertions against a real OpenID
// provider, decisions, a rejected secret and the admin endpoints. No token,
// secret or assertion may appear in the logs, the traces, /status or
// /metrics.
func TestNoSecretInAnyOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the service binary")
	}
	p := oidcprovider.Start(t, oidcprovider.Options{})
	const secret = "test-secret-never-printed"
	p.AddSecretClient("archive-client", secret, oidcprovider.AuthMethodPost)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.AddKeyClient("pacs-client", key.Public(), "k1")

	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key.pem")
	writeTestFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	configFile := filepath.Join(dir, "config.yaml")
	writeTestFile(t, configFile, `listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}
log: {level: debug}
clusters:
  pacs:
    token:
      token_url: `+p.TokenURL()+`
      client_id: pacs-client
      auth_method: private_key_jwt
      private_key: {file: `+keyFile+`, key_id: k1}
      tls: {ca_file: `+p.CAFile()+`}
  archive:
    token:
      token_url: `+p.TokenURL()+`
      client_id: archive-client
      client_secret: `+secret+`
      auth_method: client_secret_post
      tls: {ca_file: `+p.CAFile()+`}
  rejected:
    token:
      token_url: `+p.TokenURL()+`
      client_id: archive-client
      client_secret: test-secret-wrong-value
      tls: {ca_file: `+p.CAFile()+`}
`)

	bin := filepath.Join(dir, "dicomweb-oauth")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var stdout, stderr lockedBuffer
	cmd := exec.Command(bin, "serve", "--config", configFile)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=console", "OTEL_SERVICE_NAME=leak-test")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	addrs := waitListening(t, &stderr)
	waitFor(t, "readiness", func() bool {
		resp, err := http.Get("http://" + addrs["admin"] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	var tokens []string
	for _, cluster := range []string{"pacs", "archive", "pacs", "archive", "rejected", "unknown"} {
		resp, err := http.Get("http://" + addrs["http"] + "/check/" + cluster)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if h := resp.Header.Get("Authorization"); h != "" {
			tokens = append(tokens, strings.TrimPrefix(h, "Bearer "))
		}
	}
	if len(tokens) != 4 {
		t.Fatalf("got %d tokens from the check endpoint, want 4", len(tokens))
	}
	admin := map[string]string{}
	for _, path := range []string{"/status", "/metrics", "/readyz", "/healthz"} {
		resp, err := http.Get("http://" + addrs["admin"] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		admin[path] = string(body)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not stop within 30s of SIGTERM")
	}

	outputs := map[string]string{"stdout (traces)": stdout.String(), "stderr (logs)": stderr.String()}
	for path, body := range admin {
		outputs[path] = body
	}
	if !strings.Contains(outputs["stdout (traces)"], "dicomweb_oauth.token.acquire") {
		t.Fatalf("no acquisition span was printed, so the traces were not checked; stdout:\n%s", stdout.String())
	}
	if !strings.Contains(outputs["stderr (logs)"], `"level":"DEBUG"`) {
		t.Fatal("no debug log line was written, so debug logging was not checked")
	}
	for name, text := range outputs {
		if strings.Contains(text, secret) || strings.Contains(text, "test-secret-wrong-value") {
			t.Errorf("%s contains a client secret", name)
		}
		for _, tok := range tokens {
			if strings.Contains(text, tok) {
				t.Errorf("%s contains an access token", name)
			}
		}
		if m := jwtShape.FindString(text); m != "" {
			t.Errorf("%s contains a JWT-shaped value (a token or an assertion): %.24s...", name, m)
		}
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitListening reads the listener addresses from the JSON "listening" log
// line of a service process.
func waitListening(t *testing.T, stderr *lockedBuffer) map[string]string {
	t.Helper()
	addrs := map[string]string{}
	waitFor(t, "the listening log line", func() bool {
		scanner := bufio.NewScanner(strings.NewReader(stderr.String()))
		for scanner.Scan() {
			var line struct {
				Msg   string `json:"msg"`
				GRPC  string `json:"grpc"`
				HTTP  string `json:"http"`
				Admin string `json:"admin"`
			}
			if json.Unmarshal(scanner.Bytes(), &line) == nil && line.Msg == "listening" {
				addrs["grpc"], addrs["http"], addrs["admin"] = line.GRPC, line.HTTP, line.Admin
				return true
			}
		}
		return false
	})
	return addrs
}
