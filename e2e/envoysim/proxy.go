package envoysim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
)

// Mode is the Envoy filter that a Proxy models.
type Mode string

const (
	// ModeExtProc is the ext_proc filter in the listener's HTTP filter
	// chain. It opens one stream per downstream request, and receives the
	// request headers before the route's prefix and host rewrites.
	ModeExtProc Mode = "ext_proc"
	// ModeExtProcUpstream is the ext_proc filter in the cluster's upstream
	// HTTP filter chain. It opens one stream per upstream attempt, and
	// receives the request headers after the route's prefix and host
	// rewrites.
	ModeExtProcUpstream Mode = "ext_proc_upstream"
	// ModeExtAuthz is the ext_authz filter with a gRPC service. It makes one
	// Check call per downstream request, with the route's cluster in
	// context_extensions.
	ModeExtAuthz Mode = "ext_authz"
)

// Route sends the requests whose :path starts with Prefix to one upstream
// cluster, like an Envoy route with a prefix match.
type Route struct {
	Prefix string
	// Cluster is sent as the xds.cluster_name attribute (ext_proc) or as
	// context_extensions["cluster"] (ext_authz). Empty sends neither, so the
	// service picks the cluster by :authority.
	Cluster string
	// Upstream is the base URL of the cluster's one endpoint:
	// http://host:port, with a loopback host and no path.
	Upstream string
	// PrefixRewrite, when set, replaces Prefix in the path sent upstream,
	// like the route's prefix_rewrite.
	PrefixRewrite string
	// HostRewrite, when set, is the :authority sent upstream, like the
	// route's host_rewrite_literal.
	HostRewrite string

	upstream *url.URL
}

// Config is the configuration of a Proxy.
type Config struct {
	// Driver talks to the service. The Proxy uses its MessageTimeout and
	// AuthzUnsetAppendAdds, and does not close it.
	Driver *Driver
	Mode   Mode
	// Routes are matched in order, and the first whose Prefix starts the
	// request's path wins.
	Routes []Route
	// ResponseHeaderMode is the ext_proc filter's
	// processing_mode.response_header_mode. DEFAULT and SEND send the
	// upstream's response headers on the request's stream, as Envoy does by
	// default, and SKIP does not. ModeExtAuthz ignores it.
	ResponseHeaderMode filterv3.ProcessingMode_HeaderSendMode
	// StatusOnError is the ext_authz filter's status_on_error: the status of
	// a request whose Check call failed or timed out. Zero means Envoy's
	// default, 403. Only ModeExtAuthz reads it.
	StatusOnError int
	// Retry makes one more upstream attempt after a connection failure or a
	// 503, like a retry_policy with retry_on
	// "connect-failure,reset,retriable-status-codes", retriable_status_codes
	// [503] and num_retries 1. Only requests without a body are retried.
	Retry bool
	// Log gets a warning for each request that the Proxy fails itself, each
	// upstream error and each ext_proc stream that does not end cleanly, and
	// a debug line for each retry. Nil discards them.
	Log *slog.Logger
}

// Proxy plays Envoy's HTTP path for end-to-end tests. It routes each
// request by path prefix to an upstream cluster, takes the decision of the
// service through its Driver in the Mode's filter, and forwards the request
// with httputil.ReverseProxy. Request and response bodies stream through
// without being buffered, and responses are flushed as they arrive.
//
// The request header map starts as the Driver's does: the Host header as
// :authority, lower-case keys. The filter's header mutation or OkHttpResponse
// is applied exactly as the Driver applies it, so a client's Authorization
// header is replaced, or kept when the reply sets append. The router
// then applies the route's prefix and host rewrites. In ModeExtProcUpstream
// the filter runs after the rewrites, once per upstream attempt.
//
// The service's local replies (an ImmediateResponse in either phase, a
// denied Check) go to the client with their status, headers and body. When
// the service breaks a rule, cannot be reached or is too late, the Proxy
// fails the request as Envoy does with failure_mode_allow: false: ext_proc
// with 500, or 504 after MessageTimeout, and ext_authz with 403 or
// Config.StatusOnError. The body of
// such a reply is the Proxy's own plain-text reason, not Envoy's. A request
// that matches no route gets 404 without a call to the service. An upstream
// that cannot be reached gives 503.
//
// Not modelled: anything the Driver does not model, TLS, HTTP/2, route
// timeouts, the x-forwarded-*, x-request-id and x-envoy-* headers that
// Envoy adds, and Expect: 100-continue handling beyond what net/http does.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	transport *http.Transport
	reverse   *httputil.ReverseProxy
	counts    counters

	server    *http.Server
	served    chan error
	url       string
	closeOnce sync.Once
	closeErr  error
}

// NewProxy checks cfg and returns a Proxy that is not yet listening. Serve
// it with Start, or use it as an http.Handler.
func NewProxy(cfg Config) (*Proxy, error) {
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("envoysim: invalid proxy config: %w", err)
	}

	p := &Proxy{cfg: cfg, log: cfg.Log}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.transport = &http.Transport{
		// Proxy stays nil, so no environment variable can send the upstream
		// requests elsewhere.
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DisableCompression: true,
		IdleConnTimeout:    30 * time.Second,
	}
	p.reverse = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      upstreamTransport{p},
		FlushInterval:  -1,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.handleError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

