package tokens

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Grant names.
const (
	GrantClientCredentials = "client_credentials"
)

// Client authentication methods for the token endpoint (RFC 7591 section 2).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

// Defaults for Config fields left empty.
const (
	DefaultRefreshBefore = 5 * time.Minute
	DefaultLifetime      = 5 * time.Minute
	DefaultTimeout       = 10 * time.Second
	DefaultClockSkew     = 30 * time.Second
)

// Config is how one cluster gets its tokens. It is decoded from the `token`
// section of a cluster in the service configuration.
type Config struct {
	// Grant is the OAuth2 grant type. Only client_credentials is supported.
	Grant string `yaml:"grant"`
	// TokenURL is the token endpoint, an absolute http or https URL.
	TokenURL string `yaml:"token_url"`
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client secret inline. Prefer ClientSecretFile.
	ClientSecret string `yaml:"client_secret,omitempty"`
	// ClientSecretFile is a file whose content, without surrounding
	// whitespace, is the client secret. It is read once at startup.
	ClientSecretFile string   `yaml:"client_secret_file,omitempty"`
	Scopes           []string `yaml:"scopes,omitempty"`
	// AuthMethod is client_secret_basic (the default) or client_secret_post.
	AuthMethod string `yaml:"auth_method"`
	// Audience is sent as the audience parameter (Auth0, Okta custom servers).
	Audience string `yaml:"audience,omitempty"`
	// Resource is sent as the resource parameter (RFC 8707, Entra ID v1).
	Resource string `yaml:"resource,omitempty"`
	// Params are extra token request parameters.
	Params map[string]string `yaml:"params,omitempty"`
	// RefreshBefore is how long before expiry a refresh starts. It is clamped
	// to half the token's lifetime.
	RefreshBefore time.Duration `yaml:"refresh_before"`
	// DefaultLifetime is the lifetime of a token whose response has no
	// expires_in and that is not a JWT with an exp claim.
	DefaultLifetime time.Duration `yaml:"default_lifetime"`
	// Timeout bounds one token request, connection and answer included.
	Timeout time.Duration `yaml:"timeout"`
	// ClockSkew is how long before its expiry a token stops being handed out,
	// to allow for clock differences and transit time. It is clamped to a
	// quarter of the token's lifetime.
	ClockSkew time.Duration `yaml:"clock_skew"`
}

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

// SetDefaults fills the empty fields that have defaults.
func (c *Config) SetDefaults() {
	if c.Grant == "" {
		c.Grant = GrantClientCredentials
	}
	if c.AuthMethod == "" {
		c.AuthMethod = AuthClientSecretBasic
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

// FieldError is a problem with one configuration key.
type FieldError struct {
	// Key is the key's name within the token section, such as token_url.
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// Validate checks the configuration after SetDefaults and returns every
// problem found, each a *FieldError, joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	if c.Grant != GrantClientCredentials {
		add("grant", "unsupported grant %q; supported: %s", c.Grant, GrantClientCredentials)
	}
	if c.TokenURL == "" {
		add("token_url", "missing; set the identity provider's token endpoint URL")
	} else if err := checkURL(c.TokenURL); err != nil {
		add("token_url", "%v", err)
	}
	if strings.TrimSpace(c.ClientID) == "" {
		add("client_id", "missing")
	}
	switch {
	case c.ClientSecret != "" && c.ClientSecretFile != "":
		add("client_secret", "set either client_secret or client_secret_file, not both")
	case c.ClientSecret == "" && c.ClientSecretFile == "":
		add("client_secret_file", "missing; set client_secret_file (or client_secret)")
	}
	if c.AuthMethod != AuthClientSecretBasic && c.AuthMethod != AuthClientSecretPost {
		add("auth_method", "unsupported method %q; supported: %s, %s",
			c.AuthMethod, AuthClientSecretBasic, AuthClientSecretPost)
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			add(fmt.Sprintf("scopes[%d]", i), "invalid scope %q; a scope is one word without spaces", s)
		}
	}
	for k := range c.Params {
		if key, reserved := reservedParams[k]; reserved {
			add("params."+k, "reserved parameter; use the %s key instead", key)
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
			add(d.key, "must not be negative, got %s", d.value)
		}
	}
	return errors.Join(errs...)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %v", raw, err)
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

// CheckSecret reads the client secret, reporting a missing or empty file.
func (c *Config) CheckSecret() error {
	_, err := c.readSecret()
	return err
}
