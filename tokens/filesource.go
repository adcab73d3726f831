package tokens

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// fileSource reads a token that another agent, such as Vault Agent or a
// sidecar, keeps fresh in a file. The file holds the token alone. Its
// expiry is the JWT exp claim, else the file's modification time plus the
// default lifetime.
type fileSource struct {
	path            string
	defaultLifetime time.Duration
	now             func() time.Time
}

func newFileSource(c *Config) *fileSource {
	return &fileSource{path: c.TokenFile, defaultLifetime: c.DefaultLifetime, now: time.Now}
}

func (s *fileSource) Fetch(context.Context) (*Token, error) {
	info, err := os.Stat(s.path)
	if err != nil {
		return nil, &FetchError{Class: ClassTransient, Err: fmt.Errorf("token_file: %w", err)}
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, &FetchError{Class: ClassTransient, Err: fmt.Errorf("token_file: %w", err)}
	}
	if len(data) > maxResponseBytes {
		return nil, &FetchError{Class: ClassBadResponse, Err: fmt.Errorf("%w: token_file %s is larger than %d bytes",
			ErrInvalidToken, s.path, maxResponseBytes)}
	}

	received := s.now()
	written := info.ModTime()
	if written.After(received) {
		written = received
	}
	// The token was issued when the file was written, so a token without
	// exp lives defaultLifetime from then, not from now.
	lifetime := s.defaultLifetime - received.Sub(written)
	tok, err := newToken(tokenFields{accessToken: strings.TrimSpace(string(data))}, received, lifetime)
	if err != nil {
		return nil, &FetchError{Class: ClassBadResponse, Err: fmt.Errorf("token_file %s: %w; "+
			"the agent that writes it may have stopped", s.path, err)}
	}
	return tok, nil
}

// Watch calls changed when the file's modification time or size changes,
// checking every interval, until ctx ends.
func (s *fileSource) Watch(ctx context.Context, interval time.Duration, changed func()) {
	last := s.stamp()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if now := s.stamp(); now != last {
			last = now
			changed()
		}
	}
}

func (s *fileSource) stamp() string {
	info, err := os.Stat(s.path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d/%d", info.ModTime().UnixNano(), info.Size())
}
