package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// checkEndpoint checks that the token endpoint can be reached: DNS, TCP
// and TLS for its host, and first for the issuer's host and its discovery
// document when the configuration names an issuer. It reports whether
// every step passed.
func (d *diagnosis) checkEndpoint(ctx context.Context) bool {
	c := &d.config
	switch c.Grant {
	case tokens.GrantFile, tokens.GrantExec:
		d.report.skip("endpoint", "the "+c.Grant+" grant sends no HTTP request")
		return true
	case tokens.GrantClientCredentials, tokens.GrantWorkloadIdentity, tokens.GrantRefreshToken:
		if c.TokenURL == "" && c.Issuer != "" {
			return d.checkIssuer(ctx)
		}
	}

	// Without an issuer, TokenEndpointURL sends no request.
	tokenURL, err := tokens.TokenEndpointURL(ctx, c)
	if err != nil {
		d.report.fail(check{name: "endpoint", summary: "the token endpoint is unknown",
			details: []string{"error: " + err.Error()}, hints: fetchHints(err, c)})
		return false
	}
	return d.checkHost(ctx, "token endpoint", tokenURL)
}

// checkIssuer checks the issuer's host, finds the token endpoint in its
// discovery document, and checks the token endpoint's host if it differs.
func (d *diagnosis) checkIssuer(ctx context.Context) bool {
	c := &d.config
	if !d.checkHost(ctx, "issuer", c.Issuer) {
		return false
	}

	stepCtx, cancel := d.stepContext(ctx)
	defer cancel()
	tokenURL, err := tokens.TokenEndpointURL(stepCtx, c)
	if err != nil {
		d.report.fail(fetchErrorCheck("discovery", err, c))
		return false
	}
	d.report.ok(check{name: "discovery", summary: "token endpoint " + tokenURL})

	if sameHost(c.Issuer, tokenURL) {
		return true
	}
	return d.checkHost(ctx, "token endpoint", tokenURL)
}

// sameHost reports whether two URLs connect to the same scheme, host and port.
func sameHost(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Scheme == ub.Scheme && ua.Host == ub.Host
}

// checkHost runs the DNS, TCP and TLS checks for the host of rawURL, or
// DNS and TCP for the proxy that a request to rawURL goes through.
func (d *diagnosis) checkHost(ctx context.Context, label, rawURL string) bool {
	d.report.info("%s %s", label, rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		d.report.fail(check{name: "URL", summary: "invalid URL: " + err.Error()})
		return false
	}

	proxyURL, err := d.network.proxy(&http.Request{URL: u})
	if err != nil {
		d.report.fail(check{name: "proxy", summary: "invalid proxy setting: " + err.Error(),
			hints: []string{"Correct HTTPS_PROXY or HTTP_PROXY in the service's environment."}})
		return false
	}
	if proxyURL != nil {
		return d.checkProxy(ctx, proxyURL)
	}

	conn, ok := d.connect(ctx, u.Hostname(), portOf(u))
	if !ok {
		return false
	}
	defer conn.Close()
	if u.Scheme != "https" {
		d.report.skip("TLS", "plain http, so the connection is not encrypted")
		return true
	}
	return d.checkTLS(ctx, conn, u.Hostname())
}

// checkProxy checks DNS and TCP for the proxy. The TLS handshake with the
// server runs through the proxy, so the token check shows its errors.
func (d *diagnosis) checkProxy(ctx context.Context, proxyURL *url.URL) bool {
	d.report.info("through the proxy %s (from HTTPS_PROXY or HTTP_PROXY)", proxyURL.Redacted())
	conn, ok := d.connect(ctx, proxyURL.Hostname(), portOf(proxyURL))
	if !ok {
		return false
	}
	conn.Close()
	d.report.skip("TLS", "through the proxy; the token check below shows TLS errors")
	return true
}

// portOf returns the port of u, or the default port of its scheme.
func portOf(u *url.URL) string {
	if port := u.Port(); port != "" {
		return port
	}
	if u.Scheme == "http" {
		return "80"
	}
	return "443"
}

// connect runs the DNS and TCP checks and returns the open connection.
func (d *diagnosis) connect(ctx context.Context, host, port string) (net.Conn, bool) {
	addrs, ok := d.checkDNS(ctx, host)
	if !ok {
		return nil, false
	}
	return d.checkTCP(ctx, addrs, port)
}

