package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// authorizationOption returns the single set_headers entry of the
// request_headers reply, failing the test when there is not exactly one.
func authorizationOption(t *testing.T, res *extProcResult) *corev3.HeaderValueOption {
	t.Helper()
	if len(res.replies) == 0 {
		t.Fatal("no reply was received")
	}
	mutation := res.replies[0].GetRequestHeaders().GetResponse().GetHeaderMutation()
	if n := len(mutation.GetRemoveHeaders()); n != 0 {
		t.Errorf("request_headers reply removes %d headers, want 0", n)
	}
	set := mutation.GetSetHeaders()
	if len(set) != 1 {
		t.Fatalf("request_headers reply sets %d headers, want 1", len(set))
	}
	return set[0]
}

func TestExtProcSetsRawValueOnly(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})

	res, err := env.driver.runExtProc(context.Background(),
		proxiedRequest{clusterName: "pacs-a", authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("runExtProc: %v", err)
	}

	header := authorizationOption(t, res).GetHeader()
	if header.GetKey() != "authorization" {
		t.Errorf("set header key = %q, want %q", header.GetKey(), "authorization")
	}
	if got := string(header.GetRawValue()); got != "Bearer test-token-a" {
		t.Errorf("raw_value = %q, want %q", got, "Bearer test-token-a")
	}
	if header.GetValue() != "" {
		t.Errorf("value = %q, want empty: Envoy rejects a header with both value and raw_value",
			header.GetValue())
	}
	checkHeader(t, "upstream", res.upstream, "authorization", "Bearer test-token-a")
}

func TestExtProcAppendActionUnused(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})

	res, err := env.driver.runExtProc(context.Background(),
		proxiedRequest{clusterName: "pacs-a", authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("runExtProc: %v", err)
	}

	option := authorizationOption(t, res)
	if option.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
		t.Errorf("append_action = %v, want unset: ext_proc ignores it", option.GetAppendAction())
	}
	if option.GetAppend().GetValue() {
		t.Error("append = true, want unset or false so that the header overwrites")
	}
}

func TestExtProcReplacesClientAuthorization(t *testing.T) {
	tests := []struct {
		name    string
		headers headerMap
	}{
		{"none", nil},
		{"basic", headerMap{{"authorization", "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="}}},
		{"client bearer", headerMap{{"Authorization", "Bearer test-client-token"}}},
		{"two values", headerMap{
			{"authorization", "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="},
			{"authorization", "Bearer test-client-token"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			res, err := env.driver.runExtProc(context.Background(), proxiedRequest{
				clusterName: "pacs-a", authority: "pacs-a.example.test", headers: tt.headers,
			})
			if err != nil {
				t.Fatalf("runExtProc: %v", err)
			}

			checkHeader(t, "upstream", res.upstream, "authorization", "Bearer test-token-a")
		})
	}
}

func TestExtProcRepliesEveryPhase(t *testing.T) {
	tests := []struct {
		name   string
		phases []phase
	}{
		{"request body", []phase{phaseRequestBody}},
		{"request trailers", []phase{phaseRequestBody, phaseRequestTrailers}},
		{"response headers", []phase{phaseResponseHeaders}},
		{"response body", []phase{phaseResponseHeaders, phaseResponseBody}},
		{"response trailers", []phase{
			phaseResponseHeaders, phaseResponseBody, phaseResponseTrailers,
		}},
		{"all", []phase{phaseRequestBody, phaseRequestTrailers,
			phaseResponseHeaders, phaseResponseBody, phaseResponseTrailers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			res, err := env.driver.runExtProc(context.Background(), proxiedRequest{
				clusterName: "pacs-a", authority: "pacs-a.example.test", phases: tt.phases,
			})
			if err != nil {
				t.Fatalf("runExtProc: %v", err)
			}

			all := append([]phase{phaseRequestHeaders}, tt.phases...)
			if len(res.replies) != len(all) {
				t.Fatalf("got %d replies, want %d", len(res.replies), len(all))
			}
			for i, p := range all {
				if res.replies[i].GetResponse() == nil {
					t.Errorf("reply to %s is an empty ProcessingResponse", p)
				}
				if !p.matches(res.replies[i]) {
					t.Errorf("reply to %s is %T", p, res.replies[i].GetResponse())
				}
			}
			if got := res.upstream.values("authorization"); len(got) != 1 {
				t.Errorf("upstream authorization = %q, want one value", got)
			}
			if end := env.driver.nextHandlerEnd(t); end.err != nil {
				t.Errorf("stream handler returned %v, want nil", end.err)
			}
		})
	}
}

func TestExtProcStreamEnd(t *testing.T) {
	tests := []struct {
		name     string
		end      streamEnd
		wantRecv codes.Code
	}{
		{"close send", endCloseSend, codes.OK},
		{"cancel", endCancel, codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			_, err := env.driver.runExtProc(context.Background(), proxiedRequest{
				clusterName: "pacs-a", authority: "pacs-a.example.test",
				phases: []phase{phaseResponseHeaders}, end: tt.end,
			})
			if err != nil {
				t.Fatalf("runExtProc: %v", err)
			}

			end := env.driver.nextHandlerEnd(t)
			if end.err != nil {
				t.Errorf("stream handler returned %v, want nil", end.err)
			}
			if tt.end == endCloseSend && !errors.Is(end.recvErr, io.EOF) {
				t.Errorf("server's last Recv error = %v, want io.EOF", end.recvErr)
			}
			if tt.end == endCancel && status.Code(end.recvErr) != codes.Canceled {
				t.Errorf("server's last Recv error = %v, want code %v", end.recvErr, codes.Canceled)
			}
			if lines := env.logs.warnings(); len(lines) != 0 {
				t.Errorf("log has WARN or ERROR lines, want none:\n%s", strings.Join(lines, "\n"))
			}
		})
	}
}

