package oidcprovider

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// tokenResult is a token endpoint response as a plain client sees it.
type tokenResult struct {
	Status           int
	Header           http.Header
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	RefreshToken     string `json:"refresh_token"`
	ExpiresIn        int    `json:"expires_in"`
	Scope            string `json:"scope"`
	IDToken          string `json:"id_token"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// newHTTPClient returns a plain net/http client that trusts the CA file of p
// and presents certificates when asked for one.
func newHTTPClient(t *testing.T, p *Provider, certificates ...tls.Certificate) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(p.CAFile())
	if err != nil {
		t.Fatalf("read CA file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CA file %s contains no PEM certificate", p.CAFile())
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      pool,
		Certificates: certificates,
		MinVersion:   tls.VersionTLS12,
	}}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}
}

// postToken sends form to the token endpoint, with Basic credentials when
// basicUser is set.
func postToken(t *testing.T, client *http.Client, tokenURL string, form url.Values, basicUser, basicPassword string) tokenResult {
	t.Helper()
	request, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("build token request: %v", err)
	}
	request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		request.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPassword))
	}
	response, err := client.Do(request)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer response.Body.Close()

	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatalf("read token response: %v", err)
	}
	result := tokenResult{Status: response.StatusCode, Header: response.Header}
	if err := json.Unmarshal(body, &result); err != nil {
		t.Fatalf("token response (status %d) is not JSON: %v: %s", response.StatusCode, err, body)
	}
	return result
}

// getJSON fetches rawURL and decodes a JSON body into target, returning the
// status code.
func getJSON(t *testing.T, client *http.Client, rawURL string, target any) int {
	t.Helper()
	response, err := client.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer response.Body.Close()
	if response.StatusCode == http.StatusOK {
		if err := json.NewDecoder(response.Body).Decode(target); err != nil {
			t.Fatalf("GET %s: decode body: %v", rawURL, err)
		}
	}
	return response.StatusCode
}

// requireToken fails the test unless result is a successful token response.
func requireToken(t *testing.T, result tokenResult) {
	t.Helper()
	if result.Status != http.StatusOK {
		t.Fatalf("status = %d, want 200; error %q: %s", result.Status, result.Error, result.ErrorDescription)
	}
	if result.AccessToken == "" {
		t.Fatal("response has no access_token")
	}
}

// requireError checks the status, the error code and a part of the
// error_description of a failed token response.
func requireError(t *testing.T, result tokenResult, status int, code, description string) {
	t.Helper()
	if result.Status != status {
		t.Errorf("status = %d, want %d (error %q: %s)", result.Status, status, result.Error, result.ErrorDescription)
	}
	if result.Error != code {
		t.Errorf("error = %q, want %q", result.Error, code)
	}
	if !strings.Contains(result.ErrorDescription, description) {
		t.Errorf("error_description = %q, want it to contain %q", result.ErrorDescription, description)
	}
	if result.AccessToken != "" {
		t.Error("a failed response carries an access_token")
	}
}

func verifyToken(t *testing.T, p *Provider, accessToken string) Claims {
	t.Helper()
	claims, err := p.Verify(accessToken)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return claims
}

func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate RSA key: %v", err)
	}
	return key
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate ECDSA key: %v", err)
	}
	return key
}

// newClientCertificate returns a self-signed client certificate.
func newClientCertificate(t *testing.T, commonName string) tls.Certificate {
	t.Helper()
	key := newECKey(t)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create client certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse client certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// thumbprint returns the x5t#S256 value of certificate.
func thumbprint(certificate *x509.Certificate) string {
	sum := sha256.Sum256(certificate.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random id: %v", err)
	}
	return hex.EncodeToString(b)
}

// assertionClaims returns the claims of a valid assertion that lives five
// minutes, with a fresh jti.
func assertionClaims(t *testing.T, issuer, subject, audience string) map[string]any {
	t.Helper()
	now := time.Now()
	return map[string]any{
		"iss": issuer,
		"sub": subject,
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
		"jti": randomID(t),
	}
}

// signer describes how to sign a test assertion.
type signer struct {
	key     crypto.Signer
	alg     jose.SignatureAlgorithm
	kid     string
	headers map[jose.HeaderKey]any
}

func (s signer) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	options := (&jose.SignerOptions{}).WithType("JWT")
	for name, value := range s.headers {
		options = options.WithHeader(name, value)
	}
	signingKey := jose.SigningKey{Algorithm: s.alg, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}
	joseSigner, err := jose.NewSigner(signingKey, options)
	if err != nil {
		t.Fatalf("create signer: %v", err)
	}
	token, err := jwt.Signed(joseSigner).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("sign assertion: %v", err)
	}
	return token
}

// clientAssertionForm returns a client_credentials form that authenticates
// with assertion.
func clientAssertionForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {GrantTypeClientCredentials},
		"client_assertion_type": {ClientAssertionTypeJWTBearer},
		"client_assertion":      {assertion},
	}
}

func jwtBearerForm(assertion string) url.Values {
	return url.Values{"grant_type": {GrantTypeJWTBearer}, "assertion": {assertion}}
}
