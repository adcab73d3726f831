package issuer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	testClientID = "orthanc-egress"
	// testSecret has characters that form-urlencoding changes, to check
	// the RFC 6749 section 2.3.1 decoding of Basic credentials.
	testSecret   = "test+secret:with/odd=chars%"
	testAudience = "https://dicom.example.test"
)

func startIssuer(t *testing.T, cfg Config) *Issuer {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID = testClientID
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = testSecret
	}
	iss, err := Start(cfg)
	if err != nil {
		t.Fatalf("start issuer: %v", err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	return iss
}

// noProxyClient never sends loopback test traffic through an environment proxy.
var noProxyClient = &http.Client{
	Transport: &http.Transport{Proxy: nil},
	Timeout:   10 * time.Second,
}

type tokenCall struct {
	method      string
	form        url.Values
	basicID     string
	basicSecret string
	useBasic    bool
	// rawBasic sends the Basic credentials without form-urlencoding them.
	rawBasic bool
}

type tokenReply struct {
	status    int
	challenge string
	body      map[string]any
}

func callToken(t *testing.T, iss *Issuer, call tokenCall) tokenReply {
	t.Helper()
	method := call.method
	if method == "" {
		method = http.MethodPost
	}
	request, err := http.NewRequest(method, iss.TokenURL(), strings.NewReader(call.form.Encode()))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	switch {
	case call.rawBasic:
		request.SetBasicAuth(call.basicID, call.basicSecret)
	case call.useBasic:
		request.SetBasicAuth(url.QueryEscape(call.basicID), url.QueryEscape(call.basicSecret))
	}

	response, err := noProxyClient.Do(request)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer response.Body.Close()
	raw, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatalf("read token response: %v", err)
	}
	reply := tokenReply{
		status:    response.StatusCode,
		challenge: response.Header.Get("WWW-Authenticate"),
	}
	if err := json.Unmarshal(raw, &reply.body); err != nil {
		t.Fatalf("token response is not JSON: %v: %s", err, raw)
	}
	return reply
}

func TestTokenEndpoint(t *testing.T) {
	iss := startIssuer(t, Config{DefaultAudience: "default-audience"})
	grant := url.Values{"grant_type": {"client_credentials"}}
	withValues := func(extra url.Values) url.Values {
		form := url.Values{}
		for k, v := range grant {
			form[k] = v
		}
		for k, v := range extra {
			form[k] = v
		}
		return form
	}

	tests := []struct {
		name          string
		call          tokenCall
		wantStatus    int
		wantError     string
		wantChallenge bool
		wantMethod    string
	}{
		{
			name:       "basic valid",
			call:       tokenCall{form: grant, useBasic: true, basicID: testClientID, basicSecret: testSecret},
			wantStatus: http.StatusOK,
			wantMethod: AuthMethodBasic,
		},
		{
			name: "post valid",
			call: tokenCall{form: withValues(url.Values{
				"client_id": {testClientID}, "client_secret": {testSecret},
			})},
			wantStatus: http.StatusOK,
			wantMethod: AuthMethodPost,
		},
		{
			name:          "basic wrong secret",
			call:          tokenCall{form: grant, useBasic: true, basicID: testClientID, basicSecret: "wrong"},
			wantStatus:    http.StatusUnauthorized,
			wantError:     "invalid_client",
			wantChallenge: true,
			wantMethod:    AuthMethodBasic,
		},
		{
			name: "post wrong secret",
			call: tokenCall{form: withValues(url.Values{
				"client_id": {testClientID}, "client_secret": {"wrong"},
			})},
			wantStatus: http.StatusUnauthorized,
			wantError:  "invalid_client",
			wantMethod: AuthMethodPost,
		},
		{
			name:          "basic wrong client id",
			call:          tokenCall{form: grant, useBasic: true, basicID: "other", basicSecret: testSecret},
			wantStatus:    http.StatusUnauthorized,
			wantError:     "invalid_client",
			wantChallenge: true,
			wantMethod:    AuthMethodBasic,
		},
		{
			name:       "basic secret not form encoded",
			call:       tokenCall{form: grant, rawBasic: true, basicID: testClientID, basicSecret: testSecret},
			wantStatus: http.StatusBadRequest,
			wantError:  "invalid_request",
			wantMethod: AuthMethodBasic,
		},
		{
			name:       "no client authentication",
			call:       tokenCall{form: withValues(url.Values{"client_id": {testClientID}})},
			wantStatus: http.StatusUnauthorized,
			wantError:  "invalid_client",
			wantMethod: AuthMethodNone,
		},
		{
			name: "two authentication methods",
			call: tokenCall{form: withValues(url.Values{"client_secret": {testSecret}}),
				useBasic: true, basicID: testClientID, basicSecret: testSecret},
			wantStatus: http.StatusBadRequest,
			wantError:  "invalid_request",
			wantMethod: AuthMethodBasic,
		},
		{
			name: "password grant",
			call: tokenCall{form: url.Values{"grant_type": {"password"}},
				useBasic: true, basicID: testClientID, basicSecret: testSecret},
			wantStatus: http.StatusBadRequest,
			wantError:  "unsupported_grant_type",
			wantMethod: AuthMethodBasic,
		},
		{
			name: "missing grant type",
			call: tokenCall{form: url.Values{},
				useBasic: true, basicID: testClientID, basicSecret: testSecret},
			wantStatus: http.StatusBadRequest,
			wantError:  "invalid_request",
			wantMethod: AuthMethodBasic,
		},
		{
			name: "GET method",
			call: tokenCall{method: http.MethodGet, form: grant,
				useBasic: true, basicID: testClientID, basicSecret: testSecret},
			wantStatus: http.StatusMethodNotAllowed,
			wantError:  "invalid_request",
			wantMethod: AuthMethodNone,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := callToken(t, iss, tt.call)

			if reply.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %v)", reply.status, tt.wantStatus, reply.body)
			}
			if got, _ := reply.body["error"].(string); got != tt.wantError {
				t.Errorf("error = %q, want %q", got, tt.wantError)
			}
			if got := reply.challenge != ""; got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate present = %v, want %v", got, tt.wantChallenge)
			}
			last, ok := iss.LastTokenRequest()
			if !ok {
				t.Fatal("LastTokenRequest reported no request")
			}
			if last.AuthMethod != tt.wantMethod {
				t.Errorf("recorded auth method = %q, want %q", last.AuthMethod, tt.wantMethod)
			}
			if last.Status != tt.wantStatus {
				t.Errorf("recorded status = %d, want %d", last.Status, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			if got := reply.body["token_type"]; got != "Bearer" {
				t.Errorf("token_type = %v, want Bearer", got)
			}
			if got := reply.body["expires_in"]; got != float64(3600) {
				t.Errorf("expires_in = %v, want 3600", got)
			}
		})
	}

	if got, want := iss.TokenRequests(), int64(len(tests)); got != want {
		t.Errorf("TokenRequests = %d, want %d", got, want)
	}
	if got := iss.TokensIssued(); got != 2 {
		t.Errorf("TokensIssued = %d, want 2", got)
	}
}