func validate(cfg *Config) error {
	if cfg.Driver == nil {
		return errors.New("driver is missing")
	}
	switch cfg.Mode {
	case ModeExtProc, ModeExtProcUpstream, ModeExtAuthz:
	default:
		return fmt.Errorf("mode %q is not one of %q, %q and %q",
			cfg.Mode, ModeExtProc, ModeExtProcUpstream, ModeExtAuthz)
	}
	if _, ok := filterv3.ProcessingMode_HeaderSendMode_name[int32(cfg.ResponseHeaderMode)]; !ok {
		return fmt.Errorf("response header mode %d is invalid; use DEFAULT, SEND or SKIP",
			cfg.ResponseHeaderMode)
	}
	if cfg.StatusOnError != 0 && (cfg.StatusOnError < 200 || cfg.StatusOnError > 599) {
		return fmt.Errorf("status on error %d is not an HTTP status from 200 to 599", cfg.StatusOnError)
	}
	if len(cfg.Routes) == 0 {
		return errors.New("no routes; add at least one")
	}

	cfg.Routes = append([]Route(nil), cfg.Routes...)
	for i := range cfg.Routes {
		if err := cfg.Routes[i].parse(); err != nil {
			return fmt.Errorf("route %d (prefix %q): %w", i, cfg.Routes[i].Prefix, err)
		}
	}
	return nil
}

// parse checks the route and parses its upstream URL.
func (rt *Route) parse() error {
	if !strings.HasPrefix(rt.Prefix, "/") {
		return errors.New("prefix must start with /")
	}
	if rt.PrefixRewrite != "" && !strings.HasPrefix(rt.PrefixRewrite, "/") {
		return fmt.Errorf("prefix rewrite %q must start with /", rt.PrefixRewrite)
	}
	u, err := url.Parse(rt.Upstream)
	if err != nil {
		return fmt.Errorf("invalid upstream URL: %w", err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("upstream %q must use http://", rt.Upstream)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("upstream %q must have no path, query or user; use PrefixRewrite for the path",
			rt.Upstream)
	}
	if err := checkLoopback(u.Host); err != nil {
		return fmt.Errorf("upstream %q: %w", rt.Upstream, err)
	}
	rt.upstream = u
	return nil
}

// Start serves the Proxy on 127.0.0.1 with a port picked at run time.
func (p *Proxy) Start() error {
	if p.server != nil {
		return errors.New("envoysim: proxy already started")
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("envoysim: listen on 127.0.0.1: %w", err)
	}

	p.server = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	p.served = make(chan error, 1)
	p.url = "http://" + listener.Addr().String()
	go func() { p.served <- p.server.Serve(listener) }()
	return nil
}

// URL returns the base URL the Proxy serves on, such as
// "http://127.0.0.1:41234", or "" before Start.
func (p *Proxy) URL() string {
	return p.url
}

// Close stops the listener, waits up to 5 s for the requests in progress to
// finish, and then cuts their connections. It also closes idle upstream
// connections, but not the Driver. Close may be called more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		if p.server != nil {
			p.closeErr = p.shutdown()
		}
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}

func (p *Proxy) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err := p.server.Shutdown(ctx)
	if err != nil {
		_ = p.server.Close()
		err = fmt.Errorf("envoysim: requests still in progress after 5 s were cut: %w", err)
	}
	if served := <-p.served; !errors.Is(served, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("envoysim: proxy stopped serving: %w", served)
	}
	return err
}

// Stats is a snapshot of what a Proxy did, for assertions in tests.
type Stats struct {
	// Requests counts the downstream requests that matched a route.
	Requests int64
	// Decisions counts the request_headers replies and Check responses that
	// the service sent: one per request, or one per upstream attempt in
	// ModeExtProcUpstream.
	Decisions int64
	// Denials counts the local replies that the service requested: an
	// ImmediateResponse in either phase, or a denied Check.
	Denials int64
	// Failures counts the requests that the Proxy failed itself because the
	// service broke a rule, could not be reached or was too late.
	Failures int64
	// ResponseHeaders counts the response_headers replies.
	ResponseHeaders int64
	// UpstreamAttempts counts the requests sent to an upstream, retries
	// included.
	UpstreamAttempts int64
	// Retries counts the upstream attempts after the first.
	Retries int64
	// UpstreamFailures counts the requests that got a 503 reply because the
	// upstream could not be reached.
	UpstreamFailures int64
}

// counters are the live counts behind Stats.
type counters struct {
	requests, decisions, denials, failures               atomic.Int64
	responseHeaders, attempts, retries, upstreamFailures atomic.Int64
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	c := &p.counts
	return Stats{
		Requests:         c.requests.Load(),
		Decisions:        c.decisions.Load(),
		Denials:          c.denials.Load(),
		Failures:         c.failures.Load(),
		ResponseHeaders:  c.responseHeaders.Load(),
		UpstreamAttempts: c.attempts.Load(),
		Retries:          c.retries.Load(),
		UpstreamFailures: c.upstreamFailures.Load(),
	}
}
