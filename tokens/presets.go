package tokens

import (
	"net/url"
	"strings"
)

// Provider preset names.
const (
	ProviderAzure    = "azure"
	ProviderGoogle   = "google"
	ProviderKeycloak = "keycloak"
	ProviderAuth0    = "auth0"
	ProviderOkta     = "okta"
	ProviderGeneric  = "generic"
)

// Defaults that the presets fill in.
const (
	azureAuthorityHost = "login.microsoftonline.com"
	// azureDICOMScope is the scope of the Azure Health Data Services DICOM
	// service for the client credentials grant.
	azureDICOMScope = "https://dicom.healthcareapis.azure.com/.default"
	// azureDICOMResource is the same for managed identity, which takes a
	// resource instead of a scope.
	azureDICOMResource = "https://dicom.healthcareapis.azure.com"
	// googleHealthcareScope is the OAuth2 scope of the Cloud Healthcare API.
	googleHealthcareScope = "https://www.googleapis.com/auth/cloud-healthcare"
	googleTokenURL        = "https://oauth2.googleapis.com/token"
)

// applyPreset fills the defaults of c.Provider. It fills only what is empty,
// and leaves a value it cannot build (a missing tenant, realm or domain)
// empty, so that validateProvider names it.
func applyPreset(c *Config) {
	switch c.Provider {
	case ProviderAzure:
		applyAzure(c)
	case ProviderGoogle:
		if c.Grant == "" {
			c.Grant = GrantJWTBearer
		}
		if len(c.Scopes) == 0 && c.Grant != GrantMetadataServer {
			c.Scopes = []string{googleHealthcareScope}
		}
	case ProviderKeycloak:
		if c.TokenURL == "" && c.Issuer == "" && c.BaseURL != "" && c.Realm != "" {
			c.TokenURL = keycloakRealmURL(c) + "/protocol/openid-connect/token"
		}
	case ProviderAuth0:
		if c.TokenURL == "" && c.Issuer == "" && c.Domain != "" {
			c.TokenURL = "https://" + c.Domain + "/oauth/token"
		}
		if c.AuthMethod == "" && (c.ClientSecret != "" || c.ClientSecretFile != "") {
			c.AuthMethod = AuthClientSecretPost
		}
	case ProviderOkta:
		if c.TokenURL == "" && c.Issuer == "" && c.Domain != "" {
			c.TokenURL = oktaIssuer(c) + "/v1/token"
		}
	}
}

func applyAzure(c *Config) {
	if c.AuthorityHost == "" {
		c.AuthorityHost = azureAuthorityHost
	}
	if c.Grant == GrantManagedIdentity {
		if c.Resource == "" && len(c.Scopes) == 0 {
			c.Resource = azureDICOMResource
		}
		return
	}
	if c.TokenURL == "" && c.Issuer == "" && c.TenantID != "" && usesEntraTokenEndpoint(c.Grant) {
		c.TokenURL = "https://" + c.AuthorityHost + "/" + url.PathEscape(c.TenantID) + "/oauth2/v2.0/token"
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{azureDICOMScope}
	}
	if c.AuthMethod == "" && (c.ClientSecret != "" || c.ClientSecretFile != "") {
		c.AuthMethod = AuthClientSecretPost
	}
}

// usesEntraTokenEndpoint reports whether a grant posts to the Entra ID v2.0
// token endpoint of the tenant. An empty grant is client_credentials.
func usesEntraTokenEndpoint(grant string) bool {
	switch grant {
	case "", GrantClientCredentials, GrantWorkloadIdentity, GrantRefreshToken:
		return true
	}
	return false
}

func keycloakRealmURL(c *Config) string {
	return strings.TrimSuffix(c.BaseURL, "/") + "/realms/" + url.PathEscape(c.Realm)
}

func oktaIssuer(c *Config) string {
	switch c.AuthorizationServer {
	case "org":
		return "https://" + c.Domain + "/oauth2"
	case "":
		return "https://" + c.Domain + "/oauth2/default"
	default:
		return "https://" + c.Domain + "/oauth2/" + url.PathEscape(c.AuthorizationServer)
	}
}

// validateProvider names the values a preset needs and could not fill.
func (c *Config) validateProvider(p *problems) {
	hasEndpoint := c.TokenURL != "" || c.Issuer != ""
	switch c.Provider {
	case "", ProviderGeneric, ProviderGoogle:
	case ProviderAzure:
		if !hasEndpoint && c.TenantID == "" && usesEntraTokenEndpoint(c.Grant) {
			p.add("tenant_id", "missing; provider azure builds token_url from the Entra ID tenant ID")
		}
	case ProviderKeycloak:
		if !hasEndpoint {
			p.require("base_url", c.BaseURL, "the Keycloak server URL, such as https://sso.example.org; provider keycloak builds token_url from it")
			p.require("realm", c.Realm, "the Keycloak realm; provider keycloak builds token_url from it")
		}
		if c.BaseURL != "" {
			p.checkURL("base_url", c.BaseURL)
		}
	case ProviderAuth0:
		if !hasEndpoint {
			p.require("domain", c.Domain, "the Auth0 domain, such as example.eu.auth0.com; provider auth0 builds token_url from it")
		}
		p.require("audience", c.Audience, "the identifier of the Auth0 API that protects the DICOMweb server")
	case ProviderOkta:
		if !hasEndpoint {
			p.require("domain", c.Domain, "the Okta domain, such as example.okta.com; provider okta builds token_url from it")
		}
	default:
		p.add("provider", "unknown provider %q; use azure, google, keycloak, auth0, okta or generic", c.Provider)
	}
	if c.Domain != "" && strings.ContainsAny(c.Domain, "/:@ ") {
		p.add("domain", "invalid domain %q; write the host name only, such as example.okta.com", c.Domain)
	}
}
