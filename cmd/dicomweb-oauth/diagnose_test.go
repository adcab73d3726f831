package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/oidcprovider"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// The tests in this file run diagnose against a real OpenID provider
// (e2e/oidcprovider) and httptest servers, all on 127.0.0.1. The only name
// they resolve is localhost.

// loopbackNetwork returns the lookups of diagnose for tests: the system
// resolver for localhost only, and no proxy. A lookup of another name
// fails the test and is not sent.
func loopbackNetwork(t *testing.T) network {
	return network{
		lookupHost: func(ctx context.Context, host string) ([]string, error) {
			if host != "localhost" {
				t.Errorf("diagnose looked up %q; tests may resolve only localhost", host)
				return nil, &net.DNSError{Err: "not resolved in tests", Name: host}
			}
			return net.DefaultResolver.LookupHost(ctx, host)
		},
		proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}
}

// runDiagnoseTest runs diagnose with args and returns its exit code and
// output. The output is logged, so that a failed test shows it.
func runDiagnoseTest(t *testing.T, nw network, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runDiagnose(context.Background(), args, &out, &errOut, nw)
	t.Logf("diagnose %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, &out, &errOut)
	return code, out.String(), errOut.String()
}

// fakeSecret returns a client secret made for one test.
func fakeSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "fake-secret-" + hex.EncodeToString(b)
}

// diagnoseProvider is an OpenID provider with one client_credentials
// client whose secret is in a file.
type diagnoseProvider struct {
	*oidcprovider.Provider
	clientID   string
	secret     string
	secretFile string
}

func startDiagnoseProvider(t *testing.T, opts oidcprovider.Options) *diagnoseProvider {
	t.Helper()
	p := &diagnoseProvider{Provider: oidcprovider.Start(t, opts), clientID: "orthanc-egress", secret: fakeSecret(t)}
	p.AddSecretClient(p.clientID, p.secret)
	p.secretFile = writeFile(t, "client-secret", p.secret+"\n")
	return p
}

// localhostURL returns u with the host 127.0.0.1 replaced by localhost,
// which the provider's certificate also names, so that the DNS check runs.
func localhostURL(u string) string {
	return strings.Replace(u, "https://127.0.0.1:", "https://localhost:", 1)
}

// clusterYAML is the token section of one cluster, indented for clusters.NAME.
func (p *diagnoseProvider) clusterYAML(tokenURL string, extra ...string) string {
	lines := []string{
		"token_url: " + tokenURL,
		"client_id: " + p.clientID,
		"client_secret_file: " + p.secretFile,
		"timeout: 5s",
	}
	lines = append(lines, extra...)
	return "    token:\n      " + strings.Join(lines, "\n      ") + "\n"
}

// writeDiagnoseConfig writes a configuration with the given clusters, each
// a name and the output of clusterYAML.
func writeDiagnoseConfig(t *testing.T, clusters ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("clusters:\n")
	for i := 0; i < len(clusters); i += 2 {
		b.WriteString("  " + clusters[i] + ":\n" + clusters[i+1])
	}
	return writeFile(t, "dicomweb-oauth.yaml", b.String())
}

// qidoServer is a DICOMweb server that responds to QIDO-RS with a fixed
// status and body, and keeps the last bearer token it received.
type qidoServer struct {
	*httptest.Server
	caFile string

	mu        sync.Mutex // guards lastToken
	lastToken string
}

// startQIDOServer starts the server on 127.0.0.1. headers are name and
// value pairs that each response carries. The content type is DICOM JSON for
// a JSON body and HTML otherwise.
func startQIDOServer(t *testing.T, status int, body string, headers ...string) *qidoServer {
	t.Helper()
	q := &qidoServer{}
	q.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dicom-web/studies" || r.URL.Query().Get("limit") != "1" {
			t.Errorf("QIDO-RS request for %s, expected /dicom-web/studies?limit=1", r.URL)
		}
		if accept := r.Header.Get("Accept"); accept != "application/dicom+json" {
			t.Errorf("QIDO-RS Accept is %q, expected application/dicom+json", accept)
		}
		q.mu.Lock()
		q.lastToken = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		q.mu.Unlock()
		contentType := "text/html"
		if json.Valid([]byte(body)) {
			contentType = "application/dicom+json"
		}
		w.Header().Set("Content-Type", contentType)
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(q.Close)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: q.Certificate().Raw})
	q.caFile = writeFile(t, "qido-ca.pem", string(certPEM))
	return q
}

