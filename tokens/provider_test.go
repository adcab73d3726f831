package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/oidcprovider"
)

// The tests in this file run every grant and client authentication method
// against a real OpenID provider on loopback (e2e/oidcprovider, built on
// zitadel/oidc). Each checks that the token verifies at the provider, and
// the failures that a wrong key, client or assertion cause.

// providerConfig returns a client_credentials Config for the provider,
// trusting its test CA.
func providerConfig(p *oidcprovider.Provider, clientID string) *Config {
	c := &Config{TokenURL: p.TokenURL(), ClientID: clientID, Scopes: []string{"dicom.read"}}
	c.TLS.CAFile = p.CAFile()
	return c
}

// fetchFrom builds the source of c after SetDefaults and Validate, and
// fetches one token.
func fetchFrom(t *testing.T, c *Config) (*Token, error) {
	t.Helper()
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("invalid config: %v", err)
	}
	source, err := NewSource(c)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return source.Fetch(ctx)
}

// mustVerify fails the test unless the provider verifies the token.
func mustVerify(t *testing.T, p *oidcprovider.Provider, tok *Token) oidcprovider.Claims {
	t.Helper()
	claims, err := p.Verify(tok.AccessToken)
	if err != nil {
		t.Fatalf("the provider does not verify its own token: %v", err)
	}
	return claims
}

// wantFetchError fails the test unless err is a *FetchError whose message
// contains every part.
func wantFetchError(t *testing.T, err error, parts ...string) {
	t.Helper()
	var fe *FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v, want a *FetchError", err)
	}
	for _, part := range parts {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
}

func providerKey(t *testing.T, kind string) crypto.Signer {
	t.Helper()
	var key crypto.Signer
	var err error
	if kind == "ec" {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writeProviderKey writes key as a PKCS #8 PEM file and returns its path.
func writeProviderKey(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// providerCertificate makes a self-signed certificate for key and writes it
// as PEM, returning the certificate and the file's path.
func providerCertificate(t *testing.T, key crypto.Signer, name string) (*x509.Certificate, string) {
	t.Helper()
	template := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, path
}

func TestProviderClientSecret(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	p.AddSecretClient("basic-client", "test-secret-basic", oidcprovider.AuthMethodBasic)
	p.AddSecretClient("post-client", "test-secret-post", oidcprovider.AuthMethodPost)

	for _, tt := range []struct{ client, secret, method string }{
		{"basic-client", "test-secret-basic", AuthClientSecretBasic},
		{"post-client", "test-secret-post", AuthClientSecretPost},
	} {
		t.Run(tt.method, func(t *testing.T) {
			c := providerConfig(p, tt.client)
			c.ClientSecret, c.AuthMethod = tt.secret, tt.method
			tok, err := fetchFrom(t, c)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			claims := mustVerify(t, p, tok)
			if claims.ClientID != tt.client {
				t.Errorf("client_id claim = %q, want %q", claims.ClientID, tt.client)
			}
			if got := p.LastTokenRequest().AuthMethod; got != tt.method {
				t.Errorf("provider saw auth method %q, want %q", got, tt.method)
			}
		})
	}

	t.Run("wrong secret", func(t *testing.T) {
		c := providerConfig(p, "basic-client")
		c.ClientSecret = "test-secret-wrong"
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, "invalid_client")
	})
	t.Run("unknown client", func(t *testing.T) {
		c := providerConfig(p, "no-such-client")
		c.ClientSecret = "test-secret-basic"
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, "invalid_client")
	})
}

func TestProviderPrivateKeyJWT(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})

	for _, tt := range []struct{ kind, algorithm string }{
		{"rsa", "RS256"}, {"rsa", "PS256"}, {"ec", "ES256"}, {"ec", ""},
	} {
		t.Run(tt.kind+" "+tt.algorithm, func(t *testing.T) {
			key := providerKey(t, tt.kind)
			client := "key-client-" + tt.kind + tt.algorithm
			p.AddKeyClient(client, key.Public(), "kid-1")

			c := providerConfig(p, client)
			c.PrivateKey = PrivateKeyConfig{File: writeProviderKey(t, key), Algorithm: tt.algorithm, KeyID: "kid-1"}
			tok, err := fetchFrom(t, c)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			mustVerify(t, p, tok)
			req := p.LastTokenRequest()
			if req.AuthMethod != AuthPrivateKeyJWT {
				t.Errorf("provider saw auth method %q, want private_key_jwt", req.AuthMethod)
			}
			if req.AssertionClaims["aud"] != p.TokenURL() {
				t.Errorf("assertion aud = %v, want the token URL %s", req.AssertionClaims["aud"], p.TokenURL())
			}
		})
	}

	t.Run("certificate thumbprint", func(t *testing.T) {
		key := providerKey(t, "rsa")
		cert, certFile := providerCertificate(t, key, "orthanc-egress")
		p.AddKeyClientWithCertificate("cert-key-client", cert, "")
		c := providerConfig(p, "cert-key-client")
		c.PrivateKey = PrivateKeyConfig{File: writeProviderKey(t, key), CertificateFile: certFile}
		tok, err := fetchFrom(t, c)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		mustVerify(t, p, tok)
	})

	t.Run("wrong key", func(t *testing.T) {
		p.AddKeyClient("rotated-client", providerKey(t, "rsa").Public(), "")
		c := providerConfig(p, "rotated-client")
		c.PrivateKey = PrivateKeyConfig{File: writeProviderKey(t, providerKey(t, "rsa"))}
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, "invalid_client", "signature")
	})

	t.Run("wrong client id", func(t *testing.T) {
		key := providerKey(t, "rsa")
		p.AddKeyClient("right-client", key.Public(), "")
		c := providerConfig(p, "wrong-client")
		c.PrivateKey = PrivateKeyConfig{File: writeProviderKey(t, key)}
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, "invalid_client")
	})

	t.Run("fresh assertion per request", func(t *testing.T) {
		key := providerKey(t, "ec")
		p.AddKeyClient("replay-client", key.Public(), "")
		c := providerConfig(p, "replay-client")
		c.PrivateKey = PrivateKeyConfig{File: writeProviderKey(t, key)}
		c.SetDefaults()
		source, err := NewSource(c)
		if err != nil {
			t.Fatal(err)
		}
		// The provider rejects a replayed jti, so two successes prove two
		// assertions.
		for i := 0; i < 2; i++ {
			if _, err := source.Fetch(context.Background()); err != nil {
				t.Fatalf("Fetch %d: %v", i+1, err)
			}
		}
	})
}

