package gate

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/issuer"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/pki"
)

const testAudience = "https://dicom.example.test"

var testClient = &http.Client{
	Transport: directTransport(),
	Timeout:   10 * time.Second,
}

// upstreamRecord is what the upstream saw of the last request.
type upstreamRecord struct {
	authorization string
	path          string
	body          string
}

func startIssuer(t *testing.T) *issuer.Issuer {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{ClientID: "client", ClientSecret: "secret"})
	if err != nil {
		t.Fatalf("start issuer: %v", err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	return iss
}

func startGate(t *testing.T, iss *issuer.Issuer, upstream http.Handler) *Server {
	t.Helper()
	return startGateWith(t, iss, upstream, "", "", nil)
}

// startGateWith starts a gate in front of upstream, whose base path is
// upstreamPath, with an optional path prefix and TLS certificate.
func startGateWith(t *testing.T, iss *issuer.Issuer, upstream http.Handler, upstreamPath, prefix string,
	certificate *tls.Certificate) *Server {
	t.Helper()
	backend := httptest.NewServer(upstream)
	t.Cleanup(backend.Close)

	server, err := Start(context.Background(), Config{
		Upstream:   backend.URL + upstreamPath,
		IssuerURL:  iss.URL(),
		Audience:   testAudience,
		PathPrefix: prefix,
	}, certificate)
	if err != nil {
		t.Fatalf("start gate: %v", err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return server
}

func mint(t *testing.T, iss *issuer.Issuer, options issuer.MintOptions) string {
	t.Helper()
	token, err := iss.Mint(options)
	if err != nil {
		t.Fatalf("mint token: %v", err)
	}
	return token
}

func TestGateChecksToken(t *testing.T) {
	iss := startIssuer(t)
	otherIssuer := startIssuer(t)
	records := make(chan upstreamRecord, 1)
	server := startGate(t, iss, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		records <- upstreamRecord{r.Header.Get("Authorization"), r.URL.Path, string(body)}
		w.WriteHeader(http.StatusOK)
	}))

	valid := mint(t, iss, issuer.MintOptions{Audience: testAudience})
	tests := []struct {
		name          string
		authorization string
		wantStatus    int
		wantErrorCode bool // whether the challenge carries error="invalid_token"
	}{
		{"valid token", "Bearer " + valid, http.StatusOK, false},
		{"lower-case scheme", "bearer " + valid, http.StatusOK, false},
		{"missing header", "", http.StatusUnauthorized, false},
		{"basic scheme", "Basic Y2xpZW50OnNlY3JldA==", http.StatusUnauthorized, false},
		{"empty token", "Bearer ", http.StatusUnauthorized, false},
		{"not a JWT", "Bearer not-a-jwt", http.StatusUnauthorized, true},
		{"expired", "Bearer " + mint(t, iss, issuer.MintOptions{
			Audience: testAudience, Lifetime: -time.Minute}), http.StatusUnauthorized, true},
		{"wrong audience", "Bearer " + mint(t, iss, issuer.MintOptions{
			Audience: "https://other.example.test"}), http.StatusUnauthorized, true},
		{"no audience", "Bearer " + mint(t, iss, issuer.MintOptions{}),
			http.StatusUnauthorized, true},
		{"wrong issuer claim", "Bearer " + mint(t, iss, issuer.MintOptions{
			Audience: testAudience, Issuer: otherIssuer.URL()}), http.StatusUnauthorized, true},
		{"unknown signing key", "Bearer " + mint(t, otherIssuer, issuer.MintOptions{
			Audience: testAudience, Issuer: iss.URL()}), http.StatusUnauthorized, true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			request, err := http.NewRequest(http.MethodPost, server.URL()+"/dicom-web/studies",
				strings.NewReader("payload"))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			if tt.authorization != "" {
				request.Header.Set("Authorization", tt.authorization)
			}

			response, err := testClient.Do(request)
			if err != nil {
				t.Fatalf("request through gate: %v", err)
			}
			response.Body.Close()

			if response.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", response.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				challenge := response.Header.Get("WWW-Authenticate")
				if !strings.HasPrefix(challenge, "Bearer ") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", challenge)
				}
				hasCode := strings.Contains(challenge, `error="invalid_token"`)
				if hasCode != tt.wantErrorCode {
					t.Errorf("WWW-Authenticate = %q, want error code present = %v", challenge, tt.wantErrorCode)
				}
				return
			}

			record := <-records
			if record.authorization != "" {
				t.Errorf("upstream saw Authorization %q, want it removed", record.authorization)
			}
			if record.path != "/dicom-web/studies" {
				t.Errorf("upstream path = %q, want /dicom-web/studies", record.path)
			}
			if record.body != "payload" {
				t.Errorf("upstream body = %q, want payload", record.body)
			}
		})
	}

	stats := server.Stats()
	if stats.Accepted != 2 {
		t.Errorf("Accepted = %d, want 2", stats.Accepted)
	}
	if want := int64(len(tests) - 2); stats.Rejected != want {
		t.Errorf("Rejected = %d, want %d", stats.Rejected, want)
	}
	if stats.DistinctTokens != 1 {
		t.Errorf("DistinctTokens = %d, want 1 (the same token was used twice)", stats.DistinctTokens)
	}
}