func (q *qidoServer) baseURL() string { return q.URL + "/dicom-web/" }

func (q *qidoServer) token() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastToken
}

// wantLines fails the test for each part that stdout does not contain.
func wantLines(t *testing.T, stdout string, parts ...string) {
	t.Helper()
	for _, part := range parts {
		if !strings.Contains(stdout, part) {
			t.Errorf("stdout does not contain %q", part)
		}
	}
}

// wantText fails the test for each part that stdout does not contain, with
// any run of spaces and line breaks taken as one space, so that a part may
// span wrapped lines.
func wantText(t *testing.T, stdout string, parts ...string) {
	t.Helper()
	text := strings.Join(strings.Fields(stdout), " ")
	for _, part := range parts {
		if !strings.Contains(text, strings.Join(strings.Fields(part), " ")) {
			t.Errorf("stdout does not contain %q", part)
		}
	}
}

func wantExit(t *testing.T, code, want int) {
	t.Helper()
	if code != want {
		t.Errorf("exit code is %d, expected %d", code, want)
	}
}

// healthyCluster returns a cluster whose every check passes: token URL on
// localhost, the provider's CA, an audience, a scope and verify settings.
func healthyCluster(p *diagnoseProvider) string {
	return p.clusterYAML(localhostURL(p.TokenURL()),
		"scopes: [dicom.read]",
		"audience: dicomweb",
		"tls: {ca_file: "+p.CAFile()+"}",
		"verify: {jwks_url: "+p.JWKSURL()+", issuer: "+p.Issuer()+", audience: dicomweb}")
}

func TestDiagnoseHealthyCluster(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	q := startQIDOServer(t, http.StatusOK, `[{"0020000D":{"vr":"UI","Value":["1.2.3"]}}]`)
	path := writeDiagnoseConfig(t, "pacs", healthyCluster(p))

	code, stdout, stderr := runDiagnoseTest(t, loopbackNetwork(t),
		"--config", path, "--qido", q.baseURL(), "--qido-ca-file", q.caFile)

	wantExit(t, code, exitOK)
	for _, name := range []string{"DNS", "TCP", "TLS", "token", "claims", "clock", "audience", "scopes",
		"verify", "QIDO-RS"} {
		wantLines(t, stdout, "  [ok]   "+padRight(name, 10)+" ")
	}
	wantLines(t, stdout,
		"cluster pacs (grant client_credentials)",
		"token endpoint "+localhostURL(p.TokenURL()),
		"localhost is 127.0.0.1",
		"certificate issuer: CN=oidcprovider test CA",
		"audience (aud): dicomweb",
		"scopes: dicom.read",
		"aud contains dicomweb (from verify.audience)",
		"HTTP 200, 1 study",
		"cluster pacs: all 10 checks passed")
	if strings.Contains(stdout, markFail) || strings.Contains(stdout, markSkip) {
		t.Error("stdout has a failed or skipped check")
	}
	if stderr != "" {
		t.Errorf("stderr is %q, expected nothing", stderr)
	}
	if _, err := p.Verify(q.token()); err != nil {
		t.Errorf("the QIDO-RS request did not carry the provider's token: %v", err)
	}
}

func padRight(s string, width int) string {
	return s + strings.Repeat(" ", max(0, width-len(s)))
}

