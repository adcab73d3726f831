package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
)

func jwtWithClaims(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(payload) + ".c2ln"
}

func TestDecodeClaims(t *testing.T) {
	tests := []struct {
		name      string
		claims    map[string]any
		wantAud   []string
		wantScope []string
		wantRoles []string
		wantApp   string
	}{
		{"entra app roles", map[string]any{"aud": "https://dicom.healthcareapis.azure.com", "roles": []string{"DICOM.Owner"},
			"appid": "11111111-1111-1111-1111-111111111111", "tid": "t"},
			[]string{"https://dicom.healthcareapis.azure.com"}, nil, []string{"DICOM.Owner"}, "11111111-1111-1111-1111-111111111111"},
		{"keycloak account only", map[string]any{"aud": "account", "scope": "profile email", "azp": "orthanc-egress",
			"realm_access": map[string]any{"roles": []string{"offline_access"}}},
			[]string{"account"}, []string{"profile", "email"}, []string{"offline_access"}, "orthanc-egress"},
		{"okta scp list", map[string]any{"aud": []string{"api://dicom"}, "scp": []string{"dicom.read", "dicom.write"}, "cid": "x"},
			[]string{"api://dicom"}, []string{"dicom.read", "dicom.write"}, nil, ""},
		{"entra scp string", map[string]any{"aud": "api://x", "scp": "dicom.read dicom.write", "azp": "c"},
			[]string{"api://x"}, []string{"dicom.read", "dicom.write"}, nil, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeClaims(jwtWithClaims(t, tt.claims))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Audience, tt.wantAud) {
				t.Errorf("aud = %q, want %q", c.Audience, tt.wantAud)
			}
			if !slices.Equal(c.Scopes, tt.wantScope) {
				t.Errorf("scopes = %q, want %q", c.Scopes, tt.wantScope)
			}
			if !slices.Equal(c.Roles, tt.wantRoles) {
				t.Errorf("roles = %q, want %q", c.Roles, tt.wantRoles)
			}
			if c.ClientID != tt.wantApp {
				t.Errorf("client = %q, want %q", c.ClientID, tt.wantApp)
			}
		})
	}

	exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c, err := DecodeClaims(jwtWithClaims(t, map[string]any{"exp": exp.Unix(), "iat": exp.Add(-time.Hour).Unix()}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Expiry == nil || !c.Expiry.Equal(exp) {
		t.Errorf("exp = %v, want %v", c.Expiry, exp)
	}
	if _, err := DecodeClaims("opaque-token"); !errors.Is(err, ErrNotJWT) {
		t.Errorf("opaque token: error %v, want ErrNotJWT", err)
	}
}

func TestManagerRefreshReplacesToken(t *testing.T) {
	clock := newFakeClock()
	src := tokensFor(clock, time.Hour)
	m := newTestManager(src, clock, Settings{})
	first, _ := m.Token(t.Context())

	second, err := m.Refresh(t.Context())
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if second == first {
		t.Fatal("Refresh returned the old token")
	}
	if got, _ := m.Token(t.Context()); got != second {
		t.Errorf("Token after Refresh = %s, want the refreshed %s", got.AccessToken, second.AccessToken)
	}
}
