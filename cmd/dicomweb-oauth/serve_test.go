package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// waitTimeout bounds every wait in these tests. It only keeps a broken
// service from hanging the test run and is far above the time needed.
const waitTimeout = 30 * time.Second

// testClient sends the test's HTTP requests. It uses no proxy, so every
// request goes to the loopback listeners of the test.
var testClient = &http.Client{
	Timeout:   waitTimeout,
	Transport: &http.Transport{Proxy: nil},
}

// service is a running `dicomweb-oauth serve`.
type service struct {
	grpcAddr, httpAddr, adminAddr string

	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	// exited is closed when Main has returned code.
	exited chan struct{}
	code   int
	// stopOnce makes stop wait for Main once, so a hung shutdown fails the
	// test once.
	stopOnce sync.Once
	stopCode int
}

// startService runs serve with the configuration cfg and waits until it logs
// its listener addresses. The service stops when the test ends.
func startService(t *testing.T, cfg string) *service {
	t.Helper()
	path := writeFile(t, "dicomweb-oauth.yaml", cfg)
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(s.exited)
		s.code = Main(ctx, []string{"serve", "--config", path}, s.stdout, s.stderr)
	}()
	t.Cleanup(func() { s.stop(t) })

	waitFor(t, "the listening log line", func() bool {
		select {
		case <-s.exited:
			t.Fatalf("serve exited with code %d before listening; stderr:\n%s", s.code, s.stderr)
		default:
		}
		return s.readListening()
	})
	return s
}

// readListening stores the addresses of the "listening" log line and reports
// whether it was found.
func (s *service) readListening() bool {
	scanner := bufio.NewScanner(strings.NewReader(s.stderr.String()))
	for scanner.Scan() {
		var line struct {
			Msg   string `json:"msg"`
			GRPC  string `json:"grpc"`
			HTTP  string `json:"http"`
			Admin string `json:"admin"`
		}
		if json.Unmarshal(scanner.Bytes(), &line) != nil || line.Msg != "listening" {
			continue
		}
		s.grpcAddr, s.httpAddr, s.adminAddr = line.GRPC, line.HTTP, line.Admin
		return true
	}
	return false
}

// stop cancels the service's context and returns Main's exit code. It fails
// the test when Main does not return within waitTimeout.
func (s *service) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			s.stopCode = s.code
		case <-time.After(waitTimeout):
			t.Errorf("serve did not return within %s after its context ended; stderr:\n%s", waitTimeout, s.stderr)
			s.stopCode = -1
		}
	})
	return s.stopCode
}

func (s *service) adminURL(path string) string { return "http://" + s.adminAddr + path }
func (s *service) checkURL(path string) string { return "http://" + s.httpAddr + path }

// waitReady waits until /readyz returns 200.
func (s *service) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, "/readyz to return 200", func() bool {
		resp := get(t, s.adminURL("/readyz"), nil)
		return resp.status == http.StatusOK
	})
}

// grpcHealth returns a client of the service's gRPC health API.
func (s *service) grpcHealth(t *testing.T) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", s.grpcAddr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// healthStatus returns the gRPC health status of a service name.
func healthStatus(t *testing.T, client healthpb.HealthClient, name string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
	if err != nil {
		t.Fatalf("gRPC health check of %q: %v", name, err)
	}
	return resp.GetStatus()
}

// waitFor polls cond until it is true, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// response is a read HTTP response.
type response struct {
	status int
	header http.Header
	body   string
}

