package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// refreshBody is the body of POST /clusters/{name}/refresh.
type refreshBody struct {
	Cluster           string         `json:"cluster"`
	OK                bool           `json:"ok"`
	Status            *tokens.Status `json:"status"`
	Fingerprint       string         `json:"fingerprint"`
	Claims            *tokens.Claims `json:"claims"`
	ClaimsUnavailable string         `json:"claims_unavailable"`
	Error             *apiError      `json:"error"`
}

// postRefresh sends POST /clusters/NAME/refresh without a bearer token and
// decodes the JSON response.
func postRefresh(t *testing.T, s *service, cluster string) (response, refreshBody) {
	t.Helper()
	_, resp := adminCall{method: http.MethodPost, path: "/clusters/" + cluster + "/refresh"}.send(t, s)
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("refresh of %s: Content-Type is %q, expected application/json", cluster, ct)
	}
	var body refreshBody
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("refresh of %s: the body is not JSON: %v\n%s", cluster, err, resp.body)
	}
	return resp, body
}

func TestAdminRefresh(t *testing.T) {
	t.Parallel()
	issuedAt := time.Now().Truncate(time.Second)
	// Every token request gets a new token, so a forced refresh shows as a
	// new fingerprint.
	var jwts sync.Map
	pacs, pacsRequests := countingIdP(t, func(n int64) string {
		jwt := testJWT(t, map[string]any{
			"iss": "https://idp.example.test/", "aud": "api://dicom", "azp": "orthanc",
			"scp": "dicom.read dicom.write", "roles": []string{"DICOM.Reader"}, "jti": n,
			"iat": issuedAt.Unix(), "exp": issuedAt.Add(time.Hour).Unix(),
		})
		jwts.Store(n, jwt)
		return jwt
	})
	const opaqueToken = "test-opaque-token-refresh"
	opaque, _ := countingIdP(t, func(int64) string { return opaqueToken })
	archive, archiveRequests := rejectingIdP(t)
	s := startService(t, serviceConfig("info", map[string]string{
		"archive": archive.URL + "/token",
		"opaque":  opaque.URL + "/token",
		"pacs":    pacs.URL + "/token",
	}))
	s.waitReady(t)

	t.Run("JWT", func(t *testing.T) {
		before, _ := getStatus(t, s)
		oldFingerprint := clusterStatus(t, before, "pacs").Fingerprint

		resp, body := postRefresh(t, s, "pacs")

		if resp.status != http.StatusOK {
			t.Fatalf("refresh returned %d, expected 200: %s", resp.status, resp.body)
		}
		if got := pacsRequests.Load(); got != 2 {
			t.Fatalf("the token endpoint got %d requests, expected 2 (startup and refresh)", got)
		}
		jwt, _ := jwts.Load(int64(2))
		wantFingerprint := tokens.Fingerprint(jwt.(string))
		if !body.OK {
			t.Errorf("ok is false, expected true")
		}
		if body.Cluster != "pacs" {
			t.Errorf("cluster is %q, expected pacs", body.Cluster)
		}
		if body.Fingerprint != wantFingerprint {
			t.Errorf("fingerprint is %q, expected %q of the second token", body.Fingerprint, wantFingerprint)
		}
		if body.Fingerprint == oldFingerprint {
			t.Errorf("fingerprint %q is that of the token before the refresh", body.Fingerprint)
		}
		if body.Status == nil {
			t.Fatal("the response has no status")
		}
		if body.Status.Fingerprint != wantFingerprint {
			t.Errorf("status fingerprint is %q, expected %q", body.Status.Fingerprint, wantFingerprint)
		}
		if body.Status.Acquisitions != 2 {
			t.Errorf("status acquisitions are %d, expected 2", body.Status.Acquisitions)
		}
		if body.Status.State != tokens.StateValid {
			t.Errorf("status state is %q, expected %q", body.Status.State, tokens.StateValid)
		}
		if body.ClaimsUnavailable != "" {
			t.Errorf("claims_unavailable is %q for a JWT, expected none", body.ClaimsUnavailable)
		}
		if body.Claims == nil {
			t.Fatal("the response has no claims")
		}
		assertClaims(t, body.Claims, issuedAt)
	})
	t.Run("rate limited", func(t *testing.T) {
		requests := pacsRequests.Load()

		resp, body := postRefresh(t, s, "pacs")

		if resp.status != http.StatusTooManyRequests {
			t.Fatalf("a second refresh within %s returned %d, expected 429: %s", refreshInterval, resp.status, resp.body)
		}
		retryAfter, err := strconv.Atoi(resp.header.Get("Retry-After"))
		if err != nil || retryAfter < 1 || retryAfter > int(refreshInterval/time.Second) {
			t.Errorf("Retry-After is %q, expected 1 to %d seconds", resp.header.Get("Retry-After"),
				int(refreshInterval/time.Second))
		}
		if body.OK {
			t.Errorf("ok is true, expected false")
		}
		if body.Error == nil || body.Error.Class != classTooManyRefreshes {
			t.Errorf("error is %+v, expected class %s", body.Error, classTooManyRefreshes)
		}
		if got := pacsRequests.Load(); got != requests {
			t.Errorf("the token endpoint got %d requests, expected still %d", got, requests)
		}
	})
	t.Run("opaque token", func(t *testing.T) {
		resp, body := postRefresh(t, s, "opaque")

		if resp.status != http.StatusOK {
			t.Fatalf("refresh returned %d, expected 200: %s", resp.status, resp.body)
		}
		if body.Fingerprint != tokens.Fingerprint(opaqueToken) {
			t.Errorf("fingerprint is %q, expected %q", body.Fingerprint, tokens.Fingerprint(opaqueToken))
		}
		if body.Claims != nil {
			t.Errorf("claims are %+v for an opaque token, expected none", body.Claims)
		}
		if body.ClaimsUnavailable != tokens.ErrNotJWT.Error() {
			t.Errorf("claims_unavailable is %q, expected %q", body.ClaimsUnavailable, tokens.ErrNotJWT)
		}
	})
	t.Run("failing provider", func(t *testing.T) {
		resp, body := postRefresh(t, s, "archive")

		if resp.status != http.StatusBadGateway {
			t.Fatalf("refresh returned %d, expected 502: %s", resp.status, resp.body)
		}
		// The startup request failed with a config error, whose backoff is
		// a minute, so only the forced refresh can have sent the second.
		if got := archiveRequests.Load(); got != 2 {
			t.Errorf("the token endpoint got %d requests, expected 2 (startup and refresh)", got)
		}
		if body.OK {
			t.Errorf("ok is true, expected false")
		}
		if body.Error == nil {
			t.Fatal("the response has no error")
		}
		if body.Error.Class != string(tokens.ClassConfig) {
			t.Errorf("error class is %q, expected %q", body.Error.Class, tokens.ClassConfig)
		}
		if body.Error.StatusCode != http.StatusUnauthorized {
			t.Errorf("error status_code is %d, expected 401", body.Error.StatusCode)
		}
		if body.Error.Code != "invalid_client" {
			t.Errorf("error code is %q, expected invalid_client", body.Error.Code)
		}
		if !slices.Equal(body.Error.ProviderCodes, []string{"AADSTS7000215"}) {
			t.Errorf("error provider_codes are %q, expected [AADSTS7000215]", body.Error.ProviderCodes)
		}
		if !strings.Contains(body.Error.Message, "Invalid client secret provided.") {
			t.Errorf("error message %q lacks the provider's description", body.Error.Message)
		}
		if body.Status == nil || body.Status.State != tokens.StateFailing {
			t.Errorf("status is %+v, expected state %q", body.Status, tokens.StateFailing)
		}
		if body.Status != nil && body.Status.Failures != 2 {
			t.Errorf("status failures are %d, expected 2", body.Status.Failures)
		}
		if body.Fingerprint != "" || body.Claims != nil {
			t.Errorf("a failed refresh has fingerprint %q and claims %+v, expected neither", body.Fingerprint, body.Claims)
		}
	})
	t.Run("unknown cluster", func(t *testing.T) {
		resp, body := postRefresh(t, s, "pacs-eu")

		if resp.status != http.StatusNotFound {
			t.Fatalf("refresh returned %d, expected 404: %s", resp.status, resp.body)
		}
		if body.Error == nil || body.Error.Class != classUnknownCluster {
			t.Errorf("error is %+v, expected class %s", body.Error, classUnknownCluster)
		}
		if body.Cluster != "pacs-eu" {
			t.Errorf("cluster is %q, expected pacs-eu", body.Cluster)
		}
	})
	t.Run("other method", func(t *testing.T) {
		_, resp := adminCall{method: http.MethodGet, path: "/clusters/pacs/refresh"}.send(t, s)

		if resp.status != http.StatusMethodNotAllowed {
			t.Errorf("GET returned %d, expected 405", resp.status)
		}
		if got := resp.header.Get("Allow"); got != http.MethodPost {
			t.Errorf("Allow is %q, expected POST", got)
		}
	})

	if code := s.stop(t); code != exitOK {
		t.Errorf("serve exited with code %d, expected %d", code, exitOK)
	}
	stderr := s.stderr.String()
	if !strings.Contains(stderr, `"msg":"forced refresh requested","cluster":"pacs"`) {
		t.Errorf("stderr has no log line of the forced refresh:\n%s", stderr)
	}
	issued := []string{opaqueToken}
	jwts.Range(func(_, jwt any) bool {
		issued = append(issued, jwt.(string))
		return true
	})
	for name, secret := range secretsOf(issued...) {
		if strings.Contains(stderr, secret) {
			t.Errorf("stderr contains the %s", name)
		}
	}
}

