package tokens

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Grant names: how a cluster obtains its tokens.
const (
	// GrantClientCredentials is the OAuth2 client credentials grant (RFC 6749 section 4.4).
	GrantClientCredentials = "client_credentials"
	// GrantJWTBearer signs a JWT with a Google service account key and
	// exchanges it for an access token (RFC 7523 section 2.1).
	GrantJWTBearer = "jwt_bearer"
	// GrantWorkloadIdentity is client_credentials authenticated with a
	// client assertion that the platform writes to a file and rotates.
	GrantWorkloadIdentity = "workload_identity"
	// GrantRefreshToken exchanges a long-lived refresh token (RFC 6749 section 6).
	GrantRefreshToken = "refresh_token"
	// GrantManagedIdentity requests tokens from an Azure instance metadata (IMDS) style endpoint.
	GrantManagedIdentity = "managed_identity"
	// GrantMetadataServer requests tokens from a Google compute metadata server style endpoint.
	GrantMetadataServer = "metadata_server"
	// GrantFile reads a token that another agent keeps fresh in a file.
	GrantFile = "file"
	// GrantExec runs a command that prints a token as JSON.
	GrantExec = "exec"
)

// grants lists the supported grants in the order messages name them.
var grants = []string{
	GrantClientCredentials, GrantJWTBearer, GrantWorkloadIdentity, GrantRefreshToken,
	GrantManagedIdentity, GrantMetadataServer, GrantFile, GrantExec,
}

// Client authentication methods for the token endpoint (RFC 7591 section 2,
// RFC 7523 and RFC 8705).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthTLSClientAuth     = "tls_client_auth"
	// AuthNone sends only client_id, for public clients of the refresh_token grant.
	AuthNone = "none"
)

// Defaults for Config fields left empty.
const (
	DefaultRefreshBefore = 5 * time.Minute
	DefaultLifetime      = 5 * time.Minute
	DefaultTimeout       = 10 * time.Second
	DefaultClockSkew     = 30 * time.Second
)

