// Package gate is the protected side of the end-to-end test bed: a reverse
// proxy that forwards a request to its upstream only when the request carries
// a bearer token that verifies against the test issuer's JWKS. It acts as
// the OAuth2 resource server in front of a protected DICOMweb server, and can
// serve TLS and a DICOMweb base path of its own, as a real archive does.
package gate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// realm is the realm named in WWW-Authenticate challenges.
const realm = "dicomweb-gate"

// maxRecords is how many forwarded requests Requests returns at most; later
// ones are counted but not recorded.
const maxRecords = 1000

// HoldTimeout bounds how long RevokeToken's hold keeps a request waiting
// for the others.
const HoldTimeout = 5 * time.Second

// Config holds the upstream and the token checks of a Gate.
type Config struct {
	// Upstream is the base URL that accepted requests are forwarded to,
	// for example "http://127.0.0.1:8042".
	Upstream string

	// IssuerURL is the OpenID issuer whose discovery document names the JWKS.
	// Tokens must carry it as "iss".
	IssuerURL string

	// Audience must be one of the token's "aud" values.
	Audience string

	// PathPrefix, when set, is the base path of the gate, for example
	// "/dcm4chee-arc/aets/DCM4CHEE/rs". The gate forwards only requests under
	// it, with the prefix removed, and responds 404 to every other path.
	PathPrefix string

	// Logger receives one debug line per rejected request, and one per
	// request that RevokeToken's hold released after HoldTimeout. Nil
	// discards.
	Logger *slog.Logger
}

// Stats is a snapshot of the gate's counters.
type Stats struct {
	Accepted int64
	Rejected int64
	// NotFound counts requests outside Config.PathPrefix.
	NotFound       int64
	DistinctTokens int
}

// Request is a forwarded request as the gate received it.
type Request struct {
	Method string
	// Path is the path before the gate removed Config.PathPrefix.
	Path string
	// Host is the Host header.
	Host string
	// ServerName is the TLS server name (SNI) the client sent. It is empty
	// for plain HTTP and when the client sent none.
	ServerName string
	// ContentLength is the Content-Length header, -1 for a chunked body and
	// 0 for none. A proxy that spools a body before it forwards it usually
	// sends its length; one that streams a chunked body sends it chunked.
	ContentLength int64
}

// Gate is an http.Handler that checks bearer tokens and forwards accepted
// requests with the Authorization header removed. Its methods are safe for
// concurrent use.
type Gate struct {
	proxy      *httputil.ReverseProxy
	verifier   *oidc.IDTokenVerifier
	logger     *slog.Logger
	pathPrefix string

	accepted atomic.Int64
	rejected atomic.Int64
	notFound atomic.Int64

	mu       sync.Mutex     // guards the fields below
	tokenIDs map[string]int // accepted requests per token "jti"
	requests []Request      // the first maxRecords forwarded requests
	revoked  map[string]bool
	// holdRelease is closed when the last request of RevokeToken's hold
	// arrives, and holdRemaining is how many are still to come. holdRelease
	// is nil when no hold is pending.
	holdRelease   chan struct{}
	holdRemaining int
}

// New reads the issuer's discovery document and returns a Gate. Keys are
// fetched from the JWKS on first use and again when a token names an unknown
// key ID. The HTTP client is used for discovery and JWKS requests; nil means
// a client that ignores proxy settings in the environment.
func New(ctx context.Context, cfg Config, client *http.Client) (*Gate, error) {
	upstream, err := url.Parse(cfg.Upstream)
	if err != nil || upstream.Scheme == "" || upstream.Host == "" {
		return nil, fmt.Errorf("gate: invalid upstream URL %q", cfg.Upstream)
	}
	if cfg.Audience == "" {
		return nil, errors.New("gate: Audience is required")
	}
	if cfg.PathPrefix != "" && !strings.HasPrefix(cfg.PathPrefix, "/") {
		return nil, fmt.Errorf("gate: PathPrefix %q must start with /", cfg.PathPrefix)
	}
	prefix := strings.TrimSuffix(cfg.PathPrefix, "/")
	if client == nil {
		client = &http.Client{Transport: directTransport(), Timeout: 10 * time.Second}
	}

	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, client), cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("gate: discover issuer %s: %w", cfg.IssuerURL, err)
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gate{
		verifier:   provider.Verifier(&oidc.Config{ClientID: cfg.Audience}),
		logger:     logger,
		pathPrefix: prefix,
		tokenIDs:   map[string]int{},
		revoked:    map[string]bool{},
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			stripPrefix(pr.Out.URL, g.pathPrefix)
			pr.SetURL(upstream)
			pr.Out.Header.Del("Authorization")
		},
		Transport: directTransport(),
		// A negative interval flushes every write, so responses stream.
		FlushInterval: -1,
		// Aborted transfers are expected in tests that make the proxy in
		// front cut a request body.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return g, nil
}

