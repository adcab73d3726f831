package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// parsePrivateKey reads the first private key in PEM data: PKCS #1 or #8
// RSA, or SEC 1 or PKCS #8 EC P-256.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			return checkECKey(x509.ParseECPrivateKey(block.Bytes))
		case "PRIVATE KEY":
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			switch k := key.(type) {
			case *rsa.PrivateKey:
				return k, nil
			case *ecdsa.PrivateKey:
				return checkECKey(k, nil)
			default:
				return nil, fmt.Errorf("unsupported private key type %T; use RSA or EC P-256", key)
			}
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted; store it unencrypted with restricted file permissions")
		}
	}
}

func checkECKey(k *ecdsa.PrivateKey, err error) (crypto.Signer, error) {
	if err != nil {
		return nil, err
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("unsupported curve %s; ES256 needs P-256", k.Curve.Params().Name)
	}
	return k, nil
}

// readPrivateKey reads a PEM private key file.
func readPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// readCertificate reads the first certificate of a PEM file.
func readCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM certificate found", path)
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return cert, nil
		}
	}
}

// thumbprintSHA256 returns the x5t#S256 header value of a certificate
// (RFC 7515 section 4.1.8): base64url of the SHA-256 of its DER encoding.
func thumbprintSHA256(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// thumbprintSHA1 returns the x5t header value (RFC 7515 section 4.1.7).
func thumbprintSHA1(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// publicKeysEqual reports whether a certificate belongs to a private key.
func publicKeysEqual(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}
