package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// envoyDriver plays Envoy's part towards the ext_proc and ext_authz servers
// over a real gRPC connection on 127.0.0.1. It is not Envoy: it has no HTTP
// codec, no filter chain, no routing or route cache, and no retries.
//
// For ext_proc it models the stream state machine of the HTTP filter in
// headers-only mode. Each simulated HTTP request opens one Process stream
// and sends request_headers first, with every value in raw_value only, as
// Envoy 1.27 and later do. The HTTP/1.1 Host header arrives as :authority
// only, never as host. Further phases (request body and trailers, response
// headers, body and trailers) can follow even where the processing_mode skips
// them, so that the server's reply to each phase is checked too. Each reply
// is checked the way Envoy checks it:
//   - a reply that is not of the phase's type, or has no type at all, is a
//     spurious message, which Envoy 1.35 and later turn into a 500;
//   - a HeaderValue with both value and raw_value is an invalid mutation, and
//     so is a key or value with NUL, CR or LF, which Envoy turns into a 500;
//   - a set header is read from raw_value only, so a header sent in value
//     alone reaches the upstream empty;
//   - append true adds one more value, unset or false overwrites, and
//     append_action is never read, because released ext_proc filters ignore
//     it;
//   - host, :authority, :scheme, :method and x-envoy-* headers are not set,
//     under the default HeaderMutationRules;
//   - pseudo-headers, host and x-envoy-* headers are not removed, and
//     removals are applied before sets;
//   - an ImmediateResponse status below 200 becomes 200;
//   - a reply later than messageTimeout (message_timeout, 200 ms by default)
//     fails the request the way failure_mode_allow: false does, as a 504.
//
// The stream ends the way Envoy ends it: CloseSend after the last message,
// or, with endCancel, a reset that the server's Recv returns as
// codes.Canceled.
//
// For ext_authz it sends one CheckRequest per request, with lower-case header
// keys, the values of a repeated header joined by ",", and the cluster in
// context_extensions. It applies OkHttpResponse.headers as the ext_authz
// filter does: it reads value and never raw_value, append true joins the new
// value to the existing one with ",", unset or false overwrites, and
// headers_to_remove is applied after the headers are set. A failed or late
// Check call fails the request with 403, as Envoy does unless
// status_on_error is set.
//
// Not modelled: body buffering and streaming modes, mode_override,
// failure_mode_allow: true, header count and size limits, per-route
// configuration, allowed_headers filtering, and the gRPC stream errors that
// Envoy's own side can raise.
type envoyDriver struct {
	extProc extprocv3.ExternalProcessorClient
	authz   authv3.AuthorizationClient

	// messageTimeout bounds the wait for each ext_proc reply and for each
	// Check call. It is the ext_proc filter's message_timeout and the
	// ext_authz gRPC service timeout, both 200 ms by default.
	messageTimeout time.Duration

	// authzUnsetAppendAdds makes an ext_authz header without append add one
	// more value, as the ext_authz gRPC client at envoyproxy/envoy commit
	// 0532e02 does by reading the unset append_action as
	// APPEND_IF_EXISTS_OR_ADD. The documented behaviour, false, overwrites.
	authzUnsetAppendAdds bool

	// handlerEnds receives how each ext_proc stream handler on the server
	// ended, when there is room in its buffer.
	handlerEnds chan handlerEnd
}

// handlerEnd is how one server-side stream handler ended.
type handlerEnd struct {
	// err is the handler's return value.
	err error
	// recvErr is the error of the handler's last Recv, such as io.EOF after
	// CloseSend or codes.Canceled after a reset.
	recvErr error
}

// recordingStream remembers the error of the last RecvMsg.
type recordingStream struct {
	grpc.ServerStream
	recvErr error
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err != nil {
		s.recvErr = err
	}
	return err
}

// defaultMessageTimeout is the default of Envoy's ext_proc message_timeout
// and ext_authz gRPC timeout.
const defaultMessageTimeout = 200 * time.Millisecond