func TestDiagnoseShowToken(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	q := startQIDOServer(t, http.StatusOK, `[]`)
	path := writeDiagnoseConfig(t, "pacs", healthyCluster(p))
	args := []string{"--config", path, "--qido", q.baseURL(), "--qido-ca-file", q.caFile}

	t.Run("without --show-token", func(t *testing.T) {
		code, stdout, stderr := runDiagnoseTest(t, loopbackNetwork(t), args...)
		token := q.token()

		wantExit(t, code, exitOK)
		if token == "" {
			t.Fatal("the QIDO-RS server received no token")
		}
		if strings.Contains(stdout, token) || strings.Contains(stderr, token) {
			t.Error("the access token appears in the output without --show-token")
		}
		wantLines(t, stdout, "fingerprint: "+tokens.Fingerprint(token))
		if strings.Contains(stdout, "access token (") {
			t.Error("stdout has the access token label without --show-token")
		}
		if strings.Contains(stdout+stderr, p.secret) {
			t.Error("the client secret appears in the output")
		}
	})

	t.Run("with --show-token", func(t *testing.T) {
		code, stdout, stderr := runDiagnoseTest(t, loopbackNetwork(t), append(args, "--show-token")...)
		token := q.token()

		wantExit(t, code, exitOK)
		wantLines(t, stdout, "access token (a secret until it expires; do not share it):\n"+token+"\n")
		if strings.Contains(stdout+stderr, p.secret) {
			t.Error("the client secret appears in the output")
		}
	})
}

// entraError returns an Entra ID style error response body.
func entraError(code, description string, number int) string {
	body, _ := json.Marshal(map[string]any{
		"error": code, "error_description": description, "error_codes": []int{number},
		"timestamp": "2026-01-01 00:00:00Z", "trace_id": "00000000-0000-0000-0000-000000000000",
	})
	return string(body)
}

func TestDiagnoseKnownTokenFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		want   []string
	}{
		{"Entra ID wrong secret", http.StatusUnauthorized,
			entraError("invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the "+
				"secret being sent in the request is the client secret value, not the client secret ID.\r\n"+
				"Trace ID: 00000000", 7000215),
			[]string{"request failed: HTTP 401, invalid_client", "error class: config",
				"HTTP status: 401 Unauthorized", "OAuth2 error: invalid_client",
				"provider codes: AADSTS7000215", "description: AADSTS7000215: Invalid client secret provided.",
				"the secret's ID was probably sent instead of its value"}},
		{"Entra ID unknown application", http.StatusBadRequest,
			entraError("unauthorized_client", "AADSTS700016: Application with identifier 'x' was not "+
				"found in the directory 'y'.", 700016),
			[]string{"provider codes: AADSTS700016", "client_id or tenant_id is wrong"}},
		{"Okta org authorization server", http.StatusBadRequest,
			`{"error":"invalid_scope","error_description":"Custom scopes are not allowed for this request."}`,
			[]string{"OAuth2 error: invalid_scope", "Okta's org authorization server accepts no custom scopes",
				"authorization_server: default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startDiagnoseProvider(t, oidcprovider.Options{})
			p.FailNext(tt.status, tt.body)
			path := writeDiagnoseConfig(t, "pacs", p.clusterYAML(p.TokenURL(), "tls: {ca_file: "+p.CAFile()+"}"))

			code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

			wantExit(t, code, exitFailed)
			wantText(t, stdout, "  [FAIL] token      ")
			wantText(t, stdout, tt.want...)
			wantText(t, stdout, "  [ok]   clock      this host's clock agrees with the token endpoint's Date header")
		})
	}
}

func TestSecretFormHints(t *testing.T) {
	t.Parallel()
	guidShaped := &tokens.Config{ClientSecret: "00000000-0000-0000-0000-000000000000"}
	valueShaped := &tokens.Config{ClientSecret: "fake~secret.value_0000000000000000000000"}

	if hints := secretFormHints("AADSTS7000215", guidShaped); len(hints) != 1 ||
		!strings.Contains(hints[0], "form of a Secret ID") {
		t.Errorf("hints for a GUID-shaped secret = %q, expected the Secret ID hint", hints)
	}
	if hints := secretFormHints("AADSTS7000215", valueShaped); hints != nil {
		t.Errorf("hints for a value-shaped secret = %q, expected none", hints)
	}
	if hints := secretFormHints("AADSTS700016", guidShaped); hints != nil {
		t.Errorf("hints for another code = %q, expected none", hints)
	}
}