// assertClaims checks the claims of the tokens of TestAdminRefresh.
func assertClaims(t *testing.T, c *tokens.Claims, issuedAt time.Time) {
	t.Helper()
	if c.Issuer != "https://idp.example.test/" {
		t.Errorf("iss is %q, expected https://idp.example.test/", c.Issuer)
	}
	if !slices.Equal(c.Audience, []string{"api://dicom"}) {
		t.Errorf("aud is %q, expected [api://dicom]", c.Audience)
	}
	if !slices.Equal(c.Scopes, []string{"dicom.read", "dicom.write"}) {
		t.Errorf("scopes are %q, expected [dicom.read dicom.write]", c.Scopes)
	}
	if !slices.Equal(c.Roles, []string{"DICOM.Reader"}) {
		t.Errorf("roles are %q, expected [DICOM.Reader]", c.Roles)
	}
	if c.ClientID != "orthanc" {
		t.Errorf("client_id is %q, expected orthanc", c.ClientID)
	}
	if c.IssuedAt == nil || !c.IssuedAt.Equal(issuedAt) {
		t.Errorf("iat is %v, expected %v", c.IssuedAt, issuedAt)
	}
	if c.Expiry == nil || !c.Expiry.Equal(issuedAt.Add(time.Hour)) {
		t.Errorf("exp is %v, expected %v", c.Expiry, issuedAt.Add(time.Hour))
	}
}

