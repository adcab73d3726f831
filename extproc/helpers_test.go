package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
)

// testClusterHosts is the router configuration shared by the tests. The
// hosts are only header values: nothing connects to them.
var testClusterHosts = map[string][]string{
	"pacs-a":  {"pacs-a.example.test"},
	"pacs-b":  {"pacs-b.example.test:8443"},
	"pacs-v6": {"[::1]:8443"},
}

// errSourceFake is a HeaderSource error for the tests.
var errSourceFake = errors.New("token endpoint returned 500 (fake)")

// testHeaders are the fake Authorization values that fakeSource returns.
var testHeaders = map[string]string{
	"pacs-a":  "Bearer test-token-a",
	"pacs-b":  "Bearer test-token-b",
	"pacs-v6": "Bearer test-token-v6",
}

// fakeSource is a HeaderSource that returns testHeaders. It returns err
// when set, and with block set it waits until its context ends.
type fakeSource struct {
	err   error
	block bool

	mu    sync.Mutex // guards calls
	calls []string
}

func (f *fakeSource) AuthorizationHeader(ctx context.Context, cluster string) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, cluster)
	f.mu.Unlock()

	if f.block {
		<-ctx.Done()
		return "", fmt.Errorf("token request for cluster %q: %w", cluster, ctx.Err())
	}
	if f.err != nil {
		return "", f.err
	}
	header, ok := testHeaders[cluster]
	if !ok {
		return "", fmt.Errorf("fake source has no header for cluster %q", cluster)
	}
	return header, nil
}

// clusters returns the cluster of every call so far.
func (f *fakeSource) clusters() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// staticSource returns its value for every cluster and records nothing, so
// benchmarks do not grow a call list.
type staticSource string

func (s staticSource) AuthorizationHeader(context.Context, string) (string, error) {
	return string(s), nil
}

// invalidation is one InvalidateHeader call.
type invalidation struct {
	cluster, header string
}

// fakeInvalidator records InvalidateHeader calls.
type fakeInvalidator struct {
	mu    sync.Mutex // guards calls
	calls []invalidation
}

func (f *fakeInvalidator) InvalidateHeader(cluster, header string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, invalidation{cluster, header})
	return true
}

func (f *fakeInvalidator) invalidations() []invalidation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]invalidation(nil), f.calls...)
}

// logBuffer collects slog text output. It is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// warnings returns the log lines at WARN or ERROR.
func (b *logBuffer) warnings() []string {
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	return out
}

// newTestLogger returns a debug-level text logger that writes to a buffer.
func newTestLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// newTestDecider returns a Decider over testClusterHosts and source, with
// the default decision timeout.
func newTestDecider(tb testing.TB, source HeaderSource, log *slog.Logger) *Decider {
	tb.Helper()
	router, err := NewRouter(testClusterHosts)
	if err != nil {
		tb.Fatalf("NewRouter(testClusterHosts): %v", err)
	}
	return &Decider{Router: router, Source: source, Log: log}
}

// grpcEnv is a gRPC server with ExtProc and ExtAuthz over fakes, and the
// driver that talks to it.
type grpcEnv struct {
	driver      *envoysim.Driver
	source      *fakeSource
	invalidator *fakeInvalidator
	logs        *logBuffer
}

func newGRPCEnv(tb testing.TB, source *fakeSource) *grpcEnv {
	tb.Helper()
	log, logs := newTestLogger()
	decider := newTestDecider(tb, source, log)
	invalidator := &fakeInvalidator{}
	driver := envoysim.StartDriver(tb,
		&ExtProc{Decider: decider, Invalidator: invalidator, Log: log},
		&ExtAuthz{Decider: decider})
	return &grpcEnv{driver: driver, source: source, invalidator: invalidator, logs: logs}
}

// denial is the decoded JSON body of a denied request.
type denial struct {
	Error   string `json:"error"`
	Cluster string `json:"cluster"`
	Message string `json:"message"`
}

func decodeDenial(tb testing.TB, body []byte) denial {
	tb.Helper()
	var d denial
	if err := json.Unmarshal(body, &d); err != nil {
		tb.Fatalf("denial body %q is not JSON: %v", body, err)
	}
	return d
}

// checkHeader reports an error unless the values of key in m are exactly
// want. The name of the header map goes into the message.
func checkHeader(t *testing.T, name string, m envoysim.HeaderMap, key string, want ...string) {
	t.Helper()
	if got := m.Values(key); !slices.Equal(got, want) {
		t.Errorf("%s %s = %q, want %q", name, key, got, want)
	}
}