// startEnvoyDriver serves extProc and authz (either may be nil) on a gRPC
// server at 127.0.0.1 with a port picked at run time, and returns a driver
// connected to it. The server and the connection are closed in t.Cleanup.
func startEnvoyDriver(tb testing.TB, extProc extprocv3.ExternalProcessorServer,
	authz authv3.AuthorizationServer) *envoyDriver {
	tb.Helper()

	handlerEnds := make(chan handlerEnd, 16)
	record := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
		handler grpc.StreamHandler) error {
		recording := &recordingStream{ServerStream: ss}
		err := handler(srv, recording)
		select {
		case handlerEnds <- handlerEnd{err: err, recvErr: recording.recvErr}:
		default:
		}
		return err
	}
	server := grpc.NewServer(grpc.StreamInterceptor(record))
	if extProc != nil {
		extprocv3.RegisterExternalProcessorServer(server, extProc)
	}
	if authz != nil {
		authv3.RegisterAuthorizationServer(server, authz)
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on 127.0.0.1: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	tb.Cleanup(func() {
		server.Stop()
		if err := <-served; err != nil {
			tb.Errorf("gRPC server stopped with error: %v", err)
		}
	})

	conn, err := grpc.NewClient(listener.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("gRPC client for %s: %v", listener.Addr(), err)
	}
	tb.Cleanup(func() { _ = conn.Close() })

	return &envoyDriver{
		extProc:        extprocv3.NewExternalProcessorClient(conn),
		authz:          authv3.NewAuthorizationClient(conn),
		messageTimeout: defaultMessageTimeout,
		handlerEnds:    handlerEnds,
	}
}

// nextHandlerEnd waits for the next ext_proc stream handler to return. The
// 5 s wait only guards against a hang.
func (d *envoyDriver) nextHandlerEnd(tb testing.TB) handlerEnd {
	tb.Helper()
	select {
	case end := <-d.handlerEnds:
		return end
	case <-time.After(5 * time.Second):
		tb.Fatal("the ext_proc stream handler did not return within 5 s after the stream ended")
		return handlerEnd{}
	}
}

// envoyFailure is a request that Envoy fails itself with a local reply,
// because the external service broke a rule or was too late.
type envoyFailure struct {
	// status is the HTTP status of Envoy's local reply.
	status int
	reason string
}

func (f *envoyFailure) Error() string {
	return fmt.Sprintf("envoy fails the request with %d: %s", f.status, f.reason)
}

// failureStatus returns the status of the envoyFailure in err, or 0.
func failureStatus(err error) int {
	var f *envoyFailure
	if errors.As(err, &f) {
		return f.status
	}
	return 0
}

// headerField is one header entry. Keys are lower case, as in Envoy's
// header maps.
type headerField struct {
	key, value string
}

// headerMap is an ordered header map that may hold a key more than once.
type headerMap []headerField

// values returns every value of key, in order.
func (m headerMap) values(key string) []string {
	var out []string
	for _, f := range m {
		if f.key == key {
			out = append(out, f.value)
		}
	}
	return out
}

func (m headerMap) has(key string) bool {
	return len(m.values(key)) > 0
}

// set replaces every value of key with one value, like Envoy's setCopy.
func (m *headerMap) set(key, value string) {
	m.remove(key)
	m.add(key, value)
}

// add appends one more entry for key, like Envoy's addCopy.
func (m *headerMap) add(key, value string) {
	*m = append(*m, headerField{key, value})
}

// join appends value to the first entry of key with ",", or adds the key
// when it is absent, like Envoy's appendCopy.
func (m *headerMap) join(key, value string) {
	for i, f := range *m {
		if f.key == key {
			(*m)[i].value = f.value + "," + value
			return
		}
	}
	m.add(key, value)
}

func (m *headerMap) remove(key string) {
	remaining := (*m)[:0]
	for _, f := range *m {
		if f.key != key {
			remaining = append(remaining, f)
		}
	}
	*m = remaining
}

func (m headerMap) clone() headerMap {
	return append(headerMap(nil), m...)
}

