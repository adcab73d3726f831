package tokens

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// baseConfigs are minimal valid configurations of each grant. Validate reads
// no files, so the paths need not exist.
var baseConfigs = map[string]Config{
	GrantClientCredentials: {
		Grant: GrantClientCredentials, TokenURL: "https://idp.example.test/token",
		ClientID: "orthanc-egress", ClientSecret: "test-secret-value",
	},
	GrantWorkloadIdentity: {
		Grant: GrantWorkloadIdentity, TokenURL: "https://idp.example.test/token",
		ClientID: "orthanc-egress", AssertionFile: "/var/run/secrets/azure/tokens/azure-identity-token",
	},
	GrantRefreshToken: {
		Grant: GrantRefreshToken, TokenURL: "https://idp.example.test/token",
		ClientID: "orthanc-egress", RefreshTokenFile: "/run/secrets/refresh-token",
	},
	GrantJWTBearer: {
		Grant: GrantJWTBearer, ServiceAccountKeyFile: "/run/secrets/sa.json",
		Scopes: []string{googleHealthcareScope},
	},
	GrantManagedIdentity: {
		Grant: GrantManagedIdentity, Endpoint: "http://127.0.0.1:1/metadata/identity/oauth2/token",
		Resource: azureDICOMResource,
	},
	GrantMetadataServer: {
		Grant: GrantMetadataServer, Endpoint: "http://127.0.0.1:1/computeMetadata/v1/token",
	},
	GrantFile: {Grant: GrantFile, TokenFile: "/run/secrets/token"},
	GrantExec: {Grant: GrantExec, Command: []string{"/usr/local/bin/get-token", "--json"}},
}

// configFrom returns a copy of the base configuration of grant, changed by
// change, with defaults applied.
func configFrom(grant string, change func(*Config)) *Config {
	c := baseConfigs[grant]
	c.Scopes = slices.Clone(c.Scopes)
	c.Command = slices.Clone(c.Command)
	if change != nil {
		change(&c)
	}
	c.SetDefaults()
	return &c
}

