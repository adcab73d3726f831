package oidcprovider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// DefaultTokenLifetime is the lifetime of access tokens when neither
// Options.TokenLifetime nor SetTokenLifetime sets one.
const DefaultTokenLifetime = time.Hour

// shutdownTimeout bounds the graceful stop of the server in test cleanup.
const shutdownTimeout = 5 * time.Second

// Endpoint paths, relative to the issuer.
var (
	tokenEndpoint = op.NewEndpoint("oauth/token")
	keysEndpoint  = op.NewEndpoint("keys")
)

// Options configures a Provider. The zero value serves an issuer without a
// path, accepts every scope and issues tokens that live DefaultTokenLifetime.
type Options struct {
	// IssuerPath is appended to https://127.0.0.1:PORT to form the issuer,
	// for example "/realms/test". It must start with a slash and must not
	// end with one.
	IssuerPath string

	// AdvertisedIssuer, when set, replaces the issuer in the discovery
	// documents only, so that a client can be tested for rejecting a
	// document whose issuer differs from the one it was configured with.
	// Tokens keep the real issuer.
	AdvertisedIssuer string

	// Scopes, when set, lists the scopes the provider accepts and
	// advertises. A request for any other scope fails with invalid_scope.
	Scopes []string

	// DefaultAudience is the aud claim of tokens whose request sets no
	// audience. Empty means the client ID, as the library does.
	DefaultAudience string

	// TokenLifetime is the time from issue to expiry of access tokens.
	// Zero means DefaultTokenLifetime.
	TokenLifetime time.Duration
}

// Provider is a running OpenID provider. Its methods are safe for concurrent
// use. The registration methods stop the test with tb.Fatalf on an invalid
// argument, so call them from the test goroutine.
type Provider struct {
	tb         testing.TB
	issuer     string
	issuerPath string
	tokenURL   string
	jwksURL    string
	caFile     string
	ca         *testCA
	store      *storage
	recorder   *recorder
	verifier   *op.AccessTokenVerifier
	server     *http.Server
	serveDone  chan error
}

// Start serves a provider on https://127.0.0.1 with a free port and stops it
// in tb.Cleanup. Its TLS certificate is issued by a CA made at start, whose
// PEM file is written under tb.TempDir. The listener requests, but does not
// require, a TLS client certificate.
func Start(tb testing.TB, opts Options) *Provider {
	tb.Helper()

	if err := validateIssuerPath(opts.IssuerPath); err != nil {
		tb.Fatalf("oidcprovider: %v", err)
	}

	ca, err := newTestCA(time.Now())
	if err != nil {
		tb.Fatalf("oidcprovider: %v", err)
	}
	caFile := filepath.Join(tb.TempDir(), "oidcprovider-ca.pem")
	if err := os.WriteFile(caFile, ca.certPEM, 0o600); err != nil {
		tb.Fatalf("oidcprovider: write CA file: %v", err)
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("oidcprovider: listen on 127.0.0.1: %v", err)
	}
	p, err := newProvider(tb, opts, ca, caFile, listener.Addr().String())
	if err != nil {
		listener.Close()
		tb.Fatalf("oidcprovider: %v", err)
	}

	p.serve(listener)
	tb.Cleanup(p.stop)
	return p
}

func validateIssuerPath(issuerPath string) error {
	if issuerPath == "" {
		return nil
	}
	valid := strings.HasPrefix(issuerPath, "/") && path.Clean(issuerPath) == issuerPath &&
		issuerPath != "/" && !strings.ContainsAny(issuerPath, "?#{} ")
	if !valid {
		return fmt.Errorf("invalid Options.IssuerPath %q: use a clean path such as /realms/test", issuerPath)
	}
	return nil
}

