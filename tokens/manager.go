package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/singleflight"
)

// Source fetches a new token from an identity provider. A Manager calls Fetch
// from one goroutine at a time, with a context that carries the request timeout
// and never a proxy request's context.
type Source interface {
	Fetch(ctx context.Context) (*Token, error)
}

// Settings are the timing rules of one Manager. Zero values take the defaults
// of Config.
type Settings struct {
	RefreshBefore time.Duration
	ClockSkew     time.Duration
	Timeout       time.Duration
	Backoff       Backoff
	// InsecureTLS records that certificate verification to the token
	// endpoint is off, for the status.
	InsecureTLS bool
	// Grant and Provider name the token source in traces and the status.
	Grant, Provider string
}

// AcquireHook is called after every token request with its duration and
// outcome. err is nil on success.
type AcquireHook func(cluster string, duration time.Duration, err *FetchError)

// Manager keeps a valid token for one cluster. Requests read the cached token
// without waiting; Run refreshes it ahead of expiry and retries failures with
// backoff. At most one token request per Manager is in flight at a time.
// A Manager is safe for concurrent use.
type Manager struct {
	cluster  string
	source   Source
	settings Settings
	clock    Clock
	log      *slog.Logger
	hook     AcquireHook
	tracer   trace.Tracer

	group     singleflight.Group
	wake      chan struct{}
	ready     chan struct{}
	readyOnce sync.Once

	mu sync.Mutex // guards the fields below
	// runCtx is the context of Run, or nil before Run starts. Token requests
	// derive from it, so stopping Run also stops a request in flight.
	runCtx context.Context
	// token is the newest token, possibly expired or invalidated.
	token       *Token
	usableUntil time.Time
	refreshAt   time.Time
	inFlight    bool
	// failures counts consecutive failed requests; 0 after a success.
	failures    int
	nextAttempt time.Time
	lastErr     *FetchError
	lastErrAt   time.Time
	counts      Counts
	repeats     failureRepeats
}

// failureRepeats limits the log lines of a failure that repeats.
type failureRepeats struct {
	message  string
	loggedAt time.Time
	// suppressed counts the identical failures not logged since loggedAt.
	suppressed int
}

// Repeated failures are logged in full for the first repeatedFailuresLogged
// attempts. After that, an identical failure is logged at most once per
// repeatedFailureInterval, with the number of lines left out.
const (
	repeatedFailuresLogged  = 3
	repeatedFailureInterval = 10 * time.Minute
)

// Counts are the totals of a Manager since it started.
type Counts struct {
	Acquisitions uint64 `json:"acquisitions"`
	Failures     uint64 `json:"failures"`
	// UpstreamRejections counts 401 responses reported through Invalidate.
	UpstreamRejections uint64 `json:"upstream_rejections"`
	// Invalidations counts tokens taken out of use after a rejection; many
	// rejections of one token make one invalidation.
	Invalidations uint64 `json:"invalidations"`
}

// Option changes how a Manager is built.
type Option func(*Manager)

// WithClock sets the time source, for tests.
func WithClock(c Clock) Option { return func(m *Manager) { m.clock = c } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithTracerProvider sets the provider of the span that every token request
// gets. Without it no spans are recorded.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(m *Manager) { m.tracer = tp.Tracer(tracerName) }
}

// tracerName is the instrumentation scope of the spans of this package.
const tracerName = "github.com/dicomweb-oauth/dicomweb-oauth/tokens"

// WithAcquireHook sets a function called after every token request.
func WithAcquireHook(h AcquireHook) Option { return func(m *Manager) { m.hook = h } }

