package tokens

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
)

func TestPrivateKeyJWTRequest(t *testing.T) {
	e := newFakeEndpoint(t)
	key := testRSAKey()
	c := &Config{
		TokenURL: e.URL(),
		ClientID: "orthanc-egress",
		PrivateKey: PrivateKeyConfig{
			File:  writeKeyFile(t, t.TempDir(), "key.pem", key, formPKCS8),
			KeyID: "key-1",
		},
	}
	c.SetDefaults()
	src := newTestSource(t, c)

	for range 2 {
		if _, err := src.Fetch(context.Background()); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if _, auth := e.Last(); auth != "" {
			t.Errorf("Authorization header = %q, want none with private_key_jwt", auth)
		}
	}

	forms := e.Forms()
	if len(forms) != 2 {
		t.Fatalf("endpoint saw %d requests, want 2", len(forms))
	}
	seen := map[string]bool{}
	for i, form := range forms {
		if got := form.Get("client_assertion_type"); got != ClientAssertionType {
			t.Errorf("request %d: client_assertion_type = %q, want %q", i, got, ClientAssertionType)
		}
		if got := form.Get("client_id"); got != "orthanc-egress" {
			t.Errorf("request %d: client_id = %q, want orthanc-egress", i, got)
		}
		if form.Has("client_secret") {
			t.Errorf("request %d: client_secret sent with private_key_jwt", i)
		}
		assertion := form.Get("client_assertion")
		a := verifyAssertion(t, assertion, key.Public())
		if got := a.claims["aud"]; got != e.URL() {
			t.Errorf("request %d: assertion aud = %v, want the token URL %s", i, got, e.URL())
		}
		if got := a.header["kid"]; got != "key-1" {
			t.Errorf("request %d: assertion kid = %v, want key-1", i, got)
		}
		jti, _ := a.claims["jti"].(string)
		if seen[jti] {
			t.Errorf("request %d: assertion jti %q reused, want a new assertion per request", i, jti)
		}
		seen[jti] = true
	}
}

// mutualTLSFiles are the PEM files of a tls_client_auth client.
type mutualTLSFiles struct {
	caFile, certFile, keyFile string
	cert                      *x509.Certificate
}

func newMutualTLSFiles(t *testing.T) mutualTLSFiles {
	t.Helper()
	dir := t.TempDir()
	ca := testCA()
	key := testRSAKey()
	cert := ca.issue(t, key, "orthanc-egress", false)
	return mutualTLSFiles{
		caFile:   writePEMFile(t, dir, "ca.pem", certPEM(ca.cert)),
		certFile: writePEMFile(t, dir, "client-cert.pem", certPEM(cert)),
		keyFile:  writeKeyFile(t, dir, "client-key.pem", key, formPKCS1),
		cert:     cert,
	}
}

// newMutualTLSEndpoint starts an HTTPS token endpoint with a certificate of
// the test CA that requests, but does not verify, client certificates.
func newMutualTLSEndpoint(t *testing.T) *fakeEndpoint {
	t.Helper()
	return newTLSFakeEndpoint(t, &tls.Config{
		Certificates: []tls.Certificate{testCA().serverCertificate(t)},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
	})
}

func TestTLSClientAuth(t *testing.T) {
	e := newMutualTLSEndpoint(t)
	files := newMutualTLSFiles(t)
	c := &Config{
		TokenURL: e.URL(),
		ClientID: "orthanc-egress",
		TLS: TLSConfig{
			CAFile: files.caFile, ClientCertificateFile: files.certFile, ClientKeyFile: files.keyFile,
		},
	}
	c.SetDefaults()
	if c.AuthMethod != AuthTLSClientAuth {
		t.Fatalf("auth_method after SetDefaults = %q, want %q", c.AuthMethod, AuthTLSClientAuth)
	}

	tok, err := newTestSource(t, c).Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if tok.AccessToken != "test-token-1" {
		t.Errorf("access token = %q, want test-token-1", tok.AccessToken)
	}

	peer := e.LastPeer()
	if len(peer) == 0 {
		t.Fatal("endpoint saw no client certificate")
	}
	if !peer[0].Equal(files.cert) {
		t.Errorf("client certificate subject = %q, want the configured certificate %q",
			peer[0].Subject, files.cert.Subject)
	}
	form, auth := e.Last()
	if got := form.Get("client_id"); got != "orthanc-egress" {
		t.Errorf("client_id in body = %q, want orthanc-egress", got)
	}
	if form.Has("client_secret") || form.Has("client_assertion") {
		t.Errorf("body has client_secret or client_assertion with tls_client_auth: %v", form)
	}
	if auth != "" {
		t.Errorf("Authorization header = %q, want none with tls_client_auth", auth)
	}
}

