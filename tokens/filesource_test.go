package tokens

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fileConfig(path string) *Config {
	c := &Config{Grant: GrantFile, TokenFile: path, DefaultLifetime: 5 * time.Minute}
	c.SetDefaults()
	return c
}

// writeTokenFile writes token to path and sets its modification time.
func writeTokenFile(t *testing.T, path, token string, modified time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatalf("writing the token file: %v", err)
	}
	if err := os.Chtimes(path, modified, modified); err != nil {
		t.Fatalf("Chtimes: %v", err)
	}
}

func TestFileSourceExpiry(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	jwtExp := now.Add(20 * time.Minute)
	tests := []struct {
		name       string
		token      string
		modified   time.Time
		wantToken  string
		wantExpiry time.Time
	}{
		{
			name: "jwt exp", token: testJWT(jwtExp.Unix()) + "\n", modified: now.Add(-time.Hour),
			wantToken: testJWT(jwtExp.Unix()), wantExpiry: jwtExp,
		},
		{
			name: "opaque from mtime", token: "opaque-token\n", modified: now.Add(-2 * time.Minute),
			wantToken: "opaque-token", wantExpiry: now.Add(3 * time.Minute),
		},
		{
			name: "opaque written in the future", token: "opaque-token", modified: now.Add(time.Hour),
			wantToken: "opaque-token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			writeTokenFile(t, path, tt.token, tt.modified)

			tok, err := newTestSource(t, fileConfig(path)).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.AccessToken != tt.wantToken {
				t.Errorf("access token = %q, want %q", tok.AccessToken, tt.wantToken)
			}
			want := tt.wantExpiry
			if want.IsZero() {
				// A modification time in the future counts as now.
				want = tok.Received.Add(5 * time.Minute)
			}
			if !tok.Expiry.Equal(want) {
				t.Errorf("expiry = %v, want %v", tok.Expiry, want)
			}
		})
	}
}

func TestFileSourceErrors(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		token     *string
		modified  time.Time
		wantClass ErrorClass
		wantIn    []string
	}{
		{
			name: "opaque past its lifetime", token: ptr("opaque-token"), modified: now.Add(-10 * time.Minute),
			wantClass: ClassBadResponse, wantIn: []string{"expired", "may have stopped"},
		},
		{
			name: "expired jwt", token: ptr(testJWT(now.Add(-time.Minute).Unix())), modified: now,
			wantClass: ClassBadResponse, wantIn: []string{"expired"},
		},
		{
			name: "empty file", token: ptr("\n"), modified: now,
			wantClass: ClassBadResponse, wantIn: []string{"no access_token"},
		},
		{
			name: "missing file", modified: now,
			wantClass: ClassTransient, wantIn: []string{"token_file", "no such file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if tt.token != nil {
				writeTokenFile(t, path, *tt.token, tt.modified)
			}

			_, err := newTestSource(t, fileConfig(path)).Fetch(context.Background())
			if err == nil {
				t.Fatal("Fetch succeeded, want an error")
			}
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FetchError", err, err)
			}
			if fe.Class != tt.wantClass {
				t.Errorf("class = %q, want %q (error: %v)", fe.Class, tt.wantClass, err)
			}
			for _, s := range append(tt.wantIn, path) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.token != nil && strings.TrimSpace(*tt.token) != "" && strings.Contains(err.Error(), *tt.token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestFileSourceWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeTokenFile(t, path, "token-1", time.Now().Add(-time.Minute).Truncate(time.Second))
	src := newFileSource(fileConfig(path))

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Watch(ctx, 5*time.Millisecond, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return within 10s of its context ending")
		}
	})

	rewriteUntil(t, path, "token-2", "Watch to report the rewritten file", func() bool {
		select {
		case <-changed:
			return true
		default:
			return false
		}
	})

}

// TestFileSourceManagerRefresh: a Manager running with a file source hands
// out the new token once Watch reports the rewritten file.
func TestFileSourceManagerRefresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeTokenFile(t, path, "token-1", time.Now())
	src := newFileSource(fileConfig(path))
	m := NewManager("pacs", src, Settings{}, WithLogger(quietLogger))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { m.Run(ctx); done <- struct{}{} }()
	go func() { src.Watch(ctx, 5*time.Millisecond, m.RequestRefresh); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Run or Watch did not return within 10s of its context ending")
				return
			}
		}
	})

	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Manager not ready within 10s")
	}
	if h, err := m.Header(context.Background()); err != nil || h != "Bearer token-1" {
		t.Fatalf("Header = %q, %v, want Bearer token-1", h, err)
	}

	rewriteUntil(t, path, "token-2", "the Manager to hand out token-2", func() bool {
		h, err := m.Header(context.Background())
		return err == nil && h == "Bearer token-2"
	})
	if got := m.Status().Acquisitions; got < 2 {
		t.Errorf("acquisitions = %d, want at least 2", got)
	}
}

// rewriteUntil rewrites the token file, each time with a later modification
// time, until cond holds, failing the test after 10 seconds. Rewriting again
// covers a watcher that took its first look only after an earlier write.
func rewriteUntil(t *testing.T, path, token, what string, cond func() bool) {
	t.Helper()
	modified := time.Now().Truncate(time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		modified = modified.Add(time.Second)
		writeTokenFile(t, path, token, modified)
		for range 50 {
			if cond() {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
