package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// adminAPIDocument is the OpenAPI description of the admin listener.
var adminAPIDocument = filepath.Join("..", "..", "docs", "admin-api.yaml")

// testAdminToken is the admin bearer token of the test configurations.
// Tests assert that it never appears in output.
const testAdminToken = "test-admin-token-value"

// loadAdminAPI loads and validates docs/admin-api.yaml.
func loadAdminAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(adminAPIDocument)
	if err != nil {
		t.Fatalf("loading %s: %v", adminAPIDocument, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", adminAPIDocument, err)
	}
	return doc
}

// documentedRoutes returns "METHOD PATH" for every operation of doc, in the
// pattern syntax of http.ServeMux.
func documentedRoutes(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// testJWT returns an unsigned token in the shape of a JWT, with claims as
// its payload and a fake signature.
func testJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	encode := base64.RawURLEncoding.EncodeToString
	return encode([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + encode(payload) + "." +
		encode([]byte("test-signature-not-checked"))
}

// countingIdP starts a fake token endpoint that responds like tokenHandler,
// with the access token issue(n) for its n-th request (from 1), and counts
// the requests.
func countingIdP(t *testing.T, issue func(n int64) string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var count atomic.Int64
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request) {
		tokenHandler(issue(count.Add(1)))(w, r)
	})
	return idp, &count
}

// rejectingIdP starts a fake token endpoint that rejects every request the
// way Entra ID rejects a wrong client secret, and counts the requests.
func rejectingIdP(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var count atomic.Int64
	idp := newIdP(t, func(w http.ResponseWriter, _ *http.Request) {
		count.Add(1)
		writeJSONBody(w, http.StatusUnauthorized, `{"error":"invalid_client",`+
			`"error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`)
	})
	return idp, &count
}

// withAdminToken returns cfg with admin.token_file set to a new file that
// contains testAdminToken and a final newline.
func withAdminToken(t *testing.T, cfg string) string {
	t.Helper()
	path := writeFile(t, "admin-token", testAdminToken+"\n")
	return "admin:\n  token_file: " + path + "\n" + cfg
}

// adminCall is one request to the admin listener.
type adminCall struct {
	method, path string
	// authorization is the Authorization header value, or "" for none.
	authorization string
}

// send sends the call to the service and returns the response.
func (c adminCall) send(t *testing.T, s *service) (*http.Request, response) {
	t.Helper()
	req, err := http.NewRequest(c.method, s.adminURL(c.path), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.authorization != "" {
		req.Header.Set("Authorization", c.authorization)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", c.method, c.path, err)
	}
	return req, response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// adminValidator checks responses of a running service against the admin
// API document and records which documented responses it has seen.
type adminValidator struct {
	doc    *openapi3.T
	router routers.Router
	// seen contains "METHOD PATH STATUS" of every validated response.
	seen map[string]bool
}

// newAdminValidator routes requests to the document's operations as if its
// server were the admin listener of s.
func newAdminValidator(t *testing.T, doc *openapi3.T, s *service) *adminValidator {
	t.Helper()
	doc.Servers = openapi3.Servers{{URL: "http://" + s.adminAddr}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("building the router of %s: %v", adminAPIDocument, err)
	}
	return &adminValidator{doc: doc, router: router, seen: map[string]bool{}}
}

// check validates a response against the document: the request against its
// operation, and the status, headers, content type and body against the
// operation's responses. A request whose method the path does not serve is
// checked against the path's POST operation, which documents the 405.
func (v *adminValidator) check(t *testing.T, req *http.Request, resp response) {
	t.Helper()
	routed := req
	if resp.status == http.StatusMethodNotAllowed {
		routed = req.Clone(req.Context())
		routed.Method = http.MethodPost
	}
	route, params, err := v.router.FindRoute(routed)
	if err != nil {
		t.Errorf("%s %s: not in %s: %v", req.Method, req.URL.Path, adminAPIDocument, err)
		return
	}
	options := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	}
	input := &openapi3filter.RequestValidationInput{Request: routed, PathParams: params, Route: route, Options: options}
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		t.Errorf("%s %s: the request does not match %s: %v", req.Method, req.URL.Path, adminAPIDocument, err)
	}
	output := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input, Status: resp.status, Header: resp.header, Options: options,
		Body: io.NopCloser(strings.NewReader(resp.body)),
	}
	if err := openapi3filter.ValidateResponse(context.Background(), output); err != nil {
		t.Errorf("%s %s: the %d response does not match %s: %v\nbody: %s",
			req.Method, req.URL.Path, resp.status, adminAPIDocument, err, resp.body)
	}
	v.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, resp.status)] = true
}

// checkAllSeen fails the test for every response in the document that no
// call produced.
func (v *adminValidator) checkAllSeen(t *testing.T) {
	t.Helper()
	for path, item := range v.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				key := fmt.Sprintf("%s %s %s", method, path, status)
				if !v.seen[key] {
					t.Errorf("no call produced the documented response %s; call it in this test, "+
						"or remove it from %s when the service no longer sends it", key, adminAPIDocument)
				}
			}
		}
	}
}

