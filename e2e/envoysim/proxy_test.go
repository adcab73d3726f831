package envoysim_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
)

var allModes = []envoysim.Mode{
	envoysim.ModeExtProc, envoysim.ModeExtProcUpstream, envoysim.ModeExtAuthz,
}

// routeTo returns a route like the shipped Envoy configurations have:
// /pacs/ to cluster on u, rewritten to /dicom-web/ at pacs-a.example.test.
func routeTo(cluster string, u *upstream) envoysim.Route {
	return envoysim.Route{
		Prefix:        "/pacs/",
		Cluster:       cluster,
		Upstream:      u.server.URL,
		PrefixRewrite: "/dicom-web/",
		HostRewrite:   "pacs-a.example.test",
	}
}

// proxyFor starts a service over source, an upstream and a Proxy in mode
// with one route to cluster.
func proxyFor(t *testing.T, mode envoysim.Mode, cluster string,
	source *fakeSource) (*envoysim.Proxy, *upstream, *service) {
	t.Helper()
	svc := startService(t, source)
	up := startUpstream(t)
	proxy := startProxy(t, envoysim.Config{
		Driver: svc.driver,
		Mode:   mode,
		Routes: []envoysim.Route{routeTo(cluster, up)},
	})
	return proxy, up, svc
}

func TestProxySetsOneBearer(t *testing.T) {
	basic := "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="
	clients := []struct {
		name          string
		authorization []string
	}{
		{"no client header", nil},
		{"client basic", []string{basic}},
		{"two client values", []string{basic, "Bearer test-client-token"}},
	}
	for _, mode := range allModes {
		for _, c := range clients {
			t.Run(string(mode)+"/"+c.name, func(t *testing.T) {
				proxy, up, _ := proxyFor(t, mode, "pacs-a", &fakeSource{})

				resp := get(t, newClient(t), proxy.URL()+"/pacs/studies", c.authorization...)

				if resp.status != http.StatusOK {
					t.Fatalf("status = %d (body %q), want 200", resp.status, resp.body)
				}
				got := up.received()
				if len(got) != 1 {
					t.Fatalf("upstream got %d requests, want 1", len(got))
				}
				want := []string{"Bearer test-token-a"}
				if !slices.Equal(got[0].authorization, want) {
					t.Errorf("upstream Authorization = %q, want %q", got[0].authorization, want)
				}
				if n := proxy.Stats().Decisions; n != 1 {
					t.Errorf("decisions = %d, want 1", n)
				}
			})
		}
	}
}

// largeBody is the size of the streamed bodies: big enough that buffering
// would show, small enough for a test run.
const largeBody = 64 << 20

func TestProxyStreamsLargeRequestBody(t *testing.T) {
	tests := []struct {
		name        string
		mode        envoysim.Mode
		knownLength bool
	}{
		{"ext_proc chunked", envoysim.ModeExtProc, false},
		{"ext_proc content-length", envoysim.ModeExtProc, true},
		{"ext_proc_upstream chunked", envoysim.ModeExtProcUpstream, false},
		{"ext_authz content-length", envoysim.ModeExtAuthz, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy, up, _ := proxyFor(t, tt.mode, "pacs-a", &fakeSource{})
			sent := sha256.New()
			body := io.TeeReader(generatedBody(1, largeBody), sent)
			req, err := http.NewRequest(http.MethodPost, proxy.URL()+"/pacs/studies", body)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			req.Header.Set("Content-Type", `multipart/related; type="application/dicom"`)
			wantLength := int64(-1)
			if tt.knownLength {
				wantLength = largeBody
			}
			req.ContentLength = wantLength

			before := totalAlloc()
			resp := send(t, newClient(t), req)
			checkStreamed(t, before)

			if resp.status != http.StatusOK {
				t.Fatalf("status = %d (body %q), want 200", resp.status, resp.body)
			}
			got := up.received()
			if len(got) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(got))
			}
			if got[0].contentLength != wantLength {
				t.Errorf("upstream content length = %d, want %d", got[0].contentLength, wantLength)
			}
			if got[0].bodySize != largeBody {
				t.Errorf("upstream body size = %d, want %d", got[0].bodySize, largeBody)
			}
			if got[0].bodySum != sum(sent) {
				t.Errorf("upstream body SHA-256 = %s, want %s", got[0].bodySum, sum(sent))
			}
			if !slices.Equal(got[0].authorization, []string{"Bearer test-token-a"}) {
				t.Errorf("upstream Authorization = %q, want one bearer", got[0].authorization)
			}
		})
	}
}

