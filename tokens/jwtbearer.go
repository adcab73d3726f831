package tokens

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/jwt"
)

// jwtBearer exchanges a JWT signed with a Google service account key for an
// access token, through x/oauth2/google.
type jwtBearer struct {
	config          *jwt.Config
	client          *http.Client
	defaultLifetime time.Duration
	now             func() time.Time
}

func newJWTBearer(c *Config, client *http.Client) (*jwtBearer, error) {
	data, err := os.ReadFile(c.ServiceAccountKeyFile)
	if err != nil {
		return nil, fmt.Errorf("service_account_key_file: %w", err)
	}
	config, err := google.JWTConfigFromJSON(data, c.Scopes...)
	if err != nil {
		return nil, fmt.Errorf("service_account_key_file: %s is not a service account JSON key: %w",
			c.ServiceAccountKeyFile, err)
	}
	config.Subject = c.Subject
	if c.TokenURL != "" {
		config.TokenURL = c.TokenURL
	}
	if config.TokenURL == "" {
		config.TokenURL = googleTokenURL
	}
	if err := checkURL(config.TokenURL); err != nil {
		return nil, fmt.Errorf("service_account_key_file: token_uri: %w", err)
	}
	return &jwtBearer{config: config, client: client, defaultLifetime: c.DefaultLifetime, now: time.Now}, nil
}

// Fetch requests a new token. x/oauth2/jwt ignores context cancellation
// while it waits for the response, so the HTTP client's timeout bounds it.
// NOTE: so a service stopped during a stalled request waits up to
// token.timeout for it to end.
func (s *jwtBearer) Fetch(ctx context.Context) (*Token, error) {
	t, _, err := retrieve(ctx, s.client, s.now, s.defaultLifetime, func(ctx context.Context) (*oauth2.Token, error) {
		return s.config.TokenSource(ctx).Token()
	})
	return t, err
}