// fieldErrorKeys returns the sorted, distinct keys of the errors that
// Validate joined. It fails the test if one of them is not a *FieldError.
func fieldErrorKeys(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate returned %T (%v), want errors joined with errors.Join", err, err)
	}
	var keys []string
	for _, e := range joined.Unwrap() {
		fe, ok := e.(*FieldError)
		if !ok {
			t.Errorf("error %q is a %T, want a *FieldError", e, e)
			continue
		}
		if !strings.HasPrefix(fe.Error(), fe.Key+": ") {
			t.Errorf("error %q does not start with its key %q", fe, fe.Key)
		}
		keys = append(keys, fe.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func TestValidateGrants(t *testing.T) {
	tests := []struct {
		name   string
		grant  string
		change func(*Config)
		want   []string
	}{
		{"client credentials", GrantClientCredentials, nil, nil},
		{"issuer instead of token_url", GrantClientCredentials, func(c *Config) {
			c.TokenURL, c.Issuer = "", "https://idp.example.test/realms/x"
		}, nil},
		{"no token_url", GrantClientCredentials, func(c *Config) { c.TokenURL = "" }, []string{"token_url"}},
		{"token_url without scheme", GrantClientCredentials, func(c *Config) {
			c.TokenURL = "idp.example.test/token"
		}, []string{"token_url"}},
		{"token_url with credentials", GrantClientCredentials, func(c *Config) {
			c.TokenURL = "https://user:pass@idp.example.test/token"
		}, []string{"token_url"}},
		{"invalid issuer", GrantClientCredentials, func(c *Config) {
			c.TokenURL, c.Issuer = "", "ftp://idp.example.test"
		}, []string{"issuer"}},
		{"no client_id", GrantClientCredentials, func(c *Config) { c.ClientID = " " }, []string{"client_id"}},
		{"no secret", GrantClientCredentials, func(c *Config) { c.ClientSecret = "" }, []string{"client_secret_file"}},
		{"secret inline and file", GrantClientCredentials, func(c *Config) {
			c.ClientSecretFile = "/run/secrets/client-secret"
		}, []string{"client_secret"}},
		{"unsupported grant", GrantClientCredentials, func(c *Config) { c.Grant = "password" }, []string{"grant"}},

		{"workload identity", GrantWorkloadIdentity, nil, nil},
		{"workload identity no assertion_file", GrantWorkloadIdentity, func(c *Config) {
			c.AssertionFile = ""
		}, []string{"assertion_file"}},
		{"workload identity no client_id", GrantWorkloadIdentity, func(c *Config) { c.ClientID = "" }, []string{"client_id"}},
		{"workload identity no token_url", GrantWorkloadIdentity, func(c *Config) { c.TokenURL = "" }, []string{"token_url"}},
		{"workload identity with secret", GrantWorkloadIdentity, func(c *Config) {
			c.ClientSecret = "s"
		}, []string{"client_secret"}},
		{"workload identity with secret file", GrantWorkloadIdentity, func(c *Config) {
			c.ClientSecretFile = "/run/secrets/client-secret"
		}, []string{"client_secret_file"}},

		{"refresh token file", GrantRefreshToken, nil, nil},
		{"refresh token inline", GrantRefreshToken, func(c *Config) {
			c.RefreshTokenFile, c.RefreshToken = "", "rt"
		}, nil},
		{"refresh token confidential client", GrantRefreshToken, func(c *Config) { c.ClientSecret = "s" }, nil},
		{"no refresh token", GrantRefreshToken, func(c *Config) { c.RefreshTokenFile = "" }, []string{"refresh_token_file"}},
		{"refresh token inline and file", GrantRefreshToken, func(c *Config) {
			c.RefreshToken = "rt"
		}, []string{"refresh_token"}},
		{"refresh token no token_url", GrantRefreshToken, func(c *Config) { c.TokenURL = "" }, []string{"token_url"}},
		{"refresh token no client_id", GrantRefreshToken, func(c *Config) { c.ClientID = "" }, []string{"client_id"}},

		{"jwt bearer", GrantJWTBearer, nil, nil},
		{"jwt bearer no key file", GrantJWTBearer, func(c *Config) {
			c.ServiceAccountKeyFile = ""
		}, []string{"service_account_key_file"}},
		{"jwt bearer no scopes", GrantJWTBearer, func(c *Config) { c.Scopes = nil }, []string{"scopes"}},
		{"jwt bearer invalid token_url", GrantJWTBearer, func(c *Config) {
			c.TokenURL = "oauth2.example.test/token"
		}, []string{"token_url"}},

		{"managed identity", GrantManagedIdentity, nil, nil},
		{"managed identity scope instead of resource", GrantManagedIdentity, func(c *Config) {
			c.Resource, c.Scopes = "", []string{azureDICOMScope}
		}, nil},
		{"managed identity no endpoint", GrantManagedIdentity, func(c *Config) { c.Endpoint = "" }, []string{"endpoint"}},
		{"managed identity invalid endpoint", GrantManagedIdentity, func(c *Config) {
			c.Endpoint = "127.0.0.1/token"
		}, []string{"endpoint"}},
		{"managed identity no resource", GrantManagedIdentity, func(c *Config) { c.Resource = "" }, []string{"resource"}},

		{"metadata server", GrantMetadataServer, nil, nil},
		{"metadata server no endpoint", GrantMetadataServer, func(c *Config) { c.Endpoint = "" }, []string{"endpoint"}},

		{"file", GrantFile, nil, nil},
		{"file no token_file", GrantFile, func(c *Config) { c.TokenFile = "" }, []string{"token_file"}},

		{"exec", GrantExec, nil, nil},
		{"exec no command", GrantExec, func(c *Config) { c.Command = nil }, []string{"command"}},
		{"exec empty program", GrantExec, func(c *Config) { c.Command = []string{" ", "--json"} }, []string{"command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configFrom(tt.grant, tt.change)
			err := c.Validate()
			if got := fieldErrorKeys(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("keys with errors = %q, want %q (error: %v)", got, tt.want, err)
			}
		})
	}
}

func TestValidateAuthMethods(t *testing.T) {
	const keyFile, certFile = "/run/secrets/client-key.pem", "/run/secrets/client-cert.pem"
	tests := []struct {
		name       string
		change     func(*Config)
		wantMethod string
		want       []string
	}{
		{"basic by default", nil, AuthClientSecretBasic, nil},
		{"post", func(c *Config) { c.AuthMethod = AuthClientSecretPost }, AuthClientSecretPost, nil},
		{"post without secret", func(c *Config) {
			c.AuthMethod, c.ClientSecret = AuthClientSecretPost, ""
		}, AuthClientSecretPost, []string{"client_secret_file"}},
		{"private key by default", func(c *Config) {
			c.ClientSecret, c.PrivateKey.File = "", keyFile
		}, AuthPrivateKeyJWT, nil},
		{"private key without file", func(c *Config) {
			c.ClientSecret, c.AuthMethod = "", AuthPrivateKeyJWT
		}, AuthPrivateKeyJWT, []string{"private_key.file"}},
		{"private key with secret", func(c *Config) {
			c.PrivateKey.File = keyFile
		}, AuthPrivateKeyJWT, []string{"client_secret"}},
		{"private key with secret file", func(c *Config) {
			c.ClientSecret, c.ClientSecretFile, c.PrivateKey.File = "", "/run/secrets/s", keyFile
		}, AuthPrivateKeyJWT, []string{"client_secret_file"}},
		{"private key file with basic", func(c *Config) {
			c.AuthMethod, c.PrivateKey.File = AuthClientSecretBasic, keyFile
		}, AuthClientSecretBasic, []string{"private_key.file"}},
		{"private key algorithm PS256", func(c *Config) {
			c.ClientSecret, c.PrivateKey.File, c.PrivateKey.Algorithm = "", keyFile, "PS256"
		}, AuthPrivateKeyJWT, nil},
		{"private key algorithm HS256", func(c *Config) {
			c.ClientSecret, c.PrivateKey.File, c.PrivateKey.Algorithm = "", keyFile, "HS256"
		}, AuthPrivateKeyJWT, []string{"private_key.algorithm"}},
		{"private key invalid audience", func(c *Config) {
			c.ClientSecret, c.PrivateKey.File, c.PrivateKey.Audience = "", keyFile, "login.example.test"
		}, AuthPrivateKeyJWT, []string{"private_key.audience"}},
		{"tls client auth by default", func(c *Config) {
			c.ClientSecret, c.TLS.ClientCertificateFile, c.TLS.ClientKeyFile = "", certFile, keyFile
		}, AuthTLSClientAuth, nil},
		{"tls client auth without files", func(c *Config) {
			c.ClientSecret, c.AuthMethod = "", AuthTLSClientAuth
		}, AuthTLSClientAuth, []string{"tls.client_certificate_file", "tls.client_key_file"}},
		{"tls client auth without key", func(c *Config) {
			c.ClientSecret, c.TLS.ClientCertificateFile = "", certFile
		}, AuthTLSClientAuth, []string{"tls.client_key_file"}},
		{"tls client auth with secret", func(c *Config) {
			c.AuthMethod, c.TLS.ClientCertificateFile, c.TLS.ClientKeyFile = AuthTLSClientAuth, certFile, keyFile
		}, AuthTLSClientAuth, []string{"client_secret"}},
		{"tls key without certificate", func(c *Config) {
			c.TLS.ClientKeyFile = keyFile
		}, AuthClientSecretBasic, []string{"tls.client_certificate_file"}},
		{"none with client credentials", func(c *Config) {
			c.ClientSecret, c.AuthMethod = "", AuthNone
		}, AuthNone, []string{"auth_method"}},
		{"unknown method", func(c *Config) {
			c.AuthMethod = "client_secret_jwt"
		}, "client_secret_jwt", []string{"auth_method"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configFrom(GrantClientCredentials, tt.change)
			if c.AuthMethod != tt.wantMethod {
				t.Errorf("auth_method after SetDefaults = %q, want %q", c.AuthMethod, tt.wantMethod)
			}
			err := c.Validate()
			if got := fieldErrorKeys(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("keys with errors = %q, want %q (error: %v)", got, tt.want, err)
			}
		})
	}
}

func TestValidateCommonKeys(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"unknown provider", func(c *Config) { c.Provider = "ping" }, []string{"provider"}},
		{"invalid domain with scheme", func(c *Config) { c.Domain = "https://example.okta.com" }, []string{"domain"}},
		{"invalid domain with path", func(c *Config) { c.Domain = "example.okta.com/oauth2" }, []string{"domain"}},
		{"okta domain with scheme", func(c *Config) {
			c.Provider, c.TokenURL, c.Domain = ProviderOkta, "", "https://example.okta.com"
		}, []string{"domain"}},
		{"scope with space", func(c *Config) { c.Scopes = []string{"a", "b c"} }, []string{"scopes[1]"}},
		{"empty scope", func(c *Config) { c.Scopes = []string{""} }, []string{"scopes[0]"}},
		{"reserved parameter", func(c *Config) {
			c.Params = map[string]string{"grant_type": "password", "tenant": "t1"}
		}, []string{"params.grant_type"}},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, []string{"timeout"}},
		{"negative clock skew", func(c *Config) { c.ClockSkew = -time.Second }, []string{"clock_skew"}},
		{"verify without audience", func(c *Config) {
			c.Verify.JWKSURL = "https://idp.example.test/jwks"
		}, []string{"verify.audience"}},
		{"verify audience only", func(c *Config) { c.Verify.Audience = "dicom" }, []string{"verify.jwks_url"}},
		{"verify invalid jwks_url", func(c *Config) {
			c.Verify.JWKSURL, c.Verify.Audience = "idp.example.test/jwks", "dicom"
		}, []string{"verify.jwks_url"}},
		{"verify invalid issuer", func(c *Config) {
			c.Verify.Issuer, c.Verify.Audience = "idp.example.test", "dicom"
		}, []string{"verify.issuer"}},
		{"verify issuer", func(c *Config) {
			c.Verify.Issuer, c.Verify.Audience = "https://idp.example.test", "dicom"
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configFrom(GrantClientCredentials, tt.change)
			err := c.Validate()
			if got := fieldErrorKeys(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("keys with errors = %q, want %q (error: %v)", got, tt.want, err)
			}
		})
	}
}