func TestDiagnoseKeycloakAudienceMapper(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{IssuerPath: "/realms/dicom", DefaultAudience: "account"})
	path := writeDiagnoseConfig(t, "archive", p.clusterYAML(p.TokenURL(),
		"tls: {ca_file: "+p.CAFile()+"}",
		"verify: {jwks_url: "+p.JWKSURL()+", audience: dcm4chee-arc-rs}"))

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout,
		"  [ok]   token      ",
		"  [FAIL] audience   aud does not contain dcm4chee-arc-rs",
		"token aud: account expected: dcm4chee-arc-rs (from verify.audience)",
		"Keycloak puts only \"account\" in aud",
		"Audience mapper",
		"  [FAIL] verify     serve would not use this token")
}

func TestDiagnoseQIDOMissingRole(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	q := startQIDOServer(t, http.StatusForbidden,
		`{"errors":[{"code":"Forbidden","message":"Authorization failed."}]}`)
	path := writeDiagnoseConfig(t, "azure-dicom", p.clusterYAML(p.TokenURL(),
		"provider: azure",
		"scopes: [https://dicom.healthcareapis.azure.com/.default]",
		"tls: {ca_file: "+p.CAFile()+"}"))

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t),
		"--config", path, "azure-dicom", "--qido", q.baseURL(), "--qido-ca-file", q.caFile)

	wantExit(t, code, exitFailed)
	wantText(t, stdout,
		"roles: (none)",
		"  [ok]   audience   aud contains https://dicom.healthcareapis.azure.com (from the scope",
		"  [FAIL] QIDO-RS    HTTP 403",
		`body: {"errors":[{"code":"Forbidden","message":"Authorization failed."}]}`,
		"The DICOM service accepted the token, but the app has no DICOM role on it",
		"assign DICOM Data Reader (QIDO-RS and WADO-RS) or DICOM Data Owner (also STOW-RS)")
}

func TestDiagnoseQIDOAnswers(t *testing.T) {
	t.Parallel()
	now := time.Now()
	token := fakeJWT(t, map[string]any{
		"iss": "https://idp.example.test", "aud": "dicomweb", "roles": []string{"DICOM.Read"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	tokenURL, caFile := startTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 3600})
	})
	path := writeDiagnoseConfig(t, "pacs", "    token:\n      token_url: "+tokenURL+
		"\n      client_id: orthanc-egress\n      client_secret: "+fakeSecret(t)+
		"\n      tls: {ca_file: "+caFile+"}\n")

	tests := []struct {
		name    string
		status  int
		body    string
		headers []string
		want    []string
	}{
		{"no studies", http.StatusNoContent, "", nil, []string{"[ok] QIDO-RS HTTP 204, no studies"}},
		{"rejected token", http.StatusUnauthorized, "", []string{"WWW-Authenticate",
			`Bearer error="invalid_token", error_description="The audience is invalid"`},
			[]string{"[FAIL] QIDO-RS HTTP 401",
				`WWW-Authenticate: Bearer error="invalid_token", error_description="The audience is invalid"`,
				"The DICOMweb server rejected the token"}},
		{"other role", http.StatusForbidden, `{"error":"forbidden"}`, nil,
			[]string{"[FAIL] QIDO-RS HTTP 403", "The token has the roles DICOM.Read",
				"requires another role or permission"}},
		{"wrong path", http.StatusNotFound, "<html>Not Found</html>", nil,
			[]string{"[FAIL] QIDO-RS HTTP 404", "body: <html>Not Found</html>", "not the DICOMweb base URL"}},
		{"login page", http.StatusOK, "<html>Sign in</html>", nil,
			[]string{"[FAIL] QIDO-RS HTTP 200, but the answer is not DICOM JSON", "Content-Type: text/html",
				"not the DICOMweb base URL"}},
		{"redirect", http.StatusFound, "", []string{"Location", "https://login.example.test/"},
			[]string{"[FAIL] QIDO-RS HTTP 302", "Location: https://login.example.test/", "often to a login page"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := startQIDOServer(t, tt.status, tt.body, tt.headers...)

			code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t),
				"--config", path, "--qido", q.baseURL(), "--qido-ca-file", q.caFile)

			wantText(t, stdout, tt.want...)
			if q.token() != token {
				t.Error("the QIDO-RS request did not carry the token")
			}
			if strings.Contains(tt.want[0], markOK) {
				wantExit(t, code, exitOK)
			} else {
				wantExit(t, code, exitFailed)
			}
		})
	}
}

