package envoysim

import (
	"context"
	"fmt"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// ContextExtensionCluster is the context_extensions key that carries the
// cluster name in a CheckRequest.
const ContextExtensionCluster = "cluster"

// AuthzRequest is the HTTP request that the Driver checks through
// ext_authz.
type AuthzRequest struct {
	// Cluster is sent as context_extensions["cluster"]; empty sends none.
	Cluster   string
	Authority string
	Method    string // GET when empty
	Path      string // /dicom-web/studies when empty
	// Headers are further client headers; a key may repeat.
	Headers HeaderMap
}

func (req AuthzRequest) method() string {
	if req.Method == "" {
		return "GET"
	}
	return req.Method
}

func (req AuthzRequest) path() string {
	if req.Path == "" {
		return "/dicom-web/studies"
	}
	return req.Path
}

// AuthzResult is what Envoy does with a request after the Check call.
type AuthzResult struct {
	// Upstream is the request header map the upstream receives; nil when
	// the request was denied.
	Upstream HeaderMap
	// Local is the denied response as Envoy sends it; nil when allowed.
	Local *LocalReply
	// Sent and Response are the messages on the wire.
	Sent     *authv3.CheckRequest
	Response *authv3.CheckResponse
}

// Check sends one CheckRequest and applies the response. The error is a
// *Failure when the call failed or took longer than MessageTimeout.
func (d *Driver) Check(ctx context.Context, req AuthzRequest) (*AuthzResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d.MessageTimeout)
	defer cancel()

	headers := HeaderMap{
		{":authority", req.Authority},
		{":path", req.path()},
		{":method", req.method()},
		{":scheme", "http"},
	}
	for _, f := range req.Headers {
		headers.Add(strings.ToLower(f.Key), f.Value)
	}
	res := &AuthzResult{Sent: NewCheckRequest(req, headers)}

	resp, err := d.Authz.Check(ctx, res.Sent)
	if err != nil {
		// failure_mode_allow false: Envoy replies with status_on_error.
		reason := fmt.Sprintf("ext_authz call failed: %v", err)
		return res, &Failure{Status: 403, Reason: reason}
	}
	res.Response = resp

	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		res.Local = deniedReply(resp.GetDeniedResponse())
		return res, nil
	}
	res.Upstream = headers.Clone()
	d.applyOkResponse(&res.Upstream, resp.GetOkResponse())
	return res, nil
}

// NewCheckRequest builds the CheckRequest for req, whose header map,
// pseudo-headers included, is headers. The host field is req.Authority, so
// a test can leave it empty and send the authority in headers only.
func NewCheckRequest(req AuthzRequest, headers HeaderMap) *authv3.CheckRequest {
	joined := map[string]string{}
	for _, f := range headers {
		if v, ok := joined[f.Key]; ok {
			joined[f.Key] = v + "," + f.Value
		} else {
			joined[f.Key] = f.Value
		}
	}

	var extensions map[string]string
	if req.Cluster != "" {
		extensions = map[string]string{ContextExtensionCluster: req.Cluster}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       "1",
			Method:   req.method(),
			Headers:  joined,
			Path:     req.path(),
			Host:     req.Authority,
			Scheme:   "http",
			Protocol: "HTTP/1.1",
		}},
		ContextExtensions: extensions,
	}}
}

// applyOkResponse applies an OkHttpResponse to the upstream request headers
// the way Envoy's ext_authz filter does.
func (d *Driver) applyOkResponse(m *HeaderMap, ok *authv3.OkHttpResponse) {
	for _, opt := range ok.GetHeaders() {
		key := strings.ToLower(opt.GetHeader().GetKey())
		// ext_authz reads value; raw_value is never read.
		value := opt.GetHeader().GetValue()
		switch {
		case opt.GetAppend() != nil && opt.GetAppend().GetValue():
			m.join(key, value)
		case opt.GetAppend() == nil && d.AuthzUnsetAppendAdds:
			m.Add(key, value)
		default:
			m.Set(key, value)
		}
	}
	for _, key := range ok.GetHeadersToRemove() {
		key = strings.ToLower(key)
		if strings.HasPrefix(key, ":") || key == "host" {
			continue
		}
		m.Remove(key)
	}
}

// deniedReply returns Envoy's local reply for a denied Check: the denied
// response's status, 403 when unset, and its headers, each set after the
// existing ones are removed.
func deniedReply(denied *authv3.DeniedHttpResponse) *LocalReply {
	local := &LocalReply{Status: int(denied.GetStatus().GetCode()), Body: []byte(denied.GetBody())}
	if local.Status == 0 {
		local.Status = 403
	}
	for _, opt := range denied.GetHeaders() {
		local.Headers.Remove(strings.ToLower(opt.GetHeader().GetKey()))
	}
	for _, opt := range denied.GetHeaders() {
		local.Headers.Add(strings.ToLower(opt.GetHeader().GetKey()), opt.GetHeader().GetValue())
	}
	return local
}
