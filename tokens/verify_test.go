package tokens

import (
	"context"
	"crypto/rsa"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	verifyIssuer   = "https://idp.example.test/realms/dicom"
	verifyAudience = "dicomweb"
)

// accessTokenClaims are the claims of a test access token.
type accessTokenClaims struct {
	Issuer   string           `json:"iss,omitempty"`
	Subject  string           `json:"sub,omitempty"`
	Audience jwt.Audience     `json:"aud,omitempty"`
	Expiry   *jwt.NumericDate `json:"exp,omitempty"`
}

// signAccessToken signs claims with key under key ID kid.
func signAccessToken(t *testing.T, key *rsa.PrivateKey, kid string, claims accessTokenClaims) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("signing the access token: %v", err)
	}
	return token
}

// serveJWKS serves the public key of testRSAKey as kid "k1" at /jwks.
func serveJWKS(d *discoveryServer) {
	d.Serve("/jwks", http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &testRSAKey().PublicKey, KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

// staticSource returns the same access token on every Fetch.
func staticSource(accessToken string) *scriptedSource {
	return &scriptedSource{fetch: func(context.Context, int64) (*Token, error) {
		now := time.Now()
		return &Token{AccessToken: accessToken, Received: now, Expiry: now.Add(time.Hour)}, nil
	}}
}

func TestVerifyingSource(t *testing.T) {
	d := newDiscoveryServer(t)
	serveJWKS(d)
	valid := accessTokenClaims{
		Issuer: verifyIssuer, Subject: "orthanc-egress",
		Audience: jwt.Audience{"account", verifyAudience},
		Expiry:   jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}
	with := func(change func(*accessTokenClaims)) accessTokenClaims {
		c := valid
		change(&c)
		return c
	}

	tests := []struct {
		name   string
		key    *rsa.PrivateKey
		claims accessTokenClaims
		wantIn []string
	}{
		{name: "valid", key: testRSAKey(), claims: valid},
		{name: "single audience", key: testRSAKey(), claims: with(func(c *accessTokenClaims) {
			c.Audience = jwt.Audience{verifyAudience}
		})},
		{name: "wrong audience", key: testRSAKey(), claims: with(func(c *accessTokenClaims) {
			c.Audience = jwt.Audience{"account", "broker"}
		}), wantIn: []string{`"account"`, `"broker"`, `"` + verifyAudience + `"`, "audience"}},
		{name: "no audience", key: testRSAKey(), claims: with(func(c *accessTokenClaims) { c.Audience = nil }),
			wantIn: []string{"audience", verifyAudience}},
		{name: "wrong issuer", key: testRSAKey(), claims: with(func(c *accessTokenClaims) {
			c.Issuer = "https://evil.example.test"
		}), wantIn: []string{"issuer", `"https://evil.example.test"`, `"` + verifyIssuer + `"`}},
		{name: "expired", key: testRSAKey(), claims: with(func(c *accessTokenClaims) {
			c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Minute))
		}), wantIn: []string{"expired"}},
		{name: "no exp", key: testRSAKey(), claims: with(func(c *accessTokenClaims) { c.Expiry = nil }),
			wantIn: []string{"no exp"}},
		{name: "wrong key", key: otherRSAKey(), claims: valid, wantIn: []string{"signature"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := staticSource(signAccessToken(t, tt.key, "k1", tt.claims))
			src := newVerifyingSource(inner, VerifyConfig{
				JWKSURL: d.URL() + "/jwks", Issuer: verifyIssuer, Audience: verifyAudience,
			}, http.DefaultClient)

			tok, err := src.Fetch(context.Background())
			if tt.wantIn == nil {
				if err != nil {
					t.Fatalf("Fetch: %v, want the token accepted", err)
				}
				if tok == nil || tok.AccessToken == "" {
					t.Error("Fetch returned no token")
				}
				return
			}

			if err == nil {
				t.Fatal("Fetch accepted the token, want a verification error")
			}
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FetchError", err, err)
			}
			if fe.Class != ClassConfig {
				t.Errorf("class = %q, want %q", fe.Class, ClassConfig)
			}
			for _, s := range append(tt.wantIn, "failed verification") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestVerifyingSourceDiscoversJWKS: with only the issuer set, the key set
// URL comes from the issuer's discovery document, fetched once.
func TestVerifyingSourceDiscoversJWKS(t *testing.T) {
	d := newDiscoveryServer(t)
	serveJWKS(d)
	issuer := d.URL() + "/realms/dicom"
	d.Serve("/realms/dicom/.well-known/openid-configuration", http.StatusOK, map[string]string{
		"issuer": issuer, "token_endpoint": issuer + "/token", "jwks_uri": d.URL() + "/jwks",
	})
	token := signAccessToken(t, testRSAKey(), "k1", accessTokenClaims{
		Issuer: issuer, Audience: jwt.Audience{verifyAudience}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	})
	src := newVerifyingSource(staticSource(token), VerifyConfig{Issuer: issuer, Audience: verifyAudience},
		http.DefaultClient)

	for i := range 2 {
		if _, err := src.Fetch(context.Background()); err != nil {
			t.Fatalf("Fetch %d: %v", i+1, err)
		}
	}
	if n := d.Count("/realms/dicom/.well-known/openid-configuration"); n != 1 {
		t.Errorf("discovery document fetched %d times, want 1", n)
	}
	if n := d.Count("/jwks"); n < 1 {
		t.Errorf("key set fetched %d times, want at least 1 from the discovered jwks_uri", n)
	}
}

// TestNewSourceVerifies: NewSource wraps a grant's source when verify is
// configured, here the file grant.
func TestNewSourceVerifies(t *testing.T) {
	d := newDiscoveryServer(t)
	serveJWKS(d)
	path := filepath.Join(t.TempDir(), "token")
	token := signAccessToken(t, testRSAKey(), "k1", accessTokenClaims{
		Audience: jwt.Audience{"other-api"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	})
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatalf("writing the token file: %v", err)
	}
	c := fileConfig(path)
	c.Verify = VerifyConfig{JWKSURL: d.URL() + "/jwks", Audience: verifyAudience}

	_, err := newTestSource(t, c).Fetch(context.Background())
	if err == nil {
		t.Fatal("Fetch accepted a token for another audience, want a verification error")
	}
	if !strings.Contains(err.Error(), `"other-api"`) {
		t.Errorf("error %q does not name the token's audience", err)
	}
}
