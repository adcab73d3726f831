// Package e2e runs the end-to-end tests: Orthanc A sends DICOM files through
// nginx, which gets the Authorization header from the dicomweb-oauth
// service, to a token-checking gate in front of Orthanc B. See package chain
// for the layout. The tests need the Debian packages orthanc,
// orthanc-dicomweb, nginx-light and python3-pydicom (e2e/install-deps.sh).
// Without them the tests skip, except in CI (CI=true), where they fail.
//
// Besides the test bed's own nginx configuration, the tests run the shipped
// deploy/nginx/ files, and the shipped envoy/ext-proc.yaml when an envoy
// binary is on PATH. No Envoy package is installable on the CI machine, so
// that test skips without one, in CI too. envoysim.Proxy, a simulated
// Envoy that runs in the test process, takes the place of nginx in one
// chain per filter it models: ext_proc, ext_proc as an upstream filter,
// and ext_authz.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/chain"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/issuer"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/orthanc"
)

// chainTimeout bounds each test: starting the chain and running the flow.
const chainTimeout = 90 * time.Second

// logTailLines is how many lines of each process's output a failed test shows.
const logTailLines = 40

// binaryEnv names a prebuilt service binary to test instead of building one.
// A relative path is taken from the e2e folder, where go test runs the tests.
const binaryEnv = "DICOMWEB_OAUTH_BIN"

// logsEnv, when set to any value, makes passing tests log the process output too.
const logsEnv = "E2E_LOGS"

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
	buildDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// requireComponents skips the test when Orthanc, nginx or the sample files
// are missing, but fails it in CI, where install-deps.sh must have run.
func requireComponents(t *testing.T) {
	t.Helper()
	_, _, orthancErr := harness.FindOrthanc()
	_, nginxErr := harness.FindNginx()
	_, samplesErr := chain.SampleDir(context.Background())
	err := errors.Join(orthancErr, nginxErr, samplesErr)
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("end-to-end components missing in CI: %v", err)
	}
	t.Skipf("end-to-end components missing; run e2e/install-deps.sh: %v", err)
}

// serviceBinary builds the service once per test run, or returns the binary
// named by DICOMWEB_OAUTH_BIN.
func serviceBinary(t *testing.T) string {
	t.Helper()
	requireComponents(t)
	if path := os.Getenv(binaryEnv); path != "" {
		return path
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "dicomweb-oauth-e2e-")
		if buildErr != nil {
			return
		}
		builtBinary = filepath.Join(buildDir, "dicomweb-oauth")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		buildErr = harness.BuildService(ctx, builtBinary)
	})
	if buildErr != nil {
		t.Fatalf("build service: %v", buildErr)
	}
	return builtBinary
}

// startChain starts a chain whose processes are stopped when the test ends.
// A failed test logs the tail of every process's output, and so does every
// test when E2E_LOGS is set.
func startChain(t *testing.T, options chain.Options) (*chain.Chain, context.Context) {
	t.Helper()
	requireComponents(t)
	ctx, cancel := context.WithTimeout(context.Background(), chainTimeout)
	env := harness.NewEnv(t.TempDir())
	t.Cleanup(func() {
		cancel()
		if t.Failed() || os.Getenv(logsEnv) != "" {
			t.Logf("output of the test bed processes:\n%s", env.LogTails(logTailLines))
		}
		if err := env.Close(); err != nil {
			t.Errorf("stop test bed: %v", err)
		}
	})

	c, err := chain.Start(ctx, env, options)
	if err != nil {
		t.Fatalf("start chain: %v", err)
	}
	return c, ctx
}

type httpReply struct {
	status      int
	challenge   string
	contentType string
	body        map[string]any
	raw         string
}

// send makes one request and decodes a JSON body if there is one.
func send(t *testing.T, ctx context.Context, method, url string) httpReply {
	t.Helper()
	request, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	return sendRequest(t, request)
}