func TestAdminRefreshConcurrent(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var requests atomic.Int64
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request) {
		// The first request is the startup one; the second, the forced
		// refresh, waits until the test has sent the other refreshes.
		if requests.Add(1) == 2 {
			entered <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		tokenHandler("test-access-token-concurrent")(w, r)
	})
	s := startService(t, serviceConfig("info", map[string]string{"pacs": idp.URL + "/token"}))
	var releaseOnce sync.Once
	releaseIdP := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseIdP)
	s.waitReady(t)

	// t.Fatal may not be called from this goroutine, so it returns the
	// status or the error.
	first := make(chan string, 1)
	go func() {
		resp, err := testClient.Post(s.adminURL("/clusters/pacs/refresh"), "", nil)
		if err != nil {
			first <- err.Error()
			return
		}
		_ = resp.Body.Close()
		first <- resp.Status
	}()
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatalf("no forced token request within %s", waitTimeout)
	}
	for range 3 {
		resp, _ := postRefresh(t, s, "pacs")
		if resp.status != http.StatusTooManyRequests {
			t.Errorf("a refresh while another runs returned %d, expected 429", resp.status)
		}
	}
	releaseIdP()

	if status := <-first; status != "200 OK" {
		t.Errorf("the first refresh returned %q, expected 200 OK", status)
	}
	if got := requests.Load(); got != 2 {
		t.Errorf("the token endpoint got %d requests, expected 2 (startup and one refresh)", got)
	}
}

// fakeNow is a clock for refreshLimiter that the test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeNow) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeNow) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestRefreshLimiter(t *testing.T) {
	t.Parallel()
	clock := &fakeNow{t: time.Date(2025, 5, 4, 10, 0, 0, 0, time.UTC)}
	l := newRefreshLimiter(10*time.Second, clock.now)

	steps := []struct {
		name      string
		advance   time.Duration
		cluster   string
		wantOK    bool
		wantWait  time.Duration
		wantRetry int
	}{
		{"first refresh", 0, "pacs", true, 0, 0},
		{"at once again", 0, "pacs", false, 10 * time.Second, 10},
		{"other cluster", 0, "archive", true, 0, 0},
		{"after 2.5 s", 2500 * time.Millisecond, "pacs", false, 7500 * time.Millisecond, 8},
		{"1 ns before the interval ends", 7500*time.Millisecond - time.Nanosecond, "pacs", false, time.Nanosecond, 1},
		{"when the interval ends", time.Nanosecond, "pacs", true, 0, 0},
		{"after the admitted one", time.Second, "pacs", false, 9 * time.Second, 9},
		{"other cluster after its interval", 0, "archive", true, 0, 0},
	}
	for _, step := range steps {
		clock.advance(step.advance)

		wait, ok := l.allow(step.cluster)

		if ok != step.wantOK {
			t.Errorf("%s: allow(%s) is %v, expected %v", step.name, step.cluster, ok, step.wantOK)
		}
		if wait != step.wantWait {
			t.Errorf("%s: wait is %s, expected %s", step.name, wait, step.wantWait)
		}
		if !ok {
			if got := retryAfterSeconds(wait); got != step.wantRetry {
				t.Errorf("%s: Retry-After is %d, expected %d", step.name, got, step.wantRetry)
			}
		}
	}
}

func TestRefreshLimiterConcurrent(t *testing.T) {
	t.Parallel()
	l := newRefreshLimiter(time.Minute, time.Now)
	var admitted atomic.Int64
	var wg sync.WaitGroup

	for range 50 {
		wg.Go(func() {
			if _, ok := l.allow("pacs"); ok {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()

	if got := admitted.Load(); got != 1 {
		t.Errorf("%d concurrent refreshes were admitted, expected 1", got)
	}
}

func TestFetchFailureWithoutFetchError(t *testing.T) {
	t.Parallel()
	err := errors.New(`refresh of cluster "pacs" still running: context canceled`)

	got := fetchFailure(err)

	if got.Class != string(tokens.ClassTransient) {
		t.Errorf("class is %q, expected %q", got.Class, tokens.ClassTransient)
	}
	if got.Message != err.Error() {
		t.Errorf("message is %q, expected %q", got.Message, err)
	}
}
