package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestExpiresInShapesEveryGrant sends expires_in in the shapes providers
// write through the x/oauth2 paths (client_credentials and jwt_bearer),
// whose own parsers reject some of them.
func TestExpiresInShapesEveryGrant(t *testing.T) {
	shapes := []struct {
		expiresIn string
		want      time.Duration
	}{
		{`3599`, 3599 * time.Second},
		{`"3599"`, 3599 * time.Second},
		{`" 3599 "`, 3599 * time.Second},
		{`"3599.0"`, 3599 * time.Second},
		{`3599.5`, 3599 * time.Second},
		{`"3.599e3"`, 3599 * time.Second},
		{`""`, DefaultLifetime},
	}
	e := newFakeEndpoint(t)
	for _, grant := range []string{GrantClientCredentials, GrantJWTBearer} {
		for _, shape := range shapes {
			t.Run(grant+" "+shape.expiresIn, func(t *testing.T) {
				e.SetRaw(http.StatusOK, "application/json",
					`{"access_token":"test-token-shape","token_type":"Bearer","expires_in":`+shape.expiresIn+`}`, nil)
				c := testConfig(e.URL())
				if grant == GrantJWTBearer {
					c = &Config{Grant: GrantJWTBearer, ServiceAccountKeyFile: writeServiceAccountKey(t, e.URL()),
						Scopes: []string{"https://www.googleapis.com/auth/cloud-healthcare"}}
					c.SetDefaults()
				}
				tok, err := newTestSource(t, c).Fetch(context.Background())
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if got := tok.Lifetime(); got != shape.want {
					t.Errorf("lifetime = %v, want %v", got, shape.want)
				}
			})
		}
	}
}

func TestExpiresInRejectsNonDecimal(t *testing.T) {
	for _, v := range []string{"Inf", "Infinity", "NaN", "0x1p12", "1_000", "-Inf"} {
		if _, _, err := parseExpiresIn(v); err == nil {
			t.Errorf("parseExpiresIn(%q) succeeded, want an error", v)
		}
	}
}

// TestManagerRefreshStormAtExpiry: when the token expires, 300 concurrent
// requests cause one token request, as at a cold start.
func TestManagerRefreshStormAtExpiry(t *testing.T) {
	clock := newFakeClock()
	gate := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(gate) }) })
	var calls atomic.Int64
	src := &scriptedSource{fetch: func(_ context.Context, n int64) (*Token, error) {
		calls.Add(1)
		if n > 1 {
			<-gate
		}
		now := clock.Now()
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(time.Hour)}, nil
	}}
	m := newTestManager(src, clock, Settings{})
	if _, err := m.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)

	var wg sync.WaitGroup
	for i := 0; i < 300; i++ {
		wg.Go(func() { _, _ = m.Token(context.Background()) })
	}
	waitFor(t, "the refresh request", func() bool { return calls.Load() >= 2 })
	once.Do(func() { close(gate) })
	wg.Wait()
	if got := calls.Load(); got != 2 {
		t.Errorf("token requests = %d, want 2 (the first and one at expiry)", got)
	}
}

// TestInvalidateKeepsRetryAfter: an upstream 401 during a provider's
// Retry-After does not send a token request before the wait ends.
func TestInvalidateKeepsRetryAfter(t *testing.T) {
	clock := newFakeClock()
	var limited atomic.Bool
	src := &scriptedSource{fetch: func(_ context.Context, n int64) (*Token, error) {
		if limited.Load() {
			return nil, &FetchError{Class: ClassRateLimited, StatusCode: 429, RetryAfter: time.Minute}
		}
		now := clock.Now()
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(10 * time.Minute)}, nil
	}}
	m := newTestManager(src, clock, Settings{RefreshBefore: 5 * time.Minute, ClockSkew: 30 * time.Second})
	first, _ := m.Token(context.Background())

	limited.Store(true)
	clock.Advance(5 * time.Minute)
	if _, err := m.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded while rate limited")
	}
	calls := src.calls.Load()
	clock.Advance(10 * time.Second)
	m.Invalidate(first.Fingerprint())
	if _, err := m.Token(context.Background()); err == nil {
		t.Fatal("Token succeeded with the token rejected and the provider rate limiting")
	}
	if _, err := m.Refresh(context.Background()); err == nil {
		t.Fatal("a forced Refresh succeeded during Retry-After")
	}
	if got := src.calls.Load(); got != calls {
		t.Errorf("token requests during Retry-After = %d, want 0", got-calls)
	}
}

// TestVerifyKeySetOutageIsTransient: a key set that answers 503 is an
// outage, retried with the normal backoff, not a configuration error.
func TestVerifyKeySetOutageIsTransient(t *testing.T) {
	jwks := newFakeEndpoint(t)
	jwks.SetRaw(http.StatusServiceUnavailable, "text/plain", "down", nil)
	accessToken := jwtWithClaims(t, map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "aud": "dicom"})
	inner := &scriptedSource{fetch: func(context.Context, int64) (*Token, error) {
		now := time.Now()
		return &Token{AccessToken: accessToken, Received: now, Expiry: now.Add(time.Hour)}, nil
	}}
	client, err := newHTTPClient(testConfig(jwks.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	source := newVerifyingSource(inner, VerifyConfig{JWKSURL: jwks.URL(), Audience: "dicom"}, client)
	_, err = source.Fetch(context.Background())
	var fe *FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v, want a *FetchError", err)
	}
	if fe.Class != ClassTransient {
		t.Errorf("class = %q, want transient (error: %v)", fe.Class, err)
	}
}