// fetchKeySet reads the issuer's JWKS through its discovery document.
func fetchKeySet(t *testing.T, iss *Issuer) jose.JSONWebKeySet {
	t.Helper()
	var discovery struct {
		Issuer        string `json:"issuer"`
		JWKSURI       string `json:"jwks_uri"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	getJSON(t, iss.URL()+"/.well-known/openid-configuration", &discovery)
	if discovery.Issuer != iss.URL() {
		t.Errorf("discovery issuer = %q, want %q", discovery.Issuer, iss.URL())
	}
	if discovery.TokenEndpoint != iss.TokenURL() {
		t.Errorf("discovery token_endpoint = %q, want %q", discovery.TokenEndpoint, iss.TokenURL())
	}

	var keys jose.JSONWebKeySet
	getJSON(t, discovery.JWKSURI, &keys)
	if len(keys.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(keys.Keys))
	}
	if !keys.Keys[0].IsPublic() {
		t.Fatal("JWKS key is not a public key")
	}
	return keys
}

func getJSON(t *testing.T, address string, into any) {
	t.Helper()
	response, err := noProxyClient.Get(address)
	if err != nil {
		t.Fatalf("GET %s: %v", address, err)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", address, response.StatusCode)
	}
	if err := json.NewDecoder(response.Body).Decode(into); err != nil {
		t.Fatalf("decode %s: %v", address, err)
	}
}

type accessClaims struct {
	jwt.Claims
	Scope    string `json:"scope"`
	ClientID string `json:"client_id"`
}

func parseVerified(t *testing.T, token string, keys jose.JSONWebKeySet) accessClaims {
	t.Helper()
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	if len(parsed.Headers) != 1 || parsed.Headers[0].KeyID != keys.Keys[0].KeyID {
		t.Errorf("token key ID does not match the JWKS key %q", keys.Keys[0].KeyID)
	}
	var claims accessClaims
	if err := parsed.Claims(&keys, &claims); err != nil {
		t.Fatalf("verify token against JWKS: %v", err)
	}
	return claims
}

func TestTokenClaims(t *testing.T) {
	iss := startIssuer(t, Config{DefaultAudience: "default-audience", TokenLifetime: 10 * time.Minute})
	keys := fetchKeySet(t, iss)

	tests := []struct {
		name         string
		authStyle    oauth2.AuthStyle
		scopes       []string
		audience     string
		wantAudience string
	}{
		{"basic with audience", oauth2.AuthStyleInHeader, []string{"dicom.read", "dicom.write"},
			testAudience, testAudience},
		{"post with audience", oauth2.AuthStyleInParams, []string{"dicom.read"},
			testAudience, testAudience},
		{"default audience", oauth2.AuthStyleInHeader, nil, "", "default-audience"},
	}

	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientcredentials.Config{
				ClientID:     testClientID,
				ClientSecret: testSecret,
				TokenURL:     iss.TokenURL(),
				Scopes:       tt.scopes,
				AuthStyle:    tt.authStyle,
			}
			if tt.audience != "" {
				cfg.EndpointParams = url.Values{"audience": {tt.audience}}
			}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, noProxyClient)
			before := time.Now().Truncate(time.Second)

			token, err := cfg.Token(ctx)
			if err != nil {
				t.Fatalf("client credentials token: %v", err)
			}
			claims := parseVerified(t, token.AccessToken, keys)

			if claims.Issuer != iss.URL() {
				t.Errorf("iss = %q, want %q", claims.Issuer, iss.URL())
			}
			if claims.Subject != testClientID {
				t.Errorf("sub = %q, want %q", claims.Subject, testClientID)
			}
			if !claims.Audience.Contains(tt.wantAudience) || len(claims.Audience) != 1 {
				t.Errorf("aud = %v, want [%s]", claims.Audience, tt.wantAudience)
			}
			if want := strings.Join(tt.scopes, " "); claims.Scope != want {
				t.Errorf("scope = %q, want %q", claims.Scope, want)
			}
			if claims.ID == "" || seen[claims.ID] {
				t.Errorf("jti = %q, want a new non-empty value", claims.ID)
			}
			seen[claims.ID] = true
			issuedAt := claims.IssuedAt.Time()
			if issuedAt.Before(before) {
				t.Errorf("iat = %v, want at or after %v", issuedAt, before)
			}
			if lifetime := claims.Expiry.Time().Sub(issuedAt); lifetime != 10*time.Minute {
				t.Errorf("exp - iat = %v, want 10m", lifetime)
			}
			if err := claims.Validate(jwt.Expected{Issuer: iss.URL(), Time: time.Now()}); err != nil {
				t.Errorf("validate claims: %v", err)
			}
		})
	}
}

func TestSetFailure(t *testing.T) {
	iss := startIssuer(t, Config{})
	valid := tokenCall{
		form:     url.Values{"grant_type": {"client_credentials"}},
		useBasic: true, basicID: testClientID, basicSecret: testSecret,
	}

	iss.SetFailure(http.StatusServiceUnavailable)
	failed := callToken(t, iss, valid)
	iss.SetFailure(0)
	restored := callToken(t, iss, valid)

	if failed.status != http.StatusServiceUnavailable {
		t.Errorf("status while failing = %d, want 503", failed.status)
	}
	if got := failed.body["error"]; got != "temporarily_unavailable" {
		t.Errorf("error while failing = %v, want temporarily_unavailable", got)
	}
	if restored.status != http.StatusOK {
		t.Errorf("status after restore = %d, want 200", restored.status)
	}
	if got := iss.TokenRequests(); got != 2 {
		t.Errorf("TokenRequests = %d, want 2", got)
	}
	if got := iss.TokensIssued(); got != 1 {
		t.Errorf("TokensIssued = %d, want 1", got)
	}
}

func TestMint(t *testing.T) {
	iss := startIssuer(t, Config{})
	keys := fetchKeySet(t, iss)

	tests := []struct {
		name       string
		options    MintOptions
		wantIssuer string
		wantValid  bool
	}{
		{"defaults", MintOptions{Audience: testAudience}, iss.URL(), true},
		{"expired", MintOptions{Audience: testAudience, Lifetime: -time.Minute}, iss.URL(), false},
		{"other issuer", MintOptions{Issuer: "http://127.0.0.1:1"}, "http://127.0.0.1:1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := iss.Mint(tt.options)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			claims := parseVerified(t, token, keys)

			if claims.Issuer != tt.wantIssuer {
				t.Errorf("iss = %q, want %q", claims.Issuer, tt.wantIssuer)
			}
			err = claims.Validate(jwt.Expected{Issuer: iss.URL(), Time: time.Now()})
			if got := err == nil; got != tt.wantValid {
				t.Errorf("claims valid = %v (%v), want %v", got, err, tt.wantValid)
			}
		})
	}
	if got := iss.TokenRequests(); got != 0 {
		t.Errorf("TokenRequests after Mint = %d, want 0", got)
	}
}

func TestStartRequiresCredentials(t *testing.T) {
	if _, err := Start(Config{ClientID: testClientID}); err == nil {
		t.Fatal("Start without a client secret succeeded, want an error")
	}
}
