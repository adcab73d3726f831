// Package issuer is a test OAuth2 authorization server for the end-to-end
// tests. It issues RS256-signed JWT access tokens for the client credentials
// grant, publishes its signing key as a JWKS and an OpenID discovery document,
// and counts the token requests it receives. It listens on 127.0.0.1 only.
package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultTokenLifetime is the lifetime of issued tokens when Config leaves it zero.
const DefaultTokenLifetime = time.Hour

// rsaKeyBits is the size of the signing key generated at start.
const rsaKeyBits = 2048

// Config holds the client registration and token settings of an Issuer.
type Config struct {
	// ClientID and ClientSecret are the credentials of the only registered client.
	ClientID     string
	ClientSecret string

	// DefaultAudience is the "aud" claim used when a token request has no
	// "audience" parameter. An empty value leaves "aud" out of such tokens.
	DefaultAudience string

	// TokenLifetime is the time from issue to expiry of each token.
	// Zero means DefaultTokenLifetime.
	TokenLifetime time.Duration
}

// TokenRequest describes one request to the token endpoint, for assertions.
// It never contains the client secret.
type TokenRequest struct {
	GrantType  string
	AuthMethod string // "client_secret_basic", "client_secret_post" or "none"
	ClientID   string
	Scope      string
	Audience   string
	Status     int // HTTP status code of the response
}

// Issuer is a running test authorization server. Its methods are safe for
// concurrent use.
type Issuer struct {
	url      string
	cfg      Config
	key      *rsa.PrivateKey
	keyID    string
	signer   jose.Signer
	server   *http.Server
	listener net.Listener

	tokenRequests atomic.Int64
	tokensIssued  atomic.Int64
	failStatus    atomic.Int32
	lifetime      atomic.Int64 // time.Duration of newly issued tokens

	mu   sync.Mutex // guards last
	last TokenRequest
}

// Start generates a signing key and starts an Issuer on a free port of
// 127.0.0.1. Call Close to stop it.
func Start(cfg Config) (*Issuer, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("issuer: ClientID and ClientSecret are required")
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}

	key, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
	if err != nil {
		return nil, fmt.Errorf("issuer: generate RSA key: %w", err)
	}
	signer, keyID, err := newSigner(key)
	if err != nil {
		return nil, err
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("issuer: listen on 127.0.0.1: %w", err)
	}

	iss := &Issuer{
		url:      "http://" + listener.Addr().String(),
		cfg:      cfg,
		key:      key,
		keyID:    keyID,
		signer:   signer,
		listener: listener,
	}
	iss.lifetime.Store(int64(cfg.TokenLifetime))
	iss.server = &http.Server{
		Handler:           iss.routes(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		// Serve returns http.ErrServerClosed after Close, so its error is dropped.
		_ = iss.server.Serve(listener)
	}()
	return iss, nil
}

// newSigner returns an RS256 signer whose JWS headers carry the key ID, which
// is the RFC 7638 thumbprint of the public key.
func newSigner(key *rsa.PrivateKey) (jose.Signer, string, error) {
	public := jose.JSONWebKey{Key: &key.PublicKey}
	thumbprint, err := public.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", fmt.Errorf("issuer: compute key thumbprint: %w", err)
	}
	keyID := hex.EncodeToString(thumbprint[:8])

	signingKey := jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: key, KeyID: keyID, Algorithm: string(jose.RS256)},
	}
	options := (&jose.SignerOptions{}).WithType("JWT")
	signer, err := jose.NewSigner(signingKey, options)
	if err != nil {
		return nil, "", fmt.Errorf("issuer: create signer: %w", err)
	}
	return signer, keyID, nil
}

// URL returns the issuer identifier, which is also the base URL of its
// endpoints, for example "http://127.0.0.1:41234".
func (iss *Issuer) URL() string { return iss.url }

// TokenURL returns the URL of the token endpoint.
func (iss *Issuer) TokenURL() string { return iss.url + "/token" }

// JWKSURL returns the URL of the JSON Web Key Set.
func (iss *Issuer) JWKSURL() string { return iss.url + "/jwks" }

// Close stops the server and closes its open connections.
func (iss *Issuer) Close() error {
	return iss.server.Close()
}

// Shutdown stops the server gracefully, waiting for requests in flight
// until ctx ends.
func (iss *Issuer) Shutdown(ctx context.Context) error {
	return iss.server.Shutdown(ctx)
}

// TokenRequests returns how many requests reached the token endpoint,
// whatever their outcome.
func (iss *Issuer) TokenRequests() int64 { return iss.tokenRequests.Load() }

// TokensIssued returns how many access tokens the token endpoint issued.
// Tokens made with Mint are not counted.
func (iss *Issuer) TokensIssued() int64 { return iss.tokensIssued.Load() }

// LastTokenRequest returns the most recent token request, and false if there
// was none.
func (iss *Issuer) LastTokenRequest() (TokenRequest, bool) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.last, iss.last.Status != 0
}

// SetFailure makes the token endpoint respond to every request with the
// given HTTP status code and {"error":"temporarily_unavailable"}, without
// checking the client. Zero restores normal operation.
func (iss *Issuer) SetFailure(status int) {
	iss.failStatus.Store(int32(status))
}

// SetTokenLifetime changes the lifetime of tokens issued from now on.
func (iss *Issuer) SetTokenLifetime(lifetime time.Duration) {
	iss.lifetime.Store(int64(lifetime))
}

func (iss *Issuer) recordTokenRequest(request TokenRequest) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.last = request
}

// MintOptions sets the claims of a token made with Mint.
type MintOptions struct {
	Subject  string
	Audience string
	Scope    string
	// Issuer overrides the "iss" claim. Empty means the issuer's URL.
	Issuer string
	// Lifetime is added to IssuedAt to get "exp". A negative value makes an
	// expired token. Zero means the issuer's current token lifetime.
	Lifetime time.Duration
	// IssuedAt is the "iat" claim. Zero means now.
	IssuedAt time.Time
}

// Mint signs an access token directly, without a token request. Tests use it
// to inject a fixed token or to make tokens with wrong claims.
func (iss *Issuer) Mint(options MintOptions) (string, error) {
	if options.Issuer == "" {
		options.Issuer = iss.url
	}
	if options.Lifetime == 0 {
		options.Lifetime = time.Duration(iss.lifetime.Load())
	}
	if options.IssuedAt.IsZero() {
		options.IssuedAt = time.Now()
	}
	return iss.sign(options)
}

// tokenClaims are the claims beyond the registered ones.
type tokenClaims struct {
	Scope    string `json:"scope,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

func (iss *Issuer) sign(options MintOptions) (string, error) {
	jti, err := randomID()
	if err != nil {
		return "", err
	}

	registered := jwt.Claims{
		Issuer:   options.Issuer,
		Subject:  options.Subject,
		IssuedAt: jwt.NewNumericDate(options.IssuedAt),
		Expiry:   jwt.NewNumericDate(options.IssuedAt.Add(options.Lifetime)),
		ID:       jti,
	}
	if options.Audience != "" {
		registered.Audience = jwt.Audience{options.Audience}
	}
	extra := tokenClaims{Scope: options.Scope, ClientID: options.Subject}

	token, err := jwt.Signed(iss.signer).Claims(registered).Claims(extra).Serialize()
	if err != nil {
		return "", fmt.Errorf("issuer: sign token: %w", err)
	}
	return token, nil
}

// randomID returns 128 random bits in hexadecimal, used as "jti".
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("issuer: read random bytes: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
