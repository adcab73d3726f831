package tokens

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// parsedAssertion is a client assertion after its signature was verified.
type parsedAssertion struct {
	header map[string]any
	claims map[string]any
}

// verifyAssertion checks the signature of a compact JWS with pub and returns
// its header and claims as decoded JSON, numbers kept as json.Number.
func verifyAssertion(t *testing.T, token string, pub crypto.PublicKey) parsedAssertion {
	t.Helper()
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256})
	if err != nil {
		t.Fatalf("parsing the assertion: %v", err)
	}
	if err := parsed.Claims(pub); err != nil {
		t.Fatalf("assertion signature does not verify with the key's public key: %v", err)
	}

	parts := strings.Split(token, ".")
	return parsedAssertion{header: decodeSegment(t, parts[0]), claims: decodeSegment(t, parts[1])}
}

func decodeSegment(t *testing.T, segment string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		t.Fatalf("JWT segment is not base64url: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("JWT segment is not a JSON object: %v", err)
	}
	return out
}

// intClaim returns a NumericDate claim, failing unless it is an integer.
func intClaim(t *testing.T, claims map[string]any, name string) int64 {
	t.Helper()
	n, ok := claims[name].(json.Number)
	if !ok {
		t.Fatalf("claim %s = %v (%T), want a number", name, claims[name], claims[name])
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatalf("claim %s = %s, want an integer number of seconds", name, n)
	}
	return v
}

// opensslThumbprint returns base64url of the certificate fingerprint that
// openssl prints, or "" when openssl is not on PATH.
func opensslThumbprint(t *testing.T, certFile, digest string) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		return ""
	}
	out, err := exec.Command(path, "x509", "-noout", "-fingerprint", "-"+digest, "-in", certFile).Output()
	if err != nil {
		t.Fatalf("openssl x509 -fingerprint: %v", err)
	}
	// The output is "sha256 Fingerprint=AB:CD:..." (the case of the prefix
	// differs between OpenSSL versions).
	_, fingerprint, found := strings.Cut(strings.TrimSpace(string(out)), "=")
	if !found {
		t.Fatalf("openssl output %q has no fingerprint", out)
	}
	sum, err := hex.DecodeString(strings.ReplaceAll(fingerprint, ":", ""))
	if err != nil {
		t.Fatalf("openssl fingerprint %q is not hex: %v", fingerprint, err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

func TestAssertionSigner(t *testing.T) {
	dir := t.TempDir()
	rsaKey, ecKey := testRSAKey(), testECKey()
	rsaCert, ecCert := selfSignedCert(t, rsaKey), selfSignedCert(t, ecKey)
	rsaCertFile := writePEMFile(t, dir, "rsa-cert.pem", certPEM(rsaCert))
	ecCertFile := writePEMFile(t, dir, "ec-cert.pem", certPEM(ecCert))

	tests := []struct {
		name     string
		key      crypto.Signer
		form     string
		config   PrivateKeyConfig
		cert     *x509.Certificate
		wantAlg  string
		wantX5T  bool
		audience string
	}{
		{name: "rsa pkcs1 auto", key: rsaKey, form: formPKCS1, wantAlg: "RS256"},
		{name: "rsa pkcs8 auto", key: rsaKey, form: formPKCS8, wantAlg: "RS256"},
		{name: "rsa RS256", key: rsaKey, form: formPKCS8, config: PrivateKeyConfig{Algorithm: "RS256"}, wantAlg: "RS256"},
		{name: "rsa PS256", key: rsaKey, form: formPKCS1, config: PrivateKeyConfig{Algorithm: "PS256"}, wantAlg: "PS256"},
		{name: "ec sec1 auto", key: ecKey, form: formSEC1, wantAlg: "ES256"},
		{name: "ec pkcs8 auto", key: ecKey, form: formPKCS8, wantAlg: "ES256"},
		{name: "ec ES256", key: ecKey, form: formSEC1, config: PrivateKeyConfig{Algorithm: "ES256"}, wantAlg: "ES256"},
		{name: "key id", key: rsaKey, form: formPKCS8, config: PrivateKeyConfig{KeyID: "key-2026-01"}, wantAlg: "RS256"},
		{
			name: "rsa certificate", key: rsaKey, form: formPKCS1, cert: rsaCert, wantAlg: "RS256",
			config: PrivateKeyConfig{CertificateFile: rsaCertFile},
		},
		{
			name: "rsa certificate with x5t", key: rsaKey, form: formPKCS1, cert: rsaCert, wantAlg: "RS256", wantX5T: true,
			config: PrivateKeyConfig{CertificateFile: rsaCertFile, SendX5T: true, KeyID: "k1"},
		},
		{
			name: "ec certificate", key: ecKey, form: formSEC1, cert: ecCert, wantAlg: "ES256",
			config: PrivateKeyConfig{CertificateFile: ecCertFile},
		},
		{
			name: "audience override", key: ecKey, form: formPKCS8, wantAlg: "ES256",
			config:   PrivateKeyConfig{Audience: "https://login.example.test/tenant/v2.0"},
			audience: "https://login.example.test/tenant/v2.0",
		},
	}
	const clientID, tokenURL = "orthanc-egress", "https://idp.example.test/oauth2/token"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.config
			c.File = writeKeyFile(t, t.TempDir(), "key.pem", tt.key, tt.form)
			signer, err := newAssertionSigner(clientID, c)
			if err != nil {
				t.Fatalf("newAssertionSigner: %v", err)
			}

			// A time with a fraction of a second: NumericDate claims are
			// whole seconds.
			now := time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.FixedZone("CET", 3600))
			token, err := signer.sign(tokenURL, now)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			a := verifyAssertion(t, token, tt.key.Public())

			if got := a.header["alg"]; got != tt.wantAlg {
				t.Errorf("header alg = %v, want %s", got, tt.wantAlg)
			}
			if got := a.header["typ"]; got != "JWT" {
				t.Errorf("header typ = %v, want JWT", got)
			}
			if got, want := a.header["kid"], tt.config.KeyID; want != "" && got != want {
				t.Errorf("header kid = %v, want %s", got, want)
			}
			if _, ok := a.header["kid"]; ok && tt.config.KeyID == "" {
				t.Errorf("header kid = %v, want none without key_id", a.header["kid"])
			}
			checkThumbprints(t, a.header, tt.cert, c.CertificateFile, tt.wantX5T)

			wantAudience := tt.audience
			if wantAudience == "" {
				wantAudience = tokenURL
			}
			for claim, want := range map[string]string{"iss": clientID, "sub": clientID, "aud": wantAudience} {
				if got := a.claims[claim]; got != want {
					t.Errorf("claim %s = %v, want %q", claim, got, want)
				}
			}
			if jti, _ := a.claims["jti"].(string); len(jti) < 16 {
				t.Errorf("claim jti = %q, want a random ID of at least 16 characters", jti)
			}
			wantIAT := now.Unix()
			if got := intClaim(t, a.claims, "iat"); got != wantIAT {
				t.Errorf("claim iat = %d, want %d", got, wantIAT)
			}
			if got := intClaim(t, a.claims, "nbf"); got != wantIAT {
				t.Errorf("claim nbf = %d, want %d", got, wantIAT)
			}
			if got, want := intClaim(t, a.claims, "exp"), wantIAT+300; got != want {
				t.Errorf("claim exp = %d, want iat + 300 = %d", got, want)
			}
		})
	}
}