// rawProto returns m with every value in raw_value only, as Envoy 1.27 and
// later send headers to ext_proc.
func (m headerMap) rawProto() *corev3.HeaderMap {
	out := &corev3.HeaderMap{}
	for _, f := range m {
		header := &corev3.HeaderValue{Key: f.key, RawValue: []byte(f.value)}
		out.Headers = append(out.Headers, header)
	}
	return out
}

// phase is one ext_proc message that Envoy sends for an HTTP request.
type phase int

const (
	phaseRequestHeaders phase = iota
	phaseRequestBody
	phaseRequestTrailers
	phaseResponseHeaders
	phaseResponseBody
	phaseResponseTrailers
)

func (p phase) String() string {
	return [...]string{"request_headers", "request_body", "request_trailers",
		"response_headers", "response_body", "response_trailers"}[p]
}

// matches reports whether a reply is of the type Envoy expects for p.
func (p phase) matches(resp *extprocv3.ProcessingResponse) bool {
	switch resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return p == phaseRequestHeaders
	case *extprocv3.ProcessingResponse_RequestBody:
		return p == phaseRequestBody
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return p == phaseRequestTrailers
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return p == phaseResponseHeaders
	case *extprocv3.ProcessingResponse_ResponseBody:
		return p == phaseResponseBody
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return p == phaseResponseTrailers
	default:
		return false
	}
}

// streamEnd is how the driver ends an ext_proc stream.
type streamEnd int

const (
	// endCloseSend half-closes the stream and waits for the server to end it.
	endCloseSend streamEnd = iota
	// endCancel resets the stream, so the server's Recv returns codes.Canceled.
	endCancel
)

// proxiedRequest is the HTTP request that the driver sends through ext_proc.
type proxiedRequest struct {
	// clusterName is sent as the xds.cluster_name attribute under
	// envoy.filters.http.ext_proc; empty sends no attributes.
	clusterName string
	// attributesKey overrides the key the attribute is sent under.
	attributesKey string
	authority     string
	method        string // GET when empty
	path          string // /dicom-web/studies when empty
	// headers are further client headers, such as authorization.
	headers headerMap
	// phases are sent after request_headers when the request goes on.
	phases []phase
	// upstreamStatus is the :status of the response_headers phase, 200
	// when zero.
	upstreamStatus int
	end            streamEnd
}

// localReply is a response that Envoy sends downstream itself.
type localReply struct {
	status  int
	headers headerMap
	body    []byte
}

// extProcResult is what Envoy does with a request after talking to ext_proc.
type extProcResult struct {
	// upstream is the request header map the upstream receives; nil when
	// Envoy sent a local reply instead.
	upstream headerMap
	// downstream is the response header map after the response_headers
	// mutation; nil when that phase was not sent.
	downstream headerMap
	// local is the ImmediateResponse as Envoy sends it; nil when the request
	// went upstream.
	local *localReply
	// sent and replies are the messages on the wire, in order.
	sent    []*extprocv3.ProcessingRequest
	replies []*extprocv3.ProcessingResponse
}

// runExtProc sends one HTTP request through an ext_proc stream and returns
// the result. The error is an *envoyFailure when Envoy would fail the
// request, or another error when the stream itself broke.
func (d *envoyDriver) runExtProc(ctx context.Context, req proxiedRequest) (*extProcResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stream, err := d.extProc.Process(ctx)
	if err != nil {
		return nil, fmt.Errorf("open ext_proc stream: %w", err)
	}

	res := &extProcResult{upstream: req.requestHeaderMap()}
	phases := append([]phase{phaseRequestHeaders}, req.phases...)
	for i, p := range phases {
		msg := req.message(p, i == len(phases)-1)
		if i == 0 {
			msg.Attributes = req.attributes()
		}
		if err := stream.Send(msg); err != nil {
			return res, fmt.Errorf("send %s: %w", p, err)
		}
		res.sent = append(res.sent, msg)

		reply, err := d.awaitReply(stream, cancel)
		if err != nil {
			return res, fmt.Errorf("%s: %w", p, err)
		}
		res.replies = append(res.replies, reply)

		if ir, ok := reply.GetResponse().(*extprocv3.ProcessingResponse_ImmediateResponse); ok {
			res.upstream = nil
			res.local, err = localReplyFrom(ir.ImmediateResponse)
			if err != nil {
				return res, err
			}
			return res, d.endStream(stream, cancel, req.end)
		}
		if !p.matches(reply) {
			return res, &envoyFailure{status: 500, reason: fmt.Sprintf(
				"spurious message: reply %T to %s", reply.GetResponse(), p)}
		}
		if err := res.apply(p, reply); err != nil {
			return res, err
		}
	}
	return res, d.endStream(stream, cancel, req.end)
}