func TestProxyStreamsLargeResponseBody(t *testing.T) {
	want := sha256.New()
	if _, err := io.Copy(want, generatedBody(2, largeBody)); err != nil {
		t.Fatalf("hash generated body: %v", err)
	}

	for _, mode := range []envoysim.Mode{envoysim.ModeExtProc, envoysim.ModeExtProcUpstream} {
		t.Run(string(mode), func(t *testing.T) {
			svc := startService(t, &fakeSource{})
			server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", `multipart/related; type="application/dicom"`)
				_, _ = io.Copy(w, generatedBody(2, largeBody))
			}))
			t.Cleanup(server.Close)
			proxy := startProxy(t, envoysim.Config{
				Driver: svc.driver,
				Mode:   mode,
				Routes: []envoysim.Route{{Prefix: "/", Cluster: "pacs-a", Upstream: server.URL}},
			})

			before := totalAlloc()
			resp, err := newClient(t).Get(proxy.URL() + "/studies/1.2.3")
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			got := sha256.New()
			n, err := io.Copy(got, resp.Body)
			if err != nil {
				t.Fatalf("read response body: %v", err)
			}
			checkStreamed(t, before)

			if resp.StatusCode != http.StatusOK {
				t.Errorf("status = %d, want 200", resp.StatusCode)
			}
			if n != largeBody {
				t.Errorf("response body size = %d, want %d", n, largeBody)
			}
			if sum(got) != sum(want) {
				t.Errorf("response body SHA-256 = %s, want %s", sum(got), sum(want))
			}
			if c := proxy.Stats().ResponseHeaders; c != 1 {
				t.Errorf("response_headers replies = %d, want 1", c)
			}
		})
	}
}

func TestProxyUnknownCluster(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			source := &fakeSource{}
			proxy, up, _ := proxyFor(t, mode, "pacs-z", source)

			resp := get(t, newClient(t), proxy.URL()+"/pacs/studies")

			if resp.status != http.StatusForbidden {
				t.Fatalf("status = %d (body %q), want 403", resp.status, resp.body)
			}
			if ct := resp.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			body := decodeDenial(t, resp.body)
			if body.Error != extproc.OutcomeUnknownCluster {
				t.Errorf("body error = %q, want %q", body.Error, extproc.OutcomeUnknownCluster)
			}
			if body.Cluster != "pacs-z" {
				t.Errorf("body cluster = %q, want pacs-z", body.Cluster)
			}
			if n := len(up.received()); n != 0 {
				t.Errorf("upstream got %d requests, want 0", n)
			}
			if n := source.calls.Load(); n != 0 {
				t.Errorf("source got %d calls, want 0", n)
			}
			if n := proxy.Stats().Denials; n != 1 {
				t.Errorf("denials = %d, want 1", n)
			}
		})
	}
}

