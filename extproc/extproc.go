package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// attributesKey is the key under which Envoy 1.30 and later send the
// request attributes that the ext_proc filter's request_attributes lists.
const attributesKey = "envoy.filters.http.ext_proc"

// clusterAttribute is the Envoy attribute with the upstream cluster's name.
const clusterAttribute = "xds.cluster_name"

// Invalidator is notified when the upstream returned 401 to a request that
// carried the given Authorization header, so that the token is replaced. It
// reports whether the header held the cluster's current token.
type Invalidator interface {
	InvalidateHeader(cluster, header string) bool
}

// ExtProc implements envoy.service.ext_proc.v3.ExternalProcessor for the
// filter in headers-only mode. It replies to every message with a response of
// the same phase, so it also works when the filter sends phases it did not
// request.
type ExtProc struct {
	extprocv3.UnimplementedExternalProcessorServer

	Decider *Decider
	// Invalidator, when set, is notified of upstream 401 responses. The filter must
	// send response headers (response_header_mode: SEND) for this.
	Invalidator Invalidator
	Log         *slog.Logger
}

// streamState is the state one stream keeps between its messages.
type streamState struct {
	cluster string
	header  string
}

// Process handles one ext_proc stream, which carries one HTTP request.
func (s *ExtProc) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := stream.Context()
	var state streamState

	for {
		req, err := stream.Recv()
		if err != nil {
			if isNormalClose(err) {
				return nil
			}
			s.log().Warn("ext_proc stream failed", "error", err)
			return err
		}

		resp, err := s.respond(ctx, &state, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			if isNormalClose(err) {
				return nil
			}
			return err
		}
	}
}

// isNormalClose reports whether a stream error is Envoy ending the stream:
// io.EOF, or codes.Canceled, which Envoy sends when it resets the stream
// after the request completes.
func isNormalClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}

func (s *ExtProc) respond(ctx context.Context, state *streamState,
	req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return s.requestHeaders(ctx, state, req, r.RequestHeaders), nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		s.responseHeaders(state, r.ResponseHeaders)
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{},
		}}, nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: &extprocv3.BodyResponse{},
		}}, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocv3.BodyResponse{},
		}}, nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{},
		}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{},
		}}, nil
	default:
		return nil, status.Errorf(codes.InvalidArgument,
			"ext_proc message of type %T is not supported", req.Request)
	}
}

func (s *ExtProc) requestHeaders(ctx context.Context, state *streamState,
	req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	named := clusterFromAttributes(req)
	authority := headerValue(h.GetHeaders(), ":authority")
	ctx = s.Decider.WithTraceContext(ctx, headerCarrier{h.GetHeaders()})

	dec := s.Decider.Decide(ctx, APIExtProc, named, authority)
	if dec.Outcome != OutcomeAllowed {
		return immediateResponse(dec)
	}

	state.cluster = dec.Cluster
	state.header = dec.Header
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				// Envoy 1.27 and later read raw_value only, and reject a header
				// with both value and raw_value. Append stays unset so that the
				// header replaces one the client sent; ext_proc ignores
				// append_action.
				{Header: &corev3.HeaderValue{Key: "authorization", RawValue: []byte(dec.Header)}},
			}},
		}},
	}}
}

// responseHeaders marks the stream's token as rejected when the upstream
// returned 401.
func (s *ExtProc) responseHeaders(state *streamState, h *extprocv3.HttpHeaders) {
	if s.Invalidator == nil || state.header == "" {
		return
	}
	code, err := strconv.Atoi(headerValue(h.GetHeaders(), ":status"))
	if err != nil || code != 401 {
		return
	}
	s.Invalidator.InvalidateHeader(state.cluster, state.header)
}

func immediateResponse(dec *Decision) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(dec.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte("application/json")}},
			}},
			Body:    dec.Body(),
			Details: "dicomweb_oauth_" + dec.Outcome,
		},
	}}
}

// clusterFromAttributes returns the xds.cluster_name attribute, looked up
// under the ext_proc filter's key first and then under any other key.
func clusterFromAttributes(req *extprocv3.ProcessingRequest) string {
	attrs := req.GetAttributes()
	if v := attrs[attributesKey].GetFields()[clusterAttribute].GetStringValue(); v != "" {
		return v
	}
	for _, st := range attrs {
		if v := st.GetFields()[clusterAttribute].GetStringValue(); v != "" {
			return v
		}
	}
	return ""
}

// headerValue returns a header's value from raw_value, which Envoy 1.27 and
// later set, or from value, which older versions set. Keys are lower case in
// Envoy's header maps.
func headerValue(m *corev3.HeaderMap, key string) string {
	for _, h := range m.GetHeaders() {
		if !strings.EqualFold(h.GetKey(), key) {
			continue
		}
		if len(h.GetRawValue()) > 0 {
			return string(h.GetRawValue())
		}
		return h.GetValue()
	}
	return ""
}

func (s *ExtProc) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// headerCarrier reads trace context headers from an Envoy header map.
type headerCarrier struct {
	m *corev3.HeaderMap
}

func (c headerCarrier) Get(key string) string { return headerValue(c.m, key) }
func (c headerCarrier) Set(string, string)    {}
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c.m.GetHeaders()))
	for _, h := range c.m.GetHeaders() {
		keys = append(keys, h.GetKey())
	}
	return keys
}
