package envoysim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// DefaultAttributesKey is the key under which Envoy 1.30 and later send the
// ext_proc filter's request_attributes.
const DefaultAttributesKey = "envoy.filters.http.ext_proc"

// clusterAttribute is the Envoy attribute with the upstream cluster's name.
const clusterAttribute = "xds.cluster_name"

// Phase is one ext_proc message that Envoy sends for an HTTP request.
type Phase int

// The phases in the order Envoy sends them.
const (
	PhaseRequestHeaders Phase = iota
	PhaseRequestBody
	PhaseRequestTrailers
	PhaseResponseHeaders
	PhaseResponseBody
	PhaseResponseTrailers
)

func (p Phase) String() string {
	return [...]string{"request_headers", "request_body", "request_trailers",
		"response_headers", "response_body", "response_trailers"}[p]
}

// Matches reports whether a reply is of the type Envoy expects for p.
func (p Phase) Matches(resp *extprocv3.ProcessingResponse) bool {
	switch resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return p == PhaseRequestHeaders
	case *extprocv3.ProcessingResponse_RequestBody:
		return p == PhaseRequestBody
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return p == PhaseRequestTrailers
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return p == PhaseResponseHeaders
	case *extprocv3.ProcessingResponse_ResponseBody:
		return p == PhaseResponseBody
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return p == PhaseResponseTrailers
	default:
		return false
	}
}

// StreamEnd is how the Driver ends an ext_proc stream.
type StreamEnd int

const (
	// EndCloseSend half-closes the stream and waits for the server to end it.
	EndCloseSend StreamEnd = iota
	// EndCancel resets the stream, so the server's Recv returns codes.Canceled.
	EndCancel
)

// ProxiedRequest is the HTTP request that the Driver sends through ext_proc.
type ProxiedRequest struct {
	// ClusterName is sent as the xds.cluster_name attribute under
	// DefaultAttributesKey; empty sends no attributes.
	ClusterName string
	// AttributesKey overrides the key the attribute is sent under.
	AttributesKey string
	Authority     string
	Method        string // GET when empty
	Path          string // /dicom-web/studies when empty
	// Headers are further client headers, such as authorization.
	Headers HeaderMap
	// Phases are sent after request_headers when the request goes on.
	Phases []Phase
	// UpstreamStatus is the :status of the response_headers phase, 200
	// when zero.
	UpstreamStatus int
	End            StreamEnd
}

// LocalReply is a response that Envoy sends downstream itself.
type LocalReply struct {
	Status  int
	Headers HeaderMap
	Body    []byte
}

// ExtProcResult is what Envoy does with a request after talking to ext_proc.
type ExtProcResult struct {
	// Upstream is the request header map the upstream receives; nil when
	// Envoy sent a local reply instead.
	Upstream HeaderMap
	// Downstream is the response header map after the response_headers
	// mutation; nil when that phase was not sent.
	Downstream HeaderMap
	// Local is the ImmediateResponse as Envoy sends it; nil when the request
	// went upstream.
	Local *LocalReply
	// Sent and Replies are the messages on the wire, in order.
	Sent    []*extprocv3.ProcessingRequest
	Replies []*extprocv3.ProcessingResponse
}

// RunExtProc sends one HTTP request through an ext_proc stream and returns
// the result. The error is a *Failure when Envoy would fail the request, or
// another error when the stream itself broke.
func (d *Driver) RunExtProc(ctx context.Context, req ProxiedRequest) (*ExtProcResult, error) {
	stream, err := d.openStream(ctx)
	if err != nil {
		return nil, err
	}
	defer stream.cancel()

	res := &ExtProcResult{Upstream: req.requestHeaderMap()}
	phases := append([]Phase{PhaseRequestHeaders}, req.Phases...)
	for i, p := range phases {
		msg := req.message(p, i == len(phases)-1)
		if i == 0 {
			msg.Attributes = clusterAttributes(req.AttributesKey, req.ClusterName)
		}
		if err := stream.send(p, msg); err != nil {
			return res, err
		}
		res.Sent = append(res.Sent, msg)

		reply, err := stream.receive(p)
		if err != nil {
			return res, err
		}
		res.Replies = append(res.Replies, reply)

		if ir, ok := reply.GetResponse().(*extprocv3.ProcessingResponse_ImmediateResponse); ok {
			res.Upstream = nil
			res.Local, err = localReplyFrom(ir.ImmediateResponse)
			if err != nil {
				return res, err
			}
			return res, stream.end(req.End)
		}
		if !p.Matches(reply) {
			return res, spurious(p, reply)
		}
		if err := res.apply(p, reply); err != nil {
			return res, err
		}
	}
	return res, stream.end(req.End)
}