func TestProxySourceError(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			proxy, up, _ := proxyFor(t, mode, "pacs-a", &fakeSource{err: errSourceFake})

			resp := get(t, newClient(t), proxy.URL()+"/pacs/studies")

			if resp.status != http.StatusServiceUnavailable {
				t.Fatalf("status = %d (body %q), want 503", resp.status, resp.body)
			}
			body := decodeDenial(t, resp.body)
			if body.Error != extproc.OutcomeUnavailable {
				t.Errorf("body error = %q, want %q", body.Error, extproc.OutcomeUnavailable)
			}
			if !strings.Contains(body.Message, errSourceFake.Error()) {
				t.Errorf("body message %q does not contain the source's error", body.Message)
			}
			if n := len(up.received()); n != 0 {
				t.Errorf("upstream got %d requests, want 0", n)
			}
			if n := proxy.Stats().Failures; n != 0 {
				t.Errorf("failures = %d, want 0: the service answered", n)
			}
		})
	}
}

func TestProxyInvalidatesOn401(t *testing.T) {
	tests := []struct {
		name           string
		mode           envoysim.Mode
		responseMode   filterv3.ProcessingMode_HeaderSendMode
		upstreamStatus int
		want           []invalidation
	}{
		{"default sends", envoysim.ModeExtProc, filterv3.ProcessingMode_DEFAULT, 401,
			[]invalidation{{"pacs-a", "Bearer test-token-a"}}},
		{"send", envoysim.ModeExtProc, filterv3.ProcessingMode_SEND, 401,
			[]invalidation{{"pacs-a", "Bearer test-token-a"}}},
		{"skip", envoysim.ModeExtProc, filterv3.ProcessingMode_SKIP, 401, nil},
		{"send 200", envoysim.ModeExtProc, filterv3.ProcessingMode_SEND, 200, nil},
		{"upstream filter send", envoysim.ModeExtProcUpstream, filterv3.ProcessingMode_SEND, 401,
			[]invalidation{{"pacs-a", "Bearer test-token-a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := startService(t, &fakeSource{})
			up := startUpstream(t, tt.upstreamStatus)
			proxy := startProxy(t, envoysim.Config{
				Driver:             svc.driver,
				Mode:               tt.mode,
				Routes:             []envoysim.Route{routeTo("pacs-a", up)},
				ResponseHeaderMode: tt.responseMode,
			})

			resp := get(t, newClient(t), proxy.URL()+"/pacs/studies")

			if resp.status != tt.upstreamStatus {
				t.Errorf("status = %d, want the upstream's %d", resp.status, tt.upstreamStatus)
			}
			if string(resp.body) != "[]" {
				t.Errorf("body = %q, want the upstream's %q", resp.body, "[]")
			}
			if got := svc.invalidator.invalidations(); !slices.Equal(got, tt.want) {
				t.Errorf("invalidations = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProxyPassesUpstream401(t *testing.T) {
	svc := startService(t, &fakeSource{})
	up := startUpstream(t, http.StatusUnauthorized)
	proxy := startProxy(t, envoysim.Config{
		Driver: svc.driver,
		Mode:   envoysim.ModeExtProc,
		Routes: []envoysim.Route{routeTo("pacs-a", up)},
	})

	resp := get(t, newClient(t), proxy.URL()+"/pacs/studies")

	if resp.status != http.StatusUnauthorized {
		t.Errorf("status = %d, want 401", resp.status)
	}
	want := `Bearer error="invalid_token"`
	if got := resp.header.Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/dicom+json" {
		t.Errorf("Content-Type = %q, want application/dicom+json", ct)
	}
}

func TestProxyServiceFailure(t *testing.T) {
	tests := []struct {
		mode          envoysim.Mode
		fault         string
		statusOnError int
		wantStatus    int
	}{
		{envoysim.ModeExtProc, "down", 0, 500},
		{envoysim.ModeExtProcUpstream, "down", 0, 500},
		{envoysim.ModeExtAuthz, "down", 0, 403},
		{envoysim.ModeExtAuthz, "down", 503, 503},
		{envoysim.ModeExtProc, "late", 0, 504},
		{envoysim.ModeExtProcUpstream, "late", 0, 504},
		{envoysim.ModeExtAuthz, "late", 0, 403},
		{envoysim.ModeExtAuthz, "late", 503, 503},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/%s/status on error %d", tt.mode, tt.fault, tt.statusOnError)
		t.Run(name, func(t *testing.T) {
			var driver *envoysim.Driver
			if tt.fault == "down" {
				d, err := envoysim.Dial(deadAddress(t))
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				t.Cleanup(func() { _ = d.Close() })
				driver = d
			} else {
				hang := make(chan struct{})
				driver = startService(t, &fakeSource{hang: hang}).driver
				// Registered after the service, so it runs before the
				// gRPC server stops.
				t.Cleanup(func() { close(hang) })
				driver.MessageTimeout = 50 * time.Millisecond
			}
			up := startUpstream(t)
			proxy := startProxy(t, envoysim.Config{
				Driver:        driver,
				Mode:          tt.mode,
				Routes:        []envoysim.Route{routeTo("pacs-a", up)},
				StatusOnError: tt.statusOnError,
			})

			resp := get(t, newClient(t), proxy.URL()+"/pacs/studies")

			if resp.status != tt.wantStatus {
				t.Errorf("status = %d (body %q), want %d", resp.status, resp.body, tt.wantStatus)
			}
			if n := len(up.received()); n != 0 {
				t.Errorf("upstream got %d requests, want 0", n)
			}
			if n := proxy.Stats().Failures; n != 1 {
				t.Errorf("failures = %d, want 1", n)
			}
		})
	}
}

func TestProxyRewrites(t *testing.T) {
	tests := []struct {
		mode       envoysim.Mode
		cluster    string
		wantStatus int
	}{
		{envoysim.ModeExtProc, "pacs-a", 200},
		{envoysim.ModeExtProcUpstream, "pacs-a", 200},
		{envoysim.ModeExtAuthz, "pacs-a", 200},
		// Without a cluster name the service matches :authority, which is
		// the rewritten host only for the upstream filter.
		{envoysim.ModeExtProc, "", 403},
		{envoysim.ModeExtProcUpstream, "", 200},
		{envoysim.ModeExtAuthz, "", 403},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/cluster %q", tt.mode, tt.cluster), func(t *testing.T) {
			proxy, up, _ := proxyFor(t, tt.mode, tt.cluster, &fakeSource{})

			resp := get(t, newClient(t), proxy.URL()+"/pacs/studies?limit=1")

			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d (body %q), want %d", resp.status, resp.body, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			got := up.received()
			if len(got) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(got))
			}
			if got[0].host != "pacs-a.example.test" {
				t.Errorf("upstream Host = %q, want pacs-a.example.test", got[0].host)
			}
			if got[0].path != "/dicom-web/studies?limit=1" {
				t.Errorf("upstream path = %q, want /dicom-web/studies?limit=1", got[0].path)
			}
			if !slices.Equal(got[0].authorization, []string{"Bearer test-token-a"}) {
				t.Errorf("upstream Authorization = %q, want one bearer", got[0].authorization)
			}
		})
	}
}

func TestProxyRetry(t *testing.T) {
	tests := []struct {
		name          string
		mode          envoysim.Mode
		retry         bool
		deadUpstream  bool
		wantStatus    int
		wantDecisions int64
		wantAttempts  int64
		wantRetries   int64
	}{
		{"upstream filter decides per attempt", envoysim.ModeExtProcUpstream, true, false, 200, 2, 2, 1},
		{"downstream filter decides once", envoysim.ModeExtProc, true, false, 200, 1, 2, 1},
		{"ext_authz decides once", envoysim.ModeExtAuthz, true, false, 200, 1, 2, 1},
		{"no retry policy", envoysim.ModeExtProcUpstream, false, false, 503, 1, 1, 0},
		{"connection failure", envoysim.ModeExtProcUpstream, true, true, 503, 2, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := startService(t, &fakeSource{})
			up := startUpstream(t, http.StatusServiceUnavailable)
			route := routeTo("pacs-a", up)
			if tt.deadUpstream {
				route.Upstream = "http://" + deadAddress(t)
			}
			proxy := startProxy(t, envoysim.Config{
				Driver: svc.driver,
				Mode:   tt.mode,
				Routes: []envoysim.Route{route},
				Retry:  tt.retry,
			})

			resp := get(t, newClient(t), proxy.URL()+"/pacs/studies")

			if resp.status != tt.wantStatus {
				t.Errorf("status = %d (body %q), want %d", resp.status, resp.body, tt.wantStatus)
			}
			stats := proxy.Stats()
			if stats.Decisions != tt.wantDecisions {
				t.Errorf("decisions = %d, want %d", stats.Decisions, tt.wantDecisions)
			}
			if stats.UpstreamAttempts != tt.wantAttempts {
				t.Errorf("upstream attempts = %d, want %d", stats.UpstreamAttempts, tt.wantAttempts)
			}
			if stats.Retries != tt.wantRetries {
				t.Errorf("retries = %d, want %d", stats.Retries, tt.wantRetries)
			}
			for i, r := range up.received() {
				if !slices.Equal(r.authorization, []string{"Bearer test-token-a"}) {
					t.Errorf("attempt %d: upstream Authorization = %q, want one bearer", i+1, r.authorization)
				}
			}
		})
	}
}