func TestDiagnoseQIDOUnknownCA(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	q := startQIDOServer(t, http.StatusOK, "[]")
	path := writeDiagnoseConfig(t, "pacs", p.clusterYAML(p.TokenURL(), "tls: {ca_file: "+p.CAFile()+"}"))

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path, "--qido", q.baseURL())

	wantExit(t, code, exitFailed)
	wantText(t, stdout, "[FAIL] QIDO-RS request failed", "certificate signed by unknown authority",
		"Give --qido-ca-file a PEM file")
}

func TestDiagnoseIssuerDiscovery(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{IssuerPath: "/realms/dicom"})
	path := writeDiagnoseConfig(t, "pacs", "    token:\n      issuer: "+p.Issuer()+
		"\n      client_id: "+p.clientID+"\n      client_secret_file: "+p.secretFile+
		"\n      tls: {ca_file: "+p.CAFile()+"}\n")

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitOK)
	wantText(t, stdout, "issuer "+p.Issuer(), "[ok] TLS", "[ok] discovery token endpoint "+p.TokenURL(),
		"[ok] token acquired")
	if strings.Contains(stdout, "  token endpoint ") {
		t.Error("diagnose checked the token endpoint's host again, though it is the issuer's")
	}
}

func TestDiagnoseDiscoveryIssuerMismatch(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{AdvertisedIssuer: "https://sso.example.test/realms/dicom"})
	path := writeDiagnoseConfig(t, "pacs", "    token:\n      issuer: "+p.Issuer()+
		"\n      client_id: "+p.clientID+"\n      client_secret_file: "+p.secretFile+
		"\n      tls: {ca_file: "+p.CAFile()+"}\n")

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout, "[FAIL] discovery request failed",
		`names issuer "https://sso.example.test/realms/dicom"`,
		"A retry does not fix this",
		"[skip] token not run, because an endpoint check above failed")
}

func TestDiagnoseThroughProxy(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	proxyPort := closedPort(t)
	path := writeDiagnoseConfig(t, "pacs", p.clusterYAML(p.TokenURL(), "tls: {ca_file: "+p.CAFile()+"}"))
	nw := loopbackNetwork(t)
	nw.proxy = func(*http.Request) (*url.URL, error) {
		return url.Parse("http://proxy-user:fake-proxy-password@127.0.0.1:" + proxyPort)
	}

	code, stdout, _ := runDiagnoseTest(t, nw, "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout, "through the proxy http://proxy-user:xxxxx@127.0.0.1:"+proxyPort,
		"[FAIL] TCP cannot connect to port "+proxyPort, "Nothing accepts connections on this port")
	if strings.Contains(stdout, "fake-proxy-password") {
		t.Error("stdout shows the proxy password")
	}
}

func TestDiagnoseFileGrant(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tokenFile := writeFile(t, "token", fakeJWT(t, map[string]any{
		"iss": "https://idp.example.test", "aud": "dicomweb", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}))
	missing := filepath.Join(t.TempDir(), "no-token")

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", writeDiagnoseConfig(t,
		"pacs", "    token:\n      grant: file\n      token_file: "+tokenFile+"\n"))

	wantExit(t, code, exitOK)
	wantText(t, stdout, "[skip] endpoint the file grant sends no HTTP request", "[ok] token acquired",
		"audience (aud): dicomweb")

	code, stdout, _ = runDiagnoseTest(t, loopbackNetwork(t), "--config", writeDiagnoseConfig(t,
		"pacs", "    token:\n      grant: file\n      token_file: "+missing+"\n"))

	wantExit(t, code, exitFailed)
	wantText(t, stdout, "[FAIL] token request failed", "no such file or directory",
		"Check the path of token_file")
}

