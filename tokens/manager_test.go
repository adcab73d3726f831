package tokens

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scriptedSource returns tokens or errors from a function, and counts calls.
type scriptedSource struct {
	calls atomic.Int64
	fetch func(ctx context.Context, n int64) (*Token, error)
}

func (s *scriptedSource) Fetch(ctx context.Context) (*Token, error) {
	return s.fetch(ctx, s.calls.Add(1))
}

// tokensFor returns a source whose n-th token is "token-n", valid for lifetime
// from the clock's current time.
func tokensFor(clock Clock, lifetime time.Duration) *scriptedSource {
	return &scriptedSource{fetch: func(_ context.Context, n int64) (*Token, error) {
		now := clock.Now()
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(lifetime)}, nil
	}}
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTestManager(src Source, clock Clock, s Settings) *Manager {
	return NewManager("pacs", src, s, WithClock(clock), WithLogger(quietLogger))
}

func TestManagerCachesToken(t *testing.T) {
	clock := newFakeClock()
	src := tokensFor(clock, time.Hour)
	m := newTestManager(src, clock, Settings{})

	for i := 0; i < 3; i++ {
		h, err := m.Header(context.Background())
		if err != nil {
			t.Fatalf("Header: %v", err)
		}
		if h != "Bearer token-1" {
			t.Errorf("header = %q, want Bearer token-1", h)
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

// TestManagerExpiryBoundary checks the last instant a token is handed out:
// expiry minus the clock skew margin, to the nanosecond.
func TestManagerExpiryBoundary(t *testing.T) {
	clock := newFakeClock()
	src := tokensFor(clock, time.Hour)
	m := newTestManager(src, clock, Settings{ClockSkew: 30 * time.Second, RefreshBefore: 5 * time.Minute})

	first, err := m.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	usableUntil := first.Expiry.Add(-30 * time.Second)

	clock.Advance(usableUntil.Sub(clock.Now()) - time.Nanosecond)
	if tok, _ := m.Token(context.Background()); tok != first {
		t.Fatal("token not handed out 1ns before the end of its usable time")
	}

	clock.Advance(time.Nanosecond)
	tok, err := m.Token(context.Background())
	if err != nil {
		t.Fatalf("Token at the boundary: %v", err)
	}
	if tok == first {
		t.Fatal("token handed out at expiry minus skew; want a new one")
	}
	if tok.AccessToken != "token-2" {
		t.Errorf("token = %q, want token-2", tok.AccessToken)
	}
}

func TestManagerScheduleClamps(t *testing.T) {
	clock := newFakeClock()
	m := newTestManager(nil, clock, Settings{RefreshBefore: 5 * time.Minute, ClockSkew: 30 * time.Second})
	now := clock.Now()

	tests := []struct {
		lifetime       time.Duration
		wantUsable     time.Duration
		wantRefreshMax time.Duration
		wantRefreshMin time.Duration
	}{
		// Long-lived: skew 30s, lead 5m, jitter up to 30s.
		{time.Hour, time.Hour - 30*time.Second, time.Hour - 30*time.Second - 5*time.Minute,
			time.Hour - 30*time.Second - 5*time.Minute - 30*time.Second},
		// Two minutes: skew 30s (a quarter), lead 1m (half), jitter up to 6s.
		{2 * time.Minute, 90 * time.Second, 30 * time.Second, 24 * time.Second},
		// Twenty seconds: skew 5s, lead 10s, jitter up to 1s.
		{20 * time.Second, 15 * time.Second, 5 * time.Second, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.lifetime.String(), func(t *testing.T) {
			usable, refresh := m.schedule(&Token{Received: now, Expiry: now.Add(tt.lifetime)})
			if got := usable.Sub(now); got != tt.wantUsable {
				t.Errorf("usable for %v, want %v", got, tt.wantUsable)
			}
			if got := refresh.Sub(now); got > tt.wantRefreshMax || got < tt.wantRefreshMin {
				t.Errorf("refresh after %v, want within [%v, %v]", got, tt.wantRefreshMin, tt.wantRefreshMax)
			}
		})
	}
}

func TestManagerRunRefreshesAhead(t *testing.T) {
	clock := newFakeClock()
	src := tokensFor(clock, time.Hour)
	m := newTestManager(src, clock, Settings{RefreshBefore: 5 * time.Minute, ClockSkew: 30 * time.Second})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	<-m.Ready()
	waitFor(t, "refresh timer", func() bool { return clock.Waiters() > 0 })

	// 54 minutes in, the refresh (due between 54m and 54m30s) has not begun.
	clock.Advance(54 * time.Minute)
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("token requests after 54m = %d, want 1", got)
	}

	// At 55 minutes the refresh is due; requests never wait for it.
	clock.Advance(time.Minute)
	waitFor(t, "background refresh", func() bool { return src.calls.Load() == 2 })
	h, err := m.Header(context.Background())
	if err != nil {
		t.Fatalf("Header: %v", err)
	}
	if h != "Bearer token-2" {
		t.Errorf("header after refresh = %q, want Bearer token-2", h)
	}
}

// TestManagerKeepsTokenWhileRefreshFails: a failing provider does not take
// away a token that is still valid, and the token is not used after expiry.
func TestManagerKeepsTokenWhileRefreshFails(t *testing.T) {
	clock := newFakeClock()
	var failing atomic.Bool
	src := &scriptedSource{fetch: func(_ context.Context, n int64) (*Token, error) {
		if failing.Load() {
			return nil, &FetchError{Class: ClassTransient, StatusCode: 503}
		}
		now := clock.Now()
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(10 * time.Minute)}, nil
	}}
	m := newTestManager(src, clock, Settings{RefreshBefore: 5 * time.Minute, ClockSkew: 30 * time.Second})
	if _, err := m.Token(context.Background()); err != nil {
		t.Fatalf("first Token: %v", err)
	}

	failing.Store(true)
	clock.Advance(9 * time.Minute)
	if _, err := m.Token(context.Background()); err != nil {
		t.Fatalf("Token with a valid cached token and a failing provider: %v", err)
	}

	clock.Advance(time.Minute)
	_, err := m.Token(context.Background())
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("Token after expiry = %v, want an *UnavailableError", err)
	}
	if ue.Cluster != "pacs" {
		t.Errorf("error cluster = %q, want pacs", ue.Cluster)
	}

	// During the backoff, requests fail at once without a new token request.
	calls := src.calls.Load()
	for i := 0; i < 10; i++ {
		if _, err := m.Token(context.Background()); err == nil {
			t.Fatal("Token succeeded while the provider fails")
		}
	}
	if got := src.calls.Load(); got != calls {
		t.Errorf("token requests during backoff = %d, want 0", got-calls)
	}
}

