package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// endpointSource requests tokens from an OAuth2 token endpoint through
// x/oauth2's clientcredentials package, for three grants: client_credentials,
// workload_identity (client_credentials with a client assertion from a file)
// and refresh_token (clientcredentials lets grant_type be overridden).
type endpointSource struct {
	grant    string
	clientID string
	scopes   []string
	// params are the extra request parameters: audience, resource, params.
	params   url.Values
	endpoint *tokenEndpoint
	auth     clientAuth
	client   *http.Client

	defaultLifetime time.Duration
	now             func() time.Time

	// refresh holds the refresh token of the refresh_token grant.
	refresh *refreshTokenStore
}

// clientAuth adds client authentication to a token request.
type clientAuth interface {
	// apply sets the secret and style of the request, and adds parameters.
	apply(cfg *clientcredentials.Config, tokenURL string, now time.Time) error
}

func newEndpointSource(c *Config, client *http.Client) (*endpointSource, error) {
	auth, err := newClientAuth(c)
	if err != nil {
		return nil, err
	}
	s := &endpointSource{
		grant:           c.Grant,
		clientID:        c.ClientID,
		scopes:          c.Scopes,
		params:          requestParams(c),
		endpoint:        newTokenEndpoint(c, client),
		auth:            auth,
		client:          client,
		defaultLifetime: c.DefaultLifetime,
		now:             time.Now,
	}
	if c.Grant == GrantRefreshToken {
		s.refresh, err = newRefreshTokenStore(c)
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func requestParams(c *Config) url.Values {
	params := url.Values{}
	if c.Audience != "" {
		params.Set("audience", c.Audience)
	}
	if c.Resource != "" {
		params.Set("resource", c.Resource)
	}
	for k, v := range c.Params {
		params.Set(k, v)
	}
	return params
}

// newClientAuth returns the client authentication of the configured method.
func newClientAuth(c *Config) (clientAuth, error) {
	if c.Grant == GrantWorkloadIdentity {
		return assertionFileAuth{path: c.AssertionFile}, nil
	}
	switch c.AuthMethod {
	case AuthClientSecretBasic, AuthClientSecretPost:
		secret, err := c.readSecret()
		if err != nil {
			return nil, err
		}
		return secretAuth{secret: secret, post: c.AuthMethod == AuthClientSecretPost}, nil
	case AuthPrivateKeyJWT:
		signer, err := newAssertionSigner(c.ClientID, c.PrivateKey)
		if err != nil {
			return nil, err
		}
		return privateKeyAuth{signer: signer}, nil
	case AuthTLSClientAuth, AuthNone:
		// The client certificate is on the TLS connection; client_id goes
		// in the body, as RFC 8705 section 2 requires.
		return clientIDOnly{}, nil
	}
	return nil, fmt.Errorf("auth_method: unsupported method %q", c.AuthMethod)
}

type secretAuth struct {
	secret string
	post   bool
}

func (a secretAuth) apply(cfg *clientcredentials.Config, _ string, _ time.Time) error {
	cfg.ClientSecret = a.secret
	cfg.AuthStyle = oauth2.AuthStyleInHeader
	if a.post {
		cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	return nil
}

type clientIDOnly struct{}

func (clientIDOnly) apply(cfg *clientcredentials.Config, _ string, _ time.Time) error {
	cfg.AuthStyle = oauth2.AuthStyleInParams
	return nil
}

type privateKeyAuth struct {
	signer *assertionSigner
}

func (a privateKeyAuth) apply(cfg *clientcredentials.Config, tokenURL string, now time.Time) error {
	assertion, err := a.signer.sign(tokenURL, now)
	if err != nil {
		return fmt.Errorf("signing the client assertion: %w", err)
	}
	setAssertion(cfg, assertion)
	return nil
}

// assertionFileAuth sends the assertion that the platform keeps in a file,
// read anew for every request because the platform rotates it.
type assertionFileAuth struct {
	path string
}

func (a assertionFileAuth) apply(cfg *clientcredentials.Config, _ string, _ time.Time) error {
	data, err := os.ReadFile(a.path)
	if err != nil {
		return fmt.Errorf("reading the client assertion: %w", err)
	}
	assertion := strings.TrimSpace(string(data))
	if assertion == "" {
		return fmt.Errorf("the client assertion file %s is empty", a.path)
	}
	if exp, ok := jwtExpiry(assertion); ok && !exp.After(time.Now()) {
		return fmt.Errorf("the client assertion in %s expired at %s; the platform that rotates it may have stopped",
			a.path, exp.UTC().Format(time.RFC3339))
	}
	setAssertion(cfg, assertion)
	return nil
}

func setAssertion(cfg *clientcredentials.Config, assertion string) {
	cfg.AuthStyle = oauth2.AuthStyleInParams
	cfg.EndpointParams.Set("client_assertion_type", ClientAssertionType)
	cfg.EndpointParams.Set("client_assertion", assertion)
}

// Fetch requests a new token. Every failure is a *FetchError.
func (s *endpointSource) Fetch(ctx context.Context) (*Token, error) {
	tokenURL, err := s.endpoint.url(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := s.requestConfig(tokenURL)
	if err != nil {
		return nil, &FetchError{Class: ClassConfig, Err: err}
	}

	t, tok, err := retrieve(ctx, s.client, s.now, s.defaultLifetime, cfg.Token)
	if err != nil {
		return nil, err
	}
	if s.refresh != nil {
		if err := s.refresh.update(tok.RefreshToken); err != nil {
			return nil, &FetchError{Class: ClassConfig, Err: err}
		}
	}
	return t, nil
}

// requestConfig builds the request of one Fetch. It is built anew every
// time because assertions and refresh tokens change between requests.
func (s *endpointSource) requestConfig(tokenURL string) (*clientcredentials.Config, error) {
	cfg := &clientcredentials.Config{
		ClientID:       s.clientID,
		TokenURL:       tokenURL,
		Scopes:         s.scopes,
		EndpointParams: cloneValues(s.params),
	}
	if s.refresh != nil {
		cfg.EndpointParams.Set("grant_type", "refresh_token")
		cfg.EndpointParams.Set("refresh_token", s.refresh.current())
	}
	if err := s.auth.apply(cfg, tokenURL, s.now()); err != nil {
		return nil, err
	}
	return cfg, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+2)
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// retrieve runs an x/oauth2 token request with client and turns its response
// into a Token, or its failure into a *FetchError. It also returns the
// x/oauth2 token, whose refresh token a rotation may have changed.
func retrieve(ctx context.Context, client *http.Client, now func() time.Time, defaultLifetime time.Duration,
	request func(context.Context) (*oauth2.Token, error)) (*Token, *oauth2.Token, error) {
	var rec responseRecord
	ctx = context.WithValue(withRecord(ctx, &rec), oauth2.HTTPClient, client)
	tok, err := request(ctx)
	received := now()
	if err != nil {
		return nil, nil, fetchError(err, &rec, received)
	}

	t, err := newToken(tokenFields{
		accessToken: tok.AccessToken,
		tokenType:   tok.TokenType,
		expiresIn:   tok.Extra("expires_in"),
	}, received, defaultLifetime)
	if err != nil {
		return nil, nil, &FetchError{Class: ClassBadResponse, StatusCode: statusOf(&rec), Err: err}
	}
	return t, tok, nil
}

// fetchError explains a failed request. x/oauth2 reports a 2xx response it cannot
// parse as a plain error, so the recorded response supplies the status, the
// content type and the first bytes.
func fetchError(err error, rec *responseRecord, now time.Time) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) || rec.resp == nil || errors.Is(err, ErrInvalidToken) {
		return classifyError(err, now)
	}
	return &FetchError{
		Class:       ClassBadResponse,
		StatusCode:  rec.resp.StatusCode,
		Description: "the response is not a token (" + err.Error() + "): " + describeBody(rec.resp, rec.body),
		Err:         fmt.Errorf("%w: %w", ErrInvalidToken, err),
	}
}

func statusOf(rec *responseRecord) int {
	if rec.resp == nil {
		return 0
	}
	return rec.resp.StatusCode
}

// refreshTokenStore holds the refresh token of the refresh_token grant and
// writes a rotated one back to its file.
type refreshTokenStore struct {
	path string

	mu    sync.Mutex // guards token
	token string
}

func newRefreshTokenStore(c *Config) (*refreshTokenStore, error) {
	if c.RefreshTokenFile == "" {
		return &refreshTokenStore{token: c.RefreshToken}, nil
	}
	data, err := os.ReadFile(c.RefreshTokenFile)
	if err != nil {
		return nil, fmt.Errorf("refresh_token_file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return nil, fmt.Errorf("refresh_token_file: %s is empty", c.RefreshTokenFile)
	}
	return &refreshTokenStore{path: c.RefreshTokenFile, token: token}, nil
}

func (r *refreshTokenStore) current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.token
}

// update keeps a rotated refresh token, and writes it to the file
// atomically: to a temporary file in the same folder, then renamed over the
// old one, so a crash never leaves a half-written token.
func (r *refreshTokenStore) update(token string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if token == "" || token == r.token {
		return nil
	}
	r.token = token
	if r.path == "" {
		return nil
	}
	if err := writeFileAtomic(r.path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("the provider rotated the refresh token, but writing it to refresh_token_file failed; "+
			"the new token is kept in memory only: %w", err)
	}
	return nil
}