// checkThumbprints checks x5t#S256 and x5t against digests computed here,
// and against openssl's when it is installed.
func checkThumbprints(t *testing.T, header map[string]any, cert *x509.Certificate, certFile string, wantX5T bool) {
	t.Helper()
	if cert == nil {
		for _, name := range []string{"x5t#S256", "x5t"} {
			if v, ok := header[name]; ok {
				t.Errorf("header %s = %v, want none without certificate_file", name, v)
			}
		}
		return
	}

	sum256 := sha256.Sum256(cert.Raw)
	want256 := base64.RawURLEncoding.EncodeToString(sum256[:])
	if got := header["x5t#S256"]; got != want256 {
		t.Errorf("header x5t#S256 = %v, want %s", got, want256)
	}
	if fromOpenSSL := opensslThumbprint(t, certFile, "sha256"); fromOpenSSL != "" && fromOpenSSL != want256 {
		t.Errorf("openssl SHA-256 fingerprint as base64url = %s, want %s", fromOpenSSL, want256)
	}

	sum1 := sha1.Sum(cert.Raw)
	want1 := base64.RawURLEncoding.EncodeToString(sum1[:])
	got1, sent := header["x5t"]
	switch {
	case wantX5T && got1 != want1:
		t.Errorf("header x5t = %v, want %s", got1, want1)
	case !wantX5T && sent:
		t.Errorf("header x5t = %v, want none without send_x5t", got1)
	}
	if wantX5T {
		if fromOpenSSL := opensslThumbprint(t, certFile, "sha1"); fromOpenSSL != "" && fromOpenSSL != want1 {
			t.Errorf("openssl SHA-1 fingerprint as base64url = %s, want %s", fromOpenSSL, want1)
		}
	}
}

