package oidcprovider

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// maxAssertionAge is the oldest iat accepted in a client assertion or a
// jwt-bearer grant assertion, the library's own default. Google's service
// account guide (developers.google.com/identity/protocols/oauth2/service-account)
// also puts exp at most one hour after iat.
const maxAssertionAge = time.Hour

// assertionAlgorithms are the JWS algorithms accepted in assertions, the
// library's default set.
var assertionAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256}

// thumbprintHeader is the JWS header that carries the SHA-256 thumbprint of
// the certificate of the signing key (RFC 7515 section 4.1.8).
const thumbprintHeader = jose.HeaderKey("x5t#S256")

// peekClaims decodes the claims of an assertion without verifying it, to
// find out who claims to have issued it.
func peekClaims(assertion string) (*oidc.JWTTokenRequest, error) {
	claims := new(oidc.JWTTokenRequest)
	if _, err := oidc.ParseToken(assertion, claims); err != nil {
		return nil, fmt.Errorf("not a JWT: %w", err)
	}
	return claims, nil
}

// pickAudience returns the first of accepted that audience contains. The
// library checks aud against a single value, so this picks that value.
func pickAudience(audience []string, accepted ...string) (string, error) {
	for _, value := range accepted {
		if slices.Contains(audience, value) {
			return value, nil
		}
	}
	return "", fmt.Errorf("wrong audience: aud %q contains none of %q", audience, accepted)
}

// checkNotBefore fails if the assertion has an nbf claim in the future.
// The library does not check nbf.
func checkNotBefore(claims *oidc.JWTTokenRequest) error {
	value := claims.GetCustomClaim("nbf")
	if value == nil {
		return nil
	}
	seconds, ok := value.(float64)
	if !ok {
		return fmt.Errorf("nbf claim %v is not a number", value)
	}
	notBefore := time.Unix(int64(seconds), 0)
	if time.Now().Before(notBefore) {
		return fmt.Errorf("assertion is not valid before %s (nbf)", notBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkThumbprint fails unless the assertion header carries the x5t#S256
// thumbprint of certificate.
func checkThumbprint(assertion string, certificate *x509.Certificate) error {
	jws, err := jose.ParseSignedCompact(assertion, assertionAlgorithms)
	if err != nil {
		return fmt.Errorf("parse JWS header: %w", err)
	}
	got, ok := jws.Signatures[0].Protected.ExtraHeaders[thumbprintHeader].(string)
	if !ok {
		return fmt.Errorf(
			"certificate mismatch: the JWS header has no %s thumbprint of the registered certificate",
			thumbprintHeader)
	}
	sum := sha256.Sum256(certificate.Raw)
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		return fmt.Errorf(
			"certificate mismatch: %s header %q is not the thumbprint %q of the registered certificate",
			thumbprintHeader, got, want)
	}
	return nil
}

// anySubject accepts every sub claim, for jwt-bearer grant assertions,
// where sub names the user to act for (domain-wide delegation).
func anySubject(*oidc.JWTTokenRequest) error { return nil }

// subjectIs returns a library subject check that requires sub to be want.
func subjectIs(want string) func(*oidc.JWTTokenRequest) error {
	return func(claims *oidc.JWTTokenRequest) error {
		if claims.Subject != want {
			return fmt.Errorf("sub %q is not %q", claims.Subject, want)
		}
		return nil
	}
}