func TestDiagnoseRefreshTokenGrant(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	refreshToken := "fake-refresh-token-" + fakeSecret(t)
	p.AddRefreshToken(p.clientID, refreshToken, true)
	refreshTokenFile := writeFile(t, "refresh-token", refreshToken+"\n")
	path := writeDiagnoseConfig(t, "pacs", p.clusterYAML(p.TokenURL(),
		"grant: refresh_token",
		"refresh_token_file: "+refreshTokenFile,
		"tls: {ca_file: "+p.CAFile()+"}"))

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitOK)
	wantText(t, stdout, "[skip] token not run without --use-refresh-token",
		"A token request can make the provider rotate the refresh token",
		"cluster pacs: all 2 checks passed, 2 skipped")
	if got := p.TokenRequests(); got != 0 {
		t.Errorf("the provider received %d token requests without --use-refresh-token, expected 0", got)
	}

	code, stdout, stderr := runDiagnoseTest(t, loopbackNetwork(t), "--config", path, "--use-refresh-token")

	wantExit(t, code, exitOK)
	wantText(t, stdout, "[ok] token acquired")
	if strings.Contains(stdout+stderr, refreshToken) {
		t.Error("the refresh token appears in the output")
	}
}

func TestDiagnoseUnknownCA(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	path := writeDiagnoseConfig(t, "pacs", p.clusterYAML(p.TokenURL()))

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout,
		"  [skip] DNS        127.0.0.1 is an IP address",
		"  [ok]   TCP        connected to 127.0.0.1:",
		"  [FAIL] TLS        handshake with 127.0.0.1 failed",
		"certificate signed by unknown authority",
		"certificate subject: CN=127.0.0.1",
		"certificate issuer: CN=oidcprovider test CA",
		"Set tls.ca_file",
		"  [skip] token      not run, because an endpoint check above failed")
}

// closedPort returns a port on 127.0.0.1 on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(listener.Addr().String())
	listener.Close()
	return port
}

func TestDiagnoseConnectionRefused(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	port := closedPort(t)
	path := writeDiagnoseConfig(t, "pacs", p.clusterYAML("https://127.0.0.1:"+port+"/oauth/token"))

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout,
		"  [FAIL] TCP        cannot connect to port "+port,
		"connection refused",
		"Nothing accepts connections on this port",
		"  [skip] token      ")
}

// TestDiagnoseDNSFailure replaces the lookup, because no real lookup of a
// name that fails stays on this machine. Go's resolver (1.26,
// net/dnsclient_unix.go avoidDNS) answers only .onion names without a
// query, so even a name under .invalid (RFC 6761) would be sent to the
// configured name server. The replaced lookup fails as a name server
// does for a name that does not exist.
func TestDiagnoseDNSFailure(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	path := writeDiagnoseConfig(t, "pacs", p.clusterYAML("https://idp.example.invalid/oauth2/token"))
	var lookedUp []string
	nw := network{
		lookupHost: func(_ context.Context, host string) ([]string, error) {
			lookedUp = append(lookedUp, host)
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		},
		proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}

	code, stdout, _ := runDiagnoseTest(t, nw, "--config", path)

	wantExit(t, code, exitFailed)
	if len(lookedUp) != 1 || lookedUp[0] != "idp.example.invalid" {
		t.Errorf("looked up %q, expected [idp.example.invalid]", lookedUp)
	}
	wantText(t, stdout,
		"  [FAIL] DNS        cannot resolve idp.example.invalid",
		"The name idp.example.invalid does not exist in DNS",
		"  [skip] token      not run, because an endpoint check above failed")
}