// spurious returns the Failure for a reply that is not of p's type.
func spurious(p Phase, reply *extprocv3.ProcessingResponse) *Failure {
	return &Failure{Status: 500, Reason: fmt.Sprintf(
		"spurious message: reply %T to %s", reply.GetResponse(), p)}
}

// extProcStream is one ext_proc stream as the filter drives it.
type extProcStream struct {
	driver *Driver
	client extprocv3.ExternalProcessor_ProcessClient
	// cancel resets the stream. It is safe to call more than once.
	cancel context.CancelFunc
}

// openStream opens a Process stream whose context is derived from ctx.
func (d *Driver) openStream(ctx context.Context) (*extProcStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	client, err := d.ExtProc.Process(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open ext_proc stream: %w", err)
	}
	return &extProcStream{driver: d, client: client, cancel: cancel}, nil
}

// send sends the message of phase p.
func (s *extProcStream) send(p Phase, msg *extprocv3.ProcessingRequest) error {
	if err := s.client.Send(msg); err != nil {
		return fmt.Errorf("send %s: %w", p, err)
	}
	return nil
}

// receive waits for the reply to phase p.
func (s *extProcStream) receive(p Phase) (*extprocv3.ProcessingResponse, error) {
	reply, err := s.awaitReply()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return reply, nil
}

// awaitReply receives one message, and fails like Envoy when it arrives
// after MessageTimeout. Envoy then resets the stream, so cancel is called.
func (s *extProcStream) awaitReply() (*extprocv3.ProcessingResponse, error) {
	type received struct {
		resp *extprocv3.ProcessingResponse
		err  error
	}
	done := make(chan received, 1)
	go func() {
		resp, err := s.client.Recv()
		done <- received{resp, err}
	}()

	timer := time.NewTimer(s.driver.MessageTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("receive reply: %w", r.err)
		}
		return r.resp, nil
	case <-timer.C:
		s.cancel()
		<-done
		return nil, &Failure{Status: 504,
			Reason: fmt.Sprintf("no reply within message_timeout %v", s.driver.MessageTimeout)}
	}
}

