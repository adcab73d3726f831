package oidcprovider

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// maxFormBytes caps the size of a token request body.
const maxFormBytes = 64 << 10

// maxErrorBodyBytes caps how much of an error response the recorder keeps
// to read its error code.
const maxErrorBodyBytes = 4 << 10

// TokenRequestInfo describes one request to the token endpoint. It never
// contains a client secret, an assertion, a refresh token or an access
// token, only the decoded claims of an assertion.
type TokenRequestInfo struct {
	GrantType string

	// ClientID is the client the provider identified: the Basic user name,
	// the client_id parameter, or the iss of an assertion.
	ClientID string

	// AuthMethod is the client authentication method used or attempted,
	// one of the AuthMethod constants. It is empty when the request failed
	// before the provider found the client, for example for an unknown
	// client_id.
	AuthMethod string

	Scope    string   // scope parameter
	Audience []string // audience parameters
	Resource []string // resource parameters (RFC 8707)

	// AssertionClaims are the claims of the client_assertion, or of the
	// assertion of the jwt-bearer grant, decoded without verification.
	AssertionClaims map[string]any

	// ClientCertificateSubject is the subject of the TLS client
	// certificate, or empty when the client presented none.
	ClientCertificateSubject string

	Status int    // HTTP status code of the response
	Error  string // error code of a failed request (RFC 6749 section 5.2)
}

func (info TokenRequestInfo) clone() TokenRequestInfo {
	info.Audience = slices.Clone(info.Audience)
	info.Resource = slices.Clone(info.Resource)
	info.AssertionClaims = maps.Clone(info.AssertionClaims)
	return info
}

// servedGrantTypes are the grant types the token endpoint serves.
var servedGrantTypes = []string{GrantTypeClientCredentials, GrantTypeRefreshToken, GrantTypeJWTBearer}

// cannedResponse is a response queued by FailNext.
type cannedResponse struct {
	status int
	body   string
}

// recorder counts and records token requests and serves queued failures.
type recorder struct {
	mu       sync.Mutex // guards the fields below
	count    int
	last     TokenRequestInfo
	failures []cannedResponse
}

// requestRecord is the record of the request in flight, which the server
// methods complete. One goroutine serves a request, so it needs no lock.
type requestRecord struct {
	info        TokenRequestInfo
	basic       bool
	certificate *x509.Certificate
}

type recordKey struct{}

// recordFrom returns the record of the request in flight. Its methods accept
// a nil record, for a request that did not pass through the recorder.
func recordFrom(ctx context.Context) *requestRecord {
	record, _ := ctx.Value(recordKey{}).(*requestRecord)
	return record
}

func (r *requestRecord) setClient(id, method string) {
	if r == nil {
		return
	}
	if id != "" {
		r.info.ClientID = id
	}
	r.info.AuthMethod = method
}

func (r *requestRecord) basicAuth() bool {
	return r != nil && r.basic
}

func (r *requestRecord) peerCertificate() *x509.Certificate {
	if r == nil {
		return nil
	}
	return r.certificate
}

// FailNext queues a response with status and body for the next token
// request, which the provider then records but does not process. Each call
// queues one more response. The body is sent as application/json when it
// is valid JSON, and as text/plain otherwise.
func (p *Provider) FailNext(status int, body string) {
	p.recorder.mu.Lock()
	defer p.recorder.mu.Unlock()
	p.recorder.failures = append(p.recorder.failures, cannedResponse{status: status, body: body})
}

// TokenRequests returns the number of requests the token endpoint received.
func (p *Provider) TokenRequests() int {
	p.recorder.mu.Lock()
	defer p.recorder.mu.Unlock()
	return p.recorder.count
}

// LastTokenRequest returns the record of the latest completed token request,
// or the zero value before the first one.
func (p *Provider) LastTokenRequest() TokenRequestInfo {
	p.recorder.mu.Lock()
	defer p.recorder.mu.Unlock()
	return p.recorder.last.clone()
}