// awaitReply receives one message, and fails like Envoy when it arrives
// after messageTimeout. Envoy then resets the stream, so cancel is called.
func (d *envoyDriver) awaitReply(stream extprocv3.ExternalProcessor_ProcessClient,
	cancel context.CancelFunc) (*extprocv3.ProcessingResponse, error) {
	type received struct {
		resp *extprocv3.ProcessingResponse
		err  error
	}
	done := make(chan received, 1)
	go func() {
		resp, err := stream.Recv()
		done <- received{resp, err}
	}()

	timer := time.NewTimer(d.messageTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("receive reply: %w", r.err)
		}
		return r.resp, nil
	case <-timer.C:
		cancel()
		<-done
		return nil, &envoyFailure{status: 504,
			reason: fmt.Sprintf("no reply within message_timeout %v", d.messageTimeout)}
	}
}

// endStream ends the stream after the last reply.
func (d *envoyDriver) endStream(stream extprocv3.ExternalProcessor_ProcessClient,
	cancel context.CancelFunc, end streamEnd) error {
	if end == endCancel {
		cancel()
		return nil
	}

	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("close send: %w", err)
	}
	extra, err := d.awaitReply(stream, cancel)
	if err == nil {
		return fmt.Errorf("server sent %T after the last reply", extra.GetResponse())
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("stream end: %w", err)
}

// apply applies a reply of the phase's type to the result.
func (res *extProcResult) apply(p phase, reply *extprocv3.ProcessingResponse) error {
	switch p {
	case phaseRequestHeaders:
		return applyExtProcMutation(&res.upstream,
			reply.GetRequestHeaders().GetResponse().GetHeaderMutation())
	case phaseResponseHeaders:
		sent := res.sent[len(res.sent)-1].GetResponseHeaders().GetHeaders()
		res.downstream = nil
		for _, h := range sent.GetHeaders() {
			res.downstream.add(h.GetKey(), string(h.GetRawValue()))
		}
		return applyExtProcMutation(&res.downstream,
			reply.GetResponseHeaders().GetResponse().GetHeaderMutation())
	}

	// The other phases' mutations are checked on a scratch map.
	var mutation *extprocv3.HeaderMutation
	switch p {
	case phaseRequestBody:
		mutation = reply.GetRequestBody().GetResponse().GetHeaderMutation()
	case phaseResponseBody:
		mutation = reply.GetResponseBody().GetResponse().GetHeaderMutation()
	case phaseRequestTrailers:
		mutation = reply.GetRequestTrailers().GetHeaderMutation()
	case phaseResponseTrailers:
		mutation = reply.GetResponseTrailers().GetHeaderMutation()
	}
	var scratch headerMap
	return applyExtProcMutation(&scratch, mutation)
}

