package oidcprovider

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// signingKeyBits is the size of the RSA key made at start.
const signingKeyBits = 2048

// RefreshTokenSubject is the sub claim of access tokens issued for a
// refresh token, which stands for the user who granted it.
const RefreshTokenSubject = "test-user"

// storage implements the library's op.Storage and op.ClientCredentialsStorage
// in memory. Its methods are safe for concurrent use.
type storage struct {
	signingKey *rsa.PrivateKey
	keyID      string
	scopes     []string // accepted scopes, or empty to accept every scope

	mu            sync.Mutex // guards the fields below
	lifetime      time.Duration
	clients       map[string]*client
	federations   []FederatedCredential
	refreshTokens map[string]*refreshRequest
	usedJTIs      map[string]time.Time // issuer and jti to the expiry of their assertion
}

func newStorage(opts Options) (*storage, error) {
	key, err := rsa.GenerateKey(rand.Reader, signingKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	lifetime := opts.TokenLifetime
	if lifetime <= 0 {
		lifetime = DefaultTokenLifetime
	}
	return &storage{
		signingKey:    key,
		keyID:         randomString(8),
		scopes:        slices.Clone(opts.Scopes),
		lifetime:      lifetime,
		clients:       make(map[string]*client),
		refreshTokens: make(map[string]*refreshRequest),
		usedJTIs:      make(map[string]time.Time),
	}, nil
}

// randomString returns n random bytes, hex-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *storage) setLifetime(lifetime time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = lifetime
}

func (s *storage) putClient(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.id] = c
}

// addClientKey adds a key to a client of the given kind, or replaces a
// registration of another kind with a new one.
func (s *storage) addClientKey(
	id string, kind clientKind, key crypto.PublicKey, kid string, certificate *x509.Certificate,
) {
	s.mu.Lock()
	defer s.mu.Unlock()

	updated := &client{id: id, kind: kind, keys: map[string]crypto.PublicKey{}}
	if existing, ok := s.clients[id]; ok && existing.kind == kind {
		updated.keys = maps.Clone(existing.keys)
		updated.certificate = existing.certificate
	}
	updated.keys[kid] = key
	if certificate != nil {
		updated.certificate = certificate
	}
	s.clients[id] = updated
}

func (s *storage) client(id string) (*client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("unknown client %q", id)
	}
	return c, nil
}

// checkScopes returns an invalid_scope error for the first scope that is not
// in Options.Scopes.
func (s *storage) checkScopes(scopes []string) error {
	if len(s.scopes) == 0 {
		return nil
	}
	for _, scope := range scopes {
		if !slices.Contains(s.scopes, scope) {
			return oidc.ErrInvalidScope().WithDescription(
				"scope %q is not registered; the provider accepts %q", scope, s.scopes)
		}
	}
	return nil
}

// useJTI records the jti of a verified assertion and fails if the same
// issuer already used it in an assertion that has not expired yet.
// An assertion without jti is not checked.
func (s *storage) useJTI(issuer, jti string, expiry time.Time) error {
	if jti == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	now := time.Now()
	maps.DeleteFunc(s.usedJTIs, func(_ string, expiry time.Time) bool { return expiry.Before(now) })
	key := issuer + "\x00" + jti
	if _, used := s.usedJTIs[key]; used {
		return fmt.Errorf("jti %q of %q was already used (replayed assertion)", jti, issuer)
	}
	s.usedJTIs[key] = expiry
	return nil
}

// GetClientByClientID implements op.OPStorage.
func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	return s.client(clientID)
}

// AuthorizeClientIDSecret implements op.OPStorage.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, clientSecret string) error {
	c, err := s.client(clientID)
	if err != nil {
		return err
	}
	if c.kind != kindSecret {
		return fmt.Errorf("client %q has no secret; it authenticates with %s", clientID, c.authMethod())
	}
	if subtle.ConstantTimeCompare([]byte(c.secret), []byte(clientSecret)) != 1 {
		return fmt.Errorf("wrong client secret for client %q", clientID)
	}
	return nil
}

// ClientCredentials implements op.ClientCredentialsStorage.
func (s *storage) ClientCredentials(
	ctx context.Context, clientID, clientSecret string,
) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, clientID, clientSecret); err != nil {
		return nil, err
	}
	return s.client(clientID)
}

// ClientCredentialsTokenRequest implements op.ClientCredentialsStorage.
func (s *storage) ClientCredentialsTokenRequest(
	_ context.Context, clientID string, scopes []string,
) (op.TokenRequest, error) {
	if err := s.checkScopes(scopes); err != nil {
		return nil, err
	}
	return &tokenRequest{subject: clientID, clientID: clientID, scopes: scopes}, nil
}

// ValidateJWTProfileScopes implements op.OPStorage.
func (s *storage) ValidateJWTProfileScopes(
	_ context.Context, _ string, scopes []string,
) ([]string, error) {
	if err := s.checkScopes(scopes); err != nil {
		return nil, err
	}
	return scopes, nil
}

// GetKeyByIDAndClientID implements op.OPStorage. The library calls it to
// verify the assertions of private_key_jwt clients and service accounts.
func (s *storage) GetKeyByIDAndClientID(
	_ context.Context, keyID, clientID string,
) (*jose.JSONWebKey, error) {
	c, err := s.client(clientID)
	if err != nil {
		return nil, err
	}
	key, err := c.key(keyID)
	if err != nil {
		return nil, err
	}
	return &jose.JSONWebKey{Key: key, KeyID: keyID, Use: oidc.KeyUseSignature}, nil
}

// CreateAccessToken implements op.AuthStorage. It returns the jti and the
// expiry of a new access token.
func (s *storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return randomString(16), time.Now().Add(s.lifetime), nil
}

// GetPrivateClaimsFromRequest implements op.CanGetPrivateClaimsFromRequest.
// It adds the scope and azp claims to access tokens.
func (s *storage) GetPrivateClaimsFromRequest(
	_ context.Context, request op.TokenRequest, _ []string,
) (map[string]any, error) {
	claims := map[string]any{}
	if scopes := request.GetScopes(); len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	if withClient, ok := request.(interface{ GetClientID() string }); ok {
		claims["azp"] = withClient.GetClientID()
	}
	return claims, nil
}

// JWTProfileTokenType implements op.JWTProfileTokenStorage.
func (s *storage) JWTProfileTokenType(
	context.Context, op.TokenRequest,
) (op.AccessTokenType, error) {
	return op.AccessTokenTypeJWT, nil
}

// SigningKey implements op.AuthStorage.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return &signingKey{id: s.keyID, key: s.signingKey}, nil
}

// SignatureAlgorithms implements op.AuthStorage.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.AuthStorage. It is the content of the JWKS endpoint.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{&publicKey{id: s.keyID, key: &s.signingKey.PublicKey}}, nil
}

// Health implements op.Storage.
func (s *storage) Health(context.Context) error { return nil }

// signingKey implements op.SigningKey.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey implements op.Key.
type publicKey struct {
	id  string
	key *rsa.PublicKey
}

func (k *publicKey) ID() string                         { return k.id }
func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *publicKey) Use() string                        { return oidc.KeyUseSignature }
func (k *publicKey) Key() any                           { return k.key }

// errNotModeled is returned by the storage methods of features the
// provider does not serve.
var errNotModeled = errors.New("oidcprovider: not modeled by this test provider")