// NewManager returns a Manager for the named cluster. Call Run to start
// refreshing in the background.
func NewManager(cluster string, source Source, s Settings, opts ...Option) *Manager {
	if s.RefreshBefore <= 0 {
		s.RefreshBefore = DefaultRefreshBefore
	}
	if s.ClockSkew <= 0 {
		s.ClockSkew = DefaultClockSkew
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Backoff.Base <= 0 {
		s.Backoff.Base = DefaultBackoff.Base
	}
	if s.Backoff.Max < s.Backoff.Base {
		s.Backoff.Max = max(DefaultBackoff.Max, s.Backoff.Base)
	}
	if s.Backoff.ConfigMin <= 0 {
		s.Backoff.ConfigMin = DefaultBackoff.ConfigMin
	}
	m := &Manager{
		cluster:  cluster,
		source:   source,
		settings: s,
		clock:    systemClock{},
		log:      slog.Default(),
		tracer:   noop.NewTracerProvider().Tracer(tracerName),
		wake:     make(chan struct{}, 1),
		ready:    make(chan struct{}),
	}
	for _, opt := range opts {
		opt(m)
	}
	m.log = m.log.With("cluster", cluster)
	return m
}

// Cluster returns the name of the cluster the Manager serves.
func (m *Manager) Cluster() string { return m.cluster }

// Ready returns a channel that is closed once the first token request has
// ended, whether it succeeded or failed.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Header returns the Authorization header value, "Bearer " and the token.
func (m *Manager) Header(ctx context.Context) (string, error) {
	tok, err := m.Token(ctx)
	if err != nil {
		return "", err
	}
	return "Bearer " + tok.AccessToken, nil
}

// Token returns a token that is valid now. It returns the cached token without
// waiting when one is usable. Otherwise it waits for the token request in
// flight, starts one, or fails at once while a failed request's backoff lasts.
// ctx bounds only the wait: the token request itself runs on its own timeout,
// so a canceled caller never cancels it for the others.
func (m *Manager) Token(ctx context.Context) (*Token, error) {
	now := m.clock.Now()

	m.mu.Lock()
	tok := m.token
	usable := tok != nil && now.Before(m.usableUntil)
	refreshDue := usable && !now.Before(m.refreshAt)
	failFast := !usable && !m.inFlight && m.lastErr != nil && now.Before(m.nextAttempt)
	unavailable := m.unavailableLocked()
	m.mu.Unlock()

	if usable {
		if refreshDue {
			m.poke()
		}
		return tok, nil
	}
	if failFast {
		return nil, unavailable
	}

	ch := m.group.DoChan("token", m.acquireIfNeeded)
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, m.unavailableError(r.Err)
		}
		return r.Val.(*Token), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no token for cluster %q yet: a token request is still running: %w",
			m.cluster, ctx.Err())
	}
}

// UnavailableError is returned when no valid token can be had. Its message
// names the cluster and the last failure, never a secret.
type UnavailableError struct {
	Cluster     string
	Last        *FetchError
	NextAttempt time.Time
}

func (e *UnavailableError) Error() string {
	msg := fmt.Sprintf("no valid token for cluster %q", e.Cluster)
	if e.Last != nil {
		msg += ": " + e.Last.Error()
	}
	return msg
}

func (e *UnavailableError) Unwrap() error {
	if e.Last == nil {
		return nil
	}
	return e.Last
}

func (m *Manager) unavailableLocked() *UnavailableError {
	return &UnavailableError{Cluster: m.cluster, Last: m.lastErr, NextAttempt: m.nextAttempt}
}