// TestManagerCallerCancelDoesNotCancelFetch: the first token request must not
// run on the caller's context, so a canceled caller does not break later ones.
func TestManagerCallerCancelDoesNotCancelFetch(t *testing.T) {
	clock := newFakeClock()
	release := make(chan struct{})
	src := &scriptedSource{fetch: func(ctx context.Context, n int64) (*Token, error) {
		if n == 1 {
			<-release
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := clock.Now()
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(time.Hour)}, nil
	}}
	m := newTestManager(src, clock, Settings{})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := m.Token(ctx); errc <- err }()
	waitFor(t, "first fetch to start", func() bool { return src.calls.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller got %v, want context.Canceled", err)
	}
	close(release)

	tok, err := m.Token(context.Background())
	if err != nil {
		t.Fatalf("Token after the first caller canceled: %v", err)
	}
	if tok.AccessToken != "token-1" {
		t.Errorf("token = %q, want token-1 from the fetch the canceled caller started", tok.AccessToken)
	}

	clock.Advance(2 * time.Hour)
	tok, err = m.Token(context.Background())
	if err != nil {
		t.Fatalf("Token after expiry: %v", err)
	}
	if tok.AccessToken != "token-2" {
		t.Errorf("token after expiry = %q, want token-2", tok.AccessToken)
	}
}

func TestManagerInvalidate(t *testing.T) {
	clock := newFakeClock()
	src := tokensFor(clock, time.Hour)
	m := newTestManager(src, clock, Settings{})

	first, _ := m.Token(context.Background())
	if m.Invalidate("not-the-fingerprint") {
		t.Error("Invalidate matched a different fingerprint")
	}
	for i := 0; i < 20; i++ {
		m.Invalidate(first.Fingerprint())
	}

	second, err := m.Token(context.Background())
	if err != nil {
		t.Fatalf("Token after invalidation: %v", err)
	}
	if second.AccessToken != "token-2" {
		t.Errorf("token after invalidation = %q, want token-2", second.AccessToken)
	}
	if m.Invalidate(first.Fingerprint()) {
		t.Error("Invalidate matched the old token after it was replaced")
	}
	if got := src.calls.Load(); got != 2 {
		t.Errorf("token requests = %d, want 2 for a burst of invalidations", got)
	}
	if got := m.Status().Invalidations; got != 1 {
		t.Errorf("status invalidations = %d, want 1", got)
	}
	if got := m.Status().UpstreamRejections; got != 22 {
		t.Errorf("status upstream rejections = %d, want 22", got)
	}
}