// TestAdminAPIMatchesDocument calls every documented path, method and
// response on a running service and validates each response against
// docs/admin-api.yaml.
func TestAdminAPIMatchesDocument(t *testing.T) {
	t.Parallel()
	now := time.Now()
	jwt := testJWT(t, map[string]any{
		"iss": "https://idp.example.test/", "aud": "api://dicom", "roles": []string{"DICOM.Reader"},
		"azp": "orthanc", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	const opaqueToken = "test-opaque-token-value"
	pacs, _ := countingIdP(t, func(int64) string { return jwt })
	opaque, _ := countingIdP(t, func(int64) string { return opaqueToken })
	archive, _ := rejectingIdP(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseSlow := func() { releaseOnce.Do(func() { close(release) }) }
	slow := newIdP(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		tokenHandler(jwt)(w, r)
	})
	s := startService(t, withAdminToken(t, serviceConfig("info", map[string]string{
		"archive": archive.URL + "/token",
		"opaque":  opaque.URL + "/token",
		"pacs":    pacs.URL + "/token",
		"slow":    slow.URL + "/token",
	})))
	// Registered after startService, so it runs before the service stops,
	// whose shutdown waits for the token request in flight.
	t.Cleanup(releaseSlow)
	v := newAdminValidator(t, loadAdminAPI(t), s)
	bearer := "Bearer " + testAdminToken
	var responses []string
	call := func(c adminCall, wantStatus int) response {
		t.Helper()
		req, resp := c.send(t, s)
		responses = append(responses, fmt.Sprintf("%s %s: %d %v\n%s", c.method, c.path, resp.status, resp.header, resp.body))
		if resp.status != wantStatus {
			t.Errorf("%s %s returned %d, expected %d: %s", c.method, c.path, resp.status, wantStatus, resp.body)
		}
		v.check(t, req, resp)
		return resp
	}

	call(adminCall{method: http.MethodGet, path: "/readyz"}, http.StatusServiceUnavailable)
	releaseSlow()
	s.waitReady(t)

	call(adminCall{method: http.MethodGet, path: "/healthz"}, http.StatusOK)
	call(adminCall{method: http.MethodGet, path: "/readyz"}, http.StatusOK)
	call(adminCall{method: http.MethodGet, path: "/metrics", authorization: bearer}, http.StatusOK)
	call(adminCall{method: http.MethodGet, path: "/status", authorization: bearer}, http.StatusOK)
	call(adminCall{method: http.MethodPost, path: "/clusters/pacs/refresh", authorization: bearer}, http.StatusOK)
	call(adminCall{method: http.MethodPost, path: "/clusters/pacs/refresh", authorization: bearer},
		http.StatusTooManyRequests)
	call(adminCall{method: http.MethodPost, path: "/clusters/opaque/refresh", authorization: bearer}, http.StatusOK)
	call(adminCall{method: http.MethodPost, path: "/clusters/archive/refresh", authorization: bearer},
		http.StatusBadGateway)
	call(adminCall{method: http.MethodPost, path: "/clusters/unknown/refresh", authorization: bearer},
		http.StatusNotFound)
	call(adminCall{method: http.MethodGet, path: "/clusters/pacs/refresh", authorization: bearer},
		http.StatusMethodNotAllowed)
	call(adminCall{method: http.MethodGet, path: "/metrics"}, http.StatusUnauthorized)
	call(adminCall{method: http.MethodGet, path: "/status", authorization: "Bearer wrong-token"},
		http.StatusUnauthorized)
	call(adminCall{method: http.MethodPost, path: "/clusters/pacs/refresh"}, http.StatusUnauthorized)
	// The status after the failed refresh has a last_error.
	call(adminCall{method: http.MethodGet, path: "/status", authorization: bearer}, http.StatusOK)

	v.checkAllSeen(t)
	all := strings.Join(responses, "\n")
	for name, secret := range secretsOf(jwt, opaqueToken) {
		if strings.Contains(all, secret) {
			t.Errorf("an admin response contains the %s", name)
		}
	}
}

// secretsOf returns what no output may contain: the given access tokens,
// each part of a JWT, the client secret and the admin token, also in
// base64.
func secretsOf(accessTokens ...string) map[string]string {
	secrets := map[string]string{
		"client secret":           testSecret,
		"client secret in base64": base64.StdEncoding.EncodeToString([]byte(testSecret)),
		"Basic credentials":       base64.StdEncoding.EncodeToString([]byte("orthanc:" + testSecret)),
		"admin token":             testAdminToken,
	}
	for i, token := range accessTokens {
		secrets[fmt.Sprintf("access token %d", i)] = token
		secrets[fmt.Sprintf("access token %d in base64", i)] = base64.StdEncoding.EncodeToString([]byte(token))
		for j, part := range strings.Split(token, ".") {
			if len(part) >= 8 && part != token {
				secrets[fmt.Sprintf("part %d of access token %d", j, i)] = part
			}
		}
	}
	return secrets
}

// TestAdminAPIDocumentListsEveryRoute compares the admin listener's routes
// with the operations of docs/admin-api.yaml, both ways.
func TestAdminAPIDocumentListsEveryRoute(t *testing.T) {
	t.Parallel()
	set := tokens.NewSet()
	m, err := newMetrics(set)
	if err != nil {
		t.Fatal(err)
	}
	served := slices.Sorted(slices.Values(adminRoutes(set, m, http.NotFoundHandler()).patterns))
	documented := documentedRoutes(loadAdminAPI(t))

	for _, route := range served {
		if !slices.Contains(documented, route) {
			t.Errorf("the admin listener serves %s, which %s does not document", route, adminAPIDocument)
		}
	}
	for _, route := range documented {
		if !slices.Contains(served, route) {
			t.Errorf("%s documents %s, which the admin listener does not serve", adminAPIDocument, route)
		}
	}
}