// directTransport returns a transport that never uses a proxy from the
// environment, because the test bed talks to 127.0.0.1 only.
func directTransport() *http.Transport {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	return transport
}

// stripPrefix removes prefix from the path of u. The caller has checked with
// underPrefix that the path starts with it.
func stripPrefix(u *url.URL, prefix string) {
	if prefix == "" {
		return
	}
	u.Path = "/" + strings.TrimPrefix(strings.TrimPrefix(u.Path, prefix), "/")
	// RawPath is only a hint for escaped characters; the upstream URL is
	// rebuilt from Path.
	u.RawPath = ""
}

// underPrefix reports whether path is the prefix itself or lies below it.
func underPrefix(path, prefix string) bool {
	if prefix == "" || path == prefix {
		return true
	}
	return strings.HasPrefix(path, prefix+"/")
}

// ServeHTTP forwards r upstream if its path lies under the path prefix and
// its bearer token is valid and not revoked with RevokeToken. It responds
// with 404 to a path outside the prefix, and with 401 and an RFC 6750
// challenge to a missing, invalid or revoked token.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !underPrefix(r.URL.Path, g.pathPrefix) {
		g.notFound.Add(1)
		g.logger.Debug("path outside the prefix", "method", r.Method, "path", r.URL.Path)
		http.NotFound(w, r)
		return
	}
	raw, found := bearerToken(r.Header.Get("Authorization"))
	if !found {
		g.reject(w, r, "missing bearer token", false)
		return
	}

	token, err := g.verifier.Verify(r.Context(), raw)
	if err != nil {
		g.reject(w, r, err.Error(), true)
		return
	}
	var claims struct {
		ID string `json:"jti"`
	}
	if err := token.Claims(&claims); err != nil {
		g.reject(w, r, "decode claims: "+err.Error(), true)
		return
	}
	if g.isRevoked(claims.ID) {
		g.holdRevoked(r.Context())
		g.reject(w, r, "token revoked", true)
		return
	}

	g.accept(claims.ID, r)
	g.proxy.ServeHTTP(w, r)
}