func TestExtProcClusterFromAttribute(t *testing.T) {
	tests := []struct {
		name          string
		attributesKey string
	}{
		{"ext_proc key", ""},
		{"other key", "envoy.filters.http.ext_proc.upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			// The authority belongs to pacs-a; the attribute wins.
			res, err := env.driver.runExtProc(context.Background(), proxiedRequest{
				clusterName: "pacs-b", attributesKey: tt.attributesKey,
				authority: "pacs-a.example.test",
			})
			if err != nil {
				t.Fatalf("runExtProc: %v", err)
			}

			checkHeader(t, "upstream", res.upstream, "authorization", "Bearer test-token-b")
			if got := env.source.clusters(); !slices.Equal(got, []string{"pacs-b"}) {
				t.Errorf("source asked for clusters %q, want [pacs-b]", got)
			}
		})
	}
}

func TestExtProcClusterFromAuthority(t *testing.T) {
	tests := []struct {
		authority string
		want      string
	}{
		{"pacs-a.example.test", "Bearer test-token-a"},
		{"pacs-a.example.test:8080", "Bearer test-token-a"},
		{"PACS-A.Example.TEST", "Bearer test-token-a"},
		{"pacs-a.example.test.", "Bearer test-token-a"},
		{"pacs-a.example.test.:443", "Bearer test-token-a"},
		{"pacs-b.example.test:8443", "Bearer test-token-b"},
		{"[::1]:8443", "Bearer test-token-v6"},
	}
	for _, tt := range tests {
		t.Run(tt.authority, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			req := proxiedRequest{authority: tt.authority}
			res, err := env.driver.runExtProc(context.Background(), req)
			if err != nil {
				t.Fatalf("runExtProc: %v", err)
			}

			checkHeader(t, "upstream", res.upstream, "authorization", tt.want)
			sent := res.sent[0].GetRequestHeaders().GetHeaders()
			if got := headerValue(sent, "host"); got != "" {
				t.Errorf("request_headers has host %q, want none: Envoy sends :authority", got)
			}
			if attrs := res.sent[0].GetAttributes(); len(attrs) != 0 {
				t.Errorf("request_headers has attributes %v, want none", attrs)
			}
		})
	}
}