func newProvider(
	tb testing.TB, opts Options, ca *testCA, caFile, hostPort string,
) (*Provider, error) {
	issuer := "https://" + hostPort + opts.IssuerPath
	store, err := newStorage(opts)
	if err != nil {
		return nil, err
	}

	p := &Provider{
		tb:         tb,
		issuer:     issuer,
		issuerPath: opts.IssuerPath,
		tokenURL:   tokenEndpoint.Absolute(issuer),
		jwksURL:    keysEndpoint.Absolute(issuer),
		caFile:     caFile,
		ca:         ca,
		store:      store,
		recorder:   &recorder{},
		verifier:   op.NewAccessTokenVerifier(issuer, &op.OpenIDKeySet{Storage: store}),
		serveDone:  make(chan error, 1),
	}
	handler, err := p.newHandler(opts)
	if err != nil {
		return nil, err
	}
	p.server = &http.Server{
		Handler:           handler,
		TLSConfig:         ca.serverTLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return p, nil
}

// newHandler wires the library's token and JWKS handler under the issuer
// path, the token request recorder in front of the token endpoint, and the
// library's metadata handler in front of everything.
func (p *Provider) newHandler(opts Options) (http.Handler, error) {
	config := &op.Config{
		AuthMethodPost:          true,
		AuthMethodPrivateKeyJWT: true,
		GrantTypeRefreshToken:   true,
		SupportedScopes:         opts.Scopes,
	}
	openID, err := op.NewProvider(config, p.store, op.StaticIssuer(p.issuer))
	if err != nil {
		return nil, fmt.Errorf("create library provider: %w", err)
	}
	legacy := op.NewLegacyServer(openID, op.Endpoints{Token: tokenEndpoint, JwksURI: keysEndpoint})
	srv := &server{
		LegacyServer:    legacy,
		openID:          openID,
		store:           p.store,
		issuer:          p.issuer,
		tokenURL:        p.tokenURL,
		defaultAudience: opts.DefaultAudience,
	}

	withIssuer := op.WithHTTPMiddleware(op.NewIssuerInterceptor(openID.IssuerFromRequest).Handler)
	withoutCORS := op.WithServerCORSOptions(nil)
	api := http.StripPrefix(p.issuerPath, op.RegisterServer(srv, legacy.Endpoints(), withIssuer, withoutCORS))
	metadata := &metadataServer{
		legacy:           legacy,
		issuerPath:       p.issuerPath,
		advertisedIssuer: opts.AdvertisedIssuer,
	}

	mux := http.NewServeMux()
	mux.Handle(p.issuerPath+tokenEndpoint.Relative(), p.recorder.wrap(api))
	mux.Handle(p.issuerPath+"/", api)
	return op.RegisterMetadataServer(metadata, withIssuer, withoutCORS).Intercept(mux), nil
}

func (p *Provider) serve(listener net.Listener) {
	go func() {
		p.serveDone <- p.server.ServeTLS(listener, "", "")
	}()
}

func (p *Provider) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()

	if err := p.server.Shutdown(ctx); err != nil {
		p.tb.Errorf("oidcprovider: shut down: %v", err)
	}
	if err := <-p.serveDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.tb.Errorf("oidcprovider: serve: %v", err)
	}
}

// Issuer returns the issuer URL, https://127.0.0.1:PORT followed by
// Options.IssuerPath.
func (p *Provider) Issuer() string { return p.issuer }

// TokenURL returns the URL of the token endpoint.
func (p *Provider) TokenURL() string { return p.tokenURL }

// JWKSURL returns the URL of the JSON Web Key Set that verifies the tokens.
func (p *Provider) JWKSURL() string { return p.jwksURL }

// DiscoveryURL returns the OpenID Connect discovery URL: the issuer followed
// by /.well-known/openid-configuration.
func (p *Provider) DiscoveryURL() string {
	return p.issuer + oidc.DiscoveryEndpoint
}

// MetadataURL returns the RFC 8414 metadata URL, which puts
// /.well-known/oauth-authorization-server between the host and the issuer
// path.
func (p *Provider) MetadataURL() string {
	origin := strings.TrimSuffix(p.issuer, p.issuerPath)
	return origin + oidc.AuthorizationServerMetadataEndpoint + p.issuerPath
}

// CAFile returns the path of the PEM file of the test CA that issued the
// server certificate.
func (p *Provider) CAFile() string { return p.caFile }

// CACertPool returns a new pool that contains only the test CA.
func (p *Provider) CACertPool() *x509.CertPool { return p.ca.pool.Clone() }

// HTTPClient returns a client that trusts the test CA and presents
// clientCertificates when the server requests one.
func (p *Provider) HTTPClient(clientCertificates ...tls.Certificate) *http.Client {
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:      p.CACertPool(),
			Certificates: clientCertificates,
			MinVersion:   tls.VersionTLS12,
		},
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
}

// SetTokenLifetime sets the lifetime of access tokens issued from now on.
// The expires_in of the responses is the lifetime rounded to whole seconds,
// and at least 1. It stops the test unless lifetime is positive.
func (p *Provider) SetTokenLifetime(lifetime time.Duration) {
	p.tb.Helper()
	if lifetime <= 0 {
		p.tb.Fatalf("oidcprovider: token lifetime %v is not positive", lifetime)
	}
	p.store.setLifetime(lifetime)
}
