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

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
)

// authorizationOption returns the single set_headers entry of the
// request_headers reply, failing the test when there is not exactly one.
func authorizationOption(t *testing.T, res *envoysim.ExtProcResult) *corev3.HeaderValueOption {
	t.Helper()
	if len(res.Replies) == 0 {
		t.Fatal("no reply was received")
	}
	mutation := res.Replies[0].GetRequestHeaders().GetResponse().GetHeaderMutation()
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

	res, err := env.driver.RunExtProc(context.Background(),
		envoysim.ProxiedRequest{ClusterName: "pacs-a", Authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
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
	checkHeader(t, "upstream", res.Upstream, "authorization", "Bearer test-token-a")
}

func TestExtProcAppendActionUnused(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})

	res, err := env.driver.RunExtProc(context.Background(),
		envoysim.ProxiedRequest{ClusterName: "pacs-a", Authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
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
		headers envoysim.HeaderMap
	}{
		{"none", nil},
		{"basic", envoysim.HeaderMap{
			{Key: "authorization", Value: "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="},
		}},
		{"client bearer", envoysim.HeaderMap{{Key: "Authorization", Value: "Bearer test-client-token"}}},
		{"two values", envoysim.HeaderMap{
			{Key: "authorization", Value: "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="},
			{Key: "authorization", Value: "Bearer test-client-token"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			res, err := env.driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
				ClusterName: "pacs-a", Authority: "pacs-a.example.test", Headers: tt.headers,
			})
			if err != nil {
				t.Fatalf("RunExtProc: %v", err)
			}

			checkHeader(t, "upstream", res.Upstream, "authorization", "Bearer test-token-a")
		})
	}
}

func TestExtProcRepliesEveryPhase(t *testing.T) {
	tests := []struct {
		name   string
		phases []envoysim.Phase
	}{
		{"request body", []envoysim.Phase{envoysim.PhaseRequestBody}},
		{"request trailers", []envoysim.Phase{envoysim.PhaseRequestBody, envoysim.PhaseRequestTrailers}},
		{"response headers", []envoysim.Phase{envoysim.PhaseResponseHeaders}},
		{"response body", []envoysim.Phase{envoysim.PhaseResponseHeaders, envoysim.PhaseResponseBody}},
		{"response trailers", []envoysim.Phase{
			envoysim.PhaseResponseHeaders, envoysim.PhaseResponseBody, envoysim.PhaseResponseTrailers,
		}},
		{"all", []envoysim.Phase{envoysim.PhaseRequestBody, envoysim.PhaseRequestTrailers,
			envoysim.PhaseResponseHeaders, envoysim.PhaseResponseBody, envoysim.PhaseResponseTrailers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			res, err := env.driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
				ClusterName: "pacs-a", Authority: "pacs-a.example.test", Phases: tt.phases,
			})
			if err != nil {
				t.Fatalf("RunExtProc: %v", err)
			}

			all := append([]envoysim.Phase{envoysim.PhaseRequestHeaders}, tt.phases...)
			if len(res.Replies) != len(all) {
				t.Fatalf("got %d replies, want %d", len(res.Replies), len(all))
			}
			for i, p := range all {
				if res.Replies[i].GetResponse() == nil {
					t.Errorf("reply to %s is an empty ProcessingResponse", p)
				}
				if !p.Matches(res.Replies[i]) {
					t.Errorf("reply to %s is %T", p, res.Replies[i].GetResponse())
				}
			}
			if got := res.Upstream.Values("authorization"); len(got) != 1 {
				t.Errorf("upstream authorization = %q, want one value", got)
			}
			if end := env.driver.NextHandlerEnd(t); end.Err != nil {
				t.Errorf("stream handler returned %v, want nil", end.Err)
			}
		})
	}
}