// fakeJWT returns an unsigned JWT with the given claims. DecodeClaims does
// not check signatures.
func fakeJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	encode := base64.RawURLEncoding.EncodeToString
	return encode([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + encode(payload) + "." + encode([]byte("fake-signature"))
}

// startTokenEndpoint serves handler over TLS on 127.0.0.1 and returns its
// URL and the PEM file of its certificate.
func startTokenEndpoint(t *testing.T, handler http.HandlerFunc) (tokenURL, caFile string) {
	t.Helper()
	server := httptest.NewTLSServer(handler)
	t.Cleanup(server.Close)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
	return server.URL + "/token", writeFile(t, "token-ca.pem", string(certPEM))
}

func TestDiagnoseIssuedInTheFuture(t *testing.T) {
	t.Parallel()
	now := time.Now()
	token := fakeJWT(t, map[string]any{
		"iss": "https://idp.example.test", "aud": "dicomweb", "azp": "orthanc-egress",
		"iat": now.Add(10 * time.Minute).Unix(),
		"exp": now.Add(time.Hour).Unix(),
	})
	tokenURL, caFile := startTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 3000})
	})
	path := writeDiagnoseConfig(t, "pacs", "    token:\n      token_url: "+tokenURL+
		"\n      client_id: orthanc-egress\n      client_secret: "+fakeSecret(t)+
		"\n      tls: {ca_file: "+caFile+"}\n")

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout,
		"  [ok]   token      ",
		"issued at (iat): ",
		"lifetime: 50m0s",
		"  [FAIL] clock      the token's iat is ",
		"later than this host's clock",
		"This host's clock is behind the provider's by at least",
		"Synchronize this host's clock with NTP")
}

func TestDiagnoseAssertionTimeWithDateHeader(t *testing.T) {
	t.Parallel()
	tokenURL, caFile := startTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(-7*time.Minute).UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(entraError("invalid_client", "AADSTS700024: Client assertion is not within its "+
			"valid time range.", 700024)))
	})
	path := writeDiagnoseConfig(t, "pacs", "    token:\n      token_url: "+tokenURL+
		"\n      client_id: orthanc-egress\n      client_secret: "+fakeSecret(t)+
		"\n      tls: {ca_file: "+caFile+"}\n")

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout,
		"provider codes: AADSTS700024",
		"The client assertion is outside its valid time range",
		"  [FAIL] clock      this host's clock is 7m0s ahead of the token endpoint's",
		"token endpoint's Date header: ",
		"Synchronize this host's clock with NTP")
}

func TestDiagnoseClusterFilter(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	broken := p.clusterYAML("https://127.0.0.1:" + closedPort(t) + "/oauth/token")
	path := writeDiagnoseConfig(t, "broken", broken, "pacs", healthyCluster(p))

	for _, args := range [][]string{
		{"--config", path, "pacs"},
		{"pacs", "--config", path},
	} {
		code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), args...)

		wantExit(t, code, exitOK)
		wantText(t, stdout, "cluster pacs: all 9 checks passed")
		if strings.Contains(stdout, "cluster broken") {
			t.Errorf("diagnose %q checked the cluster broken", args)
		}
	}

	code, stdout, _ := runDiagnoseTest(t, loopbackNetwork(t), "--config", path)

	wantExit(t, code, exitFailed)
	wantText(t, stdout, "cluster broken: 1 of 1 checks failed", "cluster pacs: all 9 checks passed")
}

func TestDiagnoseUsageErrors(t *testing.T) {
	t.Parallel()
	p := startDiagnoseProvider(t, oidcprovider.Options{})
	path := writeDiagnoseConfig(t, "pacs", healthyCluster(p), "archive", healthyCluster(p))

	tests := []struct {
		name string
		args []string
		want string
		// usage is whether stderr shows the usage after the message.
		usage bool
	}{
		{"no config", []string{"diagnose"}, "missing --config FILE", true},
		{"unknown cluster", []string{"diagnose", "--config", path, "nope"},
			`unknown cluster "nope"; the configuration has: archive, pacs`, false},
		{"two clusters", []string{"diagnose", "--config", path, "pacs", "archive"}, "one CLUSTER at most", true},
		{"qido without cluster", []string{"diagnose", "--config", path, "--qido", "https://127.0.0.1:1/"},
			"--qido needs a CLUSTER", false},
		{"invalid qido URL", []string{"diagnose", "--config", path, "pacs", "--qido", "pacs.example.test"},
			`invalid --qido URL "pacs.example.test"`, true},
		{"qido CA without URL", []string{"diagnose", "--config", path, "--qido-ca-file", path},
			"--qido-ca-file needs --qido URL", true},
		{"unknown flag", []string{"diagnose", "--config", path, "--verbose"}, "flag provided but not defined", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runMain(t, tt.args...)

			wantExit(t, code, exitUsage)
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not contain %q:\n%s", tt.want, stderr)
			}
			wantUsage := 0
			if tt.usage {
				wantUsage = 1
			}
			if got := strings.Count(stderr, "usage: dicomweb-oauth diagnose"); got != wantUsage {
				t.Errorf("stderr shows the usage %d times, expected %d:\n%s", got, wantUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout is %q, expected nothing", stdout)
			}
		})
	}
}