// Config is the token configuration of one cluster, decoded from the
// `token` section of a cluster in the service configuration. Which keys
// apply depends on Grant, and Validate names the keys a grant needs.
type Config struct {
	// Grant is the way tokens are obtained, client_credentials by default.
	Grant string `yaml:"grant"`
	// Provider fills the usual defaults of an identity provider: azure,
	// google, keycloak, auth0, okta or generic.
	Provider string `yaml:"provider,omitempty"`
	// TenantID is the Entra ID tenant (provider azure).
	TenantID string `yaml:"tenant_id,omitempty"`
	// AuthorityHost is the Entra ID login host, login.microsoftonline.com
	// by default; sovereign clouds use another (provider azure).
	AuthorityHost string `yaml:"authority_host,omitempty"`
	// BaseURL is the Keycloak server URL, such as https://sso.example.org
	// (provider keycloak).
	BaseURL string `yaml:"base_url,omitempty"`
	// Realm is the Keycloak realm (provider keycloak).
	Realm string `yaml:"realm,omitempty"`
	// Domain is the Auth0 or Okta domain, such as example.okta.com.
	Domain string `yaml:"domain,omitempty"`
	// AuthorizationServer is the Okta authorization server ID, "default" by
	// default; "org" selects the org authorization server.
	AuthorizationServer string `yaml:"authorization_server,omitempty"`

	// TokenURL is the token endpoint, an absolute http or https URL.
	TokenURL string `yaml:"token_url,omitempty"`
	// Issuer, instead of TokenURL, is an issuer whose OpenID Connect or
	// RFC 8414 discovery document gives the token endpoint.
	Issuer   string `yaml:"issuer,omitempty"`
	ClientID string `yaml:"client_id,omitempty"`
	// ClientSecret is the client secret inline. Prefer ClientSecretFile.
	ClientSecret string `yaml:"client_secret,omitempty"`
	// ClientSecretFile is a file whose content, without surrounding
	// whitespace, is the client secret. It is read once at startup.
	ClientSecretFile string `yaml:"client_secret_file,omitempty"`
	// AuthMethod is the client authentication method at the token endpoint.
	AuthMethod string `yaml:"auth_method,omitempty"`
	// PrivateKey configures private_key_jwt client assertions.
	PrivateKey PrivateKeyConfig `yaml:"private_key,omitempty"`

	Scopes []string `yaml:"scopes,omitempty"`
	// Audience is sent as the audience parameter (Auth0, Okta custom servers).
	Audience string `yaml:"audience,omitempty"`
	// Resource is sent as the resource parameter (RFC 8707, Entra ID v1,
	// Azure managed identity).
	Resource string `yaml:"resource,omitempty"`
	// Params are extra token request parameters.
	Params map[string]string `yaml:"params,omitempty"`

	// ServiceAccountKeyFile is a Google service account JSON key (jwt_bearer).
	ServiceAccountKeyFile string `yaml:"service_account_key_file,omitempty"`
	// Subject is the user a Google service account acts for, with
	// domain-wide delegation (jwt_bearer).
	Subject string `yaml:"subject,omitempty"`
	// AssertionFile holds the client assertion of workload_identity, such as
	// the file AZURE_FEDERATED_TOKEN_FILE names. It is read for every request.
	AssertionFile string `yaml:"assertion_file,omitempty"`
	// RefreshToken is a refresh token inline, for refresh_token.
	RefreshToken string `yaml:"refresh_token,omitempty"`
	// RefreshTokenFile holds the refresh token. When the provider rotates
	// the refresh token, the new one is written back to this file.
	RefreshTokenFile string `yaml:"refresh_token_file,omitempty"`
	// Endpoint is the token URL of managed_identity or metadata_server.
	// It has no default, so that nothing is sent to a metadata address
	// unless configured.
	Endpoint string `yaml:"endpoint,omitempty"`
	// TokenFile is the file of the file grant.
	TokenFile string `yaml:"token_file,omitempty"`
	// Command is the program and arguments of the exec grant, run without a shell.
	Command []string `yaml:"command,omitempty"`

	// TLS configures connections to the token endpoint.
	TLS TLSConfig `yaml:"tls,omitempty"`
	// Verify, when set, checks each acquired JWT before it is used.
	Verify VerifyConfig `yaml:"verify,omitempty"`

	// RefreshBefore is how long before expiry a refresh starts. It is clamped
	// to half the token's lifetime.
	RefreshBefore time.Duration `yaml:"refresh_before"`
	// DefaultLifetime is the lifetime of a token whose response has no
	// expires_in and that is not a JWT with an exp claim.
	DefaultLifetime time.Duration `yaml:"default_lifetime"`
	// Timeout bounds one token request, connection and response included,
	// or one run of the exec command.
	Timeout time.Duration `yaml:"timeout"`
	// ClockSkew is how long before its expiry a token stops being handed out,
	// to allow for clock differences and transit time. It is clamped to a
	// quarter of the token's lifetime.
	ClockSkew time.Duration `yaml:"clock_skew"`
}

// PrivateKeyConfig is the key that signs private_key_jwt client assertions.
type PrivateKeyConfig struct {
	// File is a PEM private key: RSA (PKCS #1 or #8) or EC P-256 (SEC 1 or PKCS #8).
	File string `yaml:"file,omitempty"`
	// Algorithm is RS256 or PS256 for an RSA key, ES256 for an EC P-256
	// key. Empty picks RS256 or ES256 from the key.
	Algorithm string `yaml:"algorithm,omitempty"`
	// KeyID is sent as the kid header.
	KeyID string `yaml:"key_id,omitempty"`
	// CertificateFile is the PEM certificate of the key. Its SHA-256
	// thumbprint is sent as the x5t#S256 header, as Entra ID certificate
	// credentials require.
	CertificateFile string `yaml:"certificate_file,omitempty"`
	// SendX5T also sends the SHA-1 thumbprint as x5t, for older providers.
	SendX5T bool `yaml:"send_x5t,omitempty"`
	// Audience overrides the assertion's aud, which is the token endpoint
	// URL by default.
	Audience string `yaml:"audience,omitempty"`
}