func TestProxyConnectionFailureCounted(t *testing.T) {
	svc := startService(t, &fakeSource{})
	proxy := startProxy(t, envoysim.Config{
		Driver: svc.driver,
		Mode:   envoysim.ModeExtProc,
		Routes: []envoysim.Route{{Prefix: "/", Cluster: "pacs-a", Upstream: "http://" + deadAddress(t)}},
	})

	resp := get(t, newClient(t), proxy.URL()+"/studies")

	if resp.status != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", resp.status)
	}
	stats := proxy.Stats()
	if stats.UpstreamFailures != 1 {
		t.Errorf("upstream failures = %d, want 1", stats.UpstreamFailures)
	}
	if stats.Failures != 0 {
		t.Errorf("failures = %d, want 0: the service answered", stats.Failures)
	}
}

func TestProxyNoRoute(t *testing.T) {
	proxy, up, _ := proxyFor(t, envoysim.ModeExtProc, "pacs-a", &fakeSource{})

	resp := get(t, newClient(t), proxy.URL()+"/other/studies")

	if resp.status != http.StatusNotFound {
		t.Errorf("status = %d, want 404", resp.status)
	}
	if n := proxy.Stats().Decisions; n != 0 {
		t.Errorf("decisions = %d, want 0", n)
	}
	if n := len(up.received()); n != 0 {
		t.Errorf("upstream got %d requests, want 0", n)
	}
}

