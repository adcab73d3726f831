// Package chain assembles the end-to-end test bed and runs the DICOMweb
// flow through it:
//
//	Orthanc A --> nginx --(auth_request)--> dicomweb-oauth --> issuer
//	                |
//	                +--> gate (checks the bearer token) --> Orthanc B
//
// Orthanc A is the hospital side: its DICOMweb client sends studies to the
// server named "protected", which is nginx. nginx requests the
// Authorization header of the cluster "protected-orthanc" and forwards the
// request to the gate, which accepts it only with a valid token from the
// test issuer. Orthanc B is the protected DICOMweb server. The issuer and the
// gate run in-process; Orthanc, nginx and the service are child processes.
package chain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/gate"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/issuer"
)

// Names and claims shared by the parts of the chain.
const (
	// Cluster is the service's name for the upstream behind nginx.
	Cluster = "protected-orthanc"
	// ServerName is Orthanc A's name for the remote DICOMweb server.
	ServerName = "protected"
	// ClientID is the OAuth2 client registered at the issuer.
	ClientID = "orthanc-egress"
	// Audience is the "aud" the gate requires. The name is never resolved.
	Audience = "https://dicom.example.test"
)

// Scopes are the scopes the service requests.
var Scopes = []string{"dicom.read", "dicom.write"}

// Options selects the variant of the chain.
type Options struct {
	// ServiceBinary is the built dicomweb-oauth command. Empty means the
	// service is not started, and nginx's auth_request goes to a free port
	// where nothing listens.
	ServiceBinary string
	// Injection is how nginx sets the Authorization header.
	// Empty means harness.InjectFromService.
	Injection harness.InjectionMode
	// WrongClientSecret gives the service a secret that the issuer rejects.
	WrongClientSecret bool
	// AuthMethod is the service's client authentication method.
	// Empty means issuer.AuthMethodBasic.
	AuthMethod string
	// OrthancVerbose runs both Orthanc servers with --verbose.
	OrthancVerbose bool
}

// Chain is a running test bed. Every part is stopped by the Env's Close.
type Chain struct {
	Env      *harness.Env
	Issuer   *issuer.Issuer
	OrthancB *harness.Orthanc
	Gate     *gate.Server
	// Service is nil when Options.ServiceBinary is empty.
	Service *harness.Service
	// CheckURL is the URL nginx's auth_request calls.
	CheckURL string
	Nginx    *harness.Nginx
	OrthancA *harness.Orthanc

	clientSecret string // the secret the issuer accepts
}

// Start starts the parts of the chain in order, from the issuer to Orthanc A.
// On error, the parts already started stay registered in env, and the
// caller's env.Close stops them.
func Start(ctx context.Context, env *harness.Env, options Options) (*Chain, error) {
	if options.Injection == "" {
		options.Injection = harness.InjectFromService
	}
	if options.AuthMethod == "" {
		options.AuthMethod = issuer.AuthMethodBasic
	}
	c := &Chain{Env: env}

	steps := []struct {
		name string
		run  func(context.Context, Options) error
	}{
		{"issuer", c.startIssuer},
		{"Orthanc B", c.startOrthancB},
		{"gate", c.startGate},
		{"dicomweb-oauth", c.startService},
		{"nginx", c.startNginx},
		{"Orthanc A", c.startOrthancA},
	}
	for _, step := range steps {
		if err := step.run(ctx, options); err != nil {
			return c, fmt.Errorf("start %s: %w", step.name, err)
		}
	}
	return c, nil
}

func (c *Chain) startIssuer(_ context.Context, _ Options) error {
	secret, err := randomSecret()
	if err != nil {
		return err
	}
	iss, err := issuer.Start(issuer.Config{ClientID: ClientID, ClientSecret: secret})
	if err != nil {
		return err
	}
	c.Env.AddCleanup(func() { _ = iss.Close() })
	c.Issuer = iss
	c.clientSecret = secret
	return nil
}

func (c *Chain) startOrthancB(ctx context.Context, options Options) error {
	b, err := c.Env.StartOrthanc(ctx, harness.OrthancConfig{Name: "b", Verbose: options.OrthancVerbose})
	c.OrthancB = b
	return err
}

func (c *Chain) startGate(ctx context.Context, _ Options) error {
	g, err := gate.Start(ctx, gate.Config{
		Upstream:  c.OrthancB.URL,
		IssuerURL: c.Issuer.URL(),
		Audience:  Audience,
	})
	if err != nil {
		return err
	}
	c.Env.AddCleanup(func() { _ = g.Close() })
	c.Gate = g
	return nil
}

func (c *Chain) startService(ctx context.Context, options Options) error {
	if options.ServiceBinary == "" {
		addrs, err := harness.FreeAddrs(1)
		if err != nil {
			return err
		}
		c.CheckURL = harness.CheckURL(addrs[0], Cluster)
		return nil
	}

	secret := c.clientSecret
	if options.WrongClientSecret {
		wrong, err := randomSecret()
		if err != nil {
			return err
		}
		secret = wrong
	}
	service, err := c.Env.StartService(ctx, harness.ServiceConfig{
		Binary:       options.ServiceBinary,
		Cluster:      Cluster,
		Hosts:        []string{c.Gate.Addr()},
		TokenURL:     c.Issuer.TokenURL(),
		ClientID:     ClientID,
		ClientSecret: secret,
		Scopes:       Scopes,
		AuthMethod:   options.AuthMethod,
		Audience:     Audience,
	})
	if err != nil {
		return err
	}
	c.Service = service
	c.CheckURL = service.CheckURL(Cluster)
	return nil
}

func (c *Chain) startNginx(ctx context.Context, options Options) error {
	cfg := harness.NginxConfig{
		Mode:     options.Injection,
		Upstream: c.Gate.Addr(),
		CheckURL: c.CheckURL,
		Cluster:  Cluster,
	}
	if options.Injection == harness.InjectStatic {
		token, err := c.Issuer.Mint(issuer.MintOptions{Subject: ClientID, Audience: Audience})
		if err != nil {
			return err
		}
		cfg.StaticAuthorization = "Bearer " + token
	}
	n, err := c.Env.StartNginx(ctx, cfg)
	c.Nginx = n
	return err
}

func (c *Chain) startOrthancA(ctx context.Context, options Options) error {
	// STOW-RS bodies go out with chunked transfer encoding, which nginx
	// streams with proxy_request_buffering off and proxy_http_version 1.1.
	// DICOMweb 1.7 does this by default; the option makes it explicit.
	chunked := true
	a, err := c.Env.StartOrthanc(ctx, harness.OrthancConfig{
		Name:    "a",
		Verbose: options.OrthancVerbose,
		DicomWebServers: map[string]harness.DicomWebServer{
			ServerName: {URL: c.Nginx.URL + "/dicom-web/", ChunkedTransfers: &chunked},
		},
	})
	c.OrthancA = a
	return err
}

// randomSecret returns a fresh client secret, so that no secret is stored
// in the repository.
func randomSecret() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