// sendRequest sends a request without a proxy from the environment and
// decodes a JSON body if there is one.
func sendRequest(t *testing.T, request *http.Request) httpReply {
	t.Helper()
	reply, err := doRequest(request)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// doRequest is sendRequest for goroutines other than the test's own, which
// must not call t.Fatal.
func doRequest(request *http.Request) (httpReply, error) {
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		Timeout:   30 * time.Second,
	}
	response, err := client.Do(request)
	if err != nil {
		return httpReply{}, fmt.Errorf("%s %s: %w", request.Method, request.URL, err)
	}
	defer response.Body.Close()
	raw, err := io.ReadAll(response.Body)
	if err != nil {
		return httpReply{}, fmt.Errorf("read answer of %s %s: %w", request.Method, request.URL, err)
	}

	reply := httpReply{
		status:      response.StatusCode,
		challenge:   response.Header.Get("WWW-Authenticate"),
		contentType: response.Header.Get("Content-Type"),
		raw:         string(raw),
	}
	_ = json.Unmarshal(raw, &reply.body)
	return reply, nil
}

// uploadAndStow uploads the samples to Orthanc A and tries to send them.
func uploadAndStow(t *testing.T, ctx context.Context, c *chain.Chain) error {
	t.Helper()
	files, err := chain.Upload(ctx, c.OrthancA.Client, chain.Samples)
	if err != nil {
		t.Fatalf("upload samples: %v", err)
	}
	_, err = chain.Stow(ctx, c, files)
	return err
}

// requireEmptyOrthancB checks on Orthanc B's REST API that nothing arrived.
func requireEmptyOrthancB(t *testing.T, ctx context.Context, c *chain.Chain) {
	t.Helper()
	ids, err := c.OrthancB.Client.Instances(ctx)
	if err != nil {
		t.Fatalf("list instances on Orthanc B: %v", err)
	}
	if len(ids) != 0 {
		t.Errorf("Orthanc B stores %d instances, want 0", len(ids))
	}
}

// requireStowFailed checks that Orthanc A reported the STOW-RS call as failed.
// Orthanc 1.10 with DICOMweb 1.7 responds with 500 whatever the remote status was.
func requireStowFailed(t *testing.T, err error) {
	t.Helper()
	var httpErr *orthanc.HTTPError
	if !errors.As(err, &httpErr) {
		t.Fatalf("STOW-RS error = %v, want an HTTP error from Orthanc A", err)
	}
	if httpErr.Status < 400 {
		t.Errorf("STOW-RS status = %d, want an error status", httpErr.Status)
	}
}

func logResult(t *testing.T, result *chain.Result) {
	t.Helper()
	var b strings.Builder
	if err := result.WriteTable(&b); err != nil {
		t.Errorf("write result table: %v", err)
	}
	t.Logf("flow result:\n%s", b.String())
}

func TestFlowWithService(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		authMethod string
	}{
		{"client_secret_basic", issuer.AuthMethodBasic},
		{"client_secret_post", issuer.AuthMethodPost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, ctx := startChain(t, chain.Options{
				ServiceBinary: serviceBinary(t),
				AuthMethod:    tt.authMethod,
			})

			result, err := chain.Run(ctx, c, chain.Samples)
			logResult(t, result)
			if err != nil {
				t.Fatalf("flow: %v", err)
			}

			if !result.OK() {
				t.Error("result is not OK")
			}
			if result.TokenRequests != 1 {
				t.Errorf("token requests = %d, want 1", result.TokenRequests)
			}
			if result.DistinctTokens != 1 {
				t.Errorf("distinct tokens at the gate = %d, want 1", result.DistinctTokens)
			}
			if result.GateRejected != 0 {
				t.Errorf("gate rejected %d requests, want 0", result.GateRejected)
			}
			// STOW-RS, QIDO-RS, metadata and retrieve make 4 requests at least.
			if result.GateAccepted < 4 {
				t.Errorf("gate accepted %d requests, want at least 4", result.GateAccepted)
			}

			last, ok := c.Issuer.LastTokenRequest()
			if !ok {
				t.Fatal("the issuer saw no token request")
			}
			if last.AuthMethod != tt.authMethod {
				t.Errorf("client authentication = %q, want %q", last.AuthMethod, tt.authMethod)
			}
			if want := strings.Join(chain.Scopes, " "); last.Scope != want {
				t.Errorf("requested scope = %q, want %q", last.Scope, want)
			}
			if last.Audience != chain.Audience {
				t.Errorf("requested audience = %q, want %q", last.Audience, chain.Audience)
			}
		})
	}
}

