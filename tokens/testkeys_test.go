package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Test keys are generated once per test binary, because RSA key generation
// is slow under the race detector. They are never written outside t.TempDir().
var (
	testRSAKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSAKey() })
	otherRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSAKey() })
	testECKey   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECKey(elliptic.P256()) })
	testP384Key = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECKey(elliptic.P384()) })
	testCA      = sync.OnceValue(newCertAuthority)
	serials     serialNumbers
)

func mustRSAKey() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return key
}

func mustECKey(curve elliptic.Curve) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		panic(err)
	}
	return key
}

// serialNumbers hands out distinct certificate serial numbers.
type serialNumbers struct {
	mu sync.Mutex
	n  int64
}

func (s *serialNumbers) next() *big.Int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return big.NewInt(s.n)
}

// Private key file forms.
const (
	formPKCS1 = "pkcs1" // RSA PRIVATE KEY
	formPKCS8 = "pkcs8" // PRIVATE KEY
	formSEC1  = "sec1"  // EC PRIVATE KEY
)

// writeKeyFile writes key as PEM in the given form to a new file in dir.
func writeKeyFile(t *testing.T, dir, name string, key crypto.Signer, form string) string {
	t.Helper()
	var block *pem.Block
	switch form {
	case formPKCS1:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	case formSEC1:
		der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatalf("MarshalECPrivateKey: %v", err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	case formPKCS8:
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatalf("MarshalPKCS8PrivateKey: %v", err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	default:
		t.Fatalf("unknown key form %q", form)
	}
	return writePEMFile(t, dir, name, block)
}

// writePEMFile writes PEM blocks to a new file in dir and returns its path.
func writePEMFile(t *testing.T, dir, name string, blocks ...*pem.Block) string {
	t.Helper()
	var data []byte
	for _, b := range blocks {
		data = append(data, pem.EncodeToMemory(b)...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	return path
}

func certPEM(cert *x509.Certificate) *pem.Block {
	return &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}
}

// selfSignedCert returns a self-signed certificate of key, as a client
// registers with Entra ID for private_key_jwt.
func selfSignedCert(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serials.next(),
		Subject:      pkix.Name{CommonName: "dicomweb-oauth test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

// certAuthority is a test CA that issues server and client certificates.
type certAuthority struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newCertAuthority() *certAuthority {
	key := mustECKey(elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber:          serials.next(),
		Subject:               pkix.Name{CommonName: "dicomweb-oauth test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &certAuthority{key: key, cert: cert}
}

// issue returns a certificate for key signed by the CA: a server
// certificate for 127.0.0.1 when server is true, else a client certificate.
func (ca *certAuthority) issue(t *testing.T, key crypto.Signer, commonName string, server bool) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serials.next(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

// serverCertificate returns a TLS certificate for 127.0.0.1 issued by the CA.
func (ca *certAuthority) serverCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	key := testECKey()
	cert := ca.issue(t, key, "127.0.0.1", true)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}
