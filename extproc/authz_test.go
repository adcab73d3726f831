package extproc

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
)

func TestExtAuthzOkResponse(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})

	res, err := env.driver.Check(context.Background(),
		envoysim.AuthzRequest{Cluster: "pacs-a", Authority: "pacs-a.example.test"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}

	if code := codes.Code(res.Response.GetStatus().GetCode()); code != codes.OK {
		t.Errorf("status code = %v, want %v", code, codes.OK)
	}
	ok := res.Response.GetOkResponse()
	if ok == nil {
		t.Fatalf("response %v has no OkHttpResponse", res.Response)
	}
	if len(ok.GetHeaders()) != 1 {
		t.Fatalf("OkHttpResponse sets %d headers, want 1", len(ok.GetHeaders()))
	}
	option := ok.GetHeaders()[0]
	if option.GetHeader().GetKey() != "authorization" {
		t.Errorf("header key = %q, want authorization", option.GetHeader().GetKey())
	}
	if option.GetHeader().GetValue() != "Bearer test-token-a" {
		t.Errorf("value = %q, want %q: ext_authz reads value",
			option.GetHeader().GetValue(), "Bearer test-token-a")
	}
	if len(option.GetHeader().GetRawValue()) != 0 {
		t.Errorf("raw_value = %q, want empty", option.GetHeader().GetRawValue())
	}
	if option.GetAppend() == nil {
		t.Error("append is unset, want explicitly false: some Envoy builds read unset as append")
	} else if option.GetAppend().GetValue() {
		t.Error("append = true, want false")
	}
	if slices.Contains(ok.GetHeadersToRemove(), "authorization") {
		t.Errorf("headers_to_remove = %q, want no authorization: Envoy removes after setting",
			ok.GetHeadersToRemove())
	}
	checkHeader(t, "upstream", res.Upstream, "authorization", "Bearer test-token-a")
}

func TestExtAuthzReplacesClientAuthorization(t *testing.T) {
	basic := "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="
	tests := []struct {
		name            string
		headers         envoysim.HeaderMap
		unsetAppendAdds bool
	}{
		{"none", nil, false},
		{"basic", envoysim.HeaderMap{{Key: "authorization", Value: basic}}, false},
		{"two values", envoysim.HeaderMap{
			{Key: "authorization", Value: basic},
			{Key: "authorization", Value: "Bearer test-client-token"},
		}, false},
		{"basic unset append adds", envoysim.HeaderMap{{Key: "authorization", Value: basic}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})
			env.driver.AuthzUnsetAppendAdds = tt.unsetAppendAdds

			req := envoysim.AuthzRequest{
				Cluster: "pacs-a", Authority: "pacs-a.example.test", Headers: tt.headers,
			}
			res, err := env.driver.Check(context.Background(), req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}

			checkHeader(t, "upstream", res.Upstream, "authorization", "Bearer test-token-a")
		})
	}
}