// end ends the stream after the last reply.
func (s *extProcStream) end(how StreamEnd) error {
	if how == EndCancel {
		s.cancel()
		return nil
	}

	if err := s.client.CloseSend(); err != nil {
		return fmt.Errorf("close send: %w", err)
	}
	extra, err := s.awaitReply()
	if err == nil {
		return fmt.Errorf("server sent %T after the last reply", extra.GetResponse())
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("stream end: %w", err)
}

// apply applies a reply of the phase's type to the result.
func (res *ExtProcResult) apply(p Phase, reply *extprocv3.ProcessingResponse) error {
	switch p {
	case PhaseRequestHeaders:
		return applyExtProcMutation(&res.Upstream,
			reply.GetRequestHeaders().GetResponse().GetHeaderMutation())
	case PhaseResponseHeaders:
		sent := res.Sent[len(res.Sent)-1].GetResponseHeaders().GetHeaders()
		res.Downstream = nil
		for _, h := range sent.GetHeaders() {
			res.Downstream.Add(h.GetKey(), string(h.GetRawValue()))
		}
		return applyExtProcMutation(&res.Downstream,
			reply.GetResponseHeaders().GetResponse().GetHeaderMutation())
	}

	// The other phases' mutations are checked on a scratch map.
	var mutation *extprocv3.HeaderMutation
	switch p {
	case PhaseRequestBody:
		mutation = reply.GetRequestBody().GetResponse().GetHeaderMutation()
	case PhaseResponseBody:
		mutation = reply.GetResponseBody().GetResponse().GetHeaderMutation()
	case PhaseRequestTrailers:
		mutation = reply.GetRequestTrailers().GetHeaderMutation()
	case PhaseResponseTrailers:
		mutation = reply.GetResponseTrailers().GetHeaderMutation()
	}
	var scratch HeaderMap
	return applyExtProcMutation(&scratch, mutation)
}

// applyExtProcMutation applies an ext_proc HeaderMutation to m the way
// Envoy's ext_proc filter does.
func applyExtProcMutation(m *HeaderMap, mut *extprocv3.HeaderMutation) error {
	for _, key := range mut.GetRemoveHeaders() {
		key = strings.ToLower(key)
		if strings.HasPrefix(key, ":") || key == "host" || strings.HasPrefix(key, "x-envoy") {
			continue
		}
		m.Remove(key)
	}

	for _, opt := range mut.GetSetHeaders() {
		h := opt.GetHeader()
		if h == nil {
			continue
		}
		if h.GetValue() != "" && len(h.GetRawValue()) > 0 {
			return &Failure{Status: 500, Reason: fmt.Sprintf(
				"header %q has both value and raw_value", h.GetKey())}
		}
		// Envoy reads raw_value only, so a value-only header arrives empty.
		value := string(h.GetRawValue())
		key := strings.ToLower(h.GetKey())
		if key == "" || strings.ContainsAny(key+value, "\x00\r\n") {
			return &Failure{Status: 500, Reason: fmt.Sprintf(
				"header %q has an invalid character", h.GetKey())}
		}
		if !settableByExtProc(key) {
			continue
		}
		// append_action is deliberately not read.
		if opt.GetAppend().GetValue() {
			m.Add(key, value)
		} else {
			m.Set(key, value)
		}
	}
	return nil
}

// settableByExtProc reports whether the default HeaderMutationRules let
// ext_proc set a header.
func settableByExtProc(key string) bool {
	switch key {
	case "host", ":authority", ":scheme", ":method":
		return false
	}
	return !strings.HasPrefix(key, "x-envoy")
}

func localReplyFrom(ir *extprocv3.ImmediateResponse) (*LocalReply, error) {
	local := &LocalReply{Status: int(ir.GetStatus().GetCode()), Body: ir.GetBody()}
	if local.Status < 200 {
		local.Status = 200
	}
	if err := applyExtProcMutation(&local.Headers, ir.GetHeaders()); err != nil {
		return nil, err
	}
	return local, nil
}

// requestHeaderMap returns the request's headers as Envoy's HTTP/1.1 codec
// hands them to the filter chain: Host as :authority, no host key.
func (req ProxiedRequest) requestHeaderMap() HeaderMap {
	method := req.Method
	if method == "" {
		method = "GET"
	}
	path := req.Path
	if path == "" {
		path = "/dicom-web/studies"
	}
	m := HeaderMap{
		{":authority", req.Authority},
		{":path", path},
		{":method", method},
		{":scheme", "http"},
		{"accept", "application/dicom+json"},
		{"x-request-id", "00000000-0000-4000-8000-000000000001"},
	}
	for _, f := range req.Headers {
		m.Add(strings.ToLower(f.Key), f.Value)
	}
	return m
}

// message returns the ProcessingRequest for a phase; last marks the final
// message of the request, which carries end_of_stream.
func (req ProxiedRequest) message(p Phase, last bool) *extprocv3.ProcessingRequest {
	switch p {
	case PhaseRequestHeaders:
		endOfStream := true
		for _, later := range req.Phases {
			if later == PhaseRequestBody || later == PhaseRequestTrailers {
				endOfStream = false
			}
		}
		return requestHeadersMessage(req.requestHeaderMap(), endOfStream)
	case PhaseRequestBody:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: []byte("--fake-body--"), EndOfStream: true},
		}}
	case PhaseRequestTrailers:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
			RequestTrailers: &extprocv3.HttpTrailers{
				Trailers: HeaderMap{{"x-fake-trailer", "1"}}.rawProto(),
			},
		}}
	case PhaseResponseHeaders:
		code := req.UpstreamStatus
		if code == 0 {
			code = 200
		}
		headers := HeaderMap{
			{":status", strconv.Itoa(code)},
			{"content-type", "application/dicom+json"},
		}
		return responseHeadersMessage(headers, last)
	case PhaseResponseBody:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte("[]"), EndOfStream: true},
		}}
	default:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
			ResponseTrailers: &extprocv3.HttpTrailers{
				Trailers: HeaderMap{{"grpc-status", "0"}}.rawProto(),
			},
		}}
	}
}

func requestHeadersMessage(headers HeaderMap, endOfStream bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headers.rawProto(), EndOfStream: endOfStream},
	}}
}

func responseHeadersMessage(headers HeaderMap, endOfStream bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers.rawProto(), EndOfStream: endOfStream},
	}}
}

// clusterAttributes returns the request_attributes for the request_headers
// message, or nil without a cluster name. An empty key means
// DefaultAttributesKey.
func clusterAttributes(key, cluster string) map[string]*structpb.Struct {
	if cluster == "" {
		return nil
	}
	if key == "" {
		key = DefaultAttributesKey
	}
	return map[string]*structpb.Struct{key: {Fields: map[string]*structpb.Value{
		clusterAttribute: structpb.NewStringValue(cluster),
	}}}
}