func TestAssertionUniqueID(t *testing.T) {
	file := writeKeyFile(t, t.TempDir(), "key.pem", testECKey(), formSEC1)
	signer, err := newAssertionSigner("orthanc-egress", PrivateKeyConfig{File: file})
	if err != nil {
		t.Fatalf("newAssertionSigner: %v", err)
	}

	now := time.Now()
	ids := map[string]bool{}
	for range 2 {
		token, err := signer.sign("https://idp.example.test/token", now)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		jti, _ := verifyAssertion(t, token, testECKey().Public()).claims["jti"].(string)
		if ids[jti] {
			t.Errorf("jti %q repeated in two assertions signed at the same time", jti)
		}
		ids[jti] = true
	}
}

func TestAssertionSignerErrors(t *testing.T) {
	dir := t.TempDir()
	rsaFile := writeKeyFile(t, dir, "rsa.pem", testRSAKey(), formPKCS1)
	ecFile := writeKeyFile(t, dir, "ec.pem", testECKey(), formSEC1)
	otherCertFile := writePEMFile(t, dir, "other-cert.pem", certPEM(selfSignedCert(t, otherRSAKey())))
	encrypted := make([]byte, 64)
	_, _ = rand.Read(encrypted)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("ed25519.GenerateKey: %v", err)
	}

	tests := []struct {
		name   string
		config PrivateKeyConfig
		wantIn []string
	}{
		{"ES256 with rsa key", PrivateKeyConfig{File: rsaFile, Algorithm: "ES256"},
			[]string{"private_key.algorithm", "ES256", "RSA key"}},
		{"RS256 with ec key", PrivateKeyConfig{File: ecFile, Algorithm: "RS256"},
			[]string{"private_key.algorithm", "RS256", "EC key", "use ES256"}},
		{"PS256 with ec key", PrivateKeyConfig{File: ecFile, Algorithm: "PS256"},
			[]string{"private_key.algorithm", "PS256", "EC key"}},
		{"certificate of another key", PrivateKeyConfig{File: rsaFile, CertificateFile: otherCertFile},
			[]string{"private_key.certificate_file", otherCertFile, "does not belong", rsaFile}},
		{"certificate file without certificate", PrivateKeyConfig{File: rsaFile, CertificateFile: rsaFile},
			[]string{"private_key.certificate_file", "no PEM certificate"}},
		{"encrypted key", PrivateKeyConfig{
			File: writePEMFile(t, dir, "protected.pem", &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: encrypted}),
		}, []string{"private_key.file", "protected.pem", "is encrypted"}},
		{"no key in file", PrivateKeyConfig{File: otherCertFile},
			[]string{"private_key.file", otherCertFile, "no PEM private key"}},
		{"not pem", PrivateKeyConfig{File: writePEMFile(t, dir, "empty.pem")},
			[]string{"private_key.file", "no PEM private key"}},
		{"missing file", PrivateKeyConfig{File: dir + "/missing.pem"},
			[]string{"private_key.file", "missing.pem"}},
		{"P-384 sec1", PrivateKeyConfig{File: writeKeyFile(t, dir, "p384.pem", testP384Key(), formSEC1)},
			[]string{"private_key.file", "P-384", "P-256"}},
		{"P-384 pkcs8", PrivateKeyConfig{File: writeKeyFile(t, dir, "p384-8.pem", testP384Key(), formPKCS8)},
			[]string{"private_key.file", "P-384", "P-256"}},
		{"ed25519", PrivateKeyConfig{File: writeKeyFile(t, dir, "ed.pem", edKey, formPKCS8)},
			[]string{"private_key.file", "unsupported private key type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newAssertionSigner("orthanc-egress", tt.config)
			if err == nil {
				t.Fatal("newAssertionSigner succeeded, want an error")
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestParsePrivateKeySkipsOtherBlocks: a key file may start with the
// certificate, as bundles exported from a certificate store do.
func TestParsePrivateKeySkipsOtherBlocks(t *testing.T) {
	key := testECKey()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("MarshalECPrivateKey: %v", err)
	}
	data := append(pem.EncodeToMemory(certPEM(selfSignedCert(t, key))),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)

	got, err := parsePrivateKey(data)
	if err != nil {
		t.Fatalf("parsePrivateKey: %v", err)
	}
	if ec, ok := got.(*ecdsa.PrivateKey); !ok || !ec.Equal(key) {
		t.Errorf("parsePrivateKey returned %T, want the EC key of the bundle", got)
	}
}
