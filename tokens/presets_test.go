package tokens

import (
	"slices"
	"testing"
)

// presetResult is what a preset fills in.
type presetResult struct {
	grant      string
	tokenURL   string
	scopes     []string
	authMethod string
	resource   string
}

func TestPresets(t *testing.T) {
	const secret = "test-secret-value"
	tests := []struct {
		name   string
		config Config
		want   presetResult
	}{
		{
			name:   "azure",
			config: Config{Provider: ProviderAzure, TenantID: "contoso-tenant", ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0/token",
				scopes:     []string{"https://dicom.healthcareapis.azure.com/.default"},
				authMethod: AuthClientSecretPost,
			},
		},
		{
			name: "azure authority host",
			config: Config{Provider: ProviderAzure, TenantID: "contoso-tenant", AuthorityHost: "login.microsoftonline.us",
				ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://login.microsoftonline.us/contoso-tenant/oauth2/v2.0/token",
				scopes:     []string{azureDICOMScope},
				authMethod: AuthClientSecretPost,
			},
		},
		{
			name: "azure private key",
			config: Config{Provider: ProviderAzure, TenantID: "contoso-tenant", ClientID: "app",
				PrivateKey: PrivateKeyConfig{File: "/run/secrets/key.pem"}},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0/token",
				scopes:     []string{azureDICOMScope},
				authMethod: AuthPrivateKeyJWT,
			},
		},
		{
			name: "azure workload identity",
			config: Config{Provider: ProviderAzure, Grant: GrantWorkloadIdentity, TenantID: "contoso-tenant",
				ClientID: "app", AssertionFile: "/var/run/secrets/azure/tokens/azure-identity-token"},
			want: presetResult{
				grant:    GrantWorkloadIdentity,
				tokenURL: "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0/token",
				scopes:   []string{azureDICOMScope},
			},
		},
		{
			name: "azure refresh token",
			config: Config{Provider: ProviderAzure, Grant: GrantRefreshToken, TenantID: "contoso-tenant",
				ClientID: "app", RefreshTokenFile: "/run/secrets/refresh-token"},
			want: presetResult{
				grant:      GrantRefreshToken,
				tokenURL:   "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0/token",
				scopes:     []string{azureDICOMScope},
				authMethod: AuthNone,
			},
		},
		{
			name: "azure managed identity",
			config: Config{Provider: ProviderAzure, Grant: GrantManagedIdentity,
				Endpoint: "http://127.0.0.1:1/metadata/identity/oauth2/token"},
			want: presetResult{grant: GrantManagedIdentity, resource: "https://dicom.healthcareapis.azure.com"},
		},
		{
			name: "azure managed identity explicit resource",
			config: Config{Provider: ProviderAzure, Grant: GrantManagedIdentity, Resource: "https://example.test",
				Endpoint: "http://127.0.0.1:1/metadata/identity/oauth2/token"},
			want: presetResult{grant: GrantManagedIdentity, resource: "https://example.test"},
		},
		{
			name: "azure managed identity explicit scope",
			config: Config{Provider: ProviderAzure, Grant: GrantManagedIdentity,
				Scopes:   []string{"https://example.test/.default"},
				Endpoint: "http://127.0.0.1:1/metadata/identity/oauth2/token"},
			want: presetResult{grant: GrantManagedIdentity, scopes: []string{"https://example.test/.default"}},
		},
		{
			name:   "azure file grant",
			config: Config{Provider: ProviderAzure, Grant: GrantFile, TokenFile: "/run/secrets/token"},
			want:   presetResult{grant: GrantFile, scopes: []string{azureDICOMScope}},
		},
		{
			name: "azure explicit values",
			config: Config{Provider: ProviderAzure, TenantID: "contoso-tenant", TokenURL: "https://sts.example.test/token",
				Scopes: []string{"api://dicom/.default"}, AuthMethod: AuthClientSecretBasic,
				ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://sts.example.test/token",
				scopes:     []string{"api://dicom/.default"},
				authMethod: AuthClientSecretBasic,
			},
		},
		{
			name: "azure issuer",
			config: Config{Provider: ProviderAzure, TenantID: "contoso-tenant",
				Issuer: "https://login.microsoftonline.com/contoso-tenant/v2.0", ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant: GrantClientCredentials, scopes: []string{azureDICOMScope}, authMethod: AuthClientSecretPost,
			},
		},
		{
			name: "keycloak",
			config: Config{Provider: ProviderKeycloak, BaseURL: "https://sso.example.test/", Realm: "dicom",
				ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://sso.example.test/realms/dicom/protocol/openid-connect/token",
				authMethod: AuthClientSecretBasic,
			},
		},
		{
			name: "keycloak explicit token_url",
			config: Config{Provider: ProviderKeycloak, BaseURL: "https://sso.example.test", Realm: "dicom",
				TokenURL: "https://proxy.example.test/token", ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant: GrantClientCredentials, tokenURL: "https://proxy.example.test/token",
				authMethod: AuthClientSecretBasic,
			},
		},
		{
			name: "auth0",
			config: Config{Provider: ProviderAuth0, Domain: "tenant.eu.auth0.com", Audience: "https://dicom.example.test",
				ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://tenant.eu.auth0.com/oauth/token",
				authMethod: AuthClientSecretPost,
			},
		},
		{
			name: "auth0 explicit method",
			config: Config{Provider: ProviderAuth0, Domain: "tenant.eu.auth0.com", Audience: "https://dicom.example.test",
				ClientID: "app", ClientSecret: secret, AuthMethod: AuthClientSecretBasic},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://tenant.eu.auth0.com/oauth/token",
				authMethod: AuthClientSecretBasic,
			},
		},
		{
			name:   "okta default server",
			config: Config{Provider: ProviderOkta, Domain: "example.okta.com", ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://example.okta.com/oauth2/default/v1/token",
				authMethod: AuthClientSecretBasic,
			},
		},
		{
			name: "okta custom server",
			config: Config{Provider: ProviderOkta, Domain: "example.okta.com", AuthorizationServer: "aus1a2b3c",
				ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://example.okta.com/oauth2/aus1a2b3c/v1/token",
				authMethod: AuthClientSecretBasic,
			},
		},
		{
			name: "okta org server",
			config: Config{Provider: ProviderOkta, Domain: "example.okta.com", AuthorizationServer: "org",
				ClientID: "app", PrivateKey: PrivateKeyConfig{File: "/run/secrets/key.pem"}},
			want: presetResult{
				grant:      GrantClientCredentials,
				tokenURL:   "https://example.okta.com/oauth2/v1/token",
				authMethod: AuthPrivateKeyJWT,
			},
		},
		{
			name:   "google",
			config: Config{Provider: ProviderGoogle, ServiceAccountKeyFile: "/run/secrets/sa.json"},
			want: presetResult{
				grant:  GrantJWTBearer,
				scopes: []string{"https://www.googleapis.com/auth/cloud-healthcare"},
			},
		},
		{
			name: "google explicit scopes",
			config: Config{Provider: ProviderGoogle, ServiceAccountKeyFile: "/run/secrets/sa.json",
				Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}},
			want: presetResult{grant: GrantJWTBearer, scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}},
		},
		{
			name: "google metadata server",
			config: Config{Provider: ProviderGoogle, Grant: GrantMetadataServer,
				Endpoint: "http://127.0.0.1:1/computeMetadata/v1/instance/service-accounts/default/token"},
			want: presetResult{grant: GrantMetadataServer},
		},
		{
			name: "generic",
			config: Config{Provider: ProviderGeneric, TokenURL: "https://idp.example.test/token",
				ClientID: "app", ClientSecret: secret},
			want: presetResult{
				grant: GrantClientCredentials, tokenURL: "https://idp.example.test/token",
				authMethod: AuthClientSecretBasic,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.config
			c.SetDefaults()

			if c.Grant != tt.want.grant {
				t.Errorf("grant = %q, want %q", c.Grant, tt.want.grant)
			}
			if c.TokenURL != tt.want.tokenURL {
				t.Errorf("token_url = %q, want %q", c.TokenURL, tt.want.tokenURL)
			}
			if !slices.Equal(c.Scopes, tt.want.scopes) {
				t.Errorf("scopes = %q, want %q", c.Scopes, tt.want.scopes)
			}
			if c.AuthMethod != tt.want.authMethod {
				t.Errorf("auth_method = %q, want %q", c.AuthMethod, tt.want.authMethod)
			}
			if c.Resource != tt.want.resource {
				t.Errorf("resource = %q, want %q", c.Resource, tt.want.resource)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v, want no error", err)
			}
		})
	}
}