func (d *diagnosis) checkDNS(ctx context.Context, host string) ([]string, bool) {
	if net.ParseIP(host) != nil {
		d.report.skip("DNS", host+" is an IP address")
		return []string{host}, true
	}

	stepCtx, cancel := d.stepContext(ctx)
	defer cancel()
	start := time.Now()
	addrs, err := d.network.lookupHost(stepCtx, host)
	if err == nil && len(addrs) == 0 {
		err = &net.DNSError{Err: "no address", Name: host, IsNotFound: true}
	}
	if err != nil {
		d.report.fail(check{name: "DNS", summary: "cannot resolve " + host,
			details: []string{"error: " + err.Error()},
			hints: networkHints(err, d.config.Timeout, "Check the host name in the URL, and the name "+
				"servers in /etc/resolv.conf.")})
		return nil, false
	}
	d.report.ok(check{name: "DNS", summary: fmt.Sprintf("%s is %s (%s)",
		host, strings.Join(addrs, ", "), elapsed(start))})
	return addrs, true
}

// checkTCP connects to each address in turn and returns the first
// connection that opens.
func (d *diagnosis) checkTCP(ctx context.Context, addrs []string, port string) (net.Conn, bool) {
	var dialer net.Dialer
	var lastErr error
	for _, addr := range addrs {
		stepCtx, cancel := d.stepContext(ctx)
		start := time.Now()
		conn, err := dialer.DialContext(stepCtx, "tcp", net.JoinHostPort(addr, port))
		cancel()
		if err == nil {
			d.report.ok(check{name: "TCP", summary: fmt.Sprintf("connected to %s (%s)",
				net.JoinHostPort(addr, port), elapsed(start))})
			return conn, true
		}
		lastErr = err
	}
	d.report.fail(check{name: "TCP", summary: "cannot connect to port " + port,
		details: []string{"error: " + lastErr.Error()},
		hints: networkHints(lastErr, d.config.Timeout, "Check the host and port in the URL, and that "+
			"the network and the firewall let this host connect.")})
	return nil, false
}

// checkTLS runs a TLS handshake on conn with the cluster's TLS settings
// and shows the server's certificate.
func (d *diagnosis) checkTLS(ctx context.Context, conn net.Conn, host string) bool {
	config, err := tokens.TLSClientConfig(&d.config)
	if err != nil {
		d.report.fail(check{name: "TLS", summary: "invalid TLS settings",
			details: []string{"error: " + err.Error()},
			hints:   []string{"Fix the file that the error names. check-config reports the same error."}})
		return false
	}
	config.ServerName = host

	stepCtx, cancel := d.stepContext(ctx)
	defer cancel()
	start := time.Now()
	tlsConn := tls.Client(conn, config)
	if err := tlsConn.HandshakeContext(stepCtx); err != nil {
		details := append([]string{"error: " + err.Error()}, certificateDetails(unverifiedCertificate(err))...)
		d.report.fail(check{name: "TLS", summary: "handshake with " + host + " failed",
			details: details, hints: networkHints(err, d.config.Timeout, "Check that the port in the URL "+
				"serves HTTPS, and the settings under tls.")})
		return false
	}

	state := tlsConn.ConnectionState()
	details := certificateDetails(state.PeerCertificates[0])
	details = append(details, clientCertificateDetails(config)...)
	if config.InsecureSkipVerify {
		details = append(details,
			"warning: the certificate was not verified, because tls.insecure_skip_verify is on")
	}
	summary := fmt.Sprintf("%s (%s)", tls.VersionName(state.Version), elapsed(start))
	d.report.ok(check{name: "TLS", summary: summary, details: details})
	return true
}

// unverifiedCertificate returns the server certificate that failed
// verification, or nil.
func unverifiedCertificate(err error) *x509.Certificate {
	var verifyErr *tls.CertificateVerificationError
	if errors.As(err, &verifyErr) && len(verifyErr.UnverifiedCertificates) > 0 {
		return verifyErr.UnverifiedCertificates[0]
	}
	return nil
}

func certificateDetails(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	details := []string{
		"certificate subject: " + cert.Subject.String(),
		"certificate issuer: " + cert.Issuer.String(),
		"certificate expires: " + formatTime(cert.NotAfter, time.Now()),
	}
	if names := certificateNames(cert); names != "" {
		details = append(details, "certificate names: "+names)
	}
	return details
}

// certificateNames lists the DNS names and IP addresses a certificate is for.
func certificateNames(cert *x509.Certificate) string {
	names := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	return strings.Join(names, ", ")
}

func clientCertificateDetails(config *tls.Config) []string {
	if len(config.Certificates) == 0 || config.Certificates[0].Leaf == nil {
		return nil
	}
	leaf := config.Certificates[0].Leaf
	return []string{
		"client certificate: " + leaf.Subject.String() + ", sent when the server requests one",
		"client certificate expires: " + formatTime(leaf.NotAfter, time.Now()),
	}
}

// elapsed returns the time since start, rounded to the millisecond.
func elapsed(start time.Time) time.Duration {
	return time.Since(start).Round(time.Millisecond)
}
