package chain

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoyconfig"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
)

// Values of the shipped envoy/ext-proc.yaml that the Envoy chain uses.
const (
	// ShippedEnvoyFile is the Envoy bootstrap, relative to the module root.
	ShippedEnvoyFile = "envoy/ext-proc.yaml"
	// EnvoyCluster is the upstream cluster that the chain points at the gate.
	EnvoyCluster = "dcm4chee"
	// EnvoyRoutePrefix is the path prefix of the route to EnvoyCluster,
	// without its trailing slash. Envoy removes it, so the gate receives
	// the path after it.
	EnvoyRoutePrefix = "/dcm4chee"
)

func (c *Chain) startProxy(ctx context.Context, options Options) error {
	switch options.Proxy {
	case ProxyNginx:
		return c.startNginx(ctx, options)
	case ProxyShippedNginx:
		return c.startShippedNginx(ctx)
	case ProxyShippedEnvoy:
		return c.startShippedEnvoy(ctx)
	case ProxyEnvoySimExtProc, ProxyEnvoySimExtProcUpstream, ProxyEnvoySimExtAuthz:
		return c.startEnvoySim(ctx, options)
	default:
		return fmt.Errorf("unknown proxy %q", options.Proxy)
	}
}

// startShippedService starts the service with deploy/nginx/dicomweb-oauth.yaml,
// whose listeners, token endpoint and client are replaced with the test
// bed's. The file must name the cluster that the shipped nginx file uses.
func (c *Chain) startShippedService(ctx context.Context, binary, secret string) (*harness.Service, error) {
	source, err := harness.ReadShipped(ctx, harness.ShippedServiceFile)
	if err != nil {
		return nil, err
	}
	clusters, err := harness.ClusterNames(source)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(clusters, c.Cluster) {
		return nil, fmt.Errorf("%s names clusters %v, want one named %q as in %s",
			harness.ShippedServiceFile, clusters, c.Cluster, harness.ShippedNginxFile)
	}

	render := func(listeners harness.ServiceListeners, secretFile string) ([]byte, error) {
		text, err := harness.RenderShippedServiceConfig(source, harness.ShippedServiceValues{
			Listeners:  listeners,
			TokenURL:   c.Issuer.TokenURL(),
			ClientID:   ClientID,
			SecretFile: secretFile,
		})
		return []byte(text), err
	}
	return c.Env.StartServiceWith(ctx, binary, secret, render)
}

// startShippedNginx starts nginx with deploy/nginx/dicomweb-oauth.conf in
// front of the TLS gate.
func (c *Chain) startShippedNginx(ctx context.Context) error {
	source, err := harness.ReadShipped(ctx, harness.ShippedNginxFile)
	if err != nil {
		return err
	}
	c.ShippedNginx = source

	n, err := c.StartShippedNginx(ctx, "nginx", c.CAFile)
	if err != nil {
		return err
	}
	c.Nginx = n
	c.DicomWebURL = n.URL + harness.ShippedLocation
	return nil
}

// StartShippedNginx starts an nginx with the shipped configuration, the
// chain's gate and service, the given CA file and further edits. Besides the
// chain's own nginx, tests start more to run the shipped file with a change
// that must make a request fail. The name labels its folder and log files.
func (c *Chain) StartShippedNginx(ctx context.Context, name, caFile string,
	edits ...harness.Replacement) (*harness.Nginx, error) {
	if c.ShippedNginx == nil {
		return nil, errors.New("the chain does not run the shipped nginx configuration")
	}
	check, err := url.Parse(c.CheckURL)
	if err != nil {
		return nil, fmt.Errorf("invalid check URL %q: %w", c.CheckURL, err)
	}
	return c.Env.StartShippedNginx(ctx, harness.ShippedNginxConfig{
		Name:      name,
		Source:    c.ShippedNginx,
		Upstream:  c.Gate.Addr(),
		CheckAddr: check.Host,
		TrustedCA: caFile,
		Edits:     edits,
	})
}

// startShippedEnvoy starts Envoy with envoy/ext-proc.yaml rewritten for the
// test bed, and waits until its gRPC health check of the service passes.
func (c *Chain) startShippedEnvoy(ctx context.Context) error {
	if c.Service == nil {
		return errors.New("the Envoy chain needs the service: set Options.ServiceBinary")
	}
	source, err := harness.ReadShipped(ctx, ShippedEnvoyFile)
	if err != nil {
		return err
	}

	render := func(listener, admin string) ([]byte, error) {
		config, err := envoyconfig.Rewrite(source, envoyconfig.Loopback{
			Listener:        listener,
			Admin:           admin,
			Service:         c.Service.GRPCAddr,
			UpstreamCluster: EnvoyCluster,
			Upstream:        c.Gate.Addr(),
		})
		if err != nil {
			return nil, err
		}
		// Envoy would reject a configuration that does not decode; this
		// error is clearer than its log.
		if _, err := envoyconfig.DecodeBootstrap(config); err != nil {
			return nil, fmt.Errorf("rewritten %s: %w", ShippedEnvoyFile, err)
		}
		return config, nil
	}
	v, err := c.Env.StartEnvoy(ctx, render, envoyconfig.ServiceCluster)
	if err != nil {
		return err
	}
	c.Envoy = v
	c.DicomWebURL = v.URL + EnvoyRoutePrefix + harness.ShippedUpstreamPath
	return nil
}