func TestExtProcUnknownCluster(t *testing.T) {
	tests := []struct {
		name        string
		clusterName string
		authority   string
		wantCluster string
		wantInMsg   string
	}{
		{"named", "pacs-z", "pacs-z.example.test", "pacs-z", `"pacs-z"`},
		{"authority", "", "other.example.test", "", `"other.example.test"`},
		{"port mismatch", "", "pacs-b.example.test:9443", "", `"pacs-b.example.test:9443"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			res, err := env.driver.runExtProc(context.Background(),
				proxiedRequest{clusterName: tt.clusterName, authority: tt.authority})
			if err != nil {
				t.Fatalf("runExtProc: %v", err)
			}

			if res.local == nil {
				t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.upstream)
			}
			if res.local.status != 403 {
				t.Errorf("status = %d, want 403", res.local.status)
			}
			checkHeader(t, "local reply", res.local.headers, "content-type", "application/json")
			body := decodeDenial(t, res.local.body)
			if body.Error != OutcomeUnknownCluster {
				t.Errorf("body error = %q, want %q", body.Error, OutcomeUnknownCluster)
			}
			if body.Cluster != tt.wantCluster {
				t.Errorf("body cluster = %q, want %q", body.Cluster, tt.wantCluster)
			}
			if !strings.Contains(body.Message, tt.wantInMsg) {
				t.Errorf("body message %q does not name %s", body.Message, tt.wantInMsg)
			}
			if n := len(env.source.clusters()); n != 0 {
				t.Errorf("source was asked %d times, want 0", n)
			}
		})
	}
}

func TestExtProcUnknownNameNoHostFallback(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})

	// The authority belongs to pacs-a, but the proxy named another cluster.
	res, err := env.driver.runExtProc(context.Background(),
		proxiedRequest{clusterName: "pacs-z", authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("runExtProc: %v", err)
	}

	if res.local == nil {
		t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.upstream)
	}
	if res.local.status != 403 {
		t.Errorf("status = %d, want 403", res.local.status)
	}
	if got := env.source.clusters(); len(got) != 0 {
		t.Errorf("source was asked for clusters %q, want none", got)
	}
	checkHeader(t, "local reply", res.local.headers, "authorization")
	if strings.Contains(string(res.local.body), "test-token") {
		t.Errorf("local reply body %q contains a token", res.local.body)
	}
}

func TestExtProcSourceError(t *testing.T) {
	source := &fakeSource{err: errSourceFake}
	env := newGRPCEnv(t, source)

	res, err := env.driver.runExtProc(context.Background(),
		proxiedRequest{clusterName: "pacs-a", authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("runExtProc: %v", err)
	}

	if res.local == nil {
		t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.upstream)
	}
	if res.local.status != 503 {
		t.Errorf("status = %d, want 503", res.local.status)
	}
	checkHeader(t, "local reply", res.local.headers, "content-type", "application/json")
	body := decodeDenial(t, res.local.body)
	if body.Error != OutcomeUnavailable {
		t.Errorf("body error = %q, want %q", body.Error, OutcomeUnavailable)
	}
	if body.Cluster != "pacs-a" {
		t.Errorf("body cluster = %q, want pacs-a", body.Cluster)
	}
	if !strings.Contains(body.Message, "token endpoint returned 500 (fake)") {
		t.Errorf("body message %q does not contain the source's error", body.Message)
	}
}

func TestExtProcSlowSource(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{block: true})

	// The driver fails the request with 504 if the reply misses Envoy's
	// default message_timeout of 200 ms.
	res, err := env.driver.runExtProc(context.Background(),
		proxiedRequest{clusterName: "pacs-a", authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("runExtProc: %v", err)
	}

	if res.local == nil {
		t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.upstream)
	}
	if res.local.status != 503 {
		t.Errorf("status = %d, want 503", res.local.status)
	}
	if body := decodeDenial(t, res.local.body); body.Error != OutcomeUnavailable {
		t.Errorf("body error = %q, want %q", body.Error, OutcomeUnavailable)
	}
}

func TestExtProcInvalidatesOn401(t *testing.T) {
	tests := []struct {
		upstreamStatus int
		want           []invalidation
	}{
		{401, []invalidation{{"pacs-a", "Bearer test-token-a"}}},
		{200, nil},
		{403, nil},
		{500, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.upstreamStatus), func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			_, err := env.driver.runExtProc(context.Background(), proxiedRequest{
				clusterName: "pacs-a", authority: "pacs-a.example.test",
				phases:         []phase{phaseResponseHeaders, phaseResponseBody},
				upstreamStatus: tt.upstreamStatus,
			})
			if err != nil {
				t.Fatalf("runExtProc: %v", err)
			}

			if got := env.invalidator.invalidations(); !slices.Equal(got, tt.want) {
				t.Errorf("invalidations = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExtProcNoInvalidator(t *testing.T) {
	log, _ := newTestLogger()
	decider := newTestDecider(t, &fakeSource{}, log)
	driver := startEnvoyDriver(t, &ExtProc{Decider: decider, Log: log}, nil)

	res, err := driver.runExtProc(context.Background(), proxiedRequest{
		clusterName: "pacs-a", authority: "pacs-a.example.test",
		phases: []phase{phaseResponseHeaders}, upstreamStatus: 401,
	})
	if err != nil {
		t.Fatalf("runExtProc: %v", err)
	}

	if got := res.upstream.values("authorization"); len(got) != 1 {
		t.Errorf("upstream authorization = %q, want one value", got)
	}
}

func TestExtProcLogsNoToken(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})

	_, err := env.driver.runExtProc(context.Background(), proxiedRequest{
		clusterName: "pacs-a", authority: "pacs-a.example.test",
		headers: headerMap{{"authorization", "Bearer test-client-token"}},
		phases:  []phase{phaseResponseHeaders}, upstreamStatus: 401,
	})
	if err != nil {
		t.Fatalf("runExtProc: %v", err)
	}
	env.driver.nextHandlerEnd(t)

	logs := env.logs.String()
	if !strings.Contains(logs, "cluster=pacs-a") {
		t.Fatalf("log has no decision line for pacs-a, so this test checks nothing:\n%s", logs)
	}
	if strings.Contains(logs, "test-token") || strings.Contains(logs, "test-client-token") {
		t.Errorf("log contains a token:\n%s", logs)
	}
}

func TestExtProcConcurrentStreams(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})
	clusters := []string{"pacs-a", "pacs-b", "pacs-v6"}

	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := range 30 {
		cluster := clusters[i%len(clusters)]
		wg.Go(func() {
			res, err := env.driver.runExtProc(context.Background(),
				proxiedRequest{clusterName: cluster, authority: "unrelated.example.test"})
			if err != nil {
				errs <- fmt.Errorf("cluster %s: %w", cluster, err)
				return
			}
			got := res.upstream.values("authorization")
			if !slices.Equal(got, []string{testHeaders[cluster]}) {
				errs <- fmt.Errorf("cluster %s: upstream authorization = %q, want [%s]",
					cluster, got, testHeaders[cluster])
			}
		})
	}
	wg.Wait()
	close(errs)

	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkExtProcRequestHeaders measures one request as Envoy sends it:
// open a stream, send request_headers, receive the reply, close the stream.
// The driver's own checks are included in the figures.
func BenchmarkExtProcRequestHeaders(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	decider := newTestDecider(b, staticSource("Bearer test-token-a"), log)
	driver := startEnvoyDriver(b, &ExtProc{Decider: decider, Log: log}, nil)
	req := proxiedRequest{clusterName: "pacs-a", authority: "pacs-a.example.test"}
	ctx := context.Background()

	b.ReportAllocs()
	for b.Loop() {
		res, err := driver.runExtProc(ctx, req)
		if err != nil {
			b.Fatalf("runExtProc: %v", err)
		}
		if got := res.upstream.values("authorization"); len(got) != 1 {
			b.Fatalf("upstream authorization = %q, want one value", got)
		}
	}
}
