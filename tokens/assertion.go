package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ClientAssertionType is the client_assertion_type of a JWT client assertion
// (RFC 7523 section 2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid. Each token
// request gets a new one, so it only has to outlive the request.
const assertionLifetime = 5 * time.Minute

// assertionSigner signs private_key_jwt client assertions (RFC 7523).
type assertionSigner struct {
	clientID string
	// audience is the aud claim; the token endpoint when empty.
	audience string
	signer   jose.Signer
}

// newAssertionSigner builds a signer from the private_key settings. It checks
// that the algorithm fits the key and that the certificate, if any, belongs
// to the key.
func newAssertionSigner(clientID string, c PrivateKeyConfig) (*assertionSigner, error) {
	key, err := readPrivateKey(c.File)
	if err != nil {
		return nil, fmt.Errorf("private_key.file: %w", err)
	}
	alg, err := signingAlgorithm(key, c.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("private_key.algorithm: %w", err)
	}

	opts := (&jose.SignerOptions{}).WithType("JWT")
	if c.KeyID != "" {
		opts = opts.WithHeader("kid", c.KeyID)
	}
	if c.CertificateFile != "" {
		cert, err := readCertificate(c.CertificateFile)
		if err != nil {
			return nil, fmt.Errorf("private_key.certificate_file: %w", err)
		}
		if !publicKeysEqual(cert, key) {
			return nil, fmt.Errorf("private_key.certificate_file: %s does not belong to the private key in %s",
				c.CertificateFile, c.File)
		}
		opts = opts.WithHeader("x5t#S256", thumbprintSHA256(cert))
		if c.SendX5T {
			opts = opts.WithHeader("x5t", thumbprintSHA1(cert))
		}
	}

	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	return &assertionSigner{clientID: clientID, audience: c.Audience, signer: signer}, nil
}

func signingAlgorithm(key crypto.Signer, configured string) (jose.SignatureAlgorithm, error) {
	_, isEC := key.(*ecdsa.PrivateKey)
	switch {
	case configured == "" && isEC, configured == "ES256" && isEC:
		return jose.ES256, nil
	case configured == "" && !isEC, configured == "RS256" && !isEC:
		return jose.RS256, nil
	case configured == "PS256" && !isEC:
		return jose.PS256, nil
	case isEC:
		return "", fmt.Errorf("%s does not fit an EC key; use ES256", configured)
	default:
		return "", fmt.Errorf("%s does not fit an RSA key; use RS256 or PS256", configured)
	}
}

// assertionClaims are the claims of a client assertion.
type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  string           `json:"aud"`
	ID        string           `json:"jti"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	Expiry    *jwt.NumericDate `json:"exp"`
}

// sign returns a new assertion for a request to tokenURL. Every call makes
// a new jti and takes the times from now, so an assertion is never reused
// after its exp. NumericDate values are seconds since the Unix epoch, in UTC.
func (a *assertionSigner) sign(tokenURL string, now time.Time) (string, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	audience := a.audience
	if audience == "" {
		audience = tokenURL
	}
	claims := assertionClaims{
		Issuer:    a.clientID,
		Subject:   a.clientID,
		Audience:  audience,
		ID:        hex.EncodeToString(id),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	return jwt.Signed(a.signer).Claims(claims).Serialize()
}