// TestProxyAppliesDriverRules checks that the Proxy applies a reply the
// way the Driver does, against a scripted ext_proc server.
func TestProxyAppliesDriverRules(t *testing.T) {
	basic := "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="
	tests := []struct {
		name       string
		reply      replyFunc
		wantStatus int
		wantAuth   []string // upstream Authorization when the request goes upstream
	}{
		{
			name:       "unset append overwrites",
			reply:      headersReply(rawOption("authorization", "Bearer test-token-1")),
			wantStatus: 200,
			wantAuth:   []string{"Bearer test-token-1"},
		},
		{
			name: "append true keeps the client's",
			reply: headersReply(&corev3.HeaderValueOption{
				Header: rawHeader("authorization", "Bearer test-token-1"),
				Append: wrapperspb.Bool(true),
			}),
			wantStatus: 200,
			wantAuth:   []string{basic, "Bearer test-token-1"},
		},
		{
			name: "value and raw_value",
			reply: headersReply(&corev3.HeaderValueOption{Header: &corev3.HeaderValue{
				Key:      "authorization",
				Value:    "Bearer test-token-1",
				RawValue: []byte("Bearer test-token-1"),
			}}),
			wantStatus: 500,
		},
		{
			name: "wrong type is spurious",
			reply: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				body := &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}
				return &extprocv3.ProcessingResponse{Response: body}
			},
			wantStatus: 500,
		},
		{
			name: "immediate response",
			reply: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				immediate := &extprocv3.ImmediateResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
					Body:   []byte("fake"),
				}
				return &extprocv3.ProcessingResponse{
					Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: immediate},
				}
			},
			wantStatus: 429,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			driver := envoysim.StartDriver(t, &scriptedProcessor{reply: tt.reply}, nil)
			up := startUpstream(t)
			// The scripted server replies to every phase as to request_headers,
			// so the response headers are not sent.
			proxy := startProxy(t, envoysim.Config{
				Driver:             driver,
				Mode:               envoysim.ModeExtProc,
				Routes:             []envoysim.Route{routeTo("pacs-a", up)},
				ResponseHeaderMode: filterv3.ProcessingMode_SKIP,
			})

			resp := get(t, newClient(t), proxy.URL()+"/pacs/studies", basic)

			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d (body %q), want %d", resp.status, resp.body, tt.wantStatus)
			}
			got := up.received()
			if tt.wantAuth == nil {
				if len(got) != 0 {
					t.Errorf("upstream got %d requests, want 0", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(got))
			}
			if !slices.Equal(got[0].authorization, tt.wantAuth) {
				t.Errorf("upstream Authorization = %q, want %q", got[0].authorization, tt.wantAuth)
			}
		})
	}
}

