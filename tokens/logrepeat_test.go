package tokens

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncWriter is a bytes.Buffer safe for concurrent writes.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Count(w.buf.String(), s)
}

func TestManagerLimitsRepeatedFailureLogs(t *testing.T) {
	clock := newFakeClock()
	src := &scriptedSource{fetch: func(context.Context, int64) (*Token, error) {
		return nil, &FetchError{Class: ClassTransient, StatusCode: 503}
	}}
	out := &syncWriter{}
	m := NewManager("pacs", src, Settings{Backoff: Backoff{Base: time.Second, Max: time.Second, ConfigMin: time.Second}},
		WithClock(clock), WithLogger(slog.New(slog.NewTextHandler(out, nil))))

	// 20 identical failures, one a second: 3 are logged.
	for i := 0; i < 20; i++ {
		_, _ = m.Refresh(context.Background())
		clock.Advance(time.Second)
	}
	if got := out.count(`msg="token request failed"`); got != 3 {
		t.Errorf("log lines after 20 identical failures = %d, want 3", got)
	}

	// Ten minutes later the failure is logged again with the count left out.
	clock.Advance(repeatedFailureInterval)
	_, _ = m.Refresh(context.Background())
	if got := out.count(`msg="token request failed"`); got != 4 {
		t.Errorf("log lines after the interval = %d, want 4", got)
	}
	if got := out.count("repeats_not_logged=17"); got != 1 {
		t.Errorf("the line after the interval does not say 17 repeats were left out:\n%s", out.buf.String())
	}

	// A different failure is logged at once.
	src.fetch = func(context.Context, int64) (*Token, error) {
		return nil, &FetchError{Class: ClassConfig, StatusCode: 401, Code: "invalid_client"}
	}
	_, _ = m.Refresh(context.Background())
	if got := out.count(`msg="token request failed"`); got != 5 {
		t.Errorf("log lines after a new kind of failure = %d, want 5", got)
	}
}