// wrap returns the token endpoint handler. It counts and records each
// request, then writes a queued failure or passes the request to next.
func (rec *recorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.begin()
		record := &requestRecord{}
		writer := &recordingWriter{ResponseWriter: w, record: record}
		rec.serve(writer, r, record, next)
		record.info.Status = cmp.Or(writer.status, http.StatusOK)
		record.info.Error = writer.errorCode()
		rec.finish(record.info)
	})
}

func (rec *recorder) serve(
	w *recordingWriter, r *http.Request, record *requestRecord, next http.Handler,
) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	parseErr := r.ParseForm()
	record.describe(r)

	if canned, ok := rec.takeFailure(); ok {
		canned.write(w)
		return
	}
	grantType := r.Form.Get("grant_type")
	switch {
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint accepts POST only")
	case parseErr != nil:
		writeError(w, http.StatusBadRequest, "invalid_request", "the request body is not a valid form: "+parseErr.Error())
	case grantType != "" && !slices.Contains(servedGrantTypes, grantType):
		// The library would authenticate the client first and then return
		// unauthorized_client for a grant the provider does not serve at all.
		writeError(w, http.StatusBadRequest, "unsupported_grant_type",
			fmt.Sprintf("grant_type %q is not served; use one of %q", grantType, servedGrantTypes))
	default:
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), recordKey{}, record)))
	}
}

func (rec *recorder) begin() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.count++
}

func (rec *recorder) finish(info TokenRequestInfo) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.last = info
}

func (rec *recorder) takeFailure() (cannedResponse, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.failures) == 0 {
		return cannedResponse{}, false
	}
	canned := rec.failures[0]
	rec.failures = rec.failures[1:]
	return canned, true
}

func (c cannedResponse) write(w http.ResponseWriter) {
	contentType := "text/plain; charset=utf-8"
	if json.Valid([]byte(c.body)) {
		contentType = "application/json"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(c.status)
	w.Write([]byte(c.body))
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// describe fills the record from the parsed form, the Basic credentials and
// the TLS connection, leaving out every secret.
func (r *requestRecord) describe(request *http.Request) {
	form := request.Form
	r.info.GrantType = form.Get("grant_type")
	r.info.ClientID = form.Get("client_id")
	r.info.Scope = form.Get("scope")
	r.info.Audience = form["audience"]
	r.info.Resource = form["resource"]
	r.info.AssertionClaims = decodeClaims(cmp.Or(form.Get("client_assertion"), form.Get("assertion")))

	if user, _, ok := request.BasicAuth(); ok {
		r.basic = true
		r.info.ClientID = user
	}
	if request.TLS != nil && len(request.TLS.PeerCertificates) > 0 {
		r.certificate = request.TLS.PeerCertificates[0]
		r.info.ClientCertificateSubject = r.certificate.Subject.String()
	}
}

// decodeClaims returns the claims of a JWT without verifying it, or nil.
func decodeClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil
	}
	return claims
}

// recordingWriter keeps the status code and the start of an error body. It
// adds the WWW-Authenticate header that RFC 6749 section 5.2 requires on a
// 401 to a client that used Basic authentication.
type recordingWriter struct {
	http.ResponseWriter
	record    *requestRecord
	status    int
	errorBody bytes.Buffer
}

func (w *recordingWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	if status == http.StatusUnauthorized && w.record.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidcprovider"`)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.status >= http.StatusBadRequest && w.errorBody.Len() < maxErrorBodyBytes {
		w.errorBody.Write(b[:min(len(b), maxErrorBodyBytes-w.errorBody.Len())])
	}
	return w.ResponseWriter.Write(b)
}

// errorCode returns the error field of a JSON error response, or empty.
func (w *recordingWriter) errorCode() string {
	var body struct {
		Error string `json:"error"`
	}
	if w.status < http.StatusBadRequest || json.Unmarshal(w.errorBody.Bytes(), &body) != nil {
		return ""
	}
	return body.Error
}
