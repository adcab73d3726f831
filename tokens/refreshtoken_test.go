package tokens

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rotatingEndpoint makes e respond to the n-th request with access token at-n
// and, while rotate is true, refresh token rt-(n+1).
func rotatingEndpoint(e *fakeEndpoint, rotate *atomic.Bool) {
	var n atomic.Int64
	e.Set(func(w http.ResponseWriter, _ *http.Request) {
		i := n.Add(1)
		body := map[string]any{
			"access_token": "at-" + strconv.FormatInt(i, 10), "token_type": "Bearer", "expires_in": 3600,
		}
		if rotate.Load() {
			body["refresh_token"] = "rt-" + strconv.FormatInt(i+1, 10)
		}
		writeJSONBody(w, http.StatusOK, body)
	})
}

func TestRefreshTokenFileRotation(t *testing.T) {
	e := newFakeEndpoint(t)
	var rotate atomic.Bool
	rotate.Store(true)
	rotatingEndpoint(e, &rotate)

	dir := t.TempDir()
	file := filepath.Join(dir, "refresh-token")
	if err := os.WriteFile(file, []byte("rt-1\n"), 0o644); err != nil {
		t.Fatalf("writing the refresh token: %v", err)
	}
	c := &Config{Grant: GrantRefreshToken, TokenURL: e.URL(), ClientID: "viewer", RefreshTokenFile: file}
	c.SetDefaults()
	src := newTestSource(t, c)

	// The first response rotates rt-1 to rt-2.
	tok, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch 1: %v", err)
	}
	if tok.AccessToken != "at-1" {
		t.Errorf("access token = %q, want at-1", tok.AccessToken)
	}
	form, _ := e.Last()
	if got := form.Get("grant_type"); got != "refresh_token" {
		t.Errorf("grant_type = %q, want refresh_token", got)
	}
	if got := form.Get("refresh_token"); got != "rt-1" {
		t.Errorf("request 1: refresh_token = %q, want rt-1 from the file", got)
	}
	if got := form.Get("client_id"); got != "viewer" {
		t.Errorf("client_id = %q, want viewer", got)
	}
	checkRefreshTokenFile(t, file, "rt-2\n")

	// The second request uses rt-2. The response has no refresh token, so
	// rt-2 stays and the file is not written.
	rotate.Store(false)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(file, old, old); err != nil {
		t.Fatalf("Chtimes: %v", err)
	}
	if _, err := src.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch 2: %v", err)
	}
	if form, _ := e.Last(); form.Get("refresh_token") != "rt-2" {
		t.Errorf("request 2: refresh_token = %q, want the rotated rt-2", form.Get("refresh_token"))
	}
	if _, err := src.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch 3: %v", err)
	}
	if form, _ := e.Last(); form.Get("refresh_token") != "rt-2" {
		t.Errorf("request 3: refresh_token = %q, want rt-2 kept when the answer has none", form.Get("refresh_token"))
	}
	checkRefreshTokenFile(t, file, "rt-2\n")
	if info, err := os.Stat(file); err == nil && !info.ModTime().Equal(old) {
		t.Errorf("file modified at %v, want it untouched since %v", info.ModTime(), old)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	if len(entries) != 1 {
		names := make([]string, 0, len(entries))
		for _, entry := range entries {
			names = append(names, entry.Name())
		}
		t.Errorf("folder holds %q, want only refresh-token (no temporary files left)", names)
	}
}

// checkRefreshTokenFile checks the content and the permissions of a
// refresh token file.
func checkRefreshTokenFile(t *testing.T, file, want string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the refresh token file: %v", err)
	}
	if string(data) != want {
		t.Errorf("refresh token file = %q, want %q", data, want)
	}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("refresh token file mode = %v, want -rw------- (0600)", mode)
	}
}

func TestRefreshTokenInline(t *testing.T) {
	e := newFakeEndpoint(t)
	var rotate atomic.Bool
	rotate.Store(true)
	rotatingEndpoint(e, &rotate)

	dir := t.TempDir()
	t.Chdir(dir)
	c := &Config{
		Grant: GrantRefreshToken, TokenURL: e.URL(), ClientID: "viewer",
		ClientSecret: "test-secret-value", RefreshToken: "rt-1",
	}
	c.SetDefaults()
	src := newTestSource(t, c)

	for i, want := range []string{"rt-1", "rt-2"} {
		if _, err := src.Fetch(context.Background()); err != nil {
			t.Fatalf("Fetch %d: %v", i+1, err)
		}
		form, auth := e.Last()
		if got := form.Get("refresh_token"); got != want {
			t.Errorf("request %d: refresh_token = %q, want %q", i+1, got, want)
		}
		if auth == "" {
			t.Errorf("request %d: no Authorization header, want client_secret_basic", i+1)
		}
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	if len(entries) != 0 {
		t.Errorf("working folder holds %d entries, want none: an inline refresh token is never written", len(entries))
	}
}

// TestRefreshTokenWriteFailure: when the rotated refresh token cannot be
// written, Fetch fails with a configuration error, no temporary file is left,
// and the next request still uses the rotated token kept in memory.
func TestRefreshTokenWriteFailure(t *testing.T) {
	e := newFakeEndpoint(t)
	var rotate atomic.Bool
	rotate.Store(true)
	rotatingEndpoint(e, &rotate)

	dir := t.TempDir()
	file := filepath.Join(dir, "refresh-token")
	if err := os.WriteFile(file, []byte("rt-1\n"), 0o600); err != nil {
		t.Fatalf("writing the refresh token: %v", err)
	}
	c := &Config{Grant: GrantRefreshToken, TokenURL: e.URL(), ClientID: "viewer", RefreshTokenFile: file}
	c.SetDefaults()
	src := newTestSource(t, c)

	// A directory in place of the file makes the rename fail.
	if err := os.Remove(file); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := os.Mkdir(file, 0o700); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	_, err := src.Fetch(context.Background())
	var fe *FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("Fetch error = %v, want a *FetchError", err)
	}
	if fe.Class != ClassConfig {
		t.Errorf("class = %q, want %q", fe.Class, ClassConfig)
	}
	if !strings.Contains(err.Error(), "kept in memory only") {
		t.Errorf("error %q does not say the new token is kept in memory", err)
	}
	if strings.Contains(err.Error(), "rt-2") {
		t.Errorf("error %q contains the refresh token", err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only refresh-token (no temporary files left)", len(entries))
	}

	if _, err := src.Fetch(context.Background()); err == nil {
		t.Error("Fetch succeeded while the file cannot be written, want the error again")
	}
	if form, _ := e.Last(); form.Get("refresh_token") != "rt-2" {
		t.Errorf("request 2: refresh_token = %q, want rt-2 kept in memory", form.Get("refresh_token"))
	}
}