func TestExtProcStreamEnd(t *testing.T) {
	tests := []struct {
		name     string
		end      envoysim.StreamEnd
		wantRecv codes.Code
	}{
		{"close send", envoysim.EndCloseSend, codes.OK},
		{"cancel", envoysim.EndCancel, codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			_, err := env.driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
				ClusterName: "pacs-a", Authority: "pacs-a.example.test",
				Phases: []envoysim.Phase{envoysim.PhaseResponseHeaders}, End: tt.end,
			})
			if err != nil {
				t.Fatalf("RunExtProc: %v", err)
			}

			end := env.driver.NextHandlerEnd(t)
			if end.Err != nil {
				t.Errorf("stream handler returned %v, want nil", end.Err)
			}
			if tt.end == envoysim.EndCloseSend && !errors.Is(end.RecvErr, io.EOF) {
				t.Errorf("server's last Recv error = %v, want io.EOF", end.RecvErr)
			}
			if tt.end == envoysim.EndCancel && status.Code(end.RecvErr) != codes.Canceled {
				t.Errorf("server's last Recv error = %v, want code %v", end.RecvErr, codes.Canceled)
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
			res, err := env.driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
				ClusterName: "pacs-b", AttributesKey: tt.attributesKey,
				Authority: "pacs-a.example.test",
			})
			if err != nil {
				t.Fatalf("RunExtProc: %v", err)
			}

			checkHeader(t, "upstream", res.Upstream, "authorization", "Bearer test-token-b")
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

			req := envoysim.ProxiedRequest{Authority: tt.authority}
			res, err := env.driver.RunExtProc(context.Background(), req)
			if err != nil {
				t.Fatalf("RunExtProc: %v", err)
			}

			checkHeader(t, "upstream", res.Upstream, "authorization", tt.want)
			sent := res.Sent[0].GetRequestHeaders().GetHeaders()
			if got := headerValue(sent, "host"); got != "" {
				t.Errorf("request_headers has host %q, want none: Envoy sends :authority", got)
			}
			if attrs := res.Sent[0].GetAttributes(); len(attrs) != 0 {
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

			res, err := env.driver.RunExtProc(context.Background(),
				envoysim.ProxiedRequest{ClusterName: tt.clusterName, Authority: tt.authority})
			if err != nil {
				t.Fatalf("RunExtProc: %v", err)
			}

			if res.Local == nil {
				t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.Upstream)
			}
			if res.Local.Status != 403 {
				t.Errorf("status = %d, want 403", res.Local.Status)
			}
			checkHeader(t, "local reply", res.Local.Headers, "content-type", "application/json")
			body := decodeDenial(t, res.Local.Body)
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
	res, err := env.driver.RunExtProc(context.Background(),
		envoysim.ProxiedRequest{ClusterName: "pacs-z", Authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
	}

	if res.Local == nil {
		t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.Upstream)
	}
	if res.Local.Status != 403 {
		t.Errorf("status = %d, want 403", res.Local.Status)
	}
	if got := env.source.clusters(); len(got) != 0 {
		t.Errorf("source was asked for clusters %q, want none", got)
	}
	checkHeader(t, "local reply", res.Local.Headers, "authorization")
	if strings.Contains(string(res.Local.Body), "test-token") {
		t.Errorf("local reply body %q contains a token", res.Local.Body)
	}
}

func TestExtProcSourceError(t *testing.T) {
	source := &fakeSource{err: errSourceFake}
	env := newGRPCEnv(t, source)

	res, err := env.driver.RunExtProc(context.Background(),
		envoysim.ProxiedRequest{ClusterName: "pacs-a", Authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
	}

	if res.Local == nil {
		t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.Upstream)
	}
	if res.Local.Status != 503 {
		t.Errorf("status = %d, want 503", res.Local.Status)
	}
	checkHeader(t, "local reply", res.Local.Headers, "content-type", "application/json")
	body := decodeDenial(t, res.Local.Body)
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
	res, err := env.driver.RunExtProc(context.Background(),
		envoysim.ProxiedRequest{ClusterName: "pacs-a", Authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
	}

	if res.Local == nil {
		t.Fatalf("request went upstream with headers %v, want an ImmediateResponse", res.Upstream)
	}
	if res.Local.Status != 503 {
		t.Errorf("status = %d, want 503", res.Local.Status)
	}
	if body := decodeDenial(t, res.Local.Body); body.Error != OutcomeUnavailable {
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

			_, err := env.driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
				ClusterName: "pacs-a", Authority: "pacs-a.example.test",
				Phases:         []envoysim.Phase{envoysim.PhaseResponseHeaders, envoysim.PhaseResponseBody},
				UpstreamStatus: tt.upstreamStatus,
			})
			if err != nil {
				t.Fatalf("RunExtProc: %v", err)
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
	driver := envoysim.StartDriver(t, &ExtProc{Decider: decider, Log: log}, nil)

	res, err := driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
		ClusterName: "pacs-a", Authority: "pacs-a.example.test",
		Phases: []envoysim.Phase{envoysim.PhaseResponseHeaders}, UpstreamStatus: 401,
	})
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
	}

	if got := res.Upstream.Values("authorization"); len(got) != 1 {
		t.Errorf("upstream authorization = %q, want one value", got)
	}
}

func TestExtProcLogsNoToken(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})

	_, err := env.driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
		ClusterName: "pacs-a", Authority: "pacs-a.example.test",
		Headers: envoysim.HeaderMap{{Key: "authorization", Value: "Bearer test-client-token"}},
		Phases:  []envoysim.Phase{envoysim.PhaseResponseHeaders}, UpstreamStatus: 401,
	})
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
	}
	env.driver.NextHandlerEnd(t)

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
			res, err := env.driver.RunExtProc(context.Background(),
				envoysim.ProxiedRequest{ClusterName: cluster, Authority: "unrelated.example.test"})
			if err != nil {
				errs <- fmt.Errorf("cluster %s: %w", cluster, err)
				return
			}
			got := res.Upstream.Values("authorization")
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
	driver := envoysim.StartDriver(b, &ExtProc{Decider: decider, Log: log}, nil)
	req := envoysim.ProxiedRequest{ClusterName: "pacs-a", Authority: "pacs-a.example.test"}
	ctx := context.Background()

	b.ReportAllocs()
	for b.Loop() {
		res, err := driver.RunExtProc(ctx, req)
		if err != nil {
			b.Fatalf("RunExtProc: %v", err)
		}
		if got := res.Upstream.Values("authorization"); len(got) != 1 {
			b.Fatalf("upstream authorization = %q, want one value", got)
		}
	}
}
