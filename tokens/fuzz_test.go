package tokens

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzTokenResponse feeds arbitrary token endpoint answers through the whole
// client_credentials path, x/oauth2's parsing included. Whatever the answer,
// Fetch returns either a token that can be sent and has not expired, or a
// *FetchError; it never panics and never quotes the client secret.
func FuzzTokenResponse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"access_token":"abc","token_type":"Bearer","expires_in":3599}`))
	f.Add(200, "application/json", []byte(`{"access_token":"abc","token_type":"bearer","expires_in":"3599","ext_expires_in":"3599"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"abc"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"abc","expires_in":-5}`))
	f.Add(200, "application/json", []byte(`{"access_token":"a.eyJleHAiOjF9.c","token_type":"Bearer"}`))
	f.Add(200, "application/x-www-form-urlencoded", []byte(`access_token=abc&token_type=bearer&expires_in=60`))
	f.Add(200, "text/html", []byte(`<html>sign in</html>`))
	f.Add(429, "text/plain", []byte(`Too Many Requests`))
	f.Add(401, "application/json", []byte(`{"error":"invalid_client","error_codes":[7000215]}`))
	f.Add(200, "application/json", []byte(``))

	const secret = "test-secret-value"
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		if status < 100 || status > 999 {
			t.Skip()
		}
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		c := testConfig("http://127.0.0.1:1/token")
		c.ClientSecret = secret
		client := &http.Client{Transport: recordingTransport{base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{
				StatusCode: status,
				Header:     http.Header{"Content-Type": {contentType}},
				Body:       io.NopCloser(bytes.NewReader(body)),
				Request:    r,
			}, nil
		})}}
		s, err := newEndpointSource(c, client)
		if err != nil {
			t.Fatal(err)
		}
		s.now = func() time.Time { return now }

		tok, err := s.Fetch(context.Background())
		if err != nil {
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FetchError: %v", err, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes the client secret: %v", err)
			}
			return
		}
		if tok.AccessToken == "" || !validHeaderValue(tok.AccessToken) {
			t.Fatalf("token %q cannot be sent in a header", tok.AccessToken)
		}
		if !tok.Expiry.After(now) {
			t.Fatalf("token expiry %v is not after receipt %v", tok.Expiry, now)
		}
	})
}