func TestGateCountsDistinctTokens(t *testing.T) {
	iss := startIssuer(t)
	server := startGate(t, iss, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	tokens := []string{
		mint(t, iss, issuer.MintOptions{Audience: testAudience}),
		mint(t, iss, issuer.MintOptions{Audience: testAudience}),
	}
	for _, token := range append(tokens, tokens...) {
		request, _ := http.NewRequest(http.MethodGet, server.URL()+"/", nil)
		request.Header.Set("Authorization", "Bearer "+token)
		response, err := testClient.Do(request)
		if err != nil {
			t.Fatalf("request through gate: %v", err)
		}
		response.Body.Close()
	}

	if got := server.TokenIDs(); len(got) != 2 {
		t.Errorf("TokenIDs = %v, want 2 values", got)
	}
	if got := server.Accepted(); got != 4 {
		t.Errorf("Accepted = %d, want 4", got)
	}
}

// getWithToken sends GET / with a bearer token and returns the response
// status and WWW-Authenticate challenge.
func getWithToken(serverURL, token string) (int, string, error) {
	request, err := http.NewRequest(http.MethodGet, serverURL+"/", nil)
	if err != nil {
		return 0, "", err
	}
	request.Header.Set("Authorization", "Bearer "+token)
	response, err := testClient.Do(request)
	if err != nil {
		return 0, "", err
	}
	response.Body.Close()
	return response.StatusCode, response.Header.Get("WWW-Authenticate"), nil
}

func TestGateRevokeToken(t *testing.T) {
	iss := startIssuer(t)
	server := startGate(t, iss, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	revoked := mint(t, iss, issuer.MintOptions{Audience: testAudience})
	other := mint(t, iss, issuer.MintOptions{Audience: testAudience})

	if status, _, err := getWithToken(server.URL(), revoked); err != nil || status != http.StatusOK {
		t.Fatalf("before revocation: status %d, error %v; want 200", status, err)
	}
	ids := server.TokenIDs()
	if len(ids) != 1 {
		t.Fatalf("TokenIDs = %v, want 1 value", ids)
	}
	server.RevokeToken(ids[0], 0)

	tests := []struct {
		name       string
		token      string
		wantStatus int
	}{
		{"revoked token", revoked, http.StatusUnauthorized},
		{"revoked token again", revoked, http.StatusUnauthorized},
		{"other token", other, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, challenge, err := getWithToken(server.URL(), tt.token)
			if err != nil {
				t.Fatalf("request through gate: %v", err)
			}
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d", status, tt.wantStatus)
			}
			if status == http.StatusUnauthorized && !strings.Contains(challenge, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q, want error=\"invalid_token\"", challenge)
			}
		})
	}

	if got := server.Rejected(); got != 2 {
		t.Errorf("Rejected = %d, want 2", got)
	}
	if got := server.Accepted(); got != 2 {
		t.Errorf("Accepted = %d, want 2", got)
	}
}