func TestProviderTLSClientAuth(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	key := providerKey(t, "ec")
	cert, certFile := providerCertificate(t, key, "orthanc-mtls")
	p.AddCertClient("mtls-client", cert)

	c := providerConfig(p, "mtls-client")
	c.TLS.ClientCertificateFile, c.TLS.ClientKeyFile = certFile, writeProviderKey(t, key)
	tok, err := fetchFrom(t, c)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	mustVerify(t, p, tok)
	if got := p.LastTokenRequest().AuthMethod; got != AuthTLSClientAuth {
		t.Errorf("provider saw auth method %q, want tls_client_auth", got)
	}

	t.Run("other certificate", func(t *testing.T) {
		other := providerKey(t, "ec")
		_, otherFile := providerCertificate(t, other, "someone-else")
		c := providerConfig(p, "mtls-client")
		c.TLS.ClientCertificateFile, c.TLS.ClientKeyFile = otherFile, writeProviderKey(t, other)
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, "invalid_client")
	})
}

// writeProviderServiceAccount writes a Google service account JSON key whose
// token_uri is the provider's token endpoint.
func writeProviderServiceAccount(t *testing.T, p *oidcprovider.Provider, email string, key *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "test-project",
		"private_key_id": "sa-key-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   email,
		"client_id":      "123456789",
		"token_uri":      p.TokenURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProviderJWTBearer(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	key := providerKey(t, "rsa").(*rsa.PrivateKey)
	const email = "orthanc@test-project.iam.gserviceaccount.com"
	p.AddServiceAccount(email, key.Public(), "sa-key-1")

	c := &Config{Provider: ProviderGoogle, ServiceAccountKeyFile: writeProviderServiceAccount(t, p, email, key)}
	c.TLS.CAFile = p.CAFile()
	tok, err := fetchFrom(t, c)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	claims := mustVerify(t, p, tok)
	if claims.Subject != email {
		t.Errorf("sub = %q, want the service account %q", claims.Subject, email)
	}
	if req := p.LastTokenRequest(); req.AssertionClaims["scope"] != googleHealthcareScope {
		t.Errorf("assertion scope = %v, want the preset's %s", req.AssertionClaims["scope"], googleHealthcareScope)
	}

	t.Run("unknown key", func(t *testing.T) {
		other := providerKey(t, "rsa").(*rsa.PrivateKey)
		c := &Config{Provider: ProviderGoogle, ServiceAccountKeyFile: writeProviderServiceAccount(t, p, email, other)}
		c.TLS.CAFile = p.CAFile()
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, "invalid_grant")
	})
}