// TestPresetsNameMissingValues: a preset that cannot build the token URL
// leaves it empty, and Validate names the value the preset needed.
func TestPresetsNameMissingValues(t *testing.T) {
	tests := []struct {
		name   string
		config Config
		want   string
	}{
		{"azure tenant", Config{Provider: ProviderAzure, ClientID: "app", ClientSecret: "s"}, "tenant_id"},
		{"azure workload identity tenant", Config{Provider: ProviderAzure, Grant: GrantWorkloadIdentity,
			ClientID: "app", AssertionFile: "/var/run/token"}, "tenant_id"},
		{"keycloak realm", Config{Provider: ProviderKeycloak, BaseURL: "https://sso.example.test",
			ClientID: "app", ClientSecret: "s"}, "realm"},
		{"keycloak base_url", Config{Provider: ProviderKeycloak, Realm: "dicom",
			ClientID: "app", ClientSecret: "s"}, "base_url"},
		{"keycloak invalid base_url", Config{Provider: ProviderKeycloak, BaseURL: "sso.example.test", Realm: "dicom",
			ClientID: "app", ClientSecret: "s"}, "base_url"},
		{"auth0 domain", Config{Provider: ProviderAuth0, Audience: "https://dicom.example.test",
			ClientID: "app", ClientSecret: "s"}, "domain"},
		{"auth0 audience", Config{Provider: ProviderAuth0, Domain: "tenant.eu.auth0.com",
			ClientID: "app", ClientSecret: "s"}, "audience"},
		{"auth0 audience with token_url", Config{Provider: ProviderAuth0, TokenURL: "https://tenant.eu.auth0.com/oauth/token",
			ClientID: "app", ClientSecret: "s"}, "audience"},
		{"okta domain", Config{Provider: ProviderOkta, ClientID: "app", ClientSecret: "s"}, "domain"},
		{"google scopes empty for jwt bearer", Config{Provider: ProviderGoogle, Scopes: []string{""},
			ServiceAccountKeyFile: "/run/secrets/sa.json"}, "scopes[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.config
			c.SetDefaults()
			keys := fieldErrorKeys(t, c.Validate())
			if !slices.Contains(keys, tt.want) {
				t.Errorf("keys with errors = %q, want %q among them", keys, tt.want)
			}
		})
	}
}

// TestPresetsLeaveClientIdentity: no preset fills the client ID or the
// tenant, which identify the client and must come from the configuration.
func TestPresetsLeaveClientIdentity(t *testing.T) {
	for _, provider := range []string{ProviderAzure, ProviderGoogle, ProviderKeycloak, ProviderAuth0, ProviderOkta} {
		t.Run(provider, func(t *testing.T) {
			c := &Config{Provider: provider}
			c.SetDefaults()
			if c.ClientID != "" {
				t.Errorf("client_id = %q, want empty", c.ClientID)
			}
			if c.TenantID != "" {
				t.Errorf("tenant_id = %q, want empty", c.TenantID)
			}
			if c.Validate() == nil {
				t.Error("Validate accepted a preset with no client settings")
			}
		})
	}
}
