package envoysim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// requestState is what the Proxy keeps for one downstream request.
type requestState struct {
	route *Route
	// headers is the request header map for the upstream: after the
	// downstream filter and the route's rewrites, before any upstream filter.
	headers HeaderMap
	// target is the upstream URL for the :path in headers.
	target *url.URL
	// stream is the downstream ext_proc stream while it waits for the
	// response headers, and nil otherwise.
	stream *extProcStream
}

// stateKey is the context key of a request's *requestState.
type stateKey struct{}

func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// resetStream resets the downstream ext_proc stream when it still waits for
// response headers, because the request ended without an upstream response.
//
// NOTE: Envoy would send the router's own local reply, such as the 503 for
// an unreachable upstream, through the response_headers phase. The Proxy
// does not, so the service never receives those replies here.
func (st *requestState) resetStream() {
	if st.stream != nil {
		st.stream.cancel()
		st.stream = nil
	}
}

// ServeHTTP proxies one request the way Envoy does in the configured Mode.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	headers := downstreamHeaders(r)
	route := p.match(headers.first(":path"))
	if route == nil {
		http.Error(w, fmt.Sprintf("no route matches path %q", r.URL.Path), http.StatusNotFound)
		return
	}
	p.counts.requests.Add(1)

	st := &requestState{route: route, headers: headers}
	defer st.resetStream()

	local, err := p.downstreamFilter(r, st)
	if err != nil {
		p.fail(w, route, err)
		return
	}
	if local != nil {
		writeLocalReply(w, local)
		return
	}

	route.rewrite(&st.headers)
	st.target, err = route.target(st.headers)
	if err != nil {
		p.fail(w, route, &Failure{Status: 500, Reason: err.Error()})
		return
	}
	p.reverse.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

func (p *Proxy) match(path string) *Route {
	for i := range p.cfg.Routes {
		if strings.HasPrefix(path, p.cfg.Routes[i].Prefix) {
			return &p.cfg.Routes[i]
		}
	}
	return nil
}

// downstreamFilter runs the Mode's filter in the listener's filter chain.
// It updates st.headers and st.stream, and returns the local reply that the
// service requested, if any.
func (p *Proxy) downstreamFilter(r *http.Request, st *requestState) (*LocalReply, error) {
	switch p.cfg.Mode {
	case ModeExtProc:
		stream, local, err := p.requestPhase(r.Context(), st.route.Cluster, &st.headers,
			r.ContentLength == 0)
		st.stream = stream
		return local, err
	case ModeExtAuthz:
		return p.check(r, st)
	default:
		return nil, nil
	}
}

// check runs the ext_authz filter on st.headers.
func (p *Proxy) check(r *http.Request, st *requestState) (*LocalReply, error) {
	req := AuthzRequest{
		Cluster:   st.route.Cluster,
		Authority: st.headers.first(":authority"),
		Method:    r.Method,
		Path:      st.headers.first(":path"),
	}
	for _, f := range st.headers {
		if !strings.HasPrefix(f.Key, ":") {
			req.Headers = append(req.Headers, f)
		}
	}

	res, err := p.cfg.Driver.Check(r.Context(), req)
	var failure *Failure
	if errors.As(err, &failure) && p.cfg.StatusOnError != 0 {
		return nil, &Failure{Status: p.cfg.StatusOnError, Reason: failure.Reason}
	}
	if err != nil {
		return nil, err
	}
	p.counts.decisions.Add(1)
	if res.Local != nil {
		p.counts.denials.Add(1)
		return res.Local, nil
	}
	st.headers = res.Upstream
	return nil, nil
}

