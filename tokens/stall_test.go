package tokens

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEveryGrantTimesOutOnStalledEndpoint: an endpoint that accepts the
// connection and never answers ends every grant's request after
// token.timeout, even for x/oauth2/jwt, which ignores context
// cancellation. The bounded wait below only catches a hang.
func TestEveryGrantTimesOutOnStalledEndpoint(t *testing.T) {
	release := make(chan struct{})
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(server.Close)
	// Registered after Close, so it runs first: the handlers return before
	// Close waits for them.
	t.Cleanup(func() { close(release) })

	dir := t.TempDir()
	assertion := filepath.Join(dir, "assertion")
	refresh := filepath.Join(dir, "refresh")
	for _, f := range []string{assertion, refresh} {
		if err := os.WriteFile(f, []byte("test-value"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tokenURL := server.URL + "/token"
	configs := map[string]*Config{
		GrantClientCredentials: {TokenURL: tokenURL, ClientID: "c", ClientSecret: "test-secret"},
		GrantWorkloadIdentity:  {Grant: GrantWorkloadIdentity, TokenURL: tokenURL, ClientID: "c", AssertionFile: assertion},
		GrantRefreshToken:      {Grant: GrantRefreshToken, TokenURL: tokenURL, ClientID: "c", RefreshTokenFile: refresh},
		GrantJWTBearer: {Grant: GrantJWTBearer, ServiceAccountKeyFile: writeServiceAccountKey(t, tokenURL),
			Scopes: []string{"https://www.googleapis.com/auth/cloud-healthcare"}},
		GrantManagedIdentity: {Grant: GrantManagedIdentity, Endpoint: tokenURL, Resource: "https://dicom.example.test"},
		GrantMetadataServer:  {Grant: GrantMetadataServer, Endpoint: tokenURL},
		"issuer discovery":   {Issuer: server.URL, ClientID: "c", ClientSecret: "test-secret"},
	}
	for name, c := range configs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c.Timeout = 200 * time.Millisecond
			c.SetDefaults()
			source := newTestSource(t, c)

			done := make(chan error, 1)
			go func() { _, err := source.Fetch(context.Background()); done <- err }()
			select {
			case err := <-done:
				var fe *FetchError
				if !errors.As(err, &fe) {
					t.Fatalf("error = %v, want a *FetchError", err)
				}
				if fe.Class != ClassTransient {
					t.Errorf("class = %q, want transient (error: %v)", fe.Class, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Fetch still waiting 10s after a 200ms timeout")
			}
		})
	}
}
