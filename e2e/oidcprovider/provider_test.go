package oidcprovider

import (
	"crypto/ecdsa"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestClientSecretGrant(t *testing.T) {
	p := Start(t, Options{})
	p.AddSecretClient("basic-client", "basic-secret", AuthMethodBasic)
	p.AddSecretClient("post-client", "post-secret", AuthMethodPost)
	client := newHTTPClient(t, p)

	tests := []struct {
		name, method, id, secret string
	}{
		{name: "basic", method: AuthMethodBasic, id: "basic-client", secret: "basic-secret"},
		{name: "post", method: AuthMethodPost, id: "post-client", secret: "post-secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {GrantTypeClientCredentials}, "scope": {"read write"}}
			basicUser, basicPassword := tc.id, tc.secret
			if tc.method == AuthMethodPost {
				form.Set("client_id", tc.id)
				form.Set("client_secret", tc.secret)
				basicUser, basicPassword = "", ""
			}

			result := postToken(t, client, p.TokenURL(), form, basicUser, basicPassword)

			requireToken(t, result)
			if result.TokenType != "Bearer" {
				t.Errorf("token_type = %q, want Bearer", result.TokenType)
			}
			claims := verifyToken(t, p, result.AccessToken)
			if claims.Subject != tc.id {
				t.Errorf("sub = %q, want %q", claims.Subject, tc.id)
			}
			if claims.ClientID != tc.id {
				t.Errorf("client_id = %q, want %q", claims.ClientID, tc.id)
			}
			if claims.AuthorizedParty != tc.id {
				t.Errorf("azp = %q, want %q", claims.AuthorizedParty, tc.id)
			}
			if !slices.Equal(claims.Scopes, []string{"read", "write"}) {
				t.Errorf("scope = %q, want %q", claims.Scopes, []string{"read", "write"})
			}
			if !slices.Equal(claims.Audience, []string{tc.id}) {
				t.Errorf("aud = %q, want the client ID", claims.Audience)
			}
			info := p.LastTokenRequest()
			if info.AuthMethod != tc.method {
				t.Errorf("recorded auth method = %q, want %q", info.AuthMethod, tc.method)
			}
			if info.ClientID != tc.id {
				t.Errorf("recorded client ID = %q, want %q", info.ClientID, tc.id)
			}
		})
	}
}

func TestClientSecretFailures(t *testing.T) {
	p := Start(t, Options{})
	p.AddSecretClient("basic-client", "basic-secret", AuthMethodBasic)
	p.AddSecretClient("post-client", "post-secret", AuthMethodPost)
	client := newHTTPClient(t, p)

	tests := []struct {
		name            string
		form            url.Values
		basicUser       string
		basicPassword   string
		wantDescription string
	}{
		{
			name:            "wrong secret",
			basicUser:       "basic-client",
			basicPassword:   "not-the-secret",
			wantDescription: `wrong client secret for client "basic-client"`,
		},
		{
			name:            "unknown client",
			basicUser:       "ghost",
			basicPassword:   "basic-secret",
			wantDescription: `unknown client "ghost"`,
		},
		{
			name:            "method not registered",
			form:            url.Values{"client_id": {"basic-client"}, "client_secret": {"basic-secret"}},
			wantDescription: `client "basic-client" is not registered for client_secret_post`,
		},
		{
			name:            "missing secret",
			form:            url.Values{"client_id": {"post-client"}},
			wantDescription: `client "post-client" sent no client_secret`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {GrantTypeClientCredentials}}
			for name, values := range tc.form {
				form[name] = values
			}

			result := postToken(t, client, p.TokenURL(), form, tc.basicUser, tc.basicPassword)

			requireError(t, result, http.StatusUnauthorized, "invalid_client", tc.wantDescription)
			if tc.basicUser != "" && result.Header.Get("WWW-Authenticate") == "" {
				t.Error("a 401 to a Basic request has no WWW-Authenticate header")
			}
		})
	}
}

func TestGrantAndRequestFailures(t *testing.T) {
	p := Start(t, Options{Scopes: []string{"read"}})
	p.AddSecretClient("app", "app-secret")
	client := newHTTPClient(t, p)

	tests := []struct {
		name            string
		form            url.Values
		wantStatus      int
		wantError       string
		wantDescription string
	}{
		{
			name:            "unsupported grant",
			form:            url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}},
			wantStatus:      http.StatusBadRequest,
			wantError:       "unsupported_grant_type",
			wantDescription: `grant_type "password" is not served`,
		},
		{
			name:            "authorization code grant",
			form:            url.Values{"grant_type": {"authorization_code"}, "code": {"c"}, "redirect_uri": {"https://127.0.0.1/cb"}},
			wantStatus:      http.StatusBadRequest,
			wantError:       "unsupported_grant_type",
			wantDescription: `grant_type "authorization_code" is not served`,
		},
		{
			name:            "missing grant type",
			form:            url.Values{},
			wantStatus:      http.StatusBadRequest,
			wantError:       "invalid_request",
			wantDescription: "grant_type missing",
		},
		{
			name:            "unknown scope",
			form:            url.Values{"grant_type": {GrantTypeClientCredentials}, "scope": {"read admin"}},
			wantStatus:      http.StatusBadRequest,
			wantError:       "invalid_scope",
			wantDescription: `scope "admin" is not registered`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			result := postToken(t, client, p.TokenURL(), tc.form, "app", "app-secret")

			requireError(t, result, tc.wantStatus, tc.wantError, tc.wantDescription)
		})
	}
}