// requestPhase opens an ext_proc stream and runs the request_headers phase
// on headers, which it mutates. It returns the stream when the response
// headers are still to be sent, or the local reply that the service
// requested. In every other case the stream has ended when it returns.
func (p *Proxy) requestPhase(ctx context.Context, cluster string, headers *HeaderMap,
	endOfStream bool) (*extProcStream, *LocalReply, error) {
	stream, err := p.cfg.Driver.openStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	msg := requestHeadersMessage(*headers, endOfStream)
	msg.Attributes = clusterAttributes("", cluster)
	reply, err := sendPhase(stream, PhaseRequestHeaders, msg)
	if err != nil {
		stream.cancel()
		return nil, nil, err
	}
	p.counts.decisions.Add(1)

	if ir := reply.GetImmediateResponse(); ir != nil {
		p.endStream(stream)
		local, err := localReplyFrom(ir)
		if err != nil {
			return nil, nil, err
		}
		p.counts.denials.Add(1)
		return nil, local, nil
	}
	mutation := reply.GetRequestHeaders().GetResponse().GetHeaderMutation()
	if err := applyExtProcMutation(headers, mutation); err != nil {
		stream.cancel()
		return nil, nil, err
	}
	if p.cfg.ResponseHeaderMode == filterv3.ProcessingMode_SKIP {
		p.endStream(stream)
		return nil, nil, nil
	}
	return stream, nil, nil
}

// responsePhase sends the headers of resp on stream and applies the reply
// to resp. It reports whether the service replaced resp with a local reply.
// Its error is a *Failure.
func (p *Proxy) responsePhase(stream *extProcStream, resp *http.Response) (bool, error) {
	headers := responseHeaderMap(resp)
	msg := responseHeadersMessage(headers, resp.ContentLength == 0)
	reply, err := sendPhase(stream, PhaseResponseHeaders, msg)
	if err != nil {
		stream.cancel()
		return false, asFailure(err)
	}
	p.counts.responseHeaders.Add(1)

	if ir := reply.GetImmediateResponse(); ir != nil {
		p.endStream(stream)
		local, err := localReplyFrom(ir)
		if err != nil {
			return false, asFailure(err)
		}
		p.counts.denials.Add(1)
		replaceResponse(resp, local)
		return true, nil
	}
	mutation := reply.GetResponseHeaders().GetResponse().GetHeaderMutation()
	if err := applyExtProcMutation(&headers, mutation); err != nil {
		stream.cancel()
		return false, asFailure(err)
	}
	p.endStream(stream)
	return false, setResponseHeaders(resp, headers)
}

// sendPhase sends the message of phase p and returns the reply, which is
// an ImmediateResponse or of p's type.
func sendPhase(stream *extProcStream, p Phase,
	msg *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if err := stream.send(p, msg); err != nil {
		return nil, err
	}
	reply, err := stream.receive(p)
	if err != nil {
		return nil, err
	}
	if reply.GetImmediateResponse() == nil && !p.Matches(reply) {
		return nil, spurious(p, reply)
	}
	return reply, nil
}

// endStream half-closes a stream after its last reply, as the Driver does,
// and logs a server that does not end it cleanly. The request goes on
// either way.
func (p *Proxy) endStream(stream *extProcStream) {
	if err := stream.end(EndCloseSend); err != nil {
		p.log.Warn("ext_proc stream did not end cleanly", "error", err)
	}
	stream.cancel()
}

// asFailure returns err as the Failure of Envoy's local reply. Any error
// other than a *Failure is an ext_proc stream that could not be opened or
// broke, and Envoy replies to it with 500 under failure_mode_allow: false.
func asFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return &Failure{Status: 500, Reason: err.Error()}
}

// fail sends the client the local reply with which Envoy fails a request
// under failure_mode_allow: false.
func (p *Proxy) fail(w http.ResponseWriter, route *Route, err error) {
	f := asFailure(err)
	p.counts.failures.Add(1)
	p.log.Warn("proxy failed the request", "mode", p.cfg.Mode, "cluster", route.Cluster,
		"status", f.Status, "error", err)
	http.Error(w, f.Reason, f.Status)
}

// rewrite is the ReverseProxy's Rewrite: it builds the upstream request
// from the request state.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	setUpstreamRequest(pr.Out, st.target, st.headers)
}