// get sends a GET request with the given extra headers.
func get(t *testing.T, url string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if host := header.Get("Host"); host != "" {
		req.Host = host
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading GET %s: %v", url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// newIdP starts a fake identity provider on loopback that serves h.
func newIdP(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// tokenHandler returns accessToken to client_credentials requests from the
// client orthanc that authenticate with testSecret over HTTP Basic. Other
// clients get invalid_client.
func tokenHandler(accessToken string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if r.Method != http.MethodPost || r.PostFormValue("grant_type") != "client_credentials" {
			writeJSONBody(w, http.StatusBadRequest, `{"error":"invalid_request"}`)
			return
		}
		if !ok || id != "orthanc" || secret != testSecret {
			writeJSONBody(w, http.StatusUnauthorized, `{"error":"invalid_client"}`)
			return
		}
		writeJSONBody(w, http.StatusOK, fmt.Sprintf(
			`{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, accessToken))
	}
}

func writeJSONBody(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// serviceConfig returns a configuration whose listeners take free loopback
// ports, with one cluster per entry of tokenURLs. Cluster NAME serves the
// host NAME.example.test.
func serviceConfig(level string, tokenURLs map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `listen:
  grpc: 127.0.0.1:0
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
log:
  level: %s
clusters:
`, level)
	names := make([]string, 0, len(tokenURLs))
	for name := range tokenURLs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, `  %s:
    hosts: [%s.example.test]
    token:
      token_url: %s
      client_id: orthanc
      client_secret: %s
`, name, name, tokenURLs[name], testSecret)
	}
	return b.String()
}

// statusBody is the body of GET /status.
type statusBody struct {
	Ready    bool            `json:"ready"`
	Clusters []tokens.Status `json:"clusters"`
}

func getStatus(t *testing.T, s *service) (statusBody, string) {
	t.Helper()
	resp := get(t, s.adminURL("/status"), nil)
	if resp.status != http.StatusOK {
		t.Fatalf("/status returned %d, expected 200: %s", resp.status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/status Content-Type is %q, expected application/json", ct)
	}
	var body statusBody
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("/status body is not JSON: %v\n%s", err, resp.body)
	}
	return body, resp.body
}

// clusterStatus returns the status of one cluster from a /status body.
func clusterStatus(t *testing.T, body statusBody, cluster string) tokens.Status {
	t.Helper()
	for _, s := range body.Clusters {
		if s.Cluster == cluster {
			return s
		}
	}
	t.Fatalf("/status has no cluster %q: %+v", cluster, body.Clusters)
	return tokens.Status{}
}

func TestServe(t *testing.T) {
	t.Parallel()
	const accessToken = "test-access-token-serve"
	idp := newIdP(t, tokenHandler(accessToken))
	s := startService(t, serviceConfig("info", map[string]string{"pacs": idp.URL + "/token"}))

	s.waitReady(t)

	t.Run("healthz", func(t *testing.T) {
		resp := get(t, s.adminURL("/healthz"), nil)
		if resp.status != http.StatusOK {
			t.Errorf("/healthz returned %d, expected 200", resp.status)
		}
		if resp.body != "ok\n" {
			t.Errorf("/healthz body is %q, expected %q", resp.body, "ok\n")
		}
	})
	t.Run("readyz", func(t *testing.T) {
		resp := get(t, s.adminURL("/readyz"), nil)
		if resp.status != http.StatusOK {
			t.Errorf("/readyz returned %d, expected 200", resp.status)
		}
		if !strings.Contains(resp.body, `"ready": true`) {
			t.Errorf("/readyz body is %q, expected ready true", resp.body)
		}
	})
	t.Run("status", func(t *testing.T) {
		body, raw := getStatus(t, s)
		if !body.Ready {
			t.Errorf("/status ready is false, expected true")
		}
		pacs := clusterStatus(t, body, "pacs")
		if pacs.State != tokens.StateValid {
			t.Errorf("pacs state is %q, expected %q", pacs.State, tokens.StateValid)
		}
		if pacs.Fingerprint != tokens.Fingerprint(accessToken) {
			t.Errorf("pacs fingerprint is %q, expected %q", pacs.Fingerprint, tokens.Fingerprint(accessToken))
		}
		if pacs.Acquisitions != 1 {
			t.Errorf("pacs acquisitions are %d, expected 1", pacs.Acquisitions)
		}
		if strings.Contains(raw, accessToken) {
			t.Errorf("/status contains the access token:\n%s", raw)
		}
		if strings.Contains(raw, testSecret) {
			t.Errorf("/status contains the client secret:\n%s", raw)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		resp := get(t, s.adminURL("/metrics"), nil)
		if resp.status != http.StatusOK {
			t.Fatalf("/metrics returned %d, expected 200", resp.status)
		}
		for _, want := range []string{
			`dicomweb_oauth_token_acquisitions_total{cluster="pacs",result="success"} 1` + "\n",
			`dicomweb_oauth_token_valid{cluster="pacs"} 1` + "\n",
		} {
			if !strings.Contains(resp.body, want) {
				t.Errorf("/metrics does not contain %q", want)
			}
		}
	})
	t.Run("check by cluster", func(t *testing.T) {
		resp := get(t, s.checkURL("/check/pacs"), nil)
		if resp.status != http.StatusOK {
			t.Errorf("/check/pacs returned %d, expected 200: %s", resp.status, resp.body)
		}
		if got := resp.header.Get("Authorization"); got != "Bearer "+accessToken {
			t.Errorf("Authorization is %q, expected %q", got, "Bearer "+accessToken)
		}
	})
	t.Run("check by host", func(t *testing.T) {
		resp := get(t, s.checkURL("/check"), http.Header{"X-Forwarded-Host": {"pacs.example.test"}})
		if resp.status != http.StatusOK {
			t.Errorf("/check returned %d, expected 200: %s", resp.status, resp.body)
		}
		if got := resp.header.Get("Authorization"); got != "Bearer "+accessToken {
			t.Errorf("Authorization is %q, expected %q", got, "Bearer "+accessToken)
		}
	})
	t.Run("check unknown cluster", func(t *testing.T) {
		resp := get(t, s.checkURL("/check/archive"), nil)
		if resp.status != http.StatusForbidden {
			t.Errorf("/check/archive returned %d, expected 403", resp.status)
		}
		if got := resp.header.Get("Authorization"); got != "" {
			t.Errorf("Authorization is %q for an unknown cluster, expected none", got)
		}
	})
	t.Run("grpc health", func(t *testing.T) {
		client := s.grpcHealth(t)
		for _, name := range healthServices {
			if got := healthStatus(t, client, name); got != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("gRPC health of %q is %s, expected SERVING", name, got)
			}
		}
	})

	if code := s.stop(t); code != exitOK {
		t.Errorf("serve exited with code %d, expected %d; stderr:\n%s", code, exitOK, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("stderr has no stopped line:\n%s", s.stderr)
	}
}

func TestServeNotReadyWhileTokenPending(t *testing.T) {
	t.Parallel()
	const accessToken = "test-access-token-slow"
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	respond := tokenHandler(accessToken)
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		respond(w, r)
	})
	s := startService(t, serviceConfig("info", map[string]string{"pacs": idp.URL + "/token"}))
	var releaseOnce sync.Once
	releaseIdP := func() { releaseOnce.Do(func() { close(release) }) }
	// Registered after startService, so it runs before the service stops,
	// whose shutdown waits for the token request in flight.
	t.Cleanup(releaseIdP)
	health := s.grpcHealth(t)

	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatalf("no token request within %s", waitTimeout)
	}

	resp := get(t, s.adminURL("/readyz"), nil)
	if resp.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz returned %d while the token request is pending, expected 503", resp.status)
	}
	if !strings.Contains(resp.body, `"pending": [`) || !strings.Contains(resp.body, `"pacs"`) {
		t.Errorf("/readyz body is %q, expected pacs pending", resp.body)
	}
	if got := healthStatus(t, health, ""); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health is %s while the token request is pending, expected NOT_SERVING", got)
	}
	resp = get(t, s.checkURL("/check/pacs"), nil)
	if resp.status != http.StatusServiceUnavailable {
		t.Errorf("/check/pacs returned %d while the token request is pending, expected 503", resp.status)
	}
	body, _ := getStatus(t, s)
	if got := clusterStatus(t, body, "pacs").State; got != tokens.StatePending {
		t.Errorf("pacs state is %q, expected %q", got, tokens.StatePending)
	}

	releaseIdP()

	s.waitReady(t)
	waitFor(t, "gRPC health SERVING", func() bool {
		return healthStatus(t, health, "") == healthpb.HealthCheckResponse_SERVING
	})
	resp = get(t, s.checkURL("/check/pacs"), nil)
	if got := resp.header.Get("Authorization"); got != "Bearer "+accessToken {
		t.Errorf("Authorization is %q after the token arrived, expected %q", got, "Bearer "+accessToken)
	}
	if code := s.stop(t); code != exitOK {
		t.Errorf("serve exited with code %d, expected %d", code, exitOK)
	}
}

func TestServeStopsDuringTokenRequest(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	// The token timeout is far longer than waitTimeout, so a shutdown that
	// waits for the request fails the test instead of passing slowly.
	cfg := strings.Replace(serviceConfig("info", map[string]string{"pacs": idp.URL + "/token"}),
		"client_id: orthanc\n", "client_id: orthanc\n      timeout: 10m\n", 1)
	s := startService(t, cfg)

	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatalf("no token request within %s", waitTimeout)
	}

	if code := s.stop(t); code != exitOK {
		t.Errorf("serve exited with code %d, expected %d", code, exitOK)
	}
}

func TestServeReadyWithFailingCluster(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// failingURL returns the token URL of the failing cluster.
		failingURL func(t *testing.T) string
		wantClass  tokens.ErrorClass
	}{
		{
			name: "invalid client",
			failingURL: func(t *testing.T) string {
				return newIdP(t, func(w http.ResponseWriter, _ *http.Request) {
					writeJSONBody(w, http.StatusUnauthorized, `{"error":"invalid_client"}`)
				}).URL + "/token"
			},
			wantClass: tokens.ClassConfig,
		},
		{
			name: "server error",
			failingURL: func(t *testing.T) string {
				return newIdP(t, func(w http.ResponseWriter, _ *http.Request) {
					writeJSONBody(w, http.StatusInternalServerError, `{"error":"server_error"}`)
				}).URL + "/token"
			},
			wantClass: tokens.ClassTransient,
		},
		{
			name:       "connection refused",
			failingURL: func(t *testing.T) string { return "http://" + closedAddr(t) + "/token" },
			wantClass:  tokens.ClassTransient,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const accessToken = "test-access-token-mixed"
			idp := newIdP(t, tokenHandler(accessToken))
			s := startService(t, serviceConfig("info", map[string]string{
				"archive": tt.failingURL(t),
				"pacs":    idp.URL + "/token",
			}))

			s.waitReady(t)

			body, _ := getStatus(t, s)
			if !body.Ready {
				t.Errorf("/status ready is false, expected true")
			}
			archive := clusterStatus(t, body, "archive")
			if archive.State != tokens.StateFailing {
				t.Errorf("archive state is %q, expected %q", archive.State, tokens.StateFailing)
			}
			if archive.LastError == nil {
				t.Errorf("archive has no last_error")
			} else if archive.LastError.Class != tt.wantClass {
				t.Errorf("archive error class is %q, expected %q", archive.LastError.Class, tt.wantClass)
			}
			if got := clusterStatus(t, body, "pacs").State; got != tokens.StateValid {
				t.Errorf("pacs state is %q, expected %q", got, tokens.StateValid)
			}
			if got := healthStatus(t, s.grpcHealth(t), ""); got != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("gRPC health is %s, expected SERVING", got)
			}
			if resp := get(t, s.checkURL("/check/archive"), nil); resp.status != http.StatusServiceUnavailable {
				t.Errorf("/check/archive returned %d, expected 503", resp.status)
			}
			if resp := get(t, s.checkURL("/check/pacs"), nil); resp.status != http.StatusOK {
				t.Errorf("/check/pacs returned %d, expected 200", resp.status)
			}
			metrics := get(t, s.adminURL("/metrics"), nil).body
			want := fmt.Sprintf(`dicomweb_oauth_token_acquisitions_total{cluster="archive",result="%s"}`, tt.wantClass)
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics does not contain %q", want)
			}
			if code := s.stop(t); code != exitOK {
				t.Errorf("serve exited with code %d, expected %d", code, exitOK)
			}
		})
	}
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestServeAddressInUse(t *testing.T) {
	t.Parallel()
	inUse, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inUse.Close() })
	grpcAddr := closedAddr(t)
	idp := newIdP(t, tokenHandler("test-access-token-unused"))
	cfg := strings.Replace(serviceConfig("info", map[string]string{"pacs": idp.URL + "/token"}),
		"  grpc: 127.0.0.1:0\n  http: 127.0.0.1:0\n",
		"  grpc: "+grpcAddr+"\n  http: "+inUse.Addr().String()+"\n", 1)
	path := writeFile(t, "dicomweb-oauth.yaml", cfg)

	stderr := &syncBuffer{}
	exited := make(chan int, 1)
	go func() { exited <- Main(context.Background(), []string{"serve", "--config", path}, io.Discard, stderr) }()
	var code int
	select {
	case code = <-exited:
	case <-time.After(waitTimeout):
		t.Fatalf("serve did not return within %s with its address in use; stderr:\n%s", waitTimeout, stderr)
	}

	if code != exitFailed {
		t.Errorf("exit code is %d, expected %d", code, exitFailed)
	}
	want := "listen.http: listen tcp " + inUse.Addr().String()
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr does not contain %q:\n%s", want, stderr)
	}
	if !strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("stderr does not say the address is in use:\n%s", stderr)
	}
	// The gRPC listener opened before the failure must be closed again.
	ln, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Errorf("the gRPC address %s is still in use after serve failed: %v", grpcAddr, err)
	} else {
		_ = ln.Close()
	}
}

func TestServeMissingSecretFile(t *testing.T) {
	t.Parallel()
	missing := writeFile(t, "unused", "") + "-missing"
	cfg := strings.Replace(serviceConfig("info", map[string]string{"pacs": "https://idp.example.test/token"}),
		"client_secret: "+testSecret, "client_secret_file: "+missing, 1)
	path := writeFile(t, "dicomweb-oauth.yaml", cfg)

	code, _, stderr := runMain(t, "serve", "--config", path)

	if code != exitFailed {
		t.Errorf("exit code is %d, expected %d", code, exitFailed)
	}
	want := "clusters.pacs.token.client_secret_file: open " + missing
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr does not contain %q:\n%s", want, stderr)
	}
}

func TestServeHidesSecrets(t *testing.T) {
	t.Parallel()
	const accessToken = "test-access-token-hidden"
	idp := newIdP(t, tokenHandler(accessToken))
	rejecting := newIdP(t, func(w http.ResponseWriter, _ *http.Request) {
		writeJSONBody(w, http.StatusUnauthorized, `{"error":"invalid_client","error_description":"unknown client"}`)
	})
	s := startService(t, serviceConfig("debug", map[string]string{
		"archive": rejecting.URL + "/token",
		"pacs":    idp.URL + "/token",
	}))
	s.waitReady(t)
	basic := base64.StdEncoding.EncodeToString([]byte("orthanc:" + testSecret))
	secrets := map[string]string{
		"access token":            accessToken,
		"client secret":           testSecret,
		"Basic credentials":       basic,
		"access token in base64":  base64.StdEncoding.EncodeToString([]byte(accessToken)),
		"client secret in base64": base64.StdEncoding.EncodeToString([]byte(testSecret)),
	}

	for range 3 {
		if resp := get(t, s.checkURL("/check/pacs"), nil); resp.status != http.StatusOK {
			t.Fatalf("/check/pacs returned %d, expected 200", resp.status)
		}
	}
	get(t, s.checkURL("/check"), http.Header{"X-Forwarded-Host": {"pacs.example.test"}})
	get(t, s.checkURL("/check/archive"), nil)
	get(t, s.checkURL("/check/unknown"), nil)
	_, status := getStatus(t, s)
	metrics := get(t, s.adminURL("/metrics"), nil).body
	healthStatus(t, s.grpcHealth(t), "")
	if code := s.stop(t); code != exitOK {
		t.Errorf("serve exited with code %d, expected %d", code, exitOK)
	}

	stderr := s.stderr.String()
	for _, want := range []string{`"level":"DEBUG","msg":"decision"`, `"msg":"token request failed"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %s, so the checks below prove less:\n%s", want, stderr)
		}
	}
	outputs := map[string]string{
		"stderr":   stderr,
		"stdout":   s.stdout.String(),
		"/status":  status,
		"/metrics": metrics,
	}
	for outputName, output := range outputs {
		for secretName, secret := range secrets {
			if strings.Contains(output, secret) {
				t.Errorf("%s contains the %s", outputName, secretName)
			}
		}
	}
}