// bearerToken returns the token of an "Authorization: Bearer" header value.
// The scheme is matched case-insensitively (RFC 7235 section 2.1).
func bearerToken(header string) (string, bool) {
	scheme, token, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func (g *Gate) accept(tokenID string, r *http.Request) {
	g.accepted.Add(1)
	record := Request{Method: r.Method, Path: r.URL.Path, Host: r.Host, ContentLength: r.ContentLength}
	if r.TLS != nil {
		record.ServerName = r.TLS.ServerName
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	g.tokenIDs[tokenID]++
	if len(g.requests) < maxRecords {
		g.requests = append(g.requests, record)
	}
}

// reject responds with 401. RFC 6750 section 3.1 puts an error code in the
// challenge only when the request carried a token.
func (g *Gate) reject(w http.ResponseWriter, r *http.Request, reason string, hadToken bool) {
	g.rejected.Add(1)
	g.logger.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "reason", reason)

	challenge := fmt.Sprintf("Bearer realm=%q", realm)
	body := `{"error":"unauthorized"}`
	if hadToken {
		challenge += `, error="invalid_token", error_description="the access token is invalid or expired"`
		body = `{"error":"invalid_token"}`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(body + "\n"))
}

// RevokeToken makes the gate reject every later request whose token has the
// "jti" tokenID, with 401 and error="invalid_token", as a resource server
// does once a token is revoked. When hold is more than 1, the first hold
// such requests wait until all of them have arrived, or until HoldTimeout
// has passed, and are then rejected together. So a test can have several
// requests in flight with the same token when the first rejection comes
// back. A second call cuts a pending hold short.
func (g *Gate) RevokeToken(tokenID string, hold int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.revoked[tokenID] = true
	if g.holdRelease != nil {
		close(g.holdRelease)
		g.holdRelease = nil
	}
	if hold > 1 {
		g.holdRelease = make(chan struct{})
		g.holdRemaining = hold
	}
}

func (g *Gate) isRevoked(tokenID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.revoked[tokenID]
}

// holdRevoked makes a request with a revoked token wait for the others of
// the pending hold, if any.
func (g *Gate) holdRevoked(ctx context.Context) {
	g.mu.Lock()
	release := g.holdRelease
	if release != nil {
		g.holdRemaining--
		if g.holdRemaining == 0 {
			close(release)
			g.holdRelease = nil
		}
	}
	g.mu.Unlock()
	if release == nil {
		return
	}

	timer := time.NewTimer(HoldTimeout)
	defer timer.Stop()
	select {
	case <-release:
	case <-ctx.Done():
	case <-timer.C:
		g.logger.Debug("held request released after the hold timeout", "timeout", HoldTimeout)
	}
}

// Accepted returns how many requests were forwarded.
func (g *Gate) Accepted() int64 { return g.accepted.Load() }

// Rejected returns how many requests got a 401 response.
func (g *Gate) Rejected() int64 { return g.rejected.Load() }

// NotFound returns how many requests got a 404 response because their path
// lies outside Config.PathPrefix.
func (g *Gate) NotFound() int64 { return g.notFound.Load() }

// Requests returns the forwarded requests in the order they arrived, at most
// the first 1000.
func (g *Gate) Requests() []Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.requests)
}

// TokenIDs returns the sorted "jti" values of the tokens of accepted requests.
func (g *Gate) TokenIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := make([]string, 0, len(g.tokenIDs))
	for id := range g.tokenIDs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Stats returns the current counters.
func (g *Gate) Stats() Stats {
	return Stats{
		Accepted:       g.Accepted(),
		Rejected:       g.Rejected(),
		NotFound:       g.NotFound(),
		DistinctTokens: len(g.TokenIDs()),
	}
}

// Server is a Gate listening on 127.0.0.1.
type Server struct {
	*Gate
	addr   string
	scheme string
	server *http.Server
}

// Start creates a Gate and serves it on a free port of 127.0.0.1: with TLS
// and the given certificate when certificate is not nil, and plain HTTP
// otherwise. Call Close to stop it.
func Start(ctx context.Context, cfg Config, certificate *tls.Certificate) (*Server, error) {
	g, err := New(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("gate: listen on 127.0.0.1: %w", err)
	}
	s := &Server{
		Gate:   g,
		addr:   listener.Addr().String(),
		scheme: "http",
		server: &http.Server{
			Handler:           g,
			ReadHeaderTimeout: 10 * time.Second,
			// Failed TLS handshakes are expected in tests with a wrong CA.
			ErrorLog: slog.NewLogLogger(g.logger.Handler(), slog.LevelDebug),
		},
	}
	if certificate != nil {
		s.scheme = "https"
		listener = tls.NewListener(listener, &tls.Config{
			Certificates: []tls.Certificate{*certificate},
			MinVersion:   tls.VersionTLS12,
		})
	}
	go func() {
		// Serve returns http.ErrServerClosed after Close, so its error is dropped.
		_ = s.server.Serve(listener)
	}()
	return s, nil
}

// URL returns the base URL of the gate, for example "http://127.0.0.1:41235"
// or "https://127.0.0.1:41235".
func (s *Server) URL() string { return s.scheme + "://" + s.addr }

// Addr returns the host:port the gate listens on.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and closes its open connections.
func (s *Server) Close() error { return s.server.Close() }
