package oidcprovider

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// tokenRequest implements op.TokenRequest: the claims of an access token
// about to be issued.
type tokenRequest struct {
	subject  string
	clientID string
	scopes   []string
	audience []string
}

func (r *tokenRequest) GetSubject() string     { return r.subject }
func (r *tokenRequest) GetAudience() []string  { return r.audience }
func (r *tokenRequest) GetScopes() []string    { return r.scopes }
func (r *tokenRequest) GetClientID() string    { return r.clientID }
func (r *tokenRequest) GetAMR() []string       { return nil }
func (r *tokenRequest) GetAuthTime() time.Time { return time.Time{} }

// refreshRequest implements op.RefreshTokenRequest for a refresh token
// registered with AddRefreshToken. The storage hands out copies, so that
// SetCurrentScopes changes one request only.
type refreshRequest struct {
	tokenRequest
	rotate bool
}

func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

// AddRefreshToken registers refreshToken for the refresh_token grant of
// clientID, which must authenticate as registered (AddPublicClient for a
// client without credentials). Access tokens issued for it have the sub
// claim RefreshTokenSubject. With rotate, each use returns a new refresh
// token and invalidates the one used. Without it, the response has no
// refresh_token and the token stays valid. A scope parameter on a refresh
// request replaces the scopes of the new access token, and only
// Options.Scopes limits it.
func (p *Provider) AddRefreshToken(clientID, refreshToken string, rotate bool) {
	p.tb.Helper()
	if refreshToken == "" {
		p.tb.Fatalf("oidcprovider: AddRefreshToken(%q): empty refresh token", clientID)
	}
	request := &refreshRequest{
		tokenRequest: tokenRequest{subject: RefreshTokenSubject, clientID: clientID},
		rotate:       rotate,
	}

	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.refreshTokens[refreshToken] = request
}

// TokenRequestByRefreshToken implements op.AuthStorage.
func (s *storage) TokenRequestByRefreshToken(
	_ context.Context, refreshToken string,
) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	stored, ok := s.refreshTokens[refreshToken]
	if !ok {
		return nil, errors.New("refresh token is unknown or was rotated away by an earlier use")
	}
	request := *stored
	request.scopes = slices.Clone(stored.scopes)
	return &request, nil
}

// CreateAccessAndRefreshTokens implements op.AuthStorage. It returns the jti
// and expiry of a new access token and, for a rotating refresh token, a new
// refresh token that replaces currentRefreshToken.
func (s *storage) CreateAccessAndRefreshTokens(
	_ context.Context, _ op.TokenRequest, currentRefreshToken string,
) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	stored, ok := s.refreshTokens[currentRefreshToken]
	if !ok {
		// A concurrent request rotated the token after it was looked up.
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription(
			"refresh token was rotated away by a concurrent request")
	}
	tokenID, expiry := randomString(16), time.Now().Add(s.lifetime)
	if !stored.rotate {
		return tokenID, "", expiry, nil
	}

	next := randomString(32)
	delete(s.refreshTokens, currentRefreshToken)
	s.refreshTokens[next] = stored
	return tokenID, next, expiry, nil
}
