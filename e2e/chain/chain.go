// Package chain assembles the end-to-end test bed and runs the DICOMweb
// flow through it:
//
//	Orthanc A --> proxy --(header request)--> dicomweb-oauth --> issuer
//	                |
//	                +--> gate (checks the bearer token) --> Orthanc B
//
// Orthanc A is the hospital side: its DICOMweb client sends studies to the
// server named "protected", which is the proxy. The proxy requests the
// Authorization header of the upstream's cluster from the service and
// forwards the request to the gate, which accepts it only with a valid token
// from the test issuer. Orthanc B is the protected DICOMweb server. The
// issuer and the gate run in-process; Orthanc, the proxy and the service are
// child processes.
//
// The proxy is nginx with the test bed's own configuration, nginx with the
// shipped deploy/nginx/dicomweb-oauth.conf, Envoy with the shipped
// envoy/ext-proc.yaml, or envoysim.Proxy, which plays Envoy's HTTP path in
// this process and talks to the service over real gRPC. Proxy lists them.
package chain

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/gate"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/issuer"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/pki"
)

// Names and claims shared by the parts of the chain.
const (
	// Cluster is the service's name for the upstream behind nginx with the
	// test bed's configuration and behind envoysim.Proxy. The shipped
	// configurations name their own: harness.ShippedCluster and EnvoyCluster.
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

// Proxy selects the proxy between Orthanc A and the gate, and its configuration.
type Proxy string

const (
	// ProxyNginx is nginx with the test bed's configuration,
	// e2e/harness/nginx.conf.tmpl, and a plain-HTTP gate.
	ProxyNginx Proxy = "nginx"
	// ProxyShippedNginx is nginx with deploy/nginx/dicomweb-oauth.conf and the
	// service with deploy/nginx/dicomweb-oauth.yaml, both with only their
	// addresses replaced. The gate serves TLS with a certificate for
	// pacs.example.org from a CA made for the test, and the upstream path of
	// the shipped proxy_pass.
	ProxyShippedNginx Proxy = "shipped-nginx"
	// ProxyShippedEnvoy is Envoy with envoy/ext-proc.yaml, rewritten by
	// envoyconfig.Rewrite to send the route of EnvoyCluster to a plain-HTTP
	// gate that serves the upstream path of the shipped Orthanc example.
	ProxyShippedEnvoy Proxy = "shipped-envoy"

	// ProxyEnvoySimExtProc is envoysim.Proxy in envoysim.ModeExtProc: the
	// ext_proc filter in the listener's filter chain, which sends Cluster as
	// the xds.cluster_name attribute. See startEnvoySim for the route.
	ProxyEnvoySimExtProc Proxy = "envoysim-ext-proc"
	// ProxyEnvoySimExtProcUpstream is envoysim.Proxy in
	// envoysim.ModeExtProcUpstream: the ext_proc filter in the cluster's
	// upstream filter chain, once per upstream attempt. It sends no cluster
	// name, so the service finds Cluster by the rewritten :authority.
	ProxyEnvoySimExtProcUpstream Proxy = "envoysim-ext-proc-upstream"
	// ProxyEnvoySimExtAuthz is envoysim.Proxy in envoysim.ModeExtAuthz,
	// with Cluster in context_extensions and the status_on_error of the
	// shipped envoy/ext-authz-grpc.yaml.
	ProxyEnvoySimExtAuthz Proxy = "envoysim-ext-authz"
)

// Proxies lists every proxy, in the order the demo's help text names them.
var Proxies = []Proxy{
	ProxyNginx, ProxyShippedNginx, ProxyShippedEnvoy,
	ProxyEnvoySimExtProc, ProxyEnvoySimExtProcUpstream, ProxyEnvoySimExtAuthz,
}

// IsEnvoySim reports whether the proxy is envoysim.Proxy, which runs in
// this process and needs neither nginx nor Envoy.
func (p Proxy) IsEnvoySim() bool {
	_, ok := simMode(p)
	return ok
}

// Options selects the variant of the chain.
type Options struct {
	// ServiceBinary is the built dicomweb-oauth command. Empty means the
	// service is not started, and nginx's auth_request goes to a free port
	// where nothing listens. ProxyShippedEnvoy and the envoysim proxies
	// require the service.
	ServiceBinary string
	// Proxy is the proxy. Empty means ProxyNginx.
	Proxy Proxy
	// Injection is how nginx sets the Authorization header, with ProxyNginx
	// only. Empty means harness.InjectFromService.
	Injection harness.InjectionMode
	// WrongClientSecret gives the service a secret that the issuer rejects.
	WrongClientSecret bool
	// AuthMethod is the service's client authentication method.
	// Empty means issuer.AuthMethodBasic.
	AuthMethod string
	// OrthancVerbose runs both Orthanc servers with --verbose.
	OrthancVerbose bool
	// SendResponseHeaders sets the ext_proc filter's response_header_mode
	// to SEND, with ProxyEnvoySimExtProc and ProxyEnvoySimExtProcUpstream
	// only, so that the service learns of upstream 401 responses. Otherwise
	// it is SKIP, as in the shipped Envoy files.
	SendResponseHeaders bool
}

// Chain is a running test bed. Every part is stopped by the Env's Close.
type Chain struct {
	Env     *harness.Env
	Options Options
	Issuer  *issuer.Issuer
	// CA issued the gate's certificate; it is nil when the gate serves plain
	// HTTP. CAFile is its certificate in PEM form.
	CA       *pki.CA
	CAFile   string
	OrthancB *harness.Orthanc
	Gate     *gate.Server
	// GatePrefix is the base path of the gate, empty with ProxyNginx.
	GatePrefix string
	// Cluster is the service's cluster name of the gate.
	Cluster string
	// Service is nil when Options.ServiceBinary is empty.
	Service *harness.Service
	// CheckURL is the URL of the HTTP check of Cluster, which nginx's
	// auth_request calls.
	CheckURL string
	// Nginx is set with the nginx proxies, Envoy with ProxyShippedEnvoy,
	// and EnvoySim with the envoysim proxies. The others are nil.
	Nginx    *harness.Nginx
	Envoy    *harness.Envoy
	EnvoySim *envoysim.Proxy
	// ShippedNginx is the content of deploy/nginx/dicomweb-oauth.conf, read
	// with ProxyShippedNginx only.
	ShippedNginx []byte
	// DicomWebURL is the URL of the protected server in Orthanc A's
	// DicomWeb.Servers: the proxy's URL and path for the gate.
	DicomWebURL string
	OrthancA    *harness.Orthanc

	clientSecret    string           // the secret the issuer accepts
	gateCertificate *tls.Certificate // nil for a plain-HTTP gate
}

// Start starts the parts of the chain in order, from the issuer to Orthanc A.
// On error, the parts already started stay registered in env, and the
// caller's env.Close stops them.
func Start(ctx context.Context, env *harness.Env, options Options) (*Chain, error) {
	if options.Proxy == "" {
		options.Proxy = ProxyNginx
	}
	if options.Injection == "" {
		options.Injection = harness.InjectFromService
	}
	if options.AuthMethod == "" {
		options.AuthMethod = issuer.AuthMethodBasic
	}
	c := &Chain{Env: env, Options: options, Cluster: clusterOf(options.Proxy)}

	steps := []struct {
		name string
		run  func(context.Context, Options) error
	}{
		{"issuer", c.startIssuer},
		{"certificates", c.makeCertificates},
		{"Orthanc B", c.startOrthancB},
		{"gate", c.startGate},
		{"dicomweb-oauth", c.startService},
		{string(options.Proxy), c.startProxy},
		{"Orthanc A", c.startOrthancA},
	}
	for _, step := range steps {
		if err := step.run(ctx, options); err != nil {
			return c, fmt.Errorf("start %s: %w", step.name, err)
		}
	}
	return c, nil
}

// clusterOf returns the cluster name that the proxy's configuration uses.
func clusterOf(proxy Proxy) string {
	switch proxy {
	case ProxyShippedNginx:
		return harness.ShippedCluster
	case ProxyShippedEnvoy:
		return EnvoyCluster
	default:
		return Cluster
	}
}

func (c *Chain) startIssuer(_ context.Context, options Options) error {
	secret, err := randomSecret()
	if err != nil {
		return err
	}
	cfg := issuer.Config{ClientID: ClientID, ClientSecret: secret}
	if options.Proxy == ProxyShippedNginx {
		// The shipped service configuration requests no audience: the
		// identity provider adds it, as Keycloak does with an audience
		// mapper on the client.
		cfg.DefaultAudience = Audience
	}
	iss, err := issuer.Start(cfg)
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

// makeCertificates makes the CA and the gate's certificate for
// harness.ShippedUpstreamHost, with ProxyShippedNginx only. nginx trusts the
// CA through the CA file, so its SNI and certificate checks run for real.
func (c *Chain) makeCertificates(_ context.Context, options Options) error {
	if options.Proxy != ProxyShippedNginx {
		return nil
	}
	ca, err := pki.NewCA("dicomweb-oauth e2e CA")
	if err != nil {
		return err
	}
	certificate, err := ca.IssueServer(harness.ShippedUpstreamHost)
	if err != nil {
		return err
	}
	dir, err := c.Env.MakeDir("pki")
	if err != nil {
		return err
	}
	c.CAFile = filepath.Join(dir, "ca.pem")
	if err := ca.WriteCertificate(c.CAFile); err != nil {
		return err
	}
	c.CA = ca
	c.gateCertificate = &certificate
	return nil
}

func (c *Chain) startGate(ctx context.Context, options Options) error {
	cfg := gate.Config{
		Upstream:  c.OrthancB.URL,
		IssuerURL: c.Issuer.URL(),
		Audience:  Audience,
	}
	if options.Proxy != ProxyNginx {
		// The shipped configurations, and the envoysim route modelled on
		// them, send the upstream path of a dcm4chee archive, which the
		// gate maps to Orthanc B's DICOMweb root.
		c.GatePrefix = harness.ShippedUpstreamPath
		cfg.Upstream = c.OrthancB.URL + "/dicom-web/"
		cfg.PathPrefix = c.GatePrefix
	}
	g, err := gate.Start(ctx, cfg, c.gateCertificate)
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
		c.CheckURL = harness.CheckURL(addrs[0], c.Cluster)
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
	var service *harness.Service
	var err error
	if options.Proxy == ProxyShippedNginx {
		service, err = c.startShippedService(ctx, options.ServiceBinary, secret)
	} else {
		service, err = c.Env.StartService(ctx, harness.ServiceConfig{
			Binary:       options.ServiceBinary,
			Cluster:      c.Cluster,
			Hosts:        c.serviceHosts(options.Proxy),
			TokenURL:     c.Issuer.TokenURL(),
			ClientID:     ClientID,
			ClientSecret: secret,
			Scopes:       Scopes,
			AuthMethod:   options.AuthMethod,
			Audience:     Audience,
		})
	}
	if err != nil {
		return err
	}
	c.Service = service
	c.CheckURL = service.CheckURL(c.Cluster)
	return nil
}

// serviceHosts returns the hosts of the service's cluster: the upstream
// host that the envoysim route rewrites :authority to, and otherwise the
// gate's address. The other proxies name the cluster, so they never need
// its hosts.
func (c *Chain) serviceHosts(proxy Proxy) []string {
	if proxy.IsEnvoySim() {
		return []string{harness.ShippedUpstreamHost}
	}
	return []string{c.Gate.Addr()}
}

func (c *Chain) startNginx(ctx context.Context, options Options) error {
	cfg := harness.NginxConfig{
		Mode:     options.Injection,
		Upstream: c.Gate.Addr(),
		CheckURL: c.CheckURL,
		Cluster:  c.Cluster,
	}
	if options.Injection == harness.InjectStatic {
		token, err := c.Issuer.Mint(issuer.MintOptions{Subject: ClientID, Audience: Audience})
		if err != nil {
			return err
		}
		cfg.StaticAuthorization = "Bearer " + token
	}
	n, err := c.Env.StartNginx(ctx, cfg)
	if err != nil {
		return err
	}
	c.Nginx = n
	c.DicomWebURL = n.URL + "/dicom-web/"
	return nil
}

func (c *Chain) startOrthancA(ctx context.Context, options Options) error {
	// STOW-RS bodies go out with chunked transfer encoding, which nginx
	// streams with proxy_request_buffering off and proxy_http_version 1.1,
	// and Envoy streams because ext_proc receives the headers only.
	// DICOMweb 1.7 does this by default; the option makes it explicit.
	chunked := true
	a, err := c.Env.StartOrthanc(ctx, harness.OrthancConfig{
		Name:    "a",
		Verbose: options.OrthancVerbose,
		DicomWebServers: map[string]harness.DicomWebServer{
			ServerName: {URL: c.DicomWebURL, ChunkedTransfers: &chunked},
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