// applyExtProcMutation applies an ext_proc HeaderMutation to m the way
// Envoy's ext_proc filter does.
func applyExtProcMutation(m *headerMap, mut *extprocv3.HeaderMutation) error {
	for _, key := range mut.GetRemoveHeaders() {
		key = strings.ToLower(key)
		if strings.HasPrefix(key, ":") || key == "host" || strings.HasPrefix(key, "x-envoy") {
			continue
		}
		m.remove(key)
	}

	for _, opt := range mut.GetSetHeaders() {
		h := opt.GetHeader()
		if h == nil {
			continue
		}
		if h.GetValue() != "" && len(h.GetRawValue()) > 0 {
			return &envoyFailure{status: 500, reason: fmt.Sprintf(
				"header %q has both value and raw_value", h.GetKey())}
		}
		// Envoy reads raw_value only, so a value-only header arrives empty.
		value := string(h.GetRawValue())
		key := strings.ToLower(h.GetKey())
		if key == "" || strings.ContainsAny(key+value, "\x00\r\n") {
			return &envoyFailure{status: 500, reason: fmt.Sprintf(
				"header %q has an invalid character", h.GetKey())}
		}
		if !settableByExtProc(key) {
			continue
		}
		// append_action is deliberately not read.
		if opt.GetAppend().GetValue() {
			m.add(key, value)
		} else {
			m.set(key, value)
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

func localReplyFrom(ir *extprocv3.ImmediateResponse) (*localReply, error) {
	local := &localReply{status: int(ir.GetStatus().GetCode()), body: ir.GetBody()}
	if local.status < 200 {
		local.status = 200
	}
	if err := applyExtProcMutation(&local.headers, ir.GetHeaders()); err != nil {
		return nil, err
	}
	return local, nil
}

// requestHeaderMap returns the request's headers as Envoy's HTTP/1.1 codec
// hands them to the filter chain: Host as :authority, no host key.
func (req proxiedRequest) requestHeaderMap() headerMap {
	method := req.method
	if method == "" {
		method = "GET"
	}
	path := req.path
	if path == "" {
		path = "/dicom-web/studies"
	}
	m := headerMap{
		{":authority", req.authority},
		{":path", path},
		{":method", method},
		{":scheme", "http"},
		{"accept", "application/dicom+json"},
		{"x-request-id", "00000000-0000-4000-8000-000000000001"},
	}
	for _, f := range req.headers {
		m.add(strings.ToLower(f.key), f.value)
	}
	return m
}

// message returns the ProcessingRequest for a phase; last marks the final
// message of the request, which carries end_of_stream.
func (req proxiedRequest) message(p phase, last bool) *extprocv3.ProcessingRequest {
	switch p {
	case phaseRequestHeaders:
		endOfStream := true
		for _, later := range req.phases {
			if later == phaseRequestBody || later == phaseRequestTrailers {
				endOfStream = false
			}
		}
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{
				Headers: req.requestHeaderMap().rawProto(), EndOfStream: endOfStream,
			},
		}}
	case phaseRequestBody:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: []byte("--fake-body--"), EndOfStream: true},
		}}
	case phaseRequestTrailers:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
			RequestTrailers: &extprocv3.HttpTrailers{
				Trailers: headerMap{{"x-fake-trailer", "1"}}.rawProto(),
			},
		}}
	case phaseResponseHeaders:
		code := req.upstreamStatus
		if code == 0 {
			code = 200
		}
		headers := headerMap{
			{":status", strconv.Itoa(code)},
			{"content-type", "application/dicom+json"},
		}
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers.rawProto(), EndOfStream: last},
		}}
	case phaseResponseBody:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte("[]"), EndOfStream: true},
		}}
	default:
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
			ResponseTrailers: &extprocv3.HttpTrailers{
				Trailers: headerMap{{"grpc-status", "0"}}.rawProto(),
			},
		}}
	}
}

// attributes returns the request_attributes for the request_headers
// message, or nil without a cluster name.
func (req proxiedRequest) attributes() map[string]*structpb.Struct {
	if req.clusterName == "" {
		return nil
	}
	key := req.attributesKey
	if key == "" {
		key = "envoy.filters.http.ext_proc"
	}
	return map[string]*structpb.Struct{key: {Fields: map[string]*structpb.Value{
		"xds.cluster_name": structpb.NewStringValue(req.clusterName),
	}}}
}

// authzRequest is the HTTP request that the driver checks through
// ext_authz.
type authzRequest struct {
	// cluster is sent as context_extensions["cluster"]; empty sends none.
	cluster   string
	authority string
	// headers are further client headers; a key may repeat.
	headers headerMap
}

