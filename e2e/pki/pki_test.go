package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssueServerVerifies(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	other, err := NewCA("other CA")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	certificate, err := ca.IssueServer("pacs.example.org")
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}

	tests := []struct {
		name    string
		roots   *x509.CertPool
		dnsName string
		wantErr bool
	}{
		{"issuing CA and name", ca.Pool(), "pacs.example.org", false},
		{"other name", ca.Pool(), "other.example.org", true},
		{"other CA", other.Pool(), "pacs.example.org", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := certificate.Leaf.Verify(x509.VerifyOptions{
				DNSName:   tt.dnsName,
				Roots:     tt.roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if got := err != nil; got != tt.wantErr {
				t.Errorf("Verify error = %v, want error = %v", err, tt.wantErr)
			}
		})
	}
}

func TestWriteCertificateIsPEM(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")

	if err := ca.WriteCertificate(path); err != nil {
		t.Fatalf("WriteCertificate: %v", err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("file is not a PEM certificate: %q", data)
	}
	if len(rest) != 0 {
		t.Errorf("file has %d bytes after the certificate", len(rest))
	}
	parsed, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if !parsed.IsCA {
		t.Error("certificate is not a CA")
	}
	if strings.Contains(string(data), "PRIVATE KEY") {
		t.Error("file holds a private key")
	}
}

// TestTLSHandshakeWithSNI runs a real handshake: a client that trusts only
// the CA reaches a server with the issued certificate under the DNS name.
func TestTLSHandshakeWithSNI(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	certificate, err := ca.IssueServer("pacs.example.org")
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{certificate}})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serverNames := make(chan string, 1)
	server := &http.Server{
		Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			serverNames <- r.TLS.ServerName
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(func() { _ = server.Close() })

	// The dialer connects to 127.0.0.1 and sends the name only as SNI, so
	// no name is resolved.
	dialer := &tls.Dialer{Config: &tls.Config{RootCAs: ca.Pool(), ServerName: "pacs.example.org"}}
	conn, err := dialer.Dial("tcp", listener.Addr().String())
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer conn.Close()
	request := "GET / HTTP/1.1\r\nHost: pacs.example.org\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatalf("write request: %v", err)
	}

	select {
	case got := <-serverNames:
		if got != "pacs.example.org" {
			t.Errorf("server saw SNI %q, want pacs.example.org", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server saw no request")
	}
}