// TestGateRevokeTokenHold checks that the requests of a hold get no
// response until the last of them has arrived.
func TestGateRevokeTokenHold(t *testing.T) {
	const hold = 3
	iss := startIssuer(t)
	server := startGate(t, iss, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	token := mint(t, iss, issuer.MintOptions{Audience: testAudience})
	if status, _, err := getWithToken(server.URL(), token); err != nil || status != http.StatusOK {
		t.Fatalf("before revocation: status %d, error %v; want 200", status, err)
	}
	server.RevokeToken(server.TokenIDs()[0], hold)

	statuses := make(chan int, hold)
	send := func() {
		status, _, err := getWithToken(server.URL(), token)
		if err != nil {
			t.Errorf("request through gate: %v", err)
		}
		statuses <- status
	}
	for range hold - 1 {
		go send()
	}
	select {
	case status := <-statuses:
		t.Fatalf("a held request got status %d before the last request of the hold arrived", status)
	case <-time.After(300 * time.Millisecond):
	}

	go send()
	for range hold {
		select {
		case status := <-statuses:
			if status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", status)
			}
		case <-time.After(HoldTimeout / 2):
			t.Fatal("held requests got no answer after the last one arrived")
		}
	}
	if got := server.Rejected(); got != hold {
		t.Errorf("Rejected = %d, want %d", got, hold)
	}
}

// TestGateStreams checks that neither the request body nor the response body
// is buffered whole: each side receives the first part before the other side has
// sent the rest.
func TestGateStreams(t *testing.T) {
	iss := startIssuer(t)
	firstPartSeen := make(chan struct{})
	finishResponse := make(chan struct{})
	server := startGate(t, iss, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reader := bufio.NewReader(r.Body)
		if line, err := reader.ReadString('\n'); err != nil || line != "first\n" {
			t.Errorf("upstream read %q, %v; want the first request line", line, err)
		}
		close(firstPartSeen)
		_, _ = io.Copy(io.Discard, reader)

		_, _ = io.WriteString(w, "head\n")
		w.(http.Flusher).Flush()
		<-finishResponse
		_, _ = io.WriteString(w, "tail\n")
	}))

	bodyReader, bodyWriter := io.Pipe()
	request, _ := http.NewRequest(http.MethodPost, server.URL()+"/dicom-web/studies", bodyReader)
	request.Header.Set("Authorization", "Bearer "+mint(t, iss, issuer.MintOptions{Audience: testAudience}))

	responses := make(chan *http.Response, 1)
	errs := make(chan error, 1)
	go func() {
		response, err := testClient.Do(request)
		if err != nil {
			errs <- err
			return
		}
		responses <- response
	}()

	_, _ = io.WriteString(bodyWriter, "first\n")
	select {
	case <-firstPartSeen:
	case err := <-errs:
		t.Fatalf("request failed: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("upstream did not see the first part of the body before the body ended")
	}
	_, _ = io.WriteString(bodyWriter, "rest\n")
	bodyWriter.Close()

	var response *http.Response
	select {
	case response = <-responses:
	case err := <-errs:
		t.Fatalf("request failed: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no response headers before the upstream finished its response")
	}
	defer response.Body.Close()
	line, err := bufio.NewReader(response.Body).ReadString('\n')
	close(finishResponse)
	if err != nil || line != "head\n" {
		t.Errorf("first response line = %q, %v; want head", line, err)
	}
}