func TestTLSUnknownAuthority(t *testing.T) {
	e := newMutualTLSEndpoint(t)
	files := newMutualTLSFiles(t)
	c := &Config{
		TokenURL: e.URL(),
		ClientID: "orthanc-egress",
		TLS:      TLSConfig{ClientCertificateFile: files.certFile, ClientKeyFile: files.keyFile},
	}
	c.SetDefaults()

	_, err := newTestSource(t, c).Fetch(context.Background())
	if err == nil {
		t.Fatal("Fetch succeeded against a server of an unknown CA, want a certificate error")
	}
	var fe *FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("error %T %v is not a *FetchError", err, err)
	}
	if fe.Class != ClassTransient {
		t.Errorf("class = %q, want %q (error: %v)", fe.Class, ClassTransient, err)
	}
	var verifyErr *tls.CertificateVerificationError
	if !errors.As(err, &verifyErr) {
		t.Errorf("error %q does not wrap a *tls.CertificateVerificationError", err)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %q does not mention the certificate", err)
	}
	if n := e.requests.Load(); n != 0 {
		t.Errorf("endpoint saw %d requests, want 0", n)
	}
}

func TestTLSInsecureSkipVerify(t *testing.T) {
	e := newMutualTLSEndpoint(t)
	files := newMutualTLSFiles(t)
	c := &Config{
		TokenURL: e.URL(),
		ClientID: "orthanc-egress",
		TLS: TLSConfig{
			ClientCertificateFile: files.certFile, ClientKeyFile: files.keyFile, InsecureSkipVerify: true,
		},
	}
	c.SetDefaults()

	settings := SettingsOf(c)
	if !settings.InsecureTLS {
		t.Error("SettingsOf(c).InsecureTLS = false, want true with insecure_skip_verify")
	}
	m := NewManager("pacs", newTestSource(t, c), settings, WithLogger(quietLogger))
	header, err := m.Header(context.Background())
	if err != nil {
		t.Fatalf("Header: %v", err)
	}
	if header != "Bearer test-token-1" {
		t.Errorf("header = %q, want Bearer test-token-1", header)
	}
	if !m.Status().InsecureTLS {
		t.Error("Status().InsecureTLS = false, want true with insecure_skip_verify")
	}

	c.TLS.InsecureSkipVerify = false
	if SettingsOf(c).InsecureTLS {
		t.Error("SettingsOf(c).InsecureTLS = true, want false by default")
	}
}

func TestNewSourceTLSFileErrors(t *testing.T) {
	files := newMutualTLSFiles(t)
	dir := t.TempDir()
	tests := []struct {
		name   string
		tls    TLSConfig
		wantIn []string
	}{
		{"missing ca_file", TLSConfig{CAFile: dir + "/missing-ca.pem"}, []string{"tls.ca_file", "missing-ca.pem"}},
		{"ca_file without certificate", TLSConfig{CAFile: files.keyFile},
			[]string{"tls.ca_file", files.keyFile, "no PEM certificate"}},
		{"certificate of another key", TLSConfig{
			ClientCertificateFile: files.certFile,
			ClientKeyFile:         writeKeyFile(t, dir, "other.pem", otherRSAKey(), formPKCS8),
		}, []string{"tls.client_certificate_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{TokenURL: "https://127.0.0.1:1/token", ClientID: "orthanc-egress", ClientSecret: "s", TLS: tt.tls}
			c.SetDefaults()
			_, err := NewSource(c)
			if err == nil {
				t.Fatal("NewSource succeeded, want an error")
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}
