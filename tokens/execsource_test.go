package tokens

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// helperEnv selects what TestHelperProcess does when the test binary runs
// as the command of an exec source.
const (
	helperEnv       = "TOKENS_TEST_HELPER"
	helperExpiryEnv = "TOKENS_TEST_HELPER_EXPIRY"
)

// TestHelperProcess is not a test: run by an exec source with helperEnv set,
// it behaves as a token command and exits.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	switch mode {
	case "json":
		fmt.Println(`{"access_token":"exec-token","token_type":"Bearer","expires_in":60}`)
	case "expiry":
		fmt.Printf(`{"access_token":"exec-token","expiry":%q}`+"\n", os.Getenv(helperExpiryEnv))
	case "garbage":
		fmt.Println("Logged in as orthanc-egress. Token cached.")
	case "fail":
		fmt.Fprintln(os.Stderr, strings.Repeat("progress line\n", 400)+"error: login required; run get-token --login")
		os.Exit(1)
	case "sleep":
		time.Sleep(time.Minute)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", helperEnv, mode)
		os.Exit(2)
	}
	os.Exit(0)
}

// helperCommand returns the command that runs this test binary as a token
// command behaving as mode.
func helperCommand(t *testing.T, mode string) []string {
	t.Setenv(helperEnv, mode)
	// The race detector waits a second before a process exits by default.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return []string{os.Args[0], "-test.run=^TestHelperProcess$"}
}

func execConfig(command []string, timeout time.Duration) *Config {
	c := &Config{Grant: GrantExec, Command: command, Timeout: timeout}
	c.SetDefaults()
	return c
}

func TestExecSource(t *testing.T) {
	expiry := time.Now().Add(10 * time.Minute).Truncate(time.Second).UTC()
	tests := []struct {
		name         string
		mode         string
		wantLifetime time.Duration
		wantExpiry   time.Time
	}{
		{name: "expires_in", mode: "json", wantLifetime: time.Minute},
		{name: "expiry", mode: "expiry", wantExpiry: expiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(helperExpiryEnv, expiry.Format(time.RFC3339))
			c := execConfig(helperCommand(t, tt.mode), 30*time.Second)

			tok, err := newTestSource(t, c).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.AccessToken != "exec-token" {
				t.Errorf("access token = %q, want exec-token", tok.AccessToken)
			}
			if tt.wantLifetime != 0 && tok.Lifetime() != tt.wantLifetime {
				t.Errorf("lifetime = %v, want %v", tok.Lifetime(), tt.wantLifetime)
			}
			// The expiry is kept to the whole second, never later than printed.
			if !tt.wantExpiry.IsZero() && (tok.Expiry.After(tt.wantExpiry) || tt.wantExpiry.Sub(tok.Expiry) >= time.Second) {
				t.Errorf("expiry = %v, want within the second before %v", tok.Expiry, tt.wantExpiry)
			}
		})
	}
}

func TestExecSourceErrors(t *testing.T) {
	dir := t.TempDir()
	missingPath := filepath.Join(dir, "get-token")
	notExecutable := filepath.Join(dir, "get-token.sh")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\necho {}\n"), 0o600); err != nil {
		t.Fatalf("writing %s: %v", notExecutable, err)
	}
	tests := []struct {
		name      string
		command   func(t *testing.T) []string
		timeout   time.Duration
		wantClass ErrorClass
		wantIn    []string
		wantOut   []string
	}{
		{
			name:      "garbage",
			command:   func(t *testing.T) []string { return helperCommand(t, "garbage") },
			wantClass: ClassBadResponse,
			wantIn:    []string{"printed no JSON token"},
			wantOut:   []string{"Logged in as"},
		},
		{
			name:      "exit status",
			command:   func(t *testing.T) []string { return helperCommand(t, "fail") },
			wantClass: ClassTransient,
			wantIn:    []string{"exit status 1", "error: login required; run get-token --login"},
		},
		{
			name:      "timeout",
			command:   func(t *testing.T) []string { return helperCommand(t, "sleep") },
			timeout:   200 * time.Millisecond,
			wantClass: ClassTransient,
			wantIn:    []string{"deadline exceeded", "token.timeout"},
		},
		{
			name:      "not on PATH",
			command:   func(*testing.T) []string { return []string{"dicomweb-oauth-no-such-command"} },
			wantClass: ClassConfig,
			wantIn:    []string{"dicomweb-oauth-no-such-command", "not found"},
		},
		{
			name:      "missing path",
			command:   func(*testing.T) []string { return []string{missingPath, "--json"} },
			wantClass: ClassConfig,
			wantIn:    []string{missingPath, "no such file"},
		},
		{
			name:      "not executable",
			command:   func(*testing.T) []string { return []string{notExecutable} },
			wantClass: ClassConfig,
			wantIn:    []string{notExecutable, "permission denied"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 30 * time.Second
			}
			c := execConfig(tt.command(t), timeout)
			src := newTestSource(t, c)

			// The Manager passes the timeout in the context.
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := src.Fetch(ctx)
				errc <- err
			}()
			var err error
			select {
			case err = <-errc:
			case <-time.After(timeout + 30*time.Second):
				t.Fatal("Fetch did not return within 30s after its timeout; the command was not stopped")
			}

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
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			for _, s := range tt.wantOut {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q quotes the standard output %q, which may hold a token", err, s)
				}
			}
		})
	}
}

// TestExecSourceQuotesEndOfStderr: a long standard error is cut from the
// front, so the error keeps the last lines, which usually explain the failure.
func TestExecSourceQuotesEndOfStderr(t *testing.T) {
	c := execConfig(helperCommand(t, "fail"), 30*time.Second)

	_, err := newTestSource(t, c).Fetch(context.Background())
	if err == nil {
		t.Fatal("Fetch succeeded, want an error")
	}
	if got := strings.Count(err.Error(), "progress line"); got == 0 || got >= 400 {
		t.Errorf("error quotes %d of the 400 progress lines, want only the last ones", got)
	}
	if !strings.HasSuffix(err.Error(), "run get-token --login") {
		t.Errorf("error %q does not end with the last line of standard error", err)
	}
}