func TestTokenEndpointRejectsGet(t *testing.T) {
	p := Start(t, Options{})
	client := newHTTPClient(t, p)

	response, err := client.Get(p.TokenURL() + "?grant_type=client_credentials")
	if err != nil {
		t.Fatalf("GET token endpoint: %v", err)
	}
	response.Body.Close()

	if response.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("status = %d, want 405", response.StatusCode)
	}
}

func TestAudienceParameters(t *testing.T) {
	tests := []struct {
		name            string
		defaultAudience string
		form            url.Values
		want            []string
	}{
		{
			name: "audience and resource",
			form: url.Values{"audience": {"https://dicom.test/api"}, "resource": {"https://dicom.test/wado"}},
			want: []string{"https://dicom.test/api", "https://dicom.test/wado"},
		},
		{
			name: "entra default scope",
			form: url.Values{"scope": {"api://dicom-app/.default"}},
			want: []string{"api://dicom-app"},
		},
		{
			name:            "default audience",
			defaultAudience: "https://dicom.test",
			want:            []string{"https://dicom.test"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Start(t, Options{DefaultAudience: tc.defaultAudience})
			p.AddSecretClient("app", "app-secret")
			form := url.Values{"grant_type": {GrantTypeClientCredentials}}
			for name, values := range tc.form {
				form[name] = values
			}

			result := postToken(t, newHTTPClient(t, p), p.TokenURL(), form, "app", "app-secret")

			requireToken(t, result)
			claims := verifyToken(t, p, result.AccessToken)
			if !slices.Equal(claims.Audience, tc.want) {
				t.Errorf("aud = %q, want %q", claims.Audience, tc.want)
			}
			if got := p.LastTokenRequest(); !slices.Equal(got.Audience, tc.form["audience"]) {
				t.Errorf("recorded audience = %q, want %q", got.Audience, tc.form["audience"])
			}
		})
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	p := Start(t, Options{})
	rsaKey, ecKey := newRSAKey(t), newECKey(t)
	p.AddKeyClient("rsa-client", &rsaKey.PublicKey, "rsa-1")
	p.AddKeyClient("ec-client", &ecKey.PublicKey, "ec-1")
	client := newHTTPClient(t, p)

	tests := []struct {
		name     string
		id       string
		signer   signer
		audience string
	}{
		{name: "RS256", id: "rsa-client", signer: signer{key: rsaKey, alg: jose.RS256, kid: "rsa-1"}, audience: p.TokenURL()},
		{name: "PS256", id: "rsa-client", signer: signer{key: rsaKey, alg: jose.PS256, kid: "rsa-1"}, audience: p.TokenURL()},
		{name: "ES256", id: "ec-client", signer: signer{key: ecKey, alg: jose.ES256, kid: "ec-1"}, audience: p.TokenURL()},
		{name: "issuer as audience", id: "rsa-client", signer: signer{key: rsaKey, alg: jose.RS256, kid: "rsa-1"}, audience: p.Issuer()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertion := tc.signer.sign(t, assertionClaims(t, tc.id, tc.id, tc.audience))
			form := clientAssertionForm(assertion)
			form.Set("scope", "read")

			result := postToken(t, client, p.TokenURL(), form, "", "")

			requireToken(t, result)
			claims := verifyToken(t, p, result.AccessToken)
			if claims.ClientID != tc.id {
				t.Errorf("client_id = %q, want %q", claims.ClientID, tc.id)
			}
			info := p.LastTokenRequest()
			if info.AuthMethod != AuthMethodPrivateKeyJWT {
				t.Errorf("recorded auth method = %q, want %q", info.AuthMethod, AuthMethodPrivateKeyJWT)
			}
			if info.AssertionClaims["iss"] != tc.id {
				t.Errorf("recorded assertion iss = %v, want %q", info.AssertionClaims["iss"], tc.id)
			}
		})
	}
}

func TestPrivateKeyJWTKeyRotation(t *testing.T) {
	p := Start(t, Options{})
	oldKey, newKey := newRSAKey(t), newRSAKey(t)
	p.AddKeyClient("app", &oldKey.PublicKey, "old")
	p.AddKeyClient("app", &newKey.PublicKey, "new")
	client := newHTTPClient(t, p)

	for _, s := range []signer{{key: oldKey, alg: jose.RS256, kid: "old"}, {key: newKey, alg: jose.RS256, kid: "new"}} {
		t.Run(s.kid, func(t *testing.T) {
			assertion := s.sign(t, assertionClaims(t, "app", "app", p.TokenURL()))

			result := postToken(t, client, p.TokenURL(), clientAssertionForm(assertion), "", "")

			requireToken(t, result)
		})
	}
}