func TestNewProxyRejectsConfig(t *testing.T) {
	driver, err := envoysim.Dial(deadAddress(t))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = driver.Close() })
	good := envoysim.Route{Prefix: "/", Upstream: "http://127.0.0.1:8042"}
	withRoute := func(edit func(*envoysim.Route)) []envoysim.Route {
		route := good
		edit(&route)
		return []envoysim.Route{route}
	}

	tests := []struct {
		name   string
		config envoysim.Config
	}{
		{"no driver", envoysim.Config{Mode: envoysim.ModeExtProc, Routes: []envoysim.Route{good}}},
		{"unknown mode", envoysim.Config{Driver: driver, Mode: "lua", Routes: []envoysim.Route{good}}},
		{"no routes", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc}},
		{"response header mode", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc,
			Routes: []envoysim.Route{good}, ResponseHeaderMode: 7}},
		{"status on error", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtAuthz,
			Routes: []envoysim.Route{good}, StatusOnError: 42}},
		{"prefix without slash", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc,
			Routes: withRoute(func(r *envoysim.Route) { r.Prefix = "pacs" })}},
		{"prefix rewrite without slash", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc,
			Routes: withRoute(func(r *envoysim.Route) { r.PrefixRewrite = "dicom-web" })}},
		{"remote upstream", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc,
			Routes: withRoute(func(r *envoysim.Route) { r.Upstream = "http://pacs.example.test:8042" })}},
		{"https upstream", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc,
			Routes: withRoute(func(r *envoysim.Route) { r.Upstream = "https://127.0.0.1:8443" })}},
		{"upstream with path", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc,
			Routes: withRoute(func(r *envoysim.Route) { r.Upstream = "http://127.0.0.1:8042/dicom-web" })}},
		{"upstream without port", envoysim.Config{Driver: driver, Mode: envoysim.ModeExtProc,
			Routes: withRoute(func(r *envoysim.Route) { r.Upstream = "http://127.0.0.1" })}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := envoysim.NewProxy(tt.config); err == nil {
				t.Error("NewProxy returned no error")
			}
		})
	}

	if _, err := envoysim.NewProxy(envoysim.Config{
		Driver: driver, Mode: envoysim.ModeExtProc, Routes: []envoysim.Route{good},
	}); err != nil {
		t.Errorf("NewProxy with a valid config: %v", err)
	}
}