func TestNewRejectsConfig(t *testing.T) {
	iss := startIssuer(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"relative upstream", Config{Upstream: "/path", IssuerURL: iss.URL(), Audience: testAudience}},
		{"missing audience", Config{Upstream: "http://127.0.0.1:1", IssuerURL: iss.URL()}},
		{"relative path prefix", Config{Upstream: "http://127.0.0.1:1", IssuerURL: iss.URL(),
			Audience: testAudience, PathPrefix: "rs"}},
		{"issuer mismatch", Config{Upstream: "http://127.0.0.1:1", IssuerURL: iss.URL() + "/",
			Audience: testAudience}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(context.Background(), tt.cfg, nil); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

func TestGatePathPrefix(t *testing.T) {
	iss := startIssuer(t)
	upstreamPaths := make(chan string, 1)
	const prefix = "/dcm4chee-arc/aets/DCM4CHEE/rs"
	server := startGateWith(t, iss, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		upstreamPaths <- r.URL.Path
	}), "/dicom-web/", prefix+"/", nil)
	token := mint(t, iss, issuer.MintOptions{Audience: testAudience})

	tests := []struct {
		name             string
		path             string
		wantStatus       int
		wantUpstreamPath string
	}{
		{"below the prefix", prefix + "/studies/1.2.3/series", http.StatusOK, "/dicom-web/studies/1.2.3/series"},
		{"the prefix with a slash", prefix + "/", http.StatusOK, "/dicom-web/"},
		{"the prefix alone", prefix, http.StatusOK, "/dicom-web/"},
		{"longer last segment", prefix + "x/studies", http.StatusNotFound, ""},
		{"upstream path", "/dicom-web/studies", http.StatusNotFound, ""},
		{"root", "/", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			request, err := http.NewRequest(http.MethodGet, server.URL()+tt.path, nil)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			request.Header.Set("Authorization", "Bearer "+token)

			response, err := testClient.Do(request)
			if err != nil {
				t.Fatalf("request through gate: %v", err)
			}
			response.Body.Close()

			if response.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", response.StatusCode, tt.wantStatus)
			}
			if tt.wantUpstreamPath == "" {
				return
			}
			if got := <-upstreamPaths; got != tt.wantUpstreamPath {
				t.Errorf("upstream path = %q, want %q", got, tt.wantUpstreamPath)
			}
		})
	}

	if got := server.NotFound(); got != 3 {
		t.Errorf("NotFound = %d, want 3", got)
	}
	if got := server.Rejected(); got != 0 {
		t.Errorf("Rejected = %d, want 0", got)
	}
	records := server.Requests()
	if len(records) != 3 {
		t.Fatalf("Requests returned %d records, want 3", len(records))
	}
	if got, want := records[0].Path, prefix+"/studies/1.2.3/series"; got != want {
		t.Errorf("recorded path = %q, want the path before stripping %q", got, want)
	}
}

func TestGateServesTLS(t *testing.T) {
	ca, err := pki.NewCA("gate test CA")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	certificate, err := ca.IssueServer("pacs.example.org")
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	iss := startIssuer(t)
	server := startGateWith(t, iss, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		"", "", &certificate)
	client := &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			// The URL names 127.0.0.1, so no name is resolved; the server
			// name goes into SNI and the certificate check only.
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "pacs.example.org"},
		},
		Timeout: 10 * time.Second,
	}

	request, err := http.NewRequest(http.MethodGet, server.URL()+"/studies", nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	request.Host = "pacs.example.org"
	request.Header.Set("Authorization", "Bearer "+mint(t, iss, issuer.MintOptions{Audience: testAudience}))
	response, err := client.Do(request)
	if err != nil {
		t.Fatalf("request through gate: %v", err)
	}
	response.Body.Close()

	if !strings.HasPrefix(server.URL(), "https://127.0.0.1:") {
		t.Errorf("URL = %q, want https://127.0.0.1:PORT", server.URL())
	}
	if response.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", response.StatusCode)
	}
	records := server.Requests()
	if len(records) != 1 {
		t.Fatalf("Requests returned %d records, want 1", len(records))
	}
	if records[0].ServerName != "pacs.example.org" {
		t.Errorf("recorded SNI = %q, want pacs.example.org", records[0].ServerName)
	}
	if records[0].Host != "pacs.example.org" {
		t.Errorf("recorded Host = %q, want pacs.example.org", records[0].Host)
	}
}