func TestPrivateKeyJWTFailures(t *testing.T) {
	p := Start(t, Options{})
	key, otherKey := newRSAKey(t), newRSAKey(t)
	p.AddKeyClient("app", &key.PublicKey, "k1")
	p.AddSecretClient("secret-app", "secret")
	client := newHTTPClient(t, p)
	good := signer{key: key, alg: jose.RS256, kid: "k1"}

	tests := []struct {
		name            string
		signer          signer
		change          func(claims map[string]any)
		clientID        string
		wantDescription string
	}{
		{
			name:            "expired",
			signer:          good,
			change:          func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() },
			wantDescription: "token has expired",
		},
		{
			name:            "wrong audience",
			signer:          good,
			change:          func(c map[string]any) { c["aud"] = "https://127.0.0.1:1/other/token" },
			wantDescription: "wrong audience",
		},
		{
			name:            "wrong key",
			signer:          signer{key: otherKey, alg: jose.RS256, kid: "k1"},
			wantDescription: "invalid signature",
		},
		{
			name:            "unknown kid",
			signer:          signer{key: key, alg: jose.RS256, kid: "k9"},
			wantDescription: `no key with kid "k9"`,
		},
		{
			name:            "not yet valid",
			signer:          good,
			change:          func(c map[string]any) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() },
			wantDescription: "not valid before",
		},
		{
			name:            "missing iat",
			signer:          good,
			change:          func(c map[string]any) { delete(c, "iat") },
			wantDescription: "issuedAt of token is missing",
		},
		{
			name:            "sub differs from iss",
			signer:          good,
			change:          func(c map[string]any) { c["sub"] = "someone-else" },
			wantDescription: "issuer and sub must be identical",
		},
		{
			name:            "unknown client",
			signer:          good,
			change:          func(c map[string]any) { c["iss"], c["sub"] = "ghost", "ghost" },
			wantDescription: `unknown client "ghost"`,
		},
		{
			name:            "client is not a key client",
			signer:          good,
			change:          func(c map[string]any) { c["iss"], c["sub"] = "secret-app", "secret-app" },
			wantDescription: `client "secret-app" is not registered for private_key_jwt`,
		},
		{
			name:            "client_id mismatch",
			signer:          good,
			clientID:        "secret-app",
			wantDescription: `client_id "secret-app" does not match the client_assertion iss "app"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := assertionClaims(t, "app", "app", p.TokenURL())
			if tc.change != nil {
				tc.change(claims)
			}
			form := clientAssertionForm(tc.signer.sign(t, claims))
			if tc.clientID != "" {
				form.Set("client_id", tc.clientID)
			}

			result := postToken(t, client, p.TokenURL(), form, "", "")

			requireError(t, result, http.StatusUnauthorized, "invalid_client", tc.wantDescription)
		})
	}
}

func TestPrivateKeyJWTReplayedJTI(t *testing.T) {
	p := Start(t, Options{})
	key := newRSAKey(t)
	p.AddKeyClient("app", &key.PublicKey, "k1")
	client := newHTTPClient(t, p)
	assertion := signer{key: key, alg: jose.RS256, kid: "k1"}.sign(t, assertionClaims(t, "app", "app", p.TokenURL()))

	first := postToken(t, client, p.TokenURL(), clientAssertionForm(assertion), "", "")
	replayed := postToken(t, client, p.TokenURL(), clientAssertionForm(assertion), "", "")

	requireToken(t, first)
	requireError(t, replayed, http.StatusUnauthorized, "invalid_client", "was already used (replayed assertion)")
}

func TestPrivateKeyJWTCertificateThumbprint(t *testing.T) {
	p := Start(t, Options{})
	registered, other := newClientCertificate(t, "registered"), newClientCertificate(t, "other")
	p.AddKeyClientWithCertificate("app", registered.Leaf, "cert-1")
	client := newHTTPClient(t, p)
	key := registered.PrivateKey.(*ecdsa.PrivateKey)

	tests := []struct {
		name            string
		headers         map[jose.HeaderKey]any
		wantDescription string // empty for success
	}{
		{name: "matching thumbprint", headers: map[jose.HeaderKey]any{thumbprintHeader: thumbprint(registered.Leaf)}},
		{name: "missing thumbprint", wantDescription: "certificate mismatch: the JWS header has no x5t#S256"},
		{
			name:            "thumbprint of another certificate",
			headers:         map[jose.HeaderKey]any{thumbprintHeader: thumbprint(other.Leaf)},
			wantDescription: "certificate mismatch: x5t#S256 header",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := signer{key: key, alg: jose.ES256, kid: "cert-1", headers: tc.headers}
			assertion := s.sign(t, assertionClaims(t, "app", "app", p.TokenURL()))

			result := postToken(t, client, p.TokenURL(), clientAssertionForm(assertion), "", "")

			if tc.wantDescription == "" {
				requireToken(t, result)
				return
			}
			requireError(t, result, http.StatusUnauthorized, "invalid_client", tc.wantDescription)
		})
	}
}

func TestTLSClientAuth(t *testing.T) {
	p := Start(t, Options{})
	registered, other := newClientCertificate(t, "mtls-app"), newClientCertificate(t, "intruder")
	p.AddCertClient("mtls-app", registered.Leaf)
	form := url.Values{"grant_type": {GrantTypeClientCredentials}, "client_id": {"mtls-app"}}

	t.Run("registered certificate", func(t *testing.T) {
		result := postToken(t, newHTTPClient(t, p, registered), p.TokenURL(), form, "", "")

		requireToken(t, result)
		if claims := verifyToken(t, p, result.AccessToken); claims.ClientID != "mtls-app" {
			t.Errorf("client_id = %q, want mtls-app", claims.ClientID)
		}
		info := p.LastTokenRequest()
		if info.AuthMethod != AuthMethodTLSClient {
			t.Errorf("recorded auth method = %q, want %q", info.AuthMethod, AuthMethodTLSClient)
		}
		if info.ClientCertificateSubject != "CN=mtls-app" {
			t.Errorf("recorded certificate subject = %q, want CN=mtls-app", info.ClientCertificateSubject)
		}
	})
	t.Run("wrong certificate", func(t *testing.T) {
		result := postToken(t, newHTTPClient(t, p, other), p.TokenURL(), form, "", "")

		requireError(t, result, http.StatusUnauthorized, "invalid_client", "certificate mismatch")
	})
	t.Run("no certificate", func(t *testing.T) {
		result := postToken(t, newHTTPClient(t, p), p.TokenURL(), form, "", "")

		requireError(t, result, http.StatusUnauthorized, "invalid_client", "presented no TLS client certificate")
	})
}

func TestServiceAccountGrant(t *testing.T) {
	p := Start(t, Options{})
	key := newRSAKey(t)
	const email = "proxy@project.iam.gserviceaccount.com"
	p.AddServiceAccount(email, &key.PublicKey, "sa-key")
	client := newHTTPClient(t, p)
	s := signer{key: key, alg: jose.RS256, kid: "sa-key"}

	tests := []struct {
		name        string
		subject     string
		wantSubject string
	}{
		{name: "own identity", wantSubject: email},
		{name: "delegated subject", subject: "radiologist@hospital.test", wantSubject: "radiologist@hospital.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := assertionClaims(t, email, tc.subject, p.TokenURL())
			if tc.subject == "" {
				delete(claims, "sub")
			}
			claims["scope"] = "https://www.googleapis.com/auth/cloud-healthcare"

			result := postToken(t, client, p.TokenURL(), jwtBearerForm(s.sign(t, claims)), "", "")

			requireToken(t, result)
			verified := verifyToken(t, p, result.AccessToken)
			if verified.Subject != tc.wantSubject {
				t.Errorf("sub = %q, want %q", verified.Subject, tc.wantSubject)
			}
			if verified.ClientID != email {
				t.Errorf("client_id = %q, want %q", verified.ClientID, email)
			}
			if !slices.Equal(verified.Scopes, []string{"https://www.googleapis.com/auth/cloud-healthcare"}) {
				t.Errorf("scope = %q, want the cloud-healthcare scope", verified.Scopes)
			}
			if got := p.LastTokenRequest().GrantType; got != GrantTypeJWTBearer {
				t.Errorf("recorded grant type = %q, want %q", got, GrantTypeJWTBearer)
			}
		})
	}
}

func TestServiceAccountFailures(t *testing.T) {
	p := Start(t, Options{})
	key, otherKey := newRSAKey(t), newRSAKey(t)
	const email = "proxy@project.iam.gserviceaccount.com"
	p.AddServiceAccount(email, &key.PublicKey, "sa-key")
	client := newHTTPClient(t, p)
	good := signer{key: key, alg: jose.RS256, kid: "sa-key"}

	tests := []struct {
		name            string
		signer          signer
		change          func(claims map[string]any)
		wantError       string
		wantDescription string
	}{
		{
			name:            "expired",
			signer:          good,
			change:          func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() },
			wantError:       "invalid_grant",
			wantDescription: "token has expired",
		},
		{
			name:            "wrong audience",
			signer:          good,
			change:          func(c map[string]any) { c["aud"] = "https://127.0.0.1:1/token" },
			wantError:       "invalid_grant",
			wantDescription: "wrong audience",
		},
		{
			name:            "wrong key",
			signer:          signer{key: otherKey, alg: jose.RS256, kid: "sa-key"},
			wantError:       "invalid_grant",
			wantDescription: "invalid signature",
		},
		{
			name:            "unknown account",
			signer:          good,
			change:          func(c map[string]any) { c["iss"] = "ghost@project.iam.gserviceaccount.com" },
			wantError:       "invalid_grant",
			wantDescription: "is not a registered service account",
		},
		{
			name:            "no scope",
			signer:          good,
			change:          func(c map[string]any) { delete(c, "scope") },
			wantError:       "invalid_scope",
			wantDescription: "no scope claim",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := assertionClaims(t, email, "", p.TokenURL())
			delete(claims, "sub")
			claims["scope"] = "https://www.googleapis.com/auth/cloud-healthcare"
			if tc.change != nil {
				tc.change(claims)
			}

			result := postToken(t, client, p.TokenURL(), jwtBearerForm(tc.signer.sign(t, claims)), "", "")

			requireError(t, result, http.StatusBadRequest, tc.wantError, tc.wantDescription)
		})
	}
}

func TestServiceAccountReplayedJTI(t *testing.T) {
	p := Start(t, Options{})
	key := newRSAKey(t)
	const email = "proxy@project.iam.gserviceaccount.com"
	p.AddServiceAccount(email, &key.PublicKey, "sa-key")
	client := newHTTPClient(t, p)
	claims := assertionClaims(t, email, email, p.TokenURL())
	claims["scope"] = "scope-a"
	assertion := signer{key: key, alg: jose.RS256, kid: "sa-key"}.sign(t, claims)

	first := postToken(t, client, p.TokenURL(), jwtBearerForm(assertion), "", "")
	replayed := postToken(t, client, p.TokenURL(), jwtBearerForm(assertion), "", "")

	requireToken(t, first)
	requireError(t, replayed, http.StatusBadRequest, "invalid_grant", "was already used (replayed assertion)")
}

// kubernetesIssuer is only a name in the iss claim; nothing connects to it.
const kubernetesIssuer = "https://kubernetes.default.svc.cluster.local"

func TestFederatedCredential(t *testing.T) {
	p := Start(t, Options{})
	clusterKey := newRSAKey(t)
	p.TrustFederation(FederatedCredential{
		Issuer:   kubernetesIssuer,
		Key:      &clusterKey.PublicKey,
		KeyID:    "cluster-key",
		Subject:  "system:serviceaccount:dicom:proxy",
		ClientID: "entra-app-id",
	})
	client := newHTTPClient(t, p)
	claims := assertionClaims(t, kubernetesIssuer, "system:serviceaccount:dicom:proxy", DefaultFederationAudience)
	claims["nbf"] = time.Now().Unix()
	serviceAccountToken := signer{key: clusterKey, alg: jose.RS256, kid: "cluster-key"}.sign(t, claims)
	form := clientAssertionForm(serviceAccountToken)
	form.Set("client_id", "entra-app-id")
	form.Set("scope", "api://dicom-app/.default")

	// A workload presents the same service account token until it is
	// renewed, so the second request must succeed too.
	for attempt := 1; attempt <= 2; attempt++ {
		t.Run(fmt.Sprintf("attempt %d", attempt), func(t *testing.T) {
			result := postToken(t, client, p.TokenURL(), form, "", "")

			requireToken(t, result)
			verified := verifyToken(t, p, result.AccessToken)
			if verified.Subject != "entra-app-id" {
				t.Errorf("sub = %q, want entra-app-id", verified.Subject)
			}
			if !slices.Equal(verified.Audience, []string{"api://dicom-app"}) {
				t.Errorf("aud = %q, want %q", verified.Audience, []string{"api://dicom-app"})
			}
			info := p.LastTokenRequest()
			if info.AuthMethod != AuthMethodFederated {
				t.Errorf("recorded auth method = %q, want %q", info.AuthMethod, AuthMethodFederated)
			}
			if info.ClientID != "entra-app-id" {
				t.Errorf("recorded client ID = %q, want entra-app-id", info.ClientID)
			}
		})
	}
}

func TestFederatedCredentialFailures(t *testing.T) {
	p := Start(t, Options{})
	clusterKey, otherKey := newRSAKey(t), newRSAKey(t)
	p.TrustFederation(FederatedCredential{
		Issuer:   kubernetesIssuer,
		Key:      &clusterKey.PublicKey,
		Subject:  "system:serviceaccount:dicom:proxy",
		ClientID: "entra-app-id",
	})
	p.AddSecretClient("other-app", "secret")
	client := newHTTPClient(t, p)
	good := signer{key: clusterKey, alg: jose.RS256, kid: "cluster-key"}

	tests := []struct {
		name            string
		signer          signer
		change          func(claims map[string]any)
		clientID        string
		wantDescription string
	}{
		{
			name:            "wrong subject",
			signer:          good,
			change:          func(c map[string]any) { c["sub"] = "system:serviceaccount:dicom:intruder" },
			wantDescription: `accepts subject "system:serviceaccount:dicom:intruder"`,
		},
		{
			name:            "wrong audience",
			signer:          good,
			change:          func(c map[string]any) { c["aud"] = "https://kubernetes.default.svc" },
			wantDescription: "wrong audience",
		},
		{
			name:            "wrong key",
			signer:          signer{key: otherKey, alg: jose.RS256, kid: "cluster-key"},
			wantDescription: "invalid signature",
		},
		{
			name:            "expired",
			signer:          good,
			change:          func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() },
			wantDescription: "token has expired",
		},
		{
			name:            "client without this credential",
			signer:          good,
			clientID:        "other-app",
			wantDescription: `no federated credential of client "other-app" trusts issuer`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := assertionClaims(t, kubernetesIssuer, "system:serviceaccount:dicom:proxy", DefaultFederationAudience)
			if tc.change != nil {
				tc.change(claims)
			}
			form := clientAssertionForm(tc.signer.sign(t, claims))
			form.Set("client_id", cmpOr(tc.clientID, "entra-app-id"))

			result := postToken(t, client, p.TokenURL(), form, "", "")

			requireError(t, result, http.StatusUnauthorized, "invalid_client", tc.wantDescription)
		})
	}
}

func cmpOr(value, fallback string) string {
	if value != "" {
		return value
	}
	return fallback
}

func TestRefreshToken(t *testing.T) {
	p := Start(t, Options{})
	p.AddSecretClient("app", "app-secret")
	p.AddPublicClient("cli")
	p.AddRefreshToken("app", "refresh-static", false)
	p.AddRefreshToken("cli", "refresh-public", false)
	client := newHTTPClient(t, p)

	tests := []struct {
		name      string
		form      url.Values
		basicUser string
		basicPass string
	}{
		{name: "confidential client", form: url.Values{"refresh_token": {"refresh-static"}}, basicUser: "app", basicPass: "app-secret"},
		{name: "public client", form: url.Values{"refresh_token": {"refresh-public"}, "client_id": {"cli"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {GrantTypeRefreshToken}}
			for name, values := range tc.form {
				form[name] = values
			}

			// A refresh token without rotation stays valid.
			for range 2 {
				result := postToken(t, client, p.TokenURL(), form, tc.basicUser, tc.basicPass)

				requireToken(t, result)
				if result.RefreshToken != "" {
					t.Error("a response for a refresh token without rotation carries a new refresh_token")
				}
				if claims := verifyToken(t, p, result.AccessToken); claims.Subject != RefreshTokenSubject {
					t.Errorf("sub = %q, want %q", claims.Subject, RefreshTokenSubject)
				}
			}
		})
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	p := Start(t, Options{})
	p.AddSecretClient("app", "app-secret")
	p.AddRefreshToken("app", "refresh-1", true)
	client := newHTTPClient(t, p)
	refresh := func(token string) tokenResult {
		form := url.Values{"grant_type": {GrantTypeRefreshToken}, "refresh_token": {token}}
		return postToken(t, client, p.TokenURL(), form, "app", "app-secret")
	}

	first := refresh("refresh-1")
	requireToken(t, first)
	if first.RefreshToken == "" || first.RefreshToken == "refresh-1" {
		t.Fatalf("refresh_token = %q, want a new one", first.RefreshToken)
	}

	requireError(t, refresh("refresh-1"), http.StatusBadRequest, "invalid_grant", "rotated away")

	second := refresh(first.RefreshToken)
	requireToken(t, second)
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Errorf("refresh_token = %q, want one different from %q", second.RefreshToken, first.RefreshToken)
	}
}

func TestRefreshTokenFailures(t *testing.T) {
	p := Start(t, Options{})
	p.AddSecretClient("app", "app-secret")
	p.AddSecretClient("other", "other-secret")
	p.AddRefreshToken("app", "refresh-app", false)
	client := newHTTPClient(t, p)

	tests := []struct {
		name            string
		token           string
		clientID        string
		secret          string
		wantDescription string
	}{
		{name: "unknown token", token: "refresh-unknown", clientID: "app", secret: "app-secret", wantDescription: "refresh token is unknown"},
		{name: "other client", token: "refresh-app", clientID: "other", secret: "other-secret", wantDescription: `issued to client "app", not to "other"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {GrantTypeRefreshToken}, "refresh_token": {tc.token}}

			result := postToken(t, client, p.TokenURL(), form, tc.clientID, tc.secret)

			requireError(t, result, http.StatusBadRequest, "invalid_grant", tc.wantDescription)
		})
	}
}