func TestDiagnoseHelp(t *testing.T) {
	t.Parallel()
	code, _, stderr := runMain(t, "diagnose", "-h")

	wantExit(t, code, exitOK)
	if !strings.Contains(stderr, "-show-token") {
		t.Errorf("stderr does not list the options:\n%s", stderr)
	}
}

func TestRoleHint(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		tokens.ProviderAzure:    "DICOM Data Owner (also STOW-RS) to the app registration",
		tokens.ProviderKeycloak: "on the client's Service account roles tab",
		tokens.ProviderGoogle:   "Healthcare DICOM Viewer",
		"":                      "the token has no roles claim",
	}
	for provider, want := range tests {
		if hint := roleHint(provider); !strings.Contains(hint, want) {
			t.Errorf("roleHint(%q) = %q, expected it to contain %q", provider, hint, want)
		}
	}
}

func TestDiagnosisProvider(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		config tokens.Config
		issuer string
		want   string
	}{
		{"preset", tokens.Config{Provider: tokens.ProviderOkta, Grant: tokens.GrantClientCredentials}, "", "okta"},
		{"Google grant", tokens.Config{Grant: tokens.GrantJWTBearer}, "", "google"},
		{"managed identity", tokens.Config{Grant: tokens.GrantManagedIdentity}, "", "azure"},
		{"Entra ID issuer", tokens.Config{Provider: tokens.ProviderGeneric, Grant: tokens.GrantClientCredentials},
			"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0", "azure"},
		{"Entra ID v1 issuer", tokens.Config{Grant: tokens.GrantClientCredentials},
			"https://sts.windows.net/00000000-0000-0000-0000-000000000000/", "azure"},
		{"Keycloak issuer", tokens.Config{Grant: tokens.GrantClientCredentials},
			"https://sso.example.test/realms/dicom", "keycloak"},
		{"unknown", tokens.Config{Grant: tokens.GrantClientCredentials}, "https://idp.example.test", ""},
	}
	for _, tt := range tests {
		d := &diagnosis{config: tt.config, claims: &tokens.Claims{Issuer: tt.issuer}}
		if got := d.provider(); got != tt.want {
			t.Errorf("%s: provider() = %q, expected %q", tt.name, got, tt.want)
		}
	}
}

func TestDiagnoseInvalidConfig(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "dicomweb-oauth.yaml", "clusters:\n  pacs:\n    token:\n      client_id: x\n")

	code, stdout, stderr := runMain(t, "diagnose", "--config", path)

	wantExit(t, code, exitFailed)
	if !strings.Contains(stderr, "invalid configuration") {
		t.Errorf("stderr does not say the configuration is invalid:\n%s", stderr)
	}
	if stdout != "" {
		t.Errorf("stdout is %q, expected nothing", stdout)
	}
}

func TestWriteWrapped(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	text := strings.Repeat("word ", 40)

	writeWrapped(&b, detailIndent+"hint: ", detailIndent+"      ", text)

	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("%d lines, expected the hint wrapped:\n%s", len(lines), b.String())
	}
	for i, line := range lines {
		if len(line) > hintWidth {
			t.Errorf("line %d has %d columns, more than %d", i, len(line), hintWidth)
		}
	}
	if got := strings.Count(b.String(), "word"); got != 40 {
		t.Errorf("%d words written, expected 40", got)
	}
	if !strings.HasPrefix(lines[1], detailIndent+"      word") {
		t.Errorf("continuation line %q is not indented under the hint", lines[1])
	}
}
