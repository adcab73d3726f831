package oidcprovider

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client authentication methods, named as in RFC 7591 and RFC 8705, and the
// values of TokenRequestInfo.AuthMethod.
const (
	AuthMethodBasic         = "client_secret_basic"
	AuthMethodPost          = "client_secret_post"
	AuthMethodPrivateKeyJWT = "private_key_jwt"
	AuthMethodTLSClient     = "tls_client_auth"
	AuthMethodNone          = "none"

	// AuthMethodFederated is a client assertion issued by another issuer
	// and trusted through a FederatedCredential. No RFC names it.
	AuthMethodFederated = "federated_credential"
)

// Grant types and the client assertion type the token endpoint accepts.
const (
	GrantTypeClientCredentials   = "client_credentials"
	GrantTypeRefreshToken        = "refresh_token"
	GrantTypeJWTBearer           = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	ClientAssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// clientKind is the way a registered client authenticates.
type clientKind int

const (
	kindSecret clientKind = iota
	kindKey
	kindCertificate
	kindPublic
	kindServiceAccount
	kindFederated
)

// client is one registration. It is never changed after it is stored, so
// a request can use it without holding the storage lock.
type client struct {
	id   string
	kind clientKind

	// secret and methods are set for kindSecret.
	secret  string
	methods []string

	// keys verify the assertions of kindKey and kindServiceAccount, by kid.
	keys map[string]crypto.PublicKey

	// certificate is the TLS client certificate of kindCertificate, or, for
	// kindKey, the certificate whose thumbprint assertions must carry.
	certificate *x509.Certificate
}

// authMethod returns the method name the client authenticates with.
func (c *client) authMethod() string {
	switch c.kind {
	case kindSecret:
		return strings.Join(c.methods, " or ")
	case kindKey:
		return AuthMethodPrivateKeyJWT
	case kindCertificate:
		return AuthMethodTLSClient
	case kindFederated:
		return AuthMethodFederated
	default:
		return AuthMethodNone
	}
}

// key returns the public key with the given kid. An empty kid selects the
// only key of a client that has one.
func (c *client) key(kid string) (crypto.PublicKey, error) {
	if key, ok := c.keys[kid]; ok {
		return key, nil
	}
	if kid == "" && len(c.keys) == 1 {
		for _, key := range c.keys {
			return key, nil
		}
	}
	if kid == "" {
		return nil, fmt.Errorf("the JWS header has no kid and %q has %d keys", c.id, len(c.keys))
	}
	registered := slices.Sorted(maps.Keys(c.keys))
	return nil, fmt.Errorf("%q has no key with kid %q (registered: %q)", c.id, kid, registered)
}

// The methods below implement op.Client. The provider serves no
// authorization endpoint, so the redirect and ID token settings are empty.

func (c *client) GetID() string                      { return c.id }
func (c *client) RedirectURIs() []string             { return nil }
func (c *client) PostLogoutRedirectURIs() []string   { return nil }
func (c *client) ResponseTypes() []oidc.ResponseType { return nil }
func (c *client) LoginURL(string) string             { return "" }
func (c *client) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeJWT
}
func (c *client) IDTokenLifetime() time.Duration       { return 0 }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }

func (c *client) ApplicationType() op.ApplicationType {
	if c.kind == kindPublic {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	if c.kind == kindSecret {
		return oidc.AuthMethod(c.methods[0])
	}
	return oidc.AuthMethod(c.authMethod())
}

func (c *client) GrantTypes() []oidc.GrantType {
	switch c.kind {
	case kindPublic:
		return []oidc.GrantType{oidc.GrantTypeRefreshToken}
	case kindServiceAccount:
		return []oidc.GrantType{oidc.GrantTypeBearer}
	default:
		return []oidc.GrantType{oidc.GrantTypeClientCredentials, oidc.GrantTypeRefreshToken}
	}
}

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return keepScopes
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return keepScopes
}

func keepScopes(scopes []string) []string { return scopes }

// AddSecretClient registers a client that authenticates with secret by the
// given methods, AuthMethodBasic or AuthMethodPost. No method means both.
// Registering an existing id replaces its registration.
func (p *Provider) AddSecretClient(id, secret string, methods ...string) {
	p.tb.Helper()
	if len(methods) == 0 {
		methods = []string{AuthMethodBasic, AuthMethodPost}
	}
	for _, method := range methods {
		if method != AuthMethodBasic && method != AuthMethodPost {
			p.tb.Fatalf("oidcprovider: AddSecretClient(%q): method %q is not %s or %s",
				id, method, AuthMethodBasic, AuthMethodPost)
		}
	}
	if secret == "" {
		p.tb.Fatalf("oidcprovider: AddSecretClient(%q): empty secret", id)
	}
	p.store.putClient(&client{id: id, kind: kindSecret, secret: secret, methods: slices.Clone(methods)})
}

// AddPublicClient registers a client without credentials. It can only use
// the refresh_token grant.
func (p *Provider) AddPublicClient(id string) {
	p.store.putClient(&client{id: id, kind: kindPublic})
}

// AddKeyClient registers a private_key_jwt client (RFC 7523 section 2.2)
// whose client assertions are signed by the private half of key, an
// *rsa.PublicKey or *ecdsa.PublicKey, and carry kid in their header. Calling
// it again for the same client adds a key, as in a key rotation.
func (p *Provider) AddKeyClient(id string, key crypto.PublicKey, kid string) {
	p.tb.Helper()
	p.addKey(id, kindKey, key, kid, nil)
}

// AddKeyClientWithCertificate registers a private_key_jwt client whose key is
// that of certificate, and whose assertions must carry the SHA-256
// thumbprint of certificate in an x5t#S256 header, as the Microsoft identity
// platform page "certificate credentials" specifies for Entra ID.
func (p *Provider) AddKeyClientWithCertificate(
	id string, certificate *x509.Certificate, kid string,
) {
	p.tb.Helper()
	p.addKey(id, kindKey, certificate.PublicKey, kid, certificate)
}

// AddServiceAccount registers a Google-style service account for the
// jwt-bearer grant (RFC 7523 section 2.1). Its assertions carry iss=email
// and are signed by the private half of key. A second call adds a key.
func (p *Provider) AddServiceAccount(email string, key crypto.PublicKey, kid string) {
	p.tb.Helper()
	p.addKey(email, kindServiceAccount, key, kid, nil)
}

func (p *Provider) addKey(
	id string, kind clientKind, key crypto.PublicKey, kid string, certificate *x509.Certificate,
) {
	p.tb.Helper()
	if err := checkPublicKey(key); err != nil {
		p.tb.Fatalf("oidcprovider: register %q: %v", id, err)
	}
	p.store.addClientKey(id, kind, key, kid, certificate)
}

// AddCertClient registers a tls_client_auth client (RFC 8705 section 2.1).
// Its token requests must come over a TLS connection on which the client
// presented exactly certificate.
func (p *Provider) AddCertClient(id string, certificate *x509.Certificate) {
	p.tb.Helper()
	if certificate == nil {
		p.tb.Fatalf("oidcprovider: AddCertClient(%q): nil certificate", id)
	}
	p.store.putClient(&client{id: id, kind: kindCertificate, certificate: certificate})
}

func checkPublicKey(key crypto.PublicKey) error {
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return nil
	default:
		return fmt.Errorf("key of type %T is not an *rsa.PublicKey or *ecdsa.PublicKey", key)
	}
}