// signFederated returns a token of a Kubernetes-like issuer, as the
// platform writes to the assertion file.
func signFederated(t *testing.T, key crypto.Signer, subject string, expiry time.Time) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "cluster-key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: "https://kubernetes.test", Subject: subject,
		Audience: jwt.Audience{oidcprovider.DefaultFederationAudience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		Expiry: jwt.NewNumericDate(expiry), ID: big.NewInt(now.UnixNano()).String(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestProviderWorkloadIdentity(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	clusterKey := providerKey(t, "ec")
	const subject = "system:serviceaccount:pacs:orthanc"
	p.TrustFederation(oidcprovider.FederatedCredential{
		Issuer: "https://kubernetes.test", Key: clusterKey.Public(), KeyID: "cluster-key",
		Subject: subject, ClientID: "workload-client",
	})

	assertionFile := filepath.Join(t.TempDir(), "azure-identity-token")
	writeAssertion := func(token string) {
		if err := os.WriteFile(assertionFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeAssertion(signFederated(t, clusterKey, subject, time.Now().Add(time.Hour)))

	c := providerConfig(p, "workload-client")
	c.Grant, c.AssertionFile = GrantWorkloadIdentity, assertionFile
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	source, err := NewSource(c)
	if err != nil {
		t.Fatal(err)
	}

	tok, err := source.Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	mustVerify(t, p, tok)
	firstJTI := p.LastTokenRequest().AssertionClaims["jti"]

	// The platform rotates the file; the same source sends the new token
	// without a restart.
	writeAssertion(signFederated(t, clusterKey, subject, time.Now().Add(2*time.Hour)))
	if _, err := source.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch after rotation: %v", err)
	}
	if got := p.LastTokenRequest().AssertionClaims["jti"]; got == firstJTI {
		t.Errorf("assertion jti %v after rotation is the old one", got)
	}

	t.Run("expired assertion", func(t *testing.T) {
		writeAssertion(signFederated(t, clusterKey, subject, time.Now().Add(-time.Minute)))
		_, err := source.Fetch(context.Background())
		wantFetchError(t, err, "expired", assertionFile)
	})
	t.Run("wrong subject", func(t *testing.T) {
		writeAssertion(signFederated(t, clusterKey, "system:serviceaccount:other:app", time.Now().Add(time.Hour)))
		_, err := source.Fetch(context.Background())
		wantFetchError(t, err, "invalid_client")
	})
}

func TestProviderRefreshTokenRotation(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	p.AddSecretClient("refresh-client", "test-secret-refresh", oidcprovider.AuthMethodBasic)
	p.AddRefreshToken("refresh-client", "test-refresh-1", true)

	file := filepath.Join(t.TempDir(), "refresh-token")
	if err := os.WriteFile(file, []byte("test-refresh-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := providerConfig(p, "refresh-client")
	c.Grant, c.ClientSecret, c.RefreshTokenFile = GrantRefreshToken, "test-secret-refresh", file
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	source, err := NewSource(c)
	if err != nil {
		t.Fatal(err)
	}

	// The provider invalidates each refresh token when it rotates it, so
	// three successes in a row prove the rotated token is used each time.
	var last string
	for i := 0; i < 3; i++ {
		tok, err := source.Fetch(context.Background())
		if err != nil {
			t.Fatalf("Fetch %d: %v", i+1, err)
		}
		mustVerify(t, p, tok)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		stored := strings.TrimSpace(string(data))
		if stored == "test-refresh-1" || stored == last {
			t.Fatalf("refresh_token_file still holds %q after rotation %d", stored, i+1)
		}
		last = stored
	}
}

func TestProviderDiscovery(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{IssuerPath: "/realms/test"})
	p.AddSecretClient("discovery-client", "test-secret-discovery", oidcprovider.AuthMethodBasic)

	c := &Config{Issuer: p.Issuer(), ClientID: "discovery-client", ClientSecret: "test-secret-discovery"}
	c.TLS.CAFile = p.CAFile()
	tok, err := fetchFrom(t, c)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	mustVerify(t, p, tok)

	t.Run("issuer mismatch", func(t *testing.T) {
		other := oidcprovider.Start(t, oidcprovider.Options{AdvertisedIssuer: "https://impostor.test"})
		c := &Config{Issuer: other.Issuer(), ClientID: "x", ClientSecret: "test-secret-x"}
		c.TLS.CAFile = other.CAFile()
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, "https://impostor.test", other.Issuer())
	})
}

func TestProviderVerifyAudience(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{DefaultAudience: "account"})
	p.AddSecretClient("verify-client", "test-secret-verify", oidcprovider.AuthMethodBasic)

	t.Run("expected audience", func(t *testing.T) {
		c := providerConfig(p, "verify-client")
		c.ClientSecret, c.Audience = "test-secret-verify", "dcm4chee-arc"
		c.Verify = VerifyConfig{Issuer: p.Issuer(), Audience: "dcm4chee-arc"}
		if _, err := fetchFrom(t, c); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
	})
	t.Run("audience only account", func(t *testing.T) {
		c := providerConfig(p, "verify-client")
		c.ClientSecret = "test-secret-verify"
		c.Verify = VerifyConfig{Issuer: p.Issuer(), Audience: "dcm4chee-arc"}
		_, err := fetchFrom(t, c)
		wantFetchError(t, err, `["account"]`, "dcm4chee-arc", "not used")
	})
}