// TestChainWithStaticToken checks the test bed itself: nginx injects a fixed
// token minted by the issuer, without the service.
func TestChainWithStaticToken(t *testing.T) {
	t.Parallel()
	c, ctx := startChain(t, chain.Options{Injection: harness.InjectStatic})

	result, err := chain.Run(ctx, c, chain.Samples)
	logResult(t, result)
	if err != nil {
		t.Fatalf("flow: %v", err)
	}

	if !result.OK() {
		t.Error("result is not OK")
	}
	if result.TokenRequests != 0 {
		t.Errorf("token requests = %d, want 0", result.TokenRequests)
	}
	if result.DistinctTokens != 1 {
		t.Errorf("distinct tokens at the gate = %d, want 1", result.DistinctTokens)
	}
}

// TestFlowWithoutService checks what the proxy does when the service is down:
// nginx cannot connect to the check URL, auth_request turns that into 500,
// and error_page maps it to 503. No request reaches the gate.
func TestFlowWithoutService(t *testing.T) {
	t.Parallel()
	c, ctx := startChain(t, chain.Options{})

	err := uploadAndStow(t, ctx, c)
	direct := send(t, ctx, http.MethodGet, c.Nginx.URL+"/dicom-web/studies")

	requireStowFailed(t, err)
	if direct.status != http.StatusServiceUnavailable {
		t.Errorf("nginx status = %d, want 503 (body %q)", direct.status, direct.raw)
	}
	if got := direct.body["error"]; got != "token_unavailable" {
		t.Errorf("nginx error = %v, want token_unavailable", got)
	}
	if got := c.Gate.Accepted() + c.Gate.Rejected(); got != 0 {
		t.Errorf("gate saw %d requests, want 0", got)
	}
	requireEmptyOrthancB(t, ctx, c)
}

// TestWrongClientSecret checks that a token failure shows as 503 at the
// service's check endpoint and at nginx, and that nothing reaches Orthanc B.
func TestWrongClientSecret(t *testing.T) {
	t.Parallel()
	c, ctx := startChain(t, chain.Options{
		ServiceBinary:     serviceBinary(t),
		WrongClientSecret: true,
	})

	check := send(t, ctx, http.MethodGet, c.CheckURL)
	direct := send(t, ctx, http.MethodGet, c.Nginx.URL+"/dicom-web/studies")
	err := uploadAndStow(t, ctx, c)

	if check.status != http.StatusServiceUnavailable {
		t.Errorf("check status = %d, want 503 (body %q)", check.status, check.raw)
	}
	if got := check.body["cluster"]; got != chain.Cluster {
		t.Errorf("check body cluster = %v, want %s", got, chain.Cluster)
	}
	if got, _ := check.body["error"].(string); got == "" {
		t.Errorf("check body has no error: %q", check.raw)
	}
	if direct.status != http.StatusServiceUnavailable {
		t.Errorf("nginx status = %d, want 503 (body %q)", direct.status, direct.raw)
	}
	requireStowFailed(t, err)

	last, ok := c.Issuer.LastTokenRequest()
	if !ok || last.Status != http.StatusUnauthorized {
		t.Errorf("last token request = %+v, want one answered 401", last)
	}
	if got := c.Issuer.TokensIssued(); got != 0 {
		t.Errorf("tokens issued = %d, want 0", got)
	}
	if got := c.Gate.Accepted(); got != 0 {
		t.Errorf("gate accepted %d requests, want 0", got)
	}
	requireEmptyOrthancB(t, ctx, c)
}

// TestWithoutTokenInjection proves that the test fails when the proxy does
// not add the token: with auth_request removed from nginx, the gate responds with
// 401 and nothing reaches Orthanc B, although the service is running.
func TestWithoutTokenInjection(t *testing.T) {
	t.Parallel()
	c, ctx := startChain(t, chain.Options{
		ServiceBinary: serviceBinary(t),
		Injection:     harness.InjectNone,
	})

	err := uploadAndStow(t, ctx, c)
	direct := send(t, ctx, http.MethodGet, c.Nginx.URL+"/dicom-web/studies")

	requireStowFailed(t, err)
	if direct.status != http.StatusUnauthorized {
		t.Errorf("nginx status = %d, want 401 from the gate (body %q)", direct.status, direct.raw)
	}
	if !strings.HasPrefix(direct.challenge, "Bearer ") {
		t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", direct.challenge)
	}
	if got := c.Gate.Accepted(); got != 0 {
		t.Errorf("gate accepted %d requests, want 0", got)
	}
	if got := c.Gate.Rejected(); got < 2 {
		t.Errorf("gate rejected %d requests, want at least 2 (STOW-RS and the direct request)", got)
	}
	requireEmptyOrthancB(t, ctx, c)
}
