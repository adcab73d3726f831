package tokens

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeEndpoint is a token endpoint on loopback. Each request is answered by
// the current handler, and requests are counted.
type fakeEndpoint struct {
	server   *httptest.Server
	requests atomic.Int64

	mu      sync.Mutex
	handler http.HandlerFunc
	// last holds the form and Authorization header of the last request.
	lastForm url.Values
	lastAuth string
	// lastPeer holds the client certificates of the last request over TLS.
	lastPeer []*x509.Certificate
	// forms holds the form of every request, in order.
	forms []url.Values
}

func newFakeEndpoint(t *testing.T) *fakeEndpoint {
	t.Helper()
	e := newUnstartedFakeEndpoint(t)
	e.server.Start()
	return e
}

// newTLSFakeEndpoint starts a fakeEndpoint that serves HTTPS with config.
func newTLSFakeEndpoint(t *testing.T, config *tls.Config) *fakeEndpoint {
	t.Helper()
	e := newUnstartedFakeEndpoint(t)
	e.server.TLS = config
	// Tests of rejected certificates make the server log handshake errors.
	e.server.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.server.StartTLS()
	return e
}

func newUnstartedFakeEndpoint(t *testing.T) *fakeEndpoint {
	t.Helper()
	e := &fakeEndpoint{}
	e.SetToken("test-token-1", 3600)
	e.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		_ = r.ParseForm()
		e.mu.Lock()
		e.lastForm = r.PostForm
		e.lastAuth = r.Header.Get("Authorization")
		e.lastPeer = nil
		if r.TLS != nil {
			e.lastPeer = r.TLS.PeerCertificates
		}
		e.forms = append(e.forms, r.PostForm)
		h := e.handler
		e.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(e.server.Close)
	return e
}

func (e *fakeEndpoint) URL() string { return e.server.URL + "/token" }

func (e *fakeEndpoint) Set(h http.HandlerFunc) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handler = h
}

// SetToken makes the endpoint answer with a bearer token.
func (e *fakeEndpoint) SetToken(token string, expiresIn int) {
	e.Set(func(w http.ResponseWriter, _ *http.Request) {
		writeJSONBody(w, http.StatusOK, map[string]any{
			"access_token": token, "token_type": "Bearer", "expires_in": expiresIn,
		})
	})
}

// SetRaw makes the endpoint answer with a fixed status, content type and body.
func (e *fakeEndpoint) SetRaw(status int, contentType, body string, header map[string]string) {
	e.Set(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})
}

func (e *fakeEndpoint) Last() (url.Values, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastForm, e.lastAuth
}

// LastPeer returns the client certificates of the last request.
func (e *fakeEndpoint) LastPeer() []*x509.Certificate {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastPeer
}

// Forms returns the form of every request so far, in order.
func (e *fakeEndpoint) Forms() []url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]url.Values(nil), e.forms...)
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
