package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"time"
)

// maxStderr is how much of the command's standard error an error quotes.
const maxStderr = 2048

// execSource runs a command, without a shell, that prints a token as JSON:
// {"access_token": "...", "expires_in": 3600} or with "expiry" as an
// RFC 3339 time instead of expires_in.
type execSource struct {
	command         []string
	defaultLifetime time.Duration
	now             func() time.Time
}

func newExecSource(c *Config) *execSource {
	return &execSource{command: c.Command, defaultLifetime: c.DefaultLifetime, now: time.Now}
}

// execOutput is the JSON the command prints.
type execOutput struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   any    `json:"expires_in"`
	Expiry      string `json:"expiry"`
}

// Fetch runs the command with ctx, which carries the configured timeout.
func (s *execSource) Fetch(ctx context.Context) (*Token, error) {
	cmd := exec.CommandContext(ctx, s.command[0], s.command[1:]...)
	cmd.WaitDelay = time.Second
	var stdout bytes.Buffer
	stderr := &limitedBuffer{max: maxStderr}
	cmd.Stdout = &limitedBuffer{buf: &stdout, max: maxResponseBytes}
	cmd.Stderr = stderr
	err := cmd.Run()
	received := s.now()

	if err != nil {
		class := ClassTransient
		// A program that is not on PATH, not at its path, or not executable
		// is a configuration error, because a retry does not fix it.
		var lookupErr *exec.Error
		if errors.As(err, &lookupErr) || errors.Is(err, fs.ErrNotExist) ||
			errors.Is(err, fs.ErrPermission) {
			class = ClassConfig
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (token.timeout)", ctx.Err())
		}
		return nil, &FetchError{Class: class, Description: fmt.Sprintf("command %s failed: %v%s",
			s.command[0], err, stderrSuffix(stderr.String()))}
	}

	var out execOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, &FetchError{Class: ClassBadResponse, Description: fmt.Sprintf(
			"command %s printed no JSON token (%v)%s", s.command[0], err, stderrSuffix(stderr.String()))}
	}
	expiresIn := out.ExpiresIn
	if out.Expiry != "" {
		expiry, err := time.Parse(time.RFC3339, out.Expiry)
		if err != nil {
			return nil, &FetchError{Class: ClassBadResponse, Description: fmt.Sprintf(
				"command %s printed expiry %q, expected an RFC 3339 time", s.command[0], out.Expiry)}
		}
		expiresIn = expiry.Sub(received).Seconds()
	}
	tok, err := newToken(tokenFields{accessToken: out.AccessToken, tokenType: out.TokenType, expiresIn: expiresIn},
		received, s.defaultLifetime)
	if err != nil {
		return nil, &FetchError{Class: ClassBadResponse, Err: fmt.Errorf("command %s: %w", s.command[0], err)}
	}
	return tok, nil
}

func stderrSuffix(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return "; its standard error ends with: " + s
}

// limitedBuffer keeps at most max bytes: the first ones when buf is set
// (standard output), else the last ones (standard error, whose end usually
// explains why a command failed). Writes never fail, so the command is not
// killed by a full pipe.
type limitedBuffer struct {
	buf  *bytes.Buffer
	max  int
	tail []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf != nil {
		if room := b.max - b.buf.Len(); room > 0 {
			b.buf.Write(p[:min(len(p), room)])
		}
		return len(p), nil
	}
	b.tail = append(b.tail, p...)
	if len(b.tail) > b.max {
		b.tail = b.tail[len(b.tail)-b.max:]
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return string(b.tail) }
