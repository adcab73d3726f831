package tokens

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestManagerProviderOutage: the provider fails for ten minutes of fake time
// while the token in hand is valid for five more. Requests keep the token
// until it expires, then fail at once, and the provider sees exactly the
// requests that the backoff schedule allows.
func TestManagerProviderOutage(t *testing.T) {
	clock := newFakeClock()
	var down atomic.Bool
	var mu sync.Mutex
	var failedAt []time.Time
	src := &scriptedSource{fetch: func(_ context.Context, n int64) (*Token, error) {
		now := clock.Now()
		if down.Load() {
			mu.Lock()
			failedAt = append(failedAt, now)
			mu.Unlock()
			return nil, &FetchError{Class: ClassTransient, StatusCode: 503}
		}
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(10 * time.Minute)}, nil
	}}
	// Each step takes its longest delay, so the schedule is deterministic:
	// 1, 2, 4, ... 64 seconds, then 120 seconds.
	backoff := Backoff{Base: time.Second, Max: 2 * time.Minute, jitter: func(n time.Duration) time.Duration { return n }}
	m := newTestManager(src, clock, Settings{RefreshBefore: 5 * time.Minute, ClockSkew: 30 * time.Second, Backoff: backoff})

	first, err := m.Token(context.Background())
	if err != nil {
		t.Fatalf("first Token: %v", err)
	}
	usableUntil := first.Expiry.Add(-30 * time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// The refresh is due between 4m and 4m30s after receipt; the outage
	// starts just before, while the token has 5m31s of use left.
	waitFor(t, "the manager to sleep", func() bool { return clock.Waiters() == 1 })
	clock.Advance(4*time.Minute - time.Second)
	down.Store(true)
	outageStart := clock.Now()

	for clock.Now().Before(outageStart.Add(10 * time.Minute)) {
		waitFor(t, "the manager to sleep", func() bool { return clock.Waiters() == 1 })
		clock.Advance(time.Second)
		waitFor(t, "the manager to sleep", func() bool { return clock.Waiters() == 1 })

		tok, err := m.Token(context.Background())
		into := clock.Now().Sub(outageStart)
		if clock.Now().Before(usableUntil) {
			if err != nil || tok != first {
				t.Fatalf("%v into the outage: got %v, %v; want the cached token", into, tok, err)
			}
			continue
		}
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			t.Fatalf("%v into the outage: got %v, %v; want an *UnavailableError", into, tok, err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	// The first attempt comes at the refresh time, 569 s to 599 s before
	// the outage ends. Attempts follow after 1, 3, 7, 15, 31, 63, 127, 247,
	// 367 and 487 s (plus up to 1 s per step from the 1 s clock ticks);
	// the next, after 607 s, falls outside.
	if got := len(failedAt); got != 11 {
		t.Errorf("provider requests during the outage = %d, want 11", got)
	}
	for i := 1; i < len(failedAt); i++ {
		gap := failedAt[i].Sub(failedAt[i-1])
		want := backoff.Delay(i, &FetchError{Class: ClassTransient})
		if gap < want || gap >= want+time.Second {
			t.Errorf("attempt %d came %v after the previous one, want %v (to the next 1 s tick)", i+1, gap, want)
		}
	}
}

// TestManagerSoakFlappingProvider: 64 goroutines ask for tokens while the
// provider flaps and tokens live one second; nobody ever gets an expired
// token. Real time, bounded to two seconds.
func TestManagerSoakFlappingProvider(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	src := &scriptedSource{fetch: func(_ context.Context, n int64) (*Token, error) {
		if !healthy.Load() {
			return nil, &FetchError{Class: ClassTransient, StatusCode: 500}
		}
		now := time.Now()
		return &Token{AccessToken: fmt.Sprintf("token-%d", n), Received: now, Expiry: now.Add(time.Second)}, nil
	}}
	m := NewManager("pacs", src, Settings{
		RefreshBefore: 500 * time.Millisecond, ClockSkew: 100 * time.Millisecond,
		Backoff: Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	}, WithLogger(quietLogger))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	runDone := make(chan struct{})
	go func() { m.Run(ctx); close(runDone) }()

	go func() {
		for ctx.Err() == nil {
			time.Sleep(150 * time.Millisecond)
			healthy.Store(!healthy.Load())
		}
	}()

	var wg sync.WaitGroup
	var served, denied atomic.Int64
	for i := 0; i < 64; i++ {
		wg.Go(func() {
			for ctx.Err() == nil {
				tok, err := m.Token(context.Background())
				if err != nil {
					denied.Add(1)
					continue
				}
				if now := time.Now(); !now.Before(tok.Expiry) {
					t.Errorf("received %s at %v, after its expiry %v", tok.AccessToken, now, tok.Expiry)
					return
				}
				served.Add(1)
			}
		})
	}
	wg.Wait()
	<-runDone

	if served.Load() == 0 {
		t.Error("no request was served a token")
	}
	t.Logf("served %d, denied %d, token requests %d", served.Load(), denied.Load(), src.calls.Load())
}
