// Package extproc serves the proxy-facing APIs that decide which
// Authorization header a request to an upstream cluster gets: Envoy's
// ext_proc and ext_authz over gRPC, and an HTTP auth-request endpoint for
// Envoy's HTTP ext_authz, nginx auth_request and Traefik forwardAuth.
// It has no OAuth2 code: it requests the header from a HeaderSource.
package extproc

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// HeaderSource returns the Authorization header value for a cluster.
// It must return promptly once ctx ends and be safe for concurrent use.
type HeaderSource interface {
	AuthorizationHeader(ctx context.Context, cluster string) (string, error)
}

// API names, used in logs and metrics.
const (
	APIExtProc  = "ext_proc"
	APIExtAuthz = "ext_authz"
	APIHTTP     = "http"
)

// Outcomes of a decision, used in logs and metrics.
const (
	OutcomeAllowed        = "allowed"
	OutcomeUnknownCluster = "unknown_cluster"
	OutcomeUnavailable    = "token_unavailable"
)

// Decision is the outcome for one proxied request.
type Decision struct {
	Cluster string
	Outcome string
	// Header is the Authorization value when the outcome is allowed.
	Header string
	// Status is the HTTP status for the proxy to return: 200 when allowed,
	// 403 for an unknown cluster, 503 when no token can be had.
	Status int
	// Message explains a denial. It never contains a token or a secret.
	Message string
}

// DecisionHook observes every decision, for metrics.
type DecisionHook func(api string, d *Decision, duration time.Duration)

// DefaultDecisionTimeout bounds the wait for a token. It stays below the
// 200 ms default of Envoy's ext_proc message_timeout and ext_authz timeout,
// so the proxy gets a 503 with a reason rather than its own timeout error.
const DefaultDecisionTimeout = 150 * time.Millisecond

// Decider turns a request into a Decision. It is shared by all APIs.
type Decider struct {
	Router  *Router
	Source  HeaderSource
	Timeout time.Duration
	Log     *slog.Logger
	Hook    DecisionHook
	// Tracer, when set, records a span for every decision.
	Tracer trace.Tracer
	// Propagator, when set, reads W3C trace context from the proxied
	// request's headers, so the decision joins the proxy's trace.
	Propagator propagation.TextMapPropagator
}

// Decide returns the decision for a request that named a cluster (may be
// empty) and has the given authority.
func (d *Decider) Decide(ctx context.Context, api, named, authority string) *Decision {
	start := time.Now()
	ctx, span := d.startSpan(ctx, api)
	defer span.End()

	cluster, ok := d.Router.Cluster(named, authority)
	var dec *Decision
	if !ok {
		dec = unknownCluster(named, authority)
	} else {
		dec = d.header(ctx, cluster)
	}

	endDecisionSpan(span, dec)
	if d.Hook != nil {
		d.Hook(api, dec, time.Since(start))
	}
	d.log().Debug("decision", "api", api, "cluster", dec.Cluster, "outcome", dec.Outcome,
		"status", dec.Status, "authority", authority)
	return dec
}

func (d *Decider) header(ctx context.Context, cluster string) *Decision {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDecisionTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	header, err := d.Source.AuthorizationHeader(ctx, cluster)
	if err != nil {
		return &Decision{
			Cluster: cluster, Outcome: OutcomeUnavailable,
			Status: http.StatusServiceUnavailable, Message: err.Error(),
		}
	}
	return &Decision{Cluster: cluster, Outcome: OutcomeAllowed, Header: header, Status: http.StatusOK}
}

func unknownCluster(named, authority string) *Decision {
	msg := "the request names no cluster and its authority " + quote(authority) +
		" matches no cluster's hosts; add the host to a cluster's hosts, or send the cluster name"
	if named != "" {
		msg = "cluster " + quote(named) + " is not configured; add it under clusters in the service configuration"
	}
	return &Decision{Cluster: named, Outcome: OutcomeUnknownCluster, Status: http.StatusForbidden, Message: msg}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (d *Decider) log() *slog.Logger {
	if d.Log == nil {
		return slog.Default()
	}
	return d.Log
}

// denialBody is the JSON body of a denied request.
type denialBody struct {
	Error   string `json:"error"`
	Cluster string `json:"cluster,omitempty"`
	Message string `json:"message"`
}

// Body returns the JSON body sent with a denial.
func (dec *Decision) Body() []byte {
	b, _ := json.Marshal(denialBody{Error: dec.Outcome, Cluster: dec.Cluster, Message: dec.Message})
	return append(b, '\n')
}

// WithTraceContext returns ctx with the trace context that the proxied
// request's headers carry, if any, so that the decision span joins the
// trace the proxy started.
func (d *Decider) WithTraceContext(ctx context.Context, headers propagation.TextMapCarrier) context.Context {
	if d.Propagator == nil || headers == nil {
		return ctx
	}
	return d.Propagator.Extract(ctx, headers)
}

func (d *Decider) startSpan(ctx context.Context, api string) (context.Context, trace.Span) {
	if d.Tracer == nil {
		return ctx, noop.Span{}
	}
	return d.Tracer.Start(ctx, "dicomweb_oauth.decision",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("dicomweb_oauth.api", api)))
}

// endDecisionSpan records the outcome. The span never holds the header.
func endDecisionSpan(span trace.Span, dec *Decision) {
	span.SetAttributes(
		attribute.String("dicomweb_oauth.cluster", dec.Cluster),
		attribute.String("dicomweb_oauth.outcome", dec.Outcome),
		attribute.Int("http.response.status_code", dec.Status),
	)
	if dec.Outcome != OutcomeAllowed {
		span.SetStatus(codes.Error, dec.Outcome)
	}
}
