package envoysim_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
)

// These tests check the driver itself against scripted servers, so that a
// rule the driver enforces is known to fail a server that breaks it.

// scriptedProcessor replies to every ext_proc message with reply, after
// delay.
type scriptedProcessor struct {
	extprocv3.UnimplementedExternalProcessorServer

	reply replyFunc
	delay time.Duration
}

func (s *scriptedProcessor) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		select {
		case <-time.After(s.delay):
		case <-stream.Context().Done():
			return nil
		}
		if err := stream.Send(s.reply(req)); err != nil {
			return nil
		}
	}
}

// replyFunc builds the reply to one ext_proc message.
type replyFunc func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse

// headersReply returns a request_headers reply that sets options.
func headersReply(options ...*corev3.HeaderValueOption) replyFunc {
	return func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: options},
			}},
		}}
	}
}

func rawOption(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: rawHeader(key, value)}
}

func rawHeader(key, value string) *corev3.HeaderValue {
	return &corev3.HeaderValue{Key: key, RawValue: []byte(value)}
}

func TestDriverExtProcRules(t *testing.T) {
	clientBasic := envoysim.HeaderMap{
		{Key: "authorization", Value: "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="},
	}
	tests := []struct {
		name       string
		reply      replyFunc
		delay      time.Duration
		wantStatus int      // status of the *envoysim.Failure, 0 for none
		wantLocal  int      // status of the local reply, 0 when the request goes upstream
		wantAuth   []string // upstream authorization when the request goes upstream
	}{
		{
			name: "wrong type is spurious",
			reply: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				body := &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}
				return &extprocv3.ProcessingResponse{Response: body}
			},
			wantStatus: 500,
		},
		{
			name: "empty reply is spurious",
			reply: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				return &extprocv3.ProcessingResponse{}
			},
			wantStatus: 500,
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
			name:       "newline in value",
			reply:      headersReply(rawOption("authorization", "Bearer test-token-1\r\nx-fake: 1")),
			wantStatus: 500,
		},
		{
			name: "value only arrives empty",
			reply: headersReply(&corev3.HeaderValueOption{Header: &corev3.HeaderValue{
				Key: "authorization", Value: "Bearer test-token-1",
			}}),
			wantAuth: []string{""},
		},
		{
			name:     "unset append overwrites",
			reply:    headersReply(rawOption("authorization", "Bearer test-token-1")),
			wantAuth: []string{"Bearer test-token-1"},
		},
		{
			name: "append true adds",
			reply: headersReply(&corev3.HeaderValueOption{
				Header: rawHeader("authorization", "Bearer test-token-1"),
				Append: wrapperspb.Bool(true),
			}),
			wantAuth: []string{"Basic dGVzdC11c2VyOnRlc3QtcGFzcw==", "Bearer test-token-1"},
		},
		{
			name: "append_action ignored",
			reply: headersReply(&corev3.HeaderValueOption{
				Header:       rawHeader("authorization", "Bearer test-token-1"),
				AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT,
			}),
			wantAuth: []string{"Bearer test-token-1"},
		},
		{
			name: "remove then set",
			reply: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				set := rawOption("authorization", "Bearer test-token-1")
				mutation := &extprocv3.HeaderMutation{
					SetHeaders:    []*corev3.HeaderValueOption{set},
					RemoveHeaders: []string{"authorization"},
				}
				common := &extprocv3.CommonResponse{HeaderMutation: mutation}
				headers := &extprocv3.HeadersResponse{Response: common}
				return &extprocv3.ProcessingResponse{
					Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: headers},
				}
			},
			wantAuth: []string{"Bearer test-token-1"},
		},
		{
			name: "immediate response without status",
			reply: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				immediate := &extprocv3.ImmediateResponse{Body: []byte("fake")}
				return &extprocv3.ProcessingResponse{
					Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: immediate},
				}
			},
			wantLocal: 200,
		},
		{
			name:       "late reply",
			reply:      headersReply(rawOption("authorization", "Bearer test-token-1")),
			delay:      200 * time.Millisecond,
			wantStatus: 504,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			driver := envoysim.StartDriver(t, &scriptedProcessor{reply: tt.reply, delay: tt.delay}, nil)
			driver.MessageTimeout = 50 * time.Millisecond

			res, err := driver.RunExtProc(context.Background(),
				envoysim.ProxiedRequest{Authority: "pacs-a.example.test", Headers: clientBasic})

			if got := envoysim.FailureStatus(err); got != tt.wantStatus {
				t.Fatalf("failure status = %d (error %v), want %d", got, err, tt.wantStatus)
			}
			if tt.wantStatus != 0 {
				return
			}
			if tt.wantLocal != 0 {
				if res.Local == nil {
					t.Fatalf("request went upstream, want a local reply with %d", tt.wantLocal)
				}
				if res.Local.Status != tt.wantLocal {
					t.Errorf("local reply status = %d, want %d", res.Local.Status, tt.wantLocal)
				}
				return
			}
			checkHeader(t, "upstream", res.Upstream, "authorization", tt.wantAuth...)
		})
	}
}