// TLSConfig configures TLS to the token endpoint. TLS 1.2 is the minimum.
type TLSConfig struct {
	// CAFile is a PEM bundle that replaces the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// ClientCertificateFile and ClientKeyFile are the client certificate of
	// tls_client_auth (RFC 8705).
	ClientCertificateFile string `yaml:"client_certificate_file,omitempty"`
	ClientKeyFile         string `yaml:"client_key_file,omitempty"`
	// InsecureSkipVerify turns off certificate verification. It is logged
	// loudly and shown in the status.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`
}

// VerifyConfig checks acquired JWT access tokens before they are used.
type VerifyConfig struct {
	// JWKSURL is the key set that signs the tokens. With only Issuer set,
	// it comes from the issuer's discovery document.
	JWKSURL string `yaml:"jwks_url,omitempty"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `yaml:"issuer,omitempty"`
	// Audience must be one of the token's aud values.
	Audience string `yaml:"audience,omitempty"`
}

// Enabled reports whether verification is configured.
func (v VerifyConfig) Enabled() bool { return v.JWKSURL != "" || v.Issuer != "" || v.Audience != "" }

// reservedParams maps the token request parameters that the grant sets itself
// to the configuration key that sets each.
var reservedParams = map[string]string{
	"grant_type":    "grant",
	"scope":         "scopes",
	"client_id":     "client_id",
	"client_secret": "client_secret or client_secret_file",
	"audience":      "audience",
	"resource":      "resource",
}

// SetDefaults applies the provider preset, then fills the empty fields that
// have defaults. A preset never fills a value that identifies the client or
// the tenant: Validate names what is missing.
func (c *Config) SetDefaults() {
	applyPreset(c)
	if c.Grant == "" {
		c.Grant = GrantClientCredentials
	}
	if c.AuthMethod == "" && usesTokenEndpoint(c.Grant) {
		c.AuthMethod = defaultAuthMethod(c)
	}
	if c.RefreshBefore == 0 {
		c.RefreshBefore = DefaultRefreshBefore
	}
	if c.DefaultLifetime == 0 {
		c.DefaultLifetime = DefaultLifetime
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
}

// usesTokenEndpoint reports whether a grant posts to an OAuth2 token endpoint
// with client authentication.
func usesTokenEndpoint(grant string) bool {
	switch grant {
	case GrantClientCredentials, GrantRefreshToken:
		return true
	}
	return false
}

func defaultAuthMethod(c *Config) string {
	switch {
	case c.PrivateKey.File != "":
		return AuthPrivateKeyJWT
	case c.TLS.ClientCertificateFile != "" && c.ClientSecret == "" && c.ClientSecretFile == "":
		return AuthTLSClientAuth
	case c.Grant == GrantRefreshToken && c.ClientSecret == "" && c.ClientSecretFile == "":
		return AuthNone
	}
	return AuthClientSecretBasic
}

// FieldError is a problem with one configuration key.
type FieldError struct {
	// Key is the key's path within the token section, such as token_url
	// or private_key.file.
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// problems collects FieldErrors.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks the configuration after SetDefaults and returns every
// problem found, each a *FieldError, joined with errors.Join.
func (c *Config) Validate() error {
	var p problems

	c.validateProvider(&p)
	switch c.Grant {
	case GrantClientCredentials:
		c.validateEndpoint(&p)
		c.validateClientAuth(&p)
	case GrantWorkloadIdentity:
		c.validateEndpoint(&p)
		p.requireClientID(c)
		p.require("assertion_file", c.AssertionFile, "the file with the platform's client assertion, "+
			"such as the one AZURE_FEDERATED_TOKEN_FILE names")
		p.forbid(c.Grant, secretKey(c), c.ClientSecret != "" || c.ClientSecretFile != "")
	case GrantRefreshToken:
		c.validateEndpoint(&p)
		c.validateClientAuth(&p)
		switch {
		case c.RefreshToken != "" && c.RefreshTokenFile != "":
			p.add("refresh_token", "set either refresh_token or refresh_token_file, not both")
		case c.RefreshToken == "" && c.RefreshTokenFile == "":
			p.add("refresh_token_file", "missing; set refresh_token_file (or refresh_token from the environment)")
		}
	case GrantJWTBearer:
		p.require("service_account_key_file", c.ServiceAccountKeyFile, "the Google service account JSON key")
		if c.TokenURL != "" {
			p.checkURL("token_url", c.TokenURL)
		}
		if len(c.Scopes) == 0 {
			p.add("scopes", "missing; Google needs at least one scope, such as "+
				"https://www.googleapis.com/auth/cloud-healthcare")
		}
	case GrantManagedIdentity:
		c.validateMetadataEndpoint(&p)
		if c.Resource == "" && len(c.Scopes) == 0 {
			p.add("resource", "missing; set the resource the token is for, such as https://dicom.healthcareapis.azure.com")
		}
	case GrantMetadataServer:
		c.validateMetadataEndpoint(&p)
	case GrantFile:
		p.require("token_file", c.TokenFile, "the file another agent keeps the token in")
	case GrantExec:
		if len(c.Command) == 0 || strings.TrimSpace(c.Command[0]) == "" {
			p.add("command", "missing; set the program and its arguments as a list, such as [/usr/local/bin/get-token, --json]")
		}
	default:
		p.add("grant", "unsupported grant %q; supported: %s", c.Grant, strings.Join(grants, ", "))
	}

	c.validateCommon(&p)
	return errors.Join(p...)
}

// validateEndpoint checks token_url or issuer, one of which is needed.
func (c *Config) validateEndpoint(p *problems) {
	switch {
	case c.TokenURL == "" && c.Issuer == "":
		p.add("token_url", "missing; set the identity provider's token endpoint URL, or issuer for discovery")
	case c.TokenURL != "":
		p.checkURL("token_url", c.TokenURL)
	default:
		p.checkURL("issuer", c.Issuer)
	}
}

func (c *Config) validateMetadataEndpoint(p *problems) {
	if c.Endpoint == "" {
		p.add("endpoint", "missing; set the metadata token endpoint URL (it has no default)")
		return
	}
	p.checkURL("endpoint", c.Endpoint)
}

// validateClientAuth checks the client authentication method and its keys.
func (c *Config) validateClientAuth(p *problems) {
	p.requireClientID(c)
	hasSecret := c.ClientSecret != "" || c.ClientSecretFile != ""
	if c.ClientSecret != "" && c.ClientSecretFile != "" {
		p.add("client_secret", "set either client_secret or client_secret_file, not both")
	}

	switch c.AuthMethod {
	case AuthClientSecretBasic, AuthClientSecretPost:
		if !hasSecret {
			p.add("client_secret_file", "missing; auth_method %s needs client_secret_file (or client_secret)", c.AuthMethod)
		}
	case AuthPrivateKeyJWT:
		p.require("private_key.file", c.PrivateKey.File, "the PEM private key that signs client assertions")
		p.forbid(c.AuthMethod, secretKey(c), hasSecret)
		switch c.PrivateKey.Algorithm {
		case "", "RS256", "PS256", "ES256":
		default:
			p.add("private_key.algorithm", "unsupported algorithm %q; use RS256, PS256 or ES256", c.PrivateKey.Algorithm)
		}
		if c.PrivateKey.Audience != "" {
			p.checkURL("private_key.audience", c.PrivateKey.Audience)
		}
	case AuthTLSClientAuth:
		p.require("tls.client_certificate_file", c.TLS.ClientCertificateFile, "the client certificate")
		p.require("tls.client_key_file", c.TLS.ClientKeyFile, "the client certificate's private key")
		p.forbid(c.AuthMethod, secretKey(c), hasSecret)
	case AuthNone:
		if c.Grant != GrantRefreshToken {
			p.add("auth_method", "none is only for the refresh_token grant of a public client")
		}
		p.forbid(c.AuthMethod, secretKey(c), hasSecret)
	default:
		p.add("auth_method", "unsupported method %q; supported: %s", c.AuthMethod, strings.Join([]string{
			AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT, AuthTLSClientAuth, AuthNone}, ", "))
	}
	if c.AuthMethod != AuthPrivateKeyJWT && c.PrivateKey.File != "" {
		p.add("private_key.file", "set, but auth_method is %s; set auth_method: private_key_jwt", c.AuthMethod)
	}
}

// validateCommon checks the keys that apply to every grant.
func (c *Config) validateCommon(p *problems) {
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			p.add(fmt.Sprintf("scopes[%d]", i), "invalid scope %q; a scope is one word without spaces", s)
		}
	}
	for k := range c.Params {
		if key, reserved := reservedParams[k]; reserved {
			p.add("params."+k, "reserved parameter; use the %s key instead", key)
		}
	}
	if (c.TLS.ClientCertificateFile == "") != (c.TLS.ClientKeyFile == "") {
		missing := "tls.client_key_file"
		if c.TLS.ClientCertificateFile == "" {
			missing = "tls.client_certificate_file"
		}
		p.add(missing, "set both tls.client_certificate_file and tls.client_key_file, or neither")
	}
	if c.Verify.Enabled() {
		if c.Verify.JWKSURL == "" && c.Verify.Issuer == "" {
			p.add("verify.jwks_url", "missing; set verify.jwks_url or verify.issuer")
		}
		if c.Verify.JWKSURL != "" {
			p.checkURL("verify.jwks_url", c.Verify.JWKSURL)
		}
		if c.Verify.Issuer != "" && c.Verify.JWKSURL == "" {
			p.checkURL("verify.issuer", c.Verify.Issuer)
		}
		if c.Verify.Audience == "" {
			p.add("verify.audience", "missing; set the audience the DICOMweb server expects")
		}
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"refresh_before", c.RefreshBefore},
		{"default_lifetime", c.DefaultLifetime},
		{"timeout", c.Timeout},
		{"clock_skew", c.ClockSkew},
	} {
		if d.value < 0 {
			p.add(d.key, "must not be negative, got %s", d.value)
		}
	}
}

func (p *problems) requireClientID(c *Config) {
	if strings.TrimSpace(c.ClientID) == "" {
		p.add("client_id", "missing")
	}
}

func (p *problems) require(key, value, what string) {
	if strings.TrimSpace(value) == "" {
		p.add(key, "missing; set %s", what)
	}
}

// forbid reports a client secret set where the method does not use one, so
// that a secret is never configured without effect.
func (p *problems) forbid(method, key string, set bool) {
	if set {
		p.add(key, "not used with %s; remove it", method)
	}
}

// secretKey returns the key that sets the client secret in c.
func secretKey(c *Config) string {
	if c.ClientSecretFile != "" && c.ClientSecret == "" {
		return "client_secret_file"
	}
	return "client_secret"
}

func (p *problems) checkURL(key, raw string) {
	if err := checkURL(raw); err != nil {
		p.add(key, "%v", err)
	}
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %v; write a full URL such as https://host/path", raw, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("invalid URL %q: the scheme must be https (or http for a local test server)", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("invalid URL %q: no host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("invalid URL: credentials in the URL are not allowed; use client_id and client_secret")
	}
	return nil
}

// readSecret returns the client secret from the config or its file.
func (c *Config) readSecret() (string, error) {
	if c.ClientSecretFile == "" {
		return c.ClientSecret, nil
	}
	b, err := os.ReadFile(c.ClientSecretFile)
	if err != nil {
		return "", fmt.Errorf("client_secret_file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("client_secret_file: %s is empty", c.ClientSecretFile)
	}
	return secret, nil
}