// discoveryDocument contains the discovery fields the tests check.
type discoveryDocument struct {
	Issuer            string   `json:"issuer"`
	TokenEndpoint     string   `json:"token_endpoint"`
	JWKSURI           string   `json:"jwks_uri"`
	AuthMethods       []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypes        []string `json:"grant_types_supported"`
	SigningAlgorithms []string `json:"id_token_signing_alg_values_supported"`
}

func TestDiscovery(t *testing.T) {
	for _, issuerPath := range []string{"", "/realms/test"} {
		t.Run("issuer path "+cmpOr(issuerPath, "none"), func(t *testing.T) {
			p := Start(t, Options{IssuerPath: issuerPath})
			client := newHTTPClient(t, p)
			origin := strings.TrimSuffix(p.Issuer(), issuerPath)
			checkProviderURLs(t, p, origin, issuerPath)

			urls := map[string]string{
				"openid configuration": p.Issuer() + "/.well-known/openid-configuration",
				"RFC 8414 metadata":    origin + "/.well-known/oauth-authorization-server" + issuerPath,
				"RFC 8414 openid form": origin + "/.well-known/openid-configuration" + issuerPath,
			}
			for name, rawURL := range urls {
				t.Run(name, func(t *testing.T) {
					var document discoveryDocument
					if status := getJSON(t, client, rawURL, &document); status != http.StatusOK {
						t.Fatalf("GET %s: status %d, want 200", rawURL, status)
					}
					checkDiscoveryDocument(t, p, document)
				})
			}
		})
	}
}