func TestDriverProtectedHeaders(t *testing.T) {
	reply := headersReply(
		rawOption("host", "evil.example.test"),
		rawOption(":authority", "evil.example.test"),
		rawOption("x-envoy-original-path", "/evil"),
	)
	driver := envoysim.StartDriver(t, &scriptedProcessor{reply: reply}, nil)

	req := envoysim.ProxiedRequest{Authority: "pacs-a.example.test"}
	res, err := driver.RunExtProc(context.Background(), req)
	if err != nil {
		t.Fatalf("RunExtProc: %v", err)
	}

	checkHeader(t, "upstream", res.Upstream, ":authority", "pacs-a.example.test")
	if res.Upstream.Has("host") {
		t.Errorf("host = %q, want none", res.Upstream.Values("host"))
	}
	if got := res.Upstream.Values("x-envoy-original-path"); len(got) != 0 {
		t.Errorf("x-envoy-original-path = %q, want none", got)
	}
}

// scriptedAuthz returns resp from every Check, or err when set.
type scriptedAuthz struct {
	authv3.UnimplementedAuthorizationServer

	resp *authv3.CheckResponse
	err  error
}

func (s *scriptedAuthz) Check(context.Context, *authv3.CheckRequest) (
	*authv3.CheckResponse, error) {
	return s.resp, s.err
}

func okResponse(ok *authv3.OkHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

func valueOption(key, value string, appendValue *wrapperspb.BoolValue) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: key, Value: value},
		Append: appendValue,
	}
}

func TestDriverExtAuthzRules(t *testing.T) {
	tests := []struct {
		name            string
		resp            *authv3.CheckResponse
		err             error
		unsetAppendAdds bool
		wantStatus      int      // status of the *envoysim.Failure, 0 for none
		wantLocal       int      // status of the denied reply, 0 when allowed
		wantAuth        []string // upstream authorization when allowed
	}{
		{
			name: "append false overwrites",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				valueOption("authorization", "Bearer test-token-1", wrapperspb.Bool(false)),
			}}),
			wantAuth: []string{"Bearer test-token-1"},
		},
		{
			name: "unset append overwrites",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				valueOption("authorization", "Bearer test-token-1", nil),
			}}),
			wantAuth: []string{"Bearer test-token-1"},
		},
		{
			name: "unset append adds in some builds",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				valueOption("authorization", "Bearer test-token-1", nil),
			}}),
			unsetAppendAdds: true,
			wantAuth:        []string{"Basic dGVzdC11c2VyOnRlc3QtcGFzcw==", "Bearer test-token-1"},
		},
		{
			name: "append true joins",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				valueOption("authorization", "Bearer test-token-1", wrapperspb.Bool(true)),
			}}),
			wantAuth: []string{"Basic dGVzdC11c2VyOnRlc3QtcGFzcw==,Bearer test-token-1"},
		},
		{
			name: "raw_value not read",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{{
				Header: rawHeader("authorization", "Bearer test-token-1"),
				Append: wrapperspb.Bool(false),
			}}}),
			wantAuth: []string{""},
		},
		{
			name: "remove after set",
			resp: okResponse(&authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					valueOption("authorization", "Bearer test-token-1", wrapperspb.Bool(false)),
				},
				HeadersToRemove: []string{"authorization"},
			}),
			wantAuth: nil,
		},
		{
			name: "denied without status",
			resp: &authv3.CheckResponse{
				Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{
					DeniedResponse: &authv3.DeniedHttpResponse{},
				},
			},
			wantLocal: 403,
		},
		{
			name:       "grpc error",
			err:        status.Error(codes.Internal, "scripted failure"),
			wantStatus: 403,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			driver := envoysim.StartDriver(t, nil, &scriptedAuthz{resp: tt.resp, err: tt.err})
			driver.AuthzUnsetAppendAdds = tt.unsetAppendAdds

			res, err := driver.Check(context.Background(), envoysim.AuthzRequest{
				Authority: "pacs-a.example.test",
				Headers: envoysim.HeaderMap{
					{Key: "authorization", Value: "Basic dGVzdC11c2VyOnRlc3QtcGFzcw=="},
				},
			})

			if got := envoysim.FailureStatus(err); got != tt.wantStatus {
				t.Fatalf("failure status = %d (error %v), want %d", got, err, tt.wantStatus)
			}
			if tt.wantStatus != 0 {
				return
			}
			if tt.wantLocal != 0 {
				if res.Local == nil {
					t.Fatalf("request went upstream, want a local reply with %d", tt.wantLocal)
				}
				if res.Local.Status != tt.wantLocal {
					t.Errorf("local reply status = %d, want %d", res.Local.Status, tt.wantLocal)
				}
				return
			}
			checkHeader(t, "upstream", res.Upstream, "authorization", tt.wantAuth...)
		})
	}
}

func TestDialRejectsRemoteHost(t *testing.T) {
	tests := []string{"pacs.example.test:9001", "192.0.2.1:9001", "127.0.0.1", ""}
	for _, target := range tests {
		t.Run(target, func(t *testing.T) {
			driver, err := envoysim.Dial(target)
			if err == nil {
				_ = driver.Close()
				t.Errorf("Dial(%q) returned no error", target)
			}
		})
	}
}
