package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/dicomweb-oauth/dicomweb-oauth/cmd/dicomweb-oauth/internal/config"
	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// shutdownTimeout bounds the graceful stop of the listeners.
const shutdownTimeout = 10 * time.Second

// serve runs the service until ctx ends.
func serve(ctx context.Context, cfg *config.File, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr)
	log.Info("starting", "version", buildVersion(), "clusters", cfg.ClusterNames())

	err := run(ctx, cfg, log)
	if err != nil {
		// Also as a log record, so a pipeline that parses the JSON logs
		// keeps the reason; Main prints it as text too.
		log.Error("stopped with an error", "error", err)
	}
	return err
}

// run starts the listeners and serves until ctx ends.
func run(ctx context.Context, cfg *config.File, log *slog.Logger) error {
	tr, err := setupTracing(ctx)
	if err != nil {
		return err
	}
	defer flushTracing(tr, log)

	set, m, err := buildManagers(cfg, log, tr)
	if err != nil {
		return err
	}
	router, err := extproc.NewRouter(cfg.ClusterHosts())
	if err != nil {
		return fmt.Errorf("clusters: %w", err)
	}
	decider := &extproc.Decider{
		Router: router, Source: set, Timeout: cfg.DecisionTimeout, Log: log, Hook: m.observeDecision,
		Tracer: tr.provider.Tracer(tracerName), Propagator: tr.propagator,
	}

	admin, err := newAdminHandler(cfg.Admin, set, m, log)
	if err != nil {
		return err
	}

	listeners, err := listenAll(cfg.Listen)
	if err != nil {
		return err
	}

	healthServer := health.NewServer()
	grpcServer := newGRPCServer(decider, set, healthServer, log,
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tr.provider), otelgrpc.WithPropagators(tr.propagator))))
	checkServer := newHTTPServer(&extproc.HTTPCheck{Decider: decider})
	adminServer := newHTTPServer(admin)

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { set.Run(runCtx) })
	wg.Go(func() { reportReadiness(runCtx, set, healthServer, log) })

	errc := make(chan error, 3)
	go func() { errc <- serveGRPC(grpcServer, listeners.grpc) }()
	go func() { errc <- serveHTTP(checkServer, listeners.http) }()
	go func() { errc <- serveHTTP(adminServer, listeners.admin) }()
	log.Info("listening", "grpc", listeners.grpc.Addr().String(),
		"http", listeners.http.Addr().String(), "admin", listeners.admin.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", "reason", context.Cause(ctx).Error())
	case serveErr = <-errc:
		log.Error("listener failed; stopping", "error", serveErr)
	}

	healthServer.Shutdown()
	shutdown(grpcServer, checkServer, adminServer)
	flushMetrics(m, log)
	cancel()
	wg.Wait()
	log.Info("stopped")
	return serveErr
}

func buildManagers(cfg *config.File, log *slog.Logger, tr *tracing) (*tokens.Set, *metrics, error) {
	var managers []*tokens.Manager
	// The metrics need the Set, and the Managers report to the metrics.
	var m *metrics
	hook := func(cluster string, d time.Duration, err *tokens.FetchError) {
		m.observeAcquisition(cluster, d, err)
	}

	var errs []error
	for _, name := range cfg.ClusterNames() {
		c := cfg.Clusters[name]
		source, err := tokens.NewSource(&c.Token, tokens.WithSourceTracerProvider(tr.provider))
		if err != nil {
			errs = append(errs, fmt.Errorf("clusters.%s.token.%w", name, err))
			continue
		}
		if c.Token.TLS.InsecureSkipVerify {
			log.Warn("TLS certificate verification to the token endpoint is turned off; "+
				"anyone on the network path can read the client credentials and issue tokens; "+
				"set token.tls.ca_file instead", "cluster", name)
		}
		managers = append(managers, tokens.NewManager(name, source, tokens.SettingsOf(&c.Token),
			tokens.WithLogger(log), tokens.WithAcquireHook(hook), tokens.WithTracerProvider(tr.provider)))
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}

	set := tokens.NewSet(managers...)
	m, err := newMetrics(set, tr.metricReaders...)
	if err != nil {
		return nil, nil, err
	}
	return set, m, nil
}

// tracerName is the instrumentation scope of the decision spans.
const tracerName = "github.com/dicomweb-oauth/dicomweb-oauth/extproc"

// flushMetrics sends the metrics still buffered in extra readers, within
// shutdownTimeout.
func flushMetrics(m *metrics, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := m.provider.Shutdown(ctx); err != nil {
		log.Warn("flushing metrics failed", "error", err)
	}
}

// flushTracing sends the spans still buffered, within shutdownTimeout.
func flushTracing(tr *tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := tr.shutdown(ctx); err != nil {
		log.Warn("flushing traces failed", "error", err)
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

type listeners struct {
	grpc, http, admin net.Listener
}

func listenAll(c config.Listen) (*listeners, error) {
	var ls listeners
	var opened []net.Listener
	for _, l := range []struct {
		key, addr string
		dst       *net.Listener
	}{
		{"listen.grpc", c.GRPC, &ls.grpc},
		{"listen.http", c.HTTP, &ls.http},
		{"listen.admin", c.Admin, &ls.admin},
	} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range opened {
				_ = o.Close()
			}
			return nil, fmt.Errorf("%s: %w", l.key, err)
		}
		opened = append(opened, ln)
		*l.dst = ln
	}
	return &ls, nil
}

// newGRPCServer returns the server for ext_proc, ext_authz and gRPC health.
// Its keepalive enforcement admits client pings every second, so Envoy's
// HTTP/2 keepalive (connection_keepalive) never earns a GOAWAY
// too_many_pings, which a Go server's 5-minute default would send.
func newGRPCServer(decider *extproc.Decider, set *tokens.Set, hs *health.Server, log *slog.Logger,
	opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime:             time.Second,
		PermitWithoutStream: true,
	}))
	s := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(s, &extproc.ExtProc{Decider: decider, Invalidator: set, Log: log})
	authv3.RegisterAuthorizationServer(s, &extproc.ExtAuthz{Decider: decider})
	healthpb.RegisterHealthServer(s, hs)

	for _, svc := range healthServices {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	return s
}

// healthServices are the names whose gRPC health status the service sets:
// the whole server ("") and each API.
var healthServices = []string{
	"",
	extprocv3.ExternalProcessor_ServiceDesc.ServiceName,
	authv3.Authorization_ServiceDesc.ServiceName,
}

// reportReadiness sets gRPC health to SERVING once every cluster's first
// token request has ended, so Envoy's health checks keep traffic away while
// cold token fetches run.
func reportReadiness(ctx context.Context, set *tokens.Set, hs *health.Server, log *slog.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-set.Ready():
	}
	for _, svc := range healthServices {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}

	failing := []string{}
	for _, s := range set.Statuses() {
		if s.State != tokens.StateValid {
			failing = append(failing, s.Cluster)
		}
	}
	// Ready means every first token request has ended. A cluster listed
	// here returns 503 until a retry succeeds.
	log.Info("ready", "clusters_without_token", failing)
}

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

func serveGRPC(s *grpc.Server, ln net.Listener) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	return nil
}

func serveHTTP(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("HTTP listener %s: %w", ln.Addr(), err)
	}
	return nil
}

// shutdown stops the servers gracefully, forcing them after shutdownTimeout.
func shutdown(g *grpc.Server, servers ...*http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()

	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	for _, s := range servers {
		_ = s.Shutdown(ctx)
	}
	select {
	case <-done:
	case <-ctx.Done():
		g.Stop()
	}
}
