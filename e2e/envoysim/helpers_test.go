package envoysim_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
)

// checkHeader reports an error unless the values of key in m are exactly
// want. The name of the header map goes into the message.
func checkHeader(t *testing.T, name string, m envoysim.HeaderMap, key string, want ...string) {
	t.Helper()
	if got := m.Values(key); !slices.Equal(got, want) {
		t.Errorf("%s %s = %q, want %q", name, key, got, want)
	}
}

// testClusterHosts is the router configuration of the service in the proxy
// tests. The hosts are only header values: nothing connects to them.
var testClusterHosts = map[string][]string{
	"pacs-a": {"pacs-a.example.test"},
	"pacs-b": {"pacs-b.example.test"},
}

// testHeaders are the fake Authorization values that fakeSource returns.
var testHeaders = map[string]string{
	"pacs-a": "Bearer test-token-a",
	"pacs-b": "Bearer test-token-b",
}

// errSourceFake is a HeaderSource error for the tests.
var errSourceFake = errors.New("token endpoint returned 500 (fake)")

// fakeSource is an extproc.HeaderSource that returns testHeaders. It
// returns err when set. When hang is set it ignores its context and waits
// until hang is closed, so that no reply can arrive in time.
type fakeSource struct {
	err   error
	hang  chan struct{}
	calls atomic.Int64
}

func (f *fakeSource) AuthorizationHeader(_ context.Context, cluster string) (string, error) {
	f.calls.Add(1)
	if f.hang != nil {
		<-f.hang
		return "", fmt.Errorf("token request for cluster %q: released at test end", cluster)
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

// service is the real extproc gRPC servers over fakes, and a Driver
// connected to them.
type service struct {
	driver      *envoysim.Driver
	invalidator *fakeInvalidator
}

func startService(t *testing.T, source *fakeSource) *service {
	t.Helper()
	router, err := extproc.NewRouter(testClusterHosts)
	if err != nil {
		t.Fatalf("NewRouter(testClusterHosts): %v", err)
	}
	log := slog.New(slog.DiscardHandler)
	decider := &extproc.Decider{Router: router, Source: source, Log: log}
	invalidator := &fakeInvalidator{}
	driver := envoysim.StartDriver(t,
		&extproc.ExtProc{Decider: decider, Invalidator: invalidator, Log: log},
		&extproc.ExtAuthz{Decider: decider})
	return &service{driver: driver, invalidator: invalidator}
}

// deadAddress returns a 127.0.0.1 address that nothing listens on: a port
// picked at run time whose listener is closed again.
func deadAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.1: %v", err)
	}
	addr := listener.Addr().String()
	if err := listener.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}

// received is what one request brought to the upstream.
type received struct {
	host, path    string
	authorization []string
	contentLength int64 // -1 for a chunked body
	bodySize      int64
	bodySum       string // hex SHA-256 of the body
}

// upstream is an httptest server that stands for a DICOMweb server. It
// hashes each request body as it arrives, so no body is held in memory.
type upstream struct {
	server *httptest.Server
	// statuses are the response statuses of the first requests, in order;
	// later requests get 200.
	statuses []int

	mu       sync.Mutex // guards requests
	requests []received
}

func startUpstream(t *testing.T, statuses ...int) *upstream {
	t.Helper()
	u := &upstream{statuses: statuses}
	u.server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.server.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}

	u.mu.Lock()
	u.requests = append(u.requests, received{
		host:          r.Host,
		path:          r.URL.RequestURI(),
		authorization: r.Header.Values("Authorization"),
		contentLength: r.ContentLength,
		bodySize:      n,
		bodySum:       hex.EncodeToString(h.Sum(nil)),
	})
	status := http.StatusOK
	if i := len(u.requests) - 1; i < len(u.statuses) {
		status = u.statuses[i]
	}
	u.mu.Unlock()

	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "[]")
}

// received returns every request so far.
func (u *upstream) received() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.requests...)
}

// startProxy starts a Proxy for cfg and closes it in t.Cleanup.
func startProxy(t *testing.T, cfg envoysim.Config) *envoysim.Proxy {
	t.Helper()
	proxy, err := envoysim.NewProxy(cfg)
	if err != nil {
		t.Fatalf("NewProxy: %v", err)
	}
	if err := proxy.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := proxy.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return proxy
}

// newClient returns an HTTP client that ignores proxy environment variables.
// Its 60 s timeout only guards against a hang.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	transport := &http.Transport{Proxy: nil, DisableCompression: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 60 * time.Second}
}

// response is a response read whole; only small bodies are read this way.
type response struct {
	status int
	header http.Header
	body   []byte
}

// send sends req and reads the response, failing the test on a transport
// error.
func send(t *testing.T, client *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("read response body of %s: %v", req.URL, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// get sends a GET for url with the given Authorization values.
func get(t *testing.T, client *http.Client, url string, authorization ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("new request for %s: %v", url, err)
	}
	for _, value := range authorization {
		req.Header.Add("Authorization", value)
	}
	return send(t, client, req)
}

// denial is the decoded JSON body of a request that the service denied.
type denial struct {
	Error   string `json:"error"`
	Cluster string `json:"cluster"`
	Message string `json:"message"`
}

func decodeDenial(t *testing.T, body []byte) denial {
	t.Helper()
	var d denial
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("denial body %q is not JSON: %v", body, err)
	}
	return d
}

// generatedBody returns size pseudo-random bytes from seed, generated on
// the fly, so that a large body never sits in memory.
func generatedBody(seed byte, size int64) io.Reader {
	var key [32]byte
	key[0] = seed
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// sum returns the hex SHA-256 of h.
func sum(h hash.Hash) string {
	return hex.EncodeToString(h.Sum(nil))
}

// totalAlloc returns the bytes allocated on the heap so far by the whole
// test binary, which serves as a bound on what any part of it buffered.
func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// checkStreamed reports an error when more than a quarter of a large body
// was allocated since before, which means that something buffered it.
// Streaming allocates about 1 MiB for a 64 MiB body.
func checkStreamed(t *testing.T, before uint64) {
	t.Helper()
	if allocated := totalAlloc() - before; allocated > largeBody/4 {
		t.Errorf("%d MiB were allocated while a %d MiB body passed, want under %d MiB: "+
			"something buffers the body", allocated>>20, largeBody>>20, largeBody>>22)
	}
}
