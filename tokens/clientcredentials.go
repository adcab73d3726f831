package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// clientCredentials fetches tokens with the OAuth2 client_credentials grant
// (RFC 6749 section 4.4).
type clientCredentials struct {
	config          clientcredentials.Config
	client          *http.Client
	defaultLifetime time.Duration
	now             func() time.Time
}

func newClientCredentials(c *Config, secret string, client *http.Client, now func() time.Time) *clientCredentials {
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

	style := oauth2.AuthStyleInHeader
	if c.AuthMethod == AuthClientSecretPost {
		style = oauth2.AuthStyleInParams
	}
	return &clientCredentials{
		config: clientcredentials.Config{
			ClientID:       c.ClientID,
			ClientSecret:   secret,
			TokenURL:       c.TokenURL,
			Scopes:         c.Scopes,
			EndpointParams: params,
			AuthStyle:      style,
		},
		client:          client,
		defaultLifetime: c.DefaultLifetime,
		now:             now,
	}
}

// Fetch requests a new token. Every failure is a *FetchError.
func (s *clientCredentials) Fetch(ctx context.Context) (*Token, error) {
	var rec responseRecord
	ctx = context.WithValue(withRecord(ctx, &rec), oauth2.HTTPClient, s.client)

	tok, err := s.config.Token(ctx)
	received := s.now()
	if err != nil {
		return nil, s.fetchError(err, &rec, received)
	}

	t, err := newToken(tokenFields{
		accessToken: tok.AccessToken,
		tokenType:   tok.TokenType,
		expiresIn:   tok.Extra("expires_in"),
	}, received, s.defaultLifetime)
	if err != nil {
		return nil, &FetchError{Class: ClassBadResponse, StatusCode: statusOf(&rec), Err: err}
	}
	return t, nil
}

// fetchError explains a failed request. x/oauth2 reports a 2xx answer it cannot
// parse as a plain error, so the recorded response supplies the status, the
// content type and the first bytes.
func (s *clientCredentials) fetchError(err error, rec *responseRecord, now time.Time) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) || rec.resp == nil || errors.Is(err, ErrInvalidToken) {
		return classifyError(err, now)
	}
	return &FetchError{
		Class:       ClassBadResponse,
		StatusCode:  rec.resp.StatusCode,
		Description: "the response is not a token: " + describeBody(rec.resp, rec.body),
		Err:         fmt.Errorf("%w: %w", ErrInvalidToken, err),
	}
}

func statusOf(rec *responseRecord) int {
	if rec.resp == nil {
		return 0
	}
	return rec.resp.StatusCode
}