func TestExtAuthzDenied(t *testing.T) {
	tests := []struct {
		name       string
		source     *fakeSource
		cluster    string
		wantStatus int
		wantCode   codes.Code
		wantError  string
		wantInMsg  string
	}{
		{"unknown cluster", &fakeSource{}, "pacs-z", 403, codes.PermissionDenied,
			OutcomeUnknownCluster, `"pacs-z"`},
		{"source error", &fakeSource{err: errSourceFake}, "pacs-a",
			503, codes.Unavailable, OutcomeUnavailable, "token endpoint returned 500 (fake)"},
		{"slow source", &fakeSource{block: true}, "pacs-a",
			503, codes.Unavailable, OutcomeUnavailable, "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, tt.source)

			// A gRPC error or a reply after the 200 ms timeout would be a
			// *envoysim.Failure here.
			res, err := env.driver.Check(context.Background(),
				envoysim.AuthzRequest{Cluster: tt.cluster, Authority: "pacs-a.example.test"})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}

			if code := codes.Code(res.Response.GetStatus().GetCode()); code != tt.wantCode {
				t.Errorf("status code = %v, want %v", code, tt.wantCode)
			}
			if res.Response.GetDeniedResponse() == nil {
				t.Fatalf("response %v has no DeniedHttpResponse", res.Response)
			}
			if res.Local == nil {
				t.Fatalf("request went upstream with %v, want a denied reply", res.Upstream)
			}
			if res.Local.Status != tt.wantStatus {
				t.Errorf("denied status = %d, want %d", res.Local.Status, tt.wantStatus)
			}
			checkHeader(t, "local reply", res.Local.Headers, "content-type", "application/json")
			body := decodeDenial(t, res.Local.Body)
			if body.Error != tt.wantError {
				t.Errorf("body error = %q, want %q", body.Error, tt.wantError)
			}
			if body.Cluster != tt.cluster {
				t.Errorf("body cluster = %q, want %q", body.Cluster, tt.cluster)
			}
			if !strings.Contains(body.Message, tt.wantInMsg) {
				t.Errorf("body message %q does not contain %s", body.Message, tt.wantInMsg)
			}
		})
	}
}

func TestExtAuthzClusterSelection(t *testing.T) {
	tests := []struct {
		name      string
		cluster   string
		authority string
		want      string
	}{
		{"context extension", "pacs-b", "pacs-a.example.test", "pacs-b"},
		{"host", "", "pacs-a.example.test", "pacs-a"},
		{"host with port", "", "PACS-A.example.test:8080", "pacs-a"},
		{"host port specific", "", "pacs-b.example.test:8443", "pacs-b"},
		{"ipv6 host", "", "[::1]:8443", "pacs-v6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGRPCEnv(t, &fakeSource{})

			res, err := env.driver.Check(context.Background(),
				envoysim.AuthzRequest{Cluster: tt.cluster, Authority: tt.authority})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}

			if got := env.source.clusters(); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("source asked for clusters %q, want [%s]", got, tt.want)
			}
			checkHeader(t, "upstream", res.Upstream, "authorization", testHeaders[tt.want])
		})
	}
}

func TestExtAuthzRepeatedHeader(t *testing.T) {
	env := newGRPCEnv(t, &fakeSource{})
	headers := envoysim.HeaderMap{
		{Key: "accept", Value: "application/dicom+json"},
		{Key: "accept", Value: "multipart/related; type=\"application/dicom\""},
	}

	res, err := env.driver.Check(context.Background(),
		envoysim.AuthzRequest{Authority: "pacs-a.example.test", Headers: headers})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}

	sent := res.Sent.GetAttributes().GetRequest().GetHttp().GetHeaders()["accept"]
	want := "application/dicom+json,multipart/related; type=\"application/dicom\""
	if sent != want {
		t.Errorf("CheckRequest accept = %q, want %q", sent, want)
	}
	checkHeader(t, "upstream", res.Upstream, "authorization", "Bearer test-token-a")
	if got := res.Upstream.Values("accept"); len(got) != 2 {
		t.Errorf("upstream accept = %q, want both client values", got)
	}
}

func TestExtAuthzAuthorityFallback(t *testing.T) {
	source := &fakeSource{}
	server := &ExtAuthz{Decider: newTestDecider(t, source, nil)}
	// The host field is empty; the authority is only in the headers map.
	headers := envoysim.HeaderMap{{Key: ":authority", Value: "pacs-b.example.test:8443"}}
	req := envoysim.NewCheckRequest(envoysim.AuthzRequest{}, headers)

	resp, err := server.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}

	if code := codes.Code(resp.GetStatus().GetCode()); code != codes.OK {
		t.Errorf("status code = %v, want %v from the :authority header", code, codes.OK)
	}
	if got := source.clusters(); !slices.Equal(got, []string{"pacs-b"}) {
		t.Errorf("source asked for clusters %q, want [pacs-b]", got)
	}
}