func checkProviderURLs(t *testing.T, p *Provider, origin, issuerPath string) {
	t.Helper()
	if want := origin + issuerPath; p.Issuer() != want {
		t.Errorf("Issuer = %q, want %q", p.Issuer(), want)
	}
	if !strings.HasPrefix(origin, "https://127.0.0.1:") {
		t.Errorf("issuer origin = %q, want https://127.0.0.1:PORT", origin)
	}
	if want := p.Issuer() + "/oauth/token"; p.TokenURL() != want {
		t.Errorf("TokenURL = %q, want %q", p.TokenURL(), want)
	}
	if want := p.Issuer() + "/keys"; p.JWKSURL() != want {
		t.Errorf("JWKSURL = %q, want %q", p.JWKSURL(), want)
	}
	if want := p.Issuer() + "/.well-known/openid-configuration"; p.DiscoveryURL() != want {
		t.Errorf("DiscoveryURL = %q, want %q", p.DiscoveryURL(), want)
	}
	if want := origin + "/.well-known/oauth-authorization-server" + issuerPath; p.MetadataURL() != want {
		t.Errorf("MetadataURL = %q, want %q", p.MetadataURL(), want)
	}
}

func checkDiscoveryDocument(t *testing.T, p *Provider, document discoveryDocument) {
	t.Helper()
	if document.Issuer != p.Issuer() {
		t.Errorf("issuer = %q, want %q", document.Issuer, p.Issuer())
	}
	if document.TokenEndpoint != p.TokenURL() {
		t.Errorf("token_endpoint = %q, want %q", document.TokenEndpoint, p.TokenURL())
	}
	if document.JWKSURI != p.JWKSURL() {
		t.Errorf("jwks_uri = %q, want %q", document.JWKSURI, p.JWKSURL())
	}
	for _, method := range []string{AuthMethodBasic, AuthMethodPost, AuthMethodPrivateKeyJWT, AuthMethodTLSClient} {
		if !slices.Contains(document.AuthMethods, method) {
			t.Errorf("token_endpoint_auth_methods_supported = %q, want it to contain %q", document.AuthMethods, method)
		}
	}
	for _, grant := range []string{GrantTypeClientCredentials, GrantTypeRefreshToken, GrantTypeJWTBearer} {
		if !slices.Contains(document.GrantTypes, grant) {
			t.Errorf("grant_types_supported = %q, want it to contain %q", document.GrantTypes, grant)
		}
	}
	if slices.Contains(document.GrantTypes, "authorization_code") {
		t.Errorf("grant_types_supported = %q lists authorization_code, which is not served", document.GrantTypes)
	}
}

