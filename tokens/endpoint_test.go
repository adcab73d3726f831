package tokens

import (
	"encoding/json"
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
}

func newFakeEndpoint(t *testing.T) *fakeEndpoint {
	t.Helper()
	e := &fakeEndpoint{}
	e.SetToken("test-token-1", 3600)
	e.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		_ = r.ParseForm()
		e.mu.Lock()
		e.lastForm = r.PostForm
		e.lastAuth = r.Header.Get("Authorization")
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

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
