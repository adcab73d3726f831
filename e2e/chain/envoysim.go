package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoyconfig"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
)

// Values of the chains with envoysim.Proxy in place of a proxy program.
const (
	// SimRoutePrefix is the path prefix of the simulated proxy's one route,
	// without its trailing slash. The route replaces it with "/", so the gate
	// receives the path after it, as with the shipped Envoy files.
	SimRoutePrefix = "/protected"
	// ShippedExtAuthzFile is the Envoy bootstrap whose ext_authz settings
	// the ext_authz mode copies, relative to the module root.
	ShippedExtAuthzFile = "envoy/ext-authz-grpc.yaml"
)

// simMode returns the envoysim mode of an envoysim proxy, and false for
// any other proxy.
func simMode(proxy Proxy) (envoysim.Mode, bool) {
	switch proxy {
	case ProxyEnvoySimExtProc:
		return envoysim.ModeExtProc, true
	case ProxyEnvoySimExtProcUpstream:
		return envoysim.ModeExtProcUpstream, true
	case ProxyEnvoySimExtAuthz:
		return envoysim.ModeExtAuthz, true
	default:
		return "", false
	}
}

// startEnvoySim starts envoysim.Proxy with one route to the gate and a
// Driver connected to the service's gRPC listener. The route rewrites the
// host to harness.ShippedUpstreamHost, the one host of the service's
// cluster. In the ext_proc upstream mode the route names no cluster, so
// the service finds it by that rewritten :authority.
func (c *Chain) startEnvoySim(ctx context.Context, options Options) error {
	if c.Service == nil {
		return errors.New("the envoysim chain needs the service: set Options.ServiceBinary")
	}
	mode, _ := simMode(options.Proxy)
	cfg, err := c.simConfig(ctx, mode, options)
	if err != nil {
		return err
	}
	logger, err := c.simLogger()
	if err != nil {
		return err
	}
	cfg.Log = logger

	driver, err := envoysim.Dial(c.Service.GRPCAddr)
	if err != nil {
		return err
	}
	c.Env.AddCleanup(func() { _ = driver.Close() })
	cfg.Driver = driver

	proxy, err := envoysim.NewProxy(cfg)
	if err != nil {
		return err
	}
	if err := proxy.Start(); err != nil {
		return err
	}
	c.Env.AddCleanup(func() { _ = proxy.Close() })
	c.EnvoySim = proxy
	c.DicomWebURL = proxy.URL() + SimRoutePrefix + harness.ShippedUpstreamPath
	return nil
}

// simConfig returns the proxy's configuration without its Driver and log.
func (c *Chain) simConfig(ctx context.Context, mode envoysim.Mode, options Options) (envoysim.Config, error) {
	route := envoysim.Route{
		Prefix:        SimRoutePrefix + "/",
		Upstream:      "http://" + c.Gate.Addr(),
		PrefixRewrite: "/",
		HostRewrite:   harness.ShippedUpstreamHost,
	}
	if mode != envoysim.ModeExtProcUpstream {
		route.Cluster = c.Cluster
	}
	cfg := envoysim.Config{
		Mode:   mode,
		Routes: []envoysim.Route{route},
		// The shipped ext_proc files skip the response headers.
		ResponseHeaderMode: filterv3.ProcessingMode_SKIP,
	}
	if options.SendResponseHeaders {
		cfg.ResponseHeaderMode = filterv3.ProcessingMode_SEND
	}
	if mode == envoysim.ModeExtAuthz {
		status, err := ShippedStatusOnError(ctx)
		if err != nil {
			return cfg, err
		}
		cfg.StatusOnError = status
	}
	return cfg, nil
}

// simLogger returns a logger that writes to a file in a new folder of the
// Env, which the Env's LogTails reports. The file is closed after the
// proxy, because cleanups run newest first.
func (c *Chain) simLogger() (*slog.Logger, error) {
	dir, err := c.Env.MakeDir("envoysim")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "envoysim.log")
	file, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create envoysim log: %w", err)
	}
	c.Env.AddCleanup(func() { _ = file.Close() })
	c.Env.AddLog("envoysim", path)
	return slog.New(slog.NewTextHandler(file, &slog.HandlerOptions{Level: slog.LevelDebug})), nil
}

// ShippedStatusOnError returns the status_on_error of the ext_authz filter
// in envoy/ext-authz-grpc.yaml, or 403, Envoy's default, when it is unset.
// It fails when the file has no ext_authz filter, and when the filter sets
// failure_mode_allow, which envoysim.Proxy does not model.
func ShippedStatusOnError(ctx context.Context) (int, error) {
	source, err := harness.ReadShipped(ctx, ShippedExtAuthzFile)
	if err != nil {
		return 0, err
	}
	bootstrap, err := envoyconfig.DecodeBootstrap(source)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", ShippedExtAuthzFile, err)
	}

	for _, listener := range bootstrap.GetStaticResources().GetListeners() {
		for _, filterChain := range listener.GetFilterChains() {
			for _, filter := range filterChain.GetFilters() {
				authz, found := extAuthzFilter(filter.GetTypedConfig())
				if !found {
					continue
				}
				if authz.GetFailureModeAllow() {
					return 0, fmt.Errorf("%s sets failure_mode_allow: true, which envoysim does not model",
						ShippedExtAuthzFile)
				}
				if code := int(authz.GetStatusOnError().GetCode()); code != 0 {
					return code, nil
				}
				return 403, nil
			}
		}
	}
	return 0, fmt.Errorf("%s has no ext_authz filter in a listener's HTTP connection manager",
		ShippedExtAuthzFile)
}

// extAuthzFilter returns the first ext_authz filter of the network filter
// whose typed config is given, and false when that is not an HTTP
// connection manager or has no ext_authz filter.
func extAuthzFilter(config *anypb.Any) (*extauthzv3.ExtAuthz, bool) {
	var manager hcmv3.HttpConnectionManager
	if config.UnmarshalTo(&manager) != nil {
		return nil, false
	}
	for _, httpFilter := range manager.GetHttpFilters() {
		var authz extauthzv3.ExtAuthz
		if httpFilter.GetTypedConfig().UnmarshalTo(&authz) == nil {
			return &authz, true
		}
	}
	return nil, false
}