func TestDiscoveryUnknownIssuerPath(t *testing.T) {
	p := Start(t, Options{IssuerPath: "/realms/test"})
	client := newHTTPClient(t, p)
	origin := strings.TrimSuffix(p.Issuer(), "/realms/test")

	for _, rawURL := range []string{
		origin + "/.well-known/openid-configuration",
		origin + "/.well-known/oauth-authorization-server",
		origin + "/.well-known/oauth-authorization-server/realms/other",
	} {
		t.Run(strings.TrimPrefix(rawURL, origin), func(t *testing.T) {
			var document discoveryDocument
			if status := getJSON(t, client, rawURL, &document); status != http.StatusNotFound {
				t.Errorf("status = %d, want 404", status)
			}
		})
	}
}

func TestIssuerPathTokens(t *testing.T) {
	p := Start(t, Options{IssuerPath: "/realms/test"})
	p.AddSecretClient("app", "app-secret")
	form := url.Values{"grant_type": {GrantTypeClientCredentials}}

	result := postToken(t, newHTTPClient(t, p), p.TokenURL(), form, "app", "app-secret")

	requireToken(t, result)
	if claims := verifyToken(t, p, result.AccessToken); claims.Issuer != p.Issuer() {
		t.Errorf("iss = %q, want %q", claims.Issuer, p.Issuer())
	}
}

