package envoysim

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// connectionSpecific are the hop-by-hop headers that the Proxy never puts
// in a header map, because they describe one connection and are not
// forwarded.
var connectionSpecific = map[string]bool{
	"connection":        true,
	"keep-alive":        true,
	"proxy-connection":  true,
	"te":                true,
	"trailer":           true,
	"transfer-encoding": true,
	"upgrade":           true,
}

// downstreamHeaders returns the request header map of r as the Driver
// builds one: :authority from Host, then :path, :method and :scheme, then
// the client's headers with lower-case keys, sorted by key because
// net/http does not keep their order.
func downstreamHeaders(r *http.Request) HeaderMap {
	path := r.RequestURI
	if !strings.HasPrefix(path, "/") {
		path = r.URL.RequestURI()
	}
	m := HeaderMap{
		{":authority", r.Host},
		{":path", path},
		{":method", r.Method},
		{":scheme", "http"},
	}
	addHeaders(&m, r.Header)
	return m
}

// responseHeaderMap returns the response header map of resp: :status, then
// the upstream's headers as downstreamHeaders adds them.
func responseHeaderMap(resp *http.Response) HeaderMap {
	m := HeaderMap{{":status", strconv.Itoa(resp.StatusCode)}}
	addHeaders(&m, resp.Header)
	return m
}

func addHeaders(m *HeaderMap, h http.Header) {
	for _, key := range slices.Sorted(maps.Keys(h)) {
		lower := strings.ToLower(key)
		if connectionSpecific[lower] {
			continue
		}
		for _, value := range h[key] {
			m.Add(lower, value)
		}
	}
}

// httpHeader returns the entries of m other than pseudo-headers and host.
func httpHeader(m HeaderMap) http.Header {
	h := make(http.Header, len(m))
	for _, f := range m {
		if strings.HasPrefix(f.Key, ":") || f.Key == "host" {
			continue
		}
		key := textproto.CanonicalMIMEHeaderKey(f.Key)
		h[key] = append(h[key], f.Value)
	}
	return h
}

// rewrite applies the route's prefix and host rewrites to m, as Envoy's
// router does before it sends the request upstream.
func (rt *Route) rewrite(m *HeaderMap) {
	if rt.PrefixRewrite != "" {
		path := strings.TrimPrefix(m.first(":path"), rt.Prefix)
		m.replace(":path", rt.PrefixRewrite+path)
	}
	if rt.HostRewrite != "" {
		m.replace(":authority", rt.HostRewrite)
	}
}

// target returns the upstream URL for the :path in headers.
func (rt *Route) target(headers HeaderMap) (*url.URL, error) {
	path := headers.first(":path")
	ref, err := url.ParseRequestURI(path)
	if err != nil || ref.Scheme != "" || ref.Host != "" {
		return nil, fmt.Errorf("invalid :path %q for upstream %s", path, rt.Upstream)
	}
	u := *rt.upstream
	u.Path, u.RawPath, u.RawQuery = ref.Path, ref.RawPath, ref.RawQuery
	return &u, nil
}

// setUpstreamRequest makes out a request to target with the :authority and
// the headers of m.
func setUpstreamRequest(out *http.Request, target *url.URL, m HeaderMap) {
	u := *target
	out.URL = &u
	out.Host = m.first(":authority")
	out.Header = httpHeader(m)
	// An empty User-Agent keeps net/http from sending its own, as
	// ReverseProxy does.
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""}
	}
}

// setResponseHeaders sets the status and headers of resp from m, the
// response header map after the response_headers mutation.
func setResponseHeaders(resp *http.Response, m HeaderMap) error {
	value := m.first(":status")
	status, err := strconv.Atoi(value)
	if err != nil || status < 100 || status > 999 {
		return &Failure{Status: 500, Reason: fmt.Sprintf(
			"invalid :status %q after the response_headers mutation", value)}
	}
	resp.StatusCode = status
	resp.Status = fmt.Sprintf("%d %s", status, http.StatusText(status))
	resp.Header = httpHeader(m)
	return nil
}

// writeLocalReply sends local to the client.
func writeLocalReply(w http.ResponseWriter, local *LocalReply) {
	h := w.Header()
	for key, values := range httpHeader(local.Headers) {
		h[key] = values
	}
	h.Set("Content-Length", strconv.Itoa(len(local.Body)))
	w.WriteHeader(local.Status)
	_, _ = w.Write(local.Body)
}

// replaceResponse turns resp into local, closing the upstream body.
func replaceResponse(resp *http.Response, local *LocalReply) {
	_ = resp.Body.Close()
	resp.StatusCode = local.Status
	resp.Status = fmt.Sprintf("%d %s", local.Status, http.StatusText(local.Status))
	resp.Header = httpHeader(local.Headers)
	resp.Header.Set("Content-Length", strconv.Itoa(len(local.Body)))
	resp.Body = io.NopCloser(bytes.NewReader(local.Body))
	resp.ContentLength = int64(len(local.Body))
	resp.TransferEncoding = nil
	resp.Trailer = nil
}

// localResponse returns local as the response to req.
func localResponse(req *http.Request, local *LocalReply) *http.Response {
	resp := &http.Response{
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: http.NoBody, Request: req,
	}
	replaceResponse(resp, local)
	return resp
}