// TestValidateNamesEveryProblem checks that Validate reports all problems
// at once, not only the first.
func TestValidateNamesEveryProblem(t *testing.T) {
	c := &Config{Provider: "ping", Scopes: []string{"a b"}}
	c.SetDefaults()

	got := fieldErrorKeys(t, c.Validate())
	want := []string{"client_id", "client_secret_file", "provider", "scopes[0]", "token_url"}
	if !slices.Equal(got, want) {
		t.Errorf("keys with errors = %q, want %q", got, want)
	}
}

// TestMetadataEndpointHasNoDefault: no preset or default fills endpoint,
// so the service never sends a request to a metadata address by itself.
func TestMetadataEndpointHasNoDefault(t *testing.T) {
	for _, grant := range []string{GrantManagedIdentity, GrantMetadataServer} {
		for _, provider := range []string{"", ProviderGeneric, ProviderAzure, ProviderGoogle} {
			t.Run(grant+"/"+provider, func(t *testing.T) {
				c := &Config{Grant: grant, Provider: provider, Resource: azureDICOMResource}
				c.SetDefaults()
				if c.Endpoint != "" {
					t.Errorf("endpoint after SetDefaults = %q, want empty", c.Endpoint)
				}
				keys := fieldErrorKeys(t, c.Validate())
				if !slices.Contains(keys, "endpoint") {
					t.Errorf("keys with errors = %q, want endpoint among them", keys)
				}
			})
		}
	}
}

func TestFieldErrorMessage(t *testing.T) {
	c := configFrom(GrantExec, func(c *Config) { c.Command = nil })
	err := c.Validate()

	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FieldError", err)
	}
	if !strings.Contains(fe.Msg, "missing") {
		t.Errorf("message %q does not say the key is missing", fe.Msg)
	}
	if !strings.Contains(err.Error(), "command: ") {
		t.Errorf("error %q does not start with the key", err)
	}
}