func (m *Manager) unavailableError(err error) *UnavailableError {
	var fe *FetchError
	if !errors.As(err, &fe) {
		fe = &FetchError{Class: ClassTransient, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return &UnavailableError{Cluster: m.cluster, Last: fe, NextAttempt: m.nextAttempt}
}

// poke wakes Run without blocking.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// acquireIfNeeded is acquire for callers of Token. A request may end between
// the caller's look at the state and this call, so it looks again. It returns
// that request's token, or its error while the backoff lasts, rather than
// sending another request.
func (m *Manager) acquireIfNeeded() (any, error) {
	now := m.clock.Now()

	m.mu.Lock()
	tok := m.token
	usable := tok != nil && now.Before(m.usableUntil)
	last := m.lastErr
	backingOff := !usable && last != nil && now.Before(m.nextAttempt)
	m.mu.Unlock()

	switch {
	case usable:
		return tok, nil
	case backingOff:
		return nil, last
	}
	return m.acquire()
}

// acquire performs one token request and records its outcome. It is called
// through the singleflight group only.
func (m *Manager) acquire() (any, error) {
	m.mu.Lock()
	m.inFlight = true
	attempt := m.failures + 1
	base := m.runCtx
	m.mu.Unlock()

	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithTimeout(base, m.settings.Timeout)
	defer cancel()
	ctx, span := m.startSpan(ctx, attempt)
	defer span.End()

	start := m.clock.Now()
	tok, err := m.source.Fetch(ctx)
	end := m.clock.Now()

	var fe *FetchError
	if err != nil {
		fe = classifyError(err, end)
		if errors.Is(err, context.DeadlineExceeded) {
			fe.Description = fmt.Sprintf("no answer within %s (token.timeout)", m.settings.Timeout)
		}
	}
	endSpan(span, tok, fe)
	m.record(tok, fe, attempt, end)
	m.readyOnce.Do(func() { close(m.ready) })
	m.poke()

	if m.hook != nil {
		m.hook(m.cluster, end.Sub(start), fe)
	}
	if fe != nil {
		return nil, fe
	}
	return tok, nil
}

// logFailureLocked logs a failed token request, leaving out repeats of the
// same failure; m.mu must be held.
func (m *Manager) logFailureLocked(fe *FetchError, attempt int, delay time.Duration, now time.Time) {
	message := fe.Error()
	r := &m.repeats
	if m.failures > repeatedFailuresLogged && message == r.message && now.Sub(r.loggedAt) < repeatedFailureInterval {
		r.suppressed++
		return
	}
	m.log.Warn("token request failed",
		"attempt", attempt, "class", string(fe.Class), "status", fe.StatusCode,
		"code", fe.Code, "provider_codes", fe.ProviderCodes, "error", message,
		"retry_in", delay.String(), "token_valid", m.token != nil && now.Before(m.usableUntil),
		"repeats_not_logged", r.suppressed)
	*r = failureRepeats{message: message, loggedAt: now}
}

// Span attribute keys. No attribute ever holds a token, a secret or an
// assertion: errors are described by class and provider codes.
const (
	attrCluster       = attribute.Key("dicomweb_oauth.cluster")
	attrGrant         = attribute.Key("dicomweb_oauth.grant")
	attrProvider      = attribute.Key("dicomweb_oauth.provider")
	attrAttempt       = attribute.Key("dicomweb_oauth.attempt")
	attrResult        = attribute.Key("dicomweb_oauth.result")
	attrErrorCode     = attribute.Key("dicomweb_oauth.error_code")
	attrProviderCodes = attribute.Key("dicomweb_oauth.provider_codes")
	attrHTTPStatus    = attribute.Key("http.response.status_code")
	attrLifetime      = attribute.Key("dicomweb_oauth.token_lifetime_seconds")
)

func (m *Manager) startSpan(ctx context.Context, attempt int) (context.Context, trace.Span) {
	return m.tracer.Start(ctx, "dicomweb_oauth.token.acquire",
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			attrCluster.String(m.cluster),
			attrGrant.String(m.settings.Grant),
			attrProvider.String(m.settings.Provider),
			attrAttempt.Int(attempt),
		))
}

// endSpan records the outcome of a token request on its span.
func endSpan(span trace.Span, tok *Token, fe *FetchError) {
	if fe == nil {
		span.SetAttributes(attrResult.String("success"), attrLifetime.Float64(tok.Lifetime().Seconds()))
		return
	}
	span.SetAttributes(attrResult.String(string(fe.Class)))
	if fe.Code != "" {
		span.SetAttributes(attrErrorCode.String(fe.Code))
	}
	if len(fe.ProviderCodes) > 0 {
		span.SetAttributes(attrProviderCodes.StringSlice(fe.ProviderCodes))
	}
	if fe.StatusCode != 0 {
		span.SetAttributes(attrHTTPStatus.Int(fe.StatusCode))
	}
	span.SetStatus(codes.Error, fe.Error())
}

func (m *Manager) record(tok *Token, fe *FetchError, attempt int, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inFlight = false

	if fe != nil {
		m.failures++
		m.counts.Failures++
		m.lastErr = fe
		m.lastErrAt = now
		delay := m.settings.Backoff.Delay(m.failures, fe)
		m.nextAttempt = now.Add(delay)
		m.logFailureLocked(fe, attempt, delay, now)
		return
	}

	if m.failures > 0 {
		m.log.Info("token request recovered", "failed_attempts", m.failures)
	}
	m.repeats = failureRepeats{}
	m.failures = 0
	m.counts.Acquisitions++
	m.nextAttempt = time.Time{}
	m.token = tok
	m.usableUntil, m.refreshAt = m.schedule(tok)
	m.log.Debug("token acquired", "fingerprint", tok.Fingerprint(),
		"expires_at", tok.Expiry.UTC(), "refresh_at", m.refreshAt.UTC())
}

// schedule returns when a token stops being handed out and when its refresh
// starts. The clock skew margin is at most a quarter of the lifetime and the
// refresh lead at most half, so a short-lived token is still used for a while.
// Up to a tenth of the lead is subtracted at random so that replicas do not
// refresh in lockstep.
func (m *Manager) schedule(tok *Token) (usableUntil, refreshAt time.Time) {
	lifetime := tok.Lifetime()
	skew := min(m.settings.ClockSkew, lifetime/4)
	lead := min(m.settings.RefreshBefore, lifetime/2)

	usableUntil = tok.Expiry.Add(-skew)
	refreshAt = usableUntil.Add(-lead)
	if jitter := lead / 10; jitter > 0 {
		refreshAt = refreshAt.Add(-rand.N(jitter))
	}
	return usableUntil, refreshAt
}

// Invalidate stops handing out the current token when its fingerprint matches,
// because the upstream rejected it, and starts a new request. Repeated calls
// for the same token cause one new request.
func (m *Manager) Invalidate(fingerprint string) bool {
	now := m.clock.Now()

	m.mu.Lock()
	m.counts.UpstreamRejections++
	matched := m.token != nil && m.token.Fingerprint() == fingerprint && now.Before(m.usableUntil)
	if matched {
		m.usableUntil = now
		m.refreshAt = now
		if m.lastErr == nil || m.lastErr.RetryAfter == 0 || !now.Before(m.nextAttempt) {
			m.nextAttempt = time.Time{}
		}
		m.counts.Invalidations++
	}
	m.mu.Unlock()

	if matched {
		m.log.Warn("upstream rejected the token; requesting a new one", "fingerprint", fingerprint)
		m.poke()
	}
	return matched
}

// watcher is a Source that can tell when its token changed outside the
// service, such as a token file rewritten by another agent.
type watcher interface {
	Watch(ctx context.Context, interval time.Duration, changed func())
}

// watchInterval is how often a watcher checks for a change.
const watchInterval = 5 * time.Second

// RequestRefresh makes Run request a new token now, keeping the current one
// in use until the new one arrives.
func (m *Manager) RequestRefresh() {
	m.mu.Lock()
	if m.token != nil {
		m.refreshAt = m.clock.Now()
	}
	m.nextAttempt = time.Time{}
	m.mu.Unlock()
	m.log.Info("refresh requested")
	m.poke()
}

// Run keeps the token fresh until ctx ends: it requests the first token at
// once, refreshes ahead of expiry, and retries failures after the backoff.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.runCtx = ctx
	m.mu.Unlock()

	if w, ok := m.source.(watcher); ok {
		go w.Watch(ctx, watchInterval, m.RequestRefresh)
	}

	for {
		if ctx.Err() != nil {
			return
		}
		wait := m.nextWake()
		if wait <= 0 {
			m.group.Do("token", m.acquire)
			continue
		}
		timer := m.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C():
		case <-m.wake:
		}
		timer.Stop()
	}
}

// nextWake returns how long Run sleeps before the next token request.
func (m *Manager) nextWake() time.Duration {
	now := m.clock.Now()

	m.mu.Lock()
	defer m.mu.Unlock()

	due := m.refreshAt
	if m.token == nil {
		due = now
	}
	if m.nextAttempt.After(due) {
		due = m.nextAttempt
	}
	return due.Sub(now)
}

// Refresh requests a new token now, waits for it within ctx, and returns it
// or the failure. It fails at once while a Retry-After of the provider lasts. The current token stays in use until a new one arrives. A
// request already in flight is joined rather than duplicated.
func (m *Manager) Refresh(ctx context.Context) (*Token, error) {
	now := m.clock.Now()
	m.mu.Lock()
	if m.lastErr != nil && m.lastErr.RetryAfter > 0 && now.Before(m.nextAttempt) {
		// The provider asked for this wait; a forced refresh keeps it.
		unavailable := m.unavailableLocked()
		m.mu.Unlock()
		return nil, unavailable
	}
	m.nextAttempt = time.Time{}
	m.mu.Unlock()

	ch := m.group.DoChan("token", m.acquire)
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Token), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("refresh of cluster %q still running: %w", m.cluster, ctx.Err())
	}
}