func TestAdvertisedIssuer(t *testing.T) {
	const advertised = "https://127.0.0.1:1/not-this-issuer"
	p := Start(t, Options{AdvertisedIssuer: advertised})
	client := newHTTPClient(t, p)

	for _, rawURL := range []string{p.DiscoveryURL(), p.MetadataURL()} {
		t.Run(strings.TrimPrefix(rawURL, p.Issuer()), func(t *testing.T) {
			var document discoveryDocument
			if status := getJSON(t, client, rawURL, &document); status != http.StatusOK {
				t.Fatalf("status = %d, want 200", status)
			}
			if document.Issuer != advertised {
				t.Errorf("issuer = %q, want %q", document.Issuer, advertised)
			}
		})
	}
}

func TestTokensVerifyAgainstJWKS(t *testing.T) {
	p := Start(t, Options{})
	p.AddSecretClient("app", "app-secret")
	client := newHTTPClient(t, p)
	result := postToken(t, client, p.TokenURL(), url.Values{"grant_type": {GrantTypeClientCredentials}}, "app", "app-secret")
	requireToken(t, result)

	var keySet jose.JSONWebKeySet
	if status := getJSON(t, client, p.JWKSURL(), &keySet); status != http.StatusOK {
		t.Fatalf("GET JWKS: status %d", status)
	}
	token, err := jwt.ParseSigned(result.AccessToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse access token: %v", err)
	}
	kid := token.Headers[0].KeyID
	keys := keySet.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys with kid %q, want 1", len(keys), kid)
	}
	if keys[0].Algorithm != string(jose.RS256) {
		t.Errorf("JWKS key alg = %q, want RS256", keys[0].Algorithm)
	}

	var claims jwt.Claims
	if err := token.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("verify access token with the JWKS key: %v", err)
	}
	if claims.Issuer != p.Issuer() {
		t.Errorf("iss = %q, want %q", claims.Issuer, p.Issuer())
	}
}

func TestVerifyRejectsForeignTokens(t *testing.T) {
	p, other := Start(t, Options{}), Start(t, Options{})
	p.AddSecretClient("app", "app-secret")
	other.AddSecretClient("app", "app-secret")
	form := url.Values{"grant_type": {GrantTypeClientCredentials}}
	own := postToken(t, newHTTPClient(t, p), p.TokenURL(), form, "app", "app-secret")
	foreign := postToken(t, newHTTPClient(t, other), other.TokenURL(), form, "app", "app-secret")
	requireToken(t, own)
	requireToken(t, foreign)

	tests := map[string]string{
		"other provider":     foreign.AccessToken,
		"tampered signature": own.AccessToken[:len(own.AccessToken)-4] + "AAAA",
		"not a JWT":          "opaque-token",
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := p.Verify(token); err == nil {
				t.Error("Verify accepted the token")
			}
		})
	}
}