// modifyResponse runs the downstream ext_proc filter's response_headers
// phase.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	if st == nil || st.stream == nil {
		return nil
	}
	stream := st.stream
	st.stream = nil
	_, err := p.responsePhase(stream, resp)
	return err
}

// handleError is the ReverseProxy's ErrorHandler. A *Failure comes from a
// filter; any other error means that the upstream could not be reached.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	var f *Failure
	if errors.As(err, &f) {
		p.fail(w, st.route, f)
		return
	}
	p.counts.upstreamFailures.Add(1)
	p.log.Warn("upstream request failed", "cluster", st.route.Cluster,
		"upstream", st.route.Upstream, "error", err)
	http.Error(w, "upstream request failed: "+err.Error(), http.StatusServiceUnavailable)
}

// upstreamTransport makes the upstream attempts of one request, and runs
// the ext_proc filter on each of them in ModeExtProcUpstream.
type upstreamTransport struct {
	p *Proxy
}

func (t upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.p
	st := stateFrom(req.Context())
	resp, local, err := p.attempt(req, st)
	if !p.retriable(req, resp, local, err) {
		return resp, err
	}

	if resp != nil {
		drain(resp.Body)
	}
	p.counts.retries.Add(1)
	p.log.Debug("retrying upstream request", "cluster", st.route.Cluster, "error", err)
	resp, _, err = p.attempt(req, st)
	return resp, err
}

// attempt makes one upstream attempt. It reports whether resp is a local
// reply of the upstream ext_proc filter.
func (p *Proxy) attempt(req *http.Request, st *requestState) (*http.Response, bool, error) {
	out := req.Clone(req.Context())
	var stream *extProcStream
	if p.cfg.Mode == ModeExtProcUpstream {
		s, local, err := p.upstreamFilter(out, st)
		if err != nil {
			return nil, false, asFailure(err)
		}
		if local != nil {
			return localResponse(req, local), true, nil
		}
		stream = s
	}

	p.counts.attempts.Add(1)
	resp, err := p.transport.RoundTrip(out)
	if stream == nil {
		return resp, false, err
	}
	if err != nil {
		stream.cancel()
		return nil, false, err
	}
	replaced, err := p.responsePhase(stream, resp)
	if err != nil {
		_ = resp.Body.Close()
		return nil, false, err
	}
	return resp, replaced, nil
}

// upstreamFilter runs the request_headers phase of the upstream ext_proc
// filter on one attempt's request out, on a copy of the request state's
// headers. It returns the stream that waits for the response headers, or
// the local reply that the service requested.
func (p *Proxy) upstreamFilter(out *http.Request,
	st *requestState) (*extProcStream, *LocalReply, error) {
	headers := st.headers.Clone()
	stream, local, err := p.requestPhase(out.Context(), st.route.Cluster, &headers,
		out.ContentLength == 0)
	if err != nil || local != nil {
		return nil, local, err
	}

	target, err := st.route.target(headers)
	if err != nil {
		if stream != nil {
			stream.cancel()
		}
		return nil, nil, &Failure{Status: 500, Reason: err.Error()}
	}
	setUpstreamRequest(out, target, headers)
	return stream, nil, nil
}

// retriable reports whether an attempt gets one more try under
// Config.Retry. A request with a body is never retried, because the Proxy
// streams the body and keeps no copy to send again.
//
// NOTE: Envoy would buffer a body up to per_request_buffer_limit_bytes and
// retry such requests too. Whether it retries a 503 local reply of an
// upstream filter has not been checked, so the Proxy does not.
func (p *Proxy) retriable(req *http.Request, resp *http.Response, local bool, err error) bool {
	if !p.cfg.Retry || req.ContentLength != 0 || req.Context().Err() != nil {
		return false
	}
	if err != nil {
		var f *Failure
		return !errors.As(err, &f)
	}
	return !local && resp.StatusCode == http.StatusServiceUnavailable
}

// discardBody is how much of a retried response's body is read, so that
// its connection can be reused.
const discardBody = 64 << 10

func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, discardBody))
	_ = body.Close()
}
