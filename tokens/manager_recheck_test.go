package tokens

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestManagerRecheckAfterRace covers a caller of Token that saw no usable
// token, and whose singleflight call starts only after another request has
// ended. acquireIfNeeded is that late call: it must not send a second request.
func TestManagerRecheckAfterRace(t *testing.T) {
	t.Run("token acquired meanwhile", func(t *testing.T) {
		clock := newFakeClock()
		src := tokensFor(clock, time.Hour)
		m := newTestManager(src, clock, Settings{})
		first, err := m.Token(context.Background())
		if err != nil {
			t.Fatalf("Token: %v", err)
		}

		got, err := m.acquireIfNeeded()
		if err != nil {
			t.Fatalf("acquireIfNeeded: %v", err)
		}
		if got != first {
			t.Errorf("acquireIfNeeded returned %v, want the token acquired meanwhile", got)
		}
		if n := src.calls.Load(); n != 1 {
			t.Errorf("token requests = %d, want 1", n)
		}
	})

	t.Run("request failed meanwhile", func(t *testing.T) {
		clock := newFakeClock()
		failure := &FetchError{Class: ClassTransient, StatusCode: 503}
		src := &scriptedSource{fetch: func(context.Context, int64) (*Token, error) { return nil, failure }}
		m := newTestManager(src, clock, Settings{})
		if _, err := m.Token(context.Background()); err == nil {
			t.Fatal("Token succeeded, want the source's error")
		}

		_, err := m.acquireIfNeeded()
		if !errors.Is(err, failure) {
			t.Errorf("acquireIfNeeded error = %v, want the last failure while the backoff lasts", err)
		}
		if n := src.calls.Load(); n != 1 {
			t.Errorf("token requests = %d, want 1", n)
		}
	})

	t.Run("token invalidated", func(t *testing.T) {
		clock := newFakeClock()
		src := tokensFor(clock, time.Hour)
		m := newTestManager(src, clock, Settings{})
		first, err := m.Token(context.Background())
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		m.Invalidate(first.Fingerprint())

		got, err := m.acquireIfNeeded()
		if err != nil {
			t.Fatalf("acquireIfNeeded: %v", err)
		}
		if tok, _ := got.(*Token); tok == nil || tok.AccessToken != "token-2" {
			t.Errorf("acquireIfNeeded returned %v, want a new token-2", got)
		}
	})
}
