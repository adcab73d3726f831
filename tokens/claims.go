package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Claims are the non-secret claims of a JWT access token that tell whether
// it fits the DICOMweb server: who issued it, for which audience, with
// which scopes or roles, and when it is valid. The signature is not
// checked; Claims only explain a token.
type Claims struct {
	Issuer    string     `json:"iss,omitempty"`
	Subject   string     `json:"sub,omitempty"`
	Audience  []string   `json:"aud,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	Roles     []string   `json:"roles,omitempty"`
	ClientID  string     `json:"client_id,omitempty"`
	TenantID  string     `json:"tid,omitempty"`
	IssuedAt  *time.Time `json:"iat,omitempty"`
	NotBefore *time.Time `json:"nbf,omitempty"`
	Expiry    *time.Time `json:"exp,omitempty"`
}

// ErrNotJWT is returned by DecodeClaims for an opaque token.
var ErrNotJWT = errors.New("the access token is not a JWT, so its claims cannot be shown")

// rawClaims are the claim spellings of the common providers. Scopes are scp
// (Entra ID, Okta, a string or a list) or scope (RFC 8693, Keycloak, Auth0).
// Roles are roles (Entra ID app roles) or realm_access.roles (Keycloak). The
// client is azp, appid (Entra ID v1) or client_id.
type rawClaims struct {
	Issuer      string          `json:"iss"`
	Subject     string          `json:"sub"`
	Audience    json.RawMessage `json:"aud"`
	Scp         json.RawMessage `json:"scp"`
	Scope       string          `json:"scope"`
	Roles       []string        `json:"roles"`
	RealmAccess struct {
		Roles []string `json:"roles"`
	} `json:"realm_access"`
	AZP       string      `json:"azp"`
	AppID     string      `json:"appid"`
	ClientID  string      `json:"client_id"`
	TenantID  string      `json:"tid"`
	IssuedAt  json.Number `json:"iat"`
	NotBefore json.Number `json:"nbf"`
	Expiry    json.Number `json:"exp"`
}

// DecodeClaims reads the claims of a JWT access token without verifying it.
func DecodeClaims(accessToken string) (*Claims, error) {
	parts := strings.Split(accessToken, ".")
	if len(parts) != 3 {
		return nil, ErrNotJWT
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, ErrNotJWT
	}
	var raw rawClaims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, ErrNotJWT
	}

	c := &Claims{
		Issuer: raw.Issuer, Subject: raw.Subject, Audience: stringOrList(raw.Audience),
		Scopes: stringOrList(raw.Scp), Roles: append(raw.Roles, raw.RealmAccess.Roles...),
		ClientID: firstNonEmpty(raw.AZP, raw.AppID, raw.ClientID), TenantID: raw.TenantID,
		IssuedAt: numericDate(raw.IssuedAt), NotBefore: numericDate(raw.NotBefore), Expiry: numericDate(raw.Expiry),
	}
	if len(c.Scopes) == 0 && raw.Scope != "" {
		c.Scopes = strings.Fields(raw.Scope)
	}
	return c, nil
}

// stringOrList reads a claim that is a string, a space-separated string (scp)
// or a list of strings.
func stringOrList(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return strings.Fields(one)
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

func numericDate(n json.Number) *time.Time {
	f, err := n.Float64()
	if err != nil || f <= 0 {
		return nil
	}
	t := time.Unix(int64(f), 0).UTC()
	return &t
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