// TestManagerConcurrentFirstRequests: 500 concurrent first requests for one
// cluster cause exactly one request to a real token endpoint.
func TestManagerConcurrentFirstRequests(t *testing.T) {
	e := newFakeEndpoint(t)
	gate := make(chan struct{})
	var openGate sync.Once
	// Runs before the server's cleanup, so a failed test does not hang in Close.
	t.Cleanup(func() { openGate.Do(func() { close(gate) }) })
	e.Set(func(w http.ResponseWriter, _ *http.Request) {
		<-gate
		writeJSONBody(w, http.StatusOK, map[string]any{
			"access_token": "test-token-1", "token_type": "bearer", "expires_in": "3599",
		})
	})
	m := NewManager("pacs", newTestSource(t, testConfig(e.URL())), Settings{}, WithLogger(quietLogger))

	const callers = 500
	var wg sync.WaitGroup
	var started sync.WaitGroup
	errs := make(chan error, callers)
	started.Add(callers)
	for i := 0; i < callers; i++ {
		wg.Go(func() {
			started.Done()
			h, err := m.Header(context.Background())
			if err == nil && h != "Bearer test-token-1" {
				err = fmt.Errorf("header %q", h)
			}
			errs <- err
		})
	}
	started.Wait()
	waitFor(t, "the token request", func() bool { return e.requests.Load() >= 1 })
	openGate.Do(func() { close(gate) })
	wg.Wait()
	close(errs)

	for err := range errs {
		if err != nil {
			t.Fatalf("caller failed: %v", err)
		}
	}
	if got := e.requests.Load(); got != 1 {
		t.Errorf("token endpoint requests = %d, want 1", got)
	}
}

func TestManagerStatusNeverHoldsToken(t *testing.T) {
	clock := newFakeClock()
	m := newTestManager(tokensFor(clock, time.Hour), clock, Settings{})
	if s := m.Status(); s.State != StatePending {
		t.Errorf("state before first request = %q, want pending", s.State)
	}
	tok, _ := m.Token(context.Background())
	s := m.Status()
	if s.State != StateValid {
		t.Errorf("state = %q, want valid", s.State)
	}
	if s.Fingerprint == tok.AccessToken || s.Fingerprint == "" {
		t.Errorf("fingerprint = %q, want a hash of the token", s.Fingerprint)
	}
	if s.ExpiresAt == nil || !s.ExpiresAt.Equal(tok.Expiry) {
		t.Errorf("expires_at = %v, want %v", s.ExpiresAt, tok.Expiry)
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds. It
// waits for other goroutines; it does not measure speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestManagerHonoursRetryAfter: after a 429 with Retry-After: 60 the
// provider sees no request for 60 seconds, even from the background loop.
func TestManagerHonoursRetryAfter(t *testing.T) {
	clock := newFakeClock()
	var limited atomic.Bool
	limited.Store(true)
	src := &scriptedSource{fetch: func(_ context.Context, n int64) (*Token, error) {
		if limited.Load() {
			return nil, &FetchError{Class: ClassRateLimited, StatusCode: 429, RetryAfter: time.Minute}
		}
		now := clock.Now()
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(time.Hour)}, nil
	}}
	m := newTestManager(src, clock, Settings{Backoff: Backoff{Base: time.Second, Max: 2 * time.Minute}})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	<-m.Ready()
	waitFor(t, "retry timer", func() bool { return clock.Waiters() > 0 })
	for i := 0; i < 59; i++ {
		clock.Advance(time.Second)
		if _, err := m.Token(context.Background()); err == nil {
			t.Fatal("Token succeeded while rate limited")
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("token requests within Retry-After = %d, want 1", got)
	}

	limited.Store(false)
	clock.Advance(time.Second)
	waitFor(t, "retry after 60s", func() bool { return src.calls.Load() == 2 })
	if _, err := m.Token(context.Background()); err != nil {
		t.Errorf("Token after the retry: %v", err)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: time.Second, Max: 30 * time.Second, ConfigMin: time.Minute}
	for failures := 1; failures <= 10; failures++ {
		ceiling := min(time.Second<<(failures-1), 30*time.Second)
		for i := 0; i < 50; i++ {
			d := b.Delay(failures, &FetchError{Class: ClassTransient})
			if d < time.Second || d > ceiling {
				t.Fatalf("Delay(%d) = %v, want within [1s, %v]", failures, d, ceiling)
			}
		}
	}
	if d := b.Delay(1, &FetchError{Class: ClassConfig}); d < time.Minute {
		t.Errorf("Delay after a config error = %v, want at least 1m", d)
	}
	if d := b.Delay(1, &FetchError{Class: ClassRateLimited, RetryAfter: 90 * time.Second}); d < 90*time.Second {
		t.Errorf("Delay with Retry-After 90s = %v, want at least 90s", d)
	}
}