func TestTokenLifetime(t *testing.T) {
	tests := []struct {
		name     string
		options  Options
		set      time.Duration
		lifetime time.Duration
	}{
		{name: "default", lifetime: DefaultTokenLifetime},
		{name: "option", options: Options{TokenLifetime: 10 * time.Minute}, lifetime: 10 * time.Minute},
		{name: "SetTokenLifetime", set: 2 * time.Minute, lifetime: 2 * time.Minute},
		{name: "one second", set: time.Second, lifetime: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Start(t, tc.options)
			p.AddSecretClient("app", "app-secret")
			if tc.set > 0 {
				p.SetTokenLifetime(tc.set)
			}

			form := url.Values{"grant_type": {GrantTypeClientCredentials}}
			result := postToken(t, newHTTPClient(t, p), p.TokenURL(), form, "app", "app-secret")

			requireToken(t, result)
			if want := int(tc.lifetime.Seconds()); result.ExpiresIn < max(want-5, 1) || result.ExpiresIn > want {
				t.Errorf("expires_in = %d, want about %d and at least 1", result.ExpiresIn, want)
			}
			if tc.lifetime < time.Minute {
				// exp is in whole seconds, so a one-second token may
				// already be expired when Verify runs.
				return
			}
			claims := verifyToken(t, p, result.AccessToken)
			if got := claims.ExpiresAt.Sub(claims.IssuedAt); got < tc.lifetime-2*time.Second || got > tc.lifetime+2*time.Second {
				t.Errorf("exp - iat = %v, want about %v", got, tc.lifetime)
			}
		})
	}
}

func TestFailNext(t *testing.T) {
	p := Start(t, Options{})
	p.AddSecretClient("app", "app-secret")
	client := newHTTPClient(t, p)
	p.FailNext(http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`)
	p.FailNext(http.StatusBadGateway, "<html>bad gateway</html>")

	tests := []struct {
		wantStatus      int
		wantContentType string
		wantBody        string
		wantError       string
	}{
		{http.StatusServiceUnavailable, "application/json", `{"error":"temporarily_unavailable"}`, "temporarily_unavailable"},
		{http.StatusBadGateway, "text/plain; charset=utf-8", "<html>bad gateway</html>", ""},
		{http.StatusOK, "application/json", "", ""},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("request %d", i+1), func(t *testing.T) {
			request, err := http.NewRequest(http.MethodPost, p.TokenURL(),
				strings.NewReader(url.Values{"grant_type": {GrantTypeClientCredentials}}.Encode()))
			if err != nil {
				t.Fatalf("build request: %v", err)
			}
			request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			request.SetBasicAuth("app", "app-secret")
			response, err := client.Do(request)
			if err != nil {
				t.Fatalf("token request: %v", err)
			}
			body, err := io.ReadAll(response.Body)
			response.Body.Close()
			if err != nil {
				t.Fatalf("read body: %v", err)
			}

			if response.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", response.StatusCode, tc.wantStatus)
			}
			if got := response.Header.Get("Content-Type"); got != tc.wantContentType {
				t.Errorf("Content-Type = %q, want %q", got, tc.wantContentType)
			}
			if tc.wantBody != "" && string(body) != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			info := p.LastTokenRequest()
			if info.Status != tc.wantStatus {
				t.Errorf("recorded status = %d, want %d", info.Status, tc.wantStatus)
			}
			if info.Error != tc.wantError {
				t.Errorf("recorded error = %q, want %q", info.Error, tc.wantError)
			}
			if got := p.TokenRequests(); got != i+1 {
				t.Errorf("TokenRequests = %d, want %d", got, i+1)
			}
		})
	}
}

func TestLastTokenRequestHasNoSecrets(t *testing.T) {
	p := Start(t, Options{})
	const secret = "s3cret-value-for-the-test"
	p.AddSecretClient("app", secret)
	key := newRSAKey(t)
	p.AddKeyClient("key-app", &key.PublicKey, "k1")
	p.AddRefreshToken("app", "refresh-value-for-the-test", true)
	client := newHTTPClient(t, p)
	assertion := signer{key: key, alg: jose.RS256, kid: "k1"}.sign(t, assertionClaims(t, "key-app", "key-app", p.TokenURL()))

	requests := []struct {
		name      string
		form      url.Values
		basicUser string
		secrets   []string
	}{
		{
			name:    "client_secret_post",
			form:    url.Values{"grant_type": {GrantTypeClientCredentials}, "client_id": {"app"}, "client_secret": {secret}},
			secrets: []string{secret},
		},
		{
			name:      "refresh token",
			form:      url.Values{"grant_type": {GrantTypeRefreshToken}, "refresh_token": {"refresh-value-for-the-test"}},
			basicUser: "app",
			secrets:   []string{secret, "refresh-value-for-the-test"},
		},
		{
			name:    "client assertion",
			form:    clientAssertionForm(assertion),
			secrets: []string{assertion},
		},
	}
	for _, tc := range requests {
		t.Run(tc.name, func(t *testing.T) {
			result := postToken(t, client, p.TokenURL(), tc.form, tc.basicUser, secret)
			requireToken(t, result)

			recorded := fmt.Sprintf("%#v", p.LastTokenRequest())
			for _, value := range append(tc.secrets, result.AccessToken) {
				if strings.Contains(recorded, value) {
					t.Errorf("LastTokenRequest contains a secret value: %s", recorded)
				}
			}
		})
	}
}

func TestHTTPClientHelper(t *testing.T) {
	p := Start(t, Options{})
	certificate := newClientCertificate(t, "helper-app")
	p.AddCertClient("helper-app", certificate.Leaf)
	form := url.Values{"grant_type": {GrantTypeClientCredentials}, "client_id": {"helper-app"}}

	result := postToken(t, p.HTTPClient(certificate), p.TokenURL(), form, "", "")

	requireToken(t, result)
}