// authzResult is what Envoy does with a request after the Check call.
type authzResult struct {
	// upstream is the request header map the upstream receives; nil when
	// the request was denied.
	upstream headerMap
	// local is the denied response as Envoy sends it; nil when allowed.
	local *localReply
	// sent and response are the messages on the wire.
	sent     *authv3.CheckRequest
	response *authv3.CheckResponse
}

// check sends one CheckRequest and applies the response. The error is an
// *envoyFailure when the call failed or took longer than messageTimeout.
func (d *envoyDriver) check(ctx context.Context, req authzRequest) (*authzResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d.messageTimeout)
	defer cancel()

	headers := headerMap{
		{":authority", req.authority},
		{":path", "/dicom-web/studies"},
		{":method", "GET"},
		{":scheme", "http"},
	}
	for _, f := range req.headers {
		headers.add(strings.ToLower(f.key), f.value)
	}
	res := &authzResult{sent: checkRequest(req, headers)}

	resp, err := d.authz.Check(ctx, res.sent)
	if err != nil {
		// failure_mode_allow false: Envoy replies with status_on_error.
		reason := fmt.Sprintf("ext_authz call failed: %v", err)
		return res, &envoyFailure{status: 403, reason: reason}
	}
	res.response = resp

	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		res.local = deniedReply(resp.GetDeniedResponse())
		return res, nil
	}
	res.upstream = headers.clone()
	d.applyOkResponse(&res.upstream, resp.GetOkResponse())
	return res, nil
}

// checkRequest builds the CheckRequest for a request whose header map,
// pseudo-headers included, is headers.
func checkRequest(req authzRequest, headers headerMap) *authv3.CheckRequest {
	joined := map[string]string{}
	for _, f := range headers {
		if v, ok := joined[f.key]; ok {
			joined[f.key] = v + "," + f.value
		} else {
			joined[f.key] = f.value
		}
	}

	var extensions map[string]string
	if req.cluster != "" {
		extensions = map[string]string{"cluster": req.cluster}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       "1",
			Method:   "GET",
			Headers:  joined,
			Path:     "/dicom-web/studies",
			Host:     req.authority,
			Scheme:   "http",
			Protocol: "HTTP/1.1",
		}},
		ContextExtensions: extensions,
	}}
}

// applyOkResponse applies an OkHttpResponse to the upstream request headers
// the way Envoy's ext_authz filter does.
func (d *envoyDriver) applyOkResponse(m *headerMap, ok *authv3.OkHttpResponse) {
	for _, opt := range ok.GetHeaders() {
		key := strings.ToLower(opt.GetHeader().GetKey())
		// ext_authz reads value; raw_value is never read.
		value := opt.GetHeader().GetValue()
		switch {
		case opt.GetAppend() != nil && opt.GetAppend().GetValue():
			m.join(key, value)
		case opt.GetAppend() == nil && d.authzUnsetAppendAdds:
			m.add(key, value)
		default:
			m.set(key, value)
		}
	}
	for _, key := range ok.GetHeadersToRemove() {
		key = strings.ToLower(key)
		if strings.HasPrefix(key, ":") || key == "host" {
			continue
		}
		m.remove(key)
	}
}

// deniedReply returns Envoy's local reply for a denied Check: the denied
// response's status, 403 when unset, and its headers, each set after the
// existing ones are removed.
func deniedReply(denied *authv3.DeniedHttpResponse) *localReply {
	local := &localReply{status: int(denied.GetStatus().GetCode()), body: []byte(denied.GetBody())}
	if local.status == 0 {
		local.status = 403
	}
	for _, opt := range denied.GetHeaders() {
		local.headers.remove(strings.ToLower(opt.GetHeader().GetKey()))
	}
	for _, opt := range denied.GetHeaders() {
		local.headers.add(strings.ToLower(opt.GetHeader().GetKey()), opt.GetHeader().GetValue())
	}
	return local
}
