package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// meterName is the instrumentation scope of the service's metrics.
const meterName = "github.com/dicomweb-oauth/dicomweb-oauth"

// metrics records the service's metrics through the OpenTelemetry metrics
// API. A Prometheus exporter on a registry the service owns serves them at
// /metrics; further readers, such as OTLP, can be added to the provider.
// Instrument names carry the dicomweb_oauth_ prefix, and the exporter adds
// _total to counters and the unit (_seconds) to histograms and gauges.
type metrics struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider

	acquisitions        metric.Int64Counter
	acquisitionDuration metric.Float64Histogram
	decisions           metric.Int64Counter
	decisionDuration    metric.Float64Histogram
}

// Histogram bucket bounds, in seconds.
var (
	acquisitionBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	decisionBuckets    = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}
)

func newMetrics(set *tokens.Set, readers ...sdkmetric.Reader) (*metrics, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(exporter)}
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	provider := sdkmetric.NewMeterProvider(opts...)
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m := &metrics{registry: registry, provider: provider}
	if err := m.createInstruments(provider.Meter(meterName), set); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m.startAtZero(set)
	return m, nil
}

// acquisitionResults are the result label values of token acquisitions.
var acquisitionResults = []string{"success", string(tokens.ClassTransient), string(tokens.ClassRateLimited),
	string(tokens.ClassConfig), string(tokens.ClassBadResponse)}

// startAtZero creates every counter series a configured cluster can have,
// at 0. Prometheus's rate() and increase() ignore the first sample of a
// series, so without this the first failure of each kind would not show.
func (m *metrics) startAtZero(set *tokens.Set) {
	ctx := context.Background()
	for _, s := range set.Statuses() {
		for _, result := range acquisitionResults {
			m.acquisitions.Add(ctx, 0, metric.WithAttributes(
				attribute.String("cluster", s.Cluster), attribute.String("result", result)))
		}
		for _, api := range []string{extproc.APIExtProc, extproc.APIExtAuthz, extproc.APIHTTP} {
			for _, outcome := range []string{extproc.OutcomeAllowed, extproc.OutcomeUnavailable} {
				m.decisions.Add(ctx, 0, metric.WithAttributes(attribute.String("api", api),
					attribute.String("cluster", s.Cluster), attribute.String("outcome", outcome)))
			}
		}
	}
	for _, api := range []string{extproc.APIExtProc, extproc.APIExtAuthz, extproc.APIHTTP} {
		m.decisions.Add(ctx, 0, metric.WithAttributes(attribute.String("api", api),
			attribute.String("cluster", ""), attribute.String("outcome", extproc.OutcomeUnknownCluster)))
	}
}

func (m *metrics) createInstruments(meter metric.Meter, set *tokens.Set) error {
	var err error
	if m.acquisitions, err = meter.Int64Counter("dicomweb_oauth_token_acquisitions",
		metric.WithDescription("Token requests to the identity provider, by cluster and result "+
			"(success, or the error class).")); err != nil {
		return err
	}
	if m.acquisitionDuration, err = meter.Float64Histogram("dicomweb_oauth_token_acquisition_duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of token requests to the identity provider."),
		metric.WithExplicitBucketBoundaries(acquisitionBuckets...)); err != nil {
		return err
	}
	if m.decisions, err = meter.Int64Counter("dicomweb_oauth_decisions",
		metric.WithDescription("Proxy requests decided, by API, cluster and outcome. "+
			"Requests for unknown clusters have an empty cluster label.")); err != nil {
		return err
	}
	if m.decisionDuration, err = meter.Float64Histogram("dicomweb_oauth_decision_duration",
		metric.WithUnit("s"), metric.WithDescription("Time to answer a proxy request, by API."),
		metric.WithExplicitBucketBoundaries(decisionBuckets...)); err != nil {
		return err
	}
	return registerTokenObservers(meter, set)
}

// registerTokenObservers reports each cluster's token state when read.
func registerTokenObservers(meter metric.Meter, set *tokens.Set) error {
	valid, err := meter.Int64ObservableGauge("dicomweb_oauth_token_valid",
		metric.WithDescription("1 when the cluster holds a token that is handed out, else 0."))
	if err != nil {
		return err
	}
	expiry, err := meter.Float64ObservableGauge("dicomweb_oauth_token_expiry_timestamp", metric.WithUnit("s"),
		metric.WithDescription("Expiry of the cluster's newest token, in Unix seconds."))
	if err != nil {
		return err
	}
	rejections, err := meter.Int64ObservableCounter("dicomweb_oauth_upstream_rejections",
		metric.WithDescription("Upstream 401 answers to requests that carried a token from this service."))
	if err != nil {
		return err
	}
	invalidations, err := meter.Int64ObservableCounter("dicomweb_oauth_token_invalidations",
		metric.WithDescription("Tokens taken out of use because the upstream rejected them."))
	if err != nil {
		return err
	}
	buildInfo, err := meter.Int64ObservableGauge("dicomweb_oauth_build_info",
		metric.WithDescription("Build information; the value is always 1."))
	if err != nil {
		return err
	}

	build := metric.WithAttributes(attribute.String("version", buildVersion()),
		attribute.String("goversion", runtime.Version()))
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(buildInfo, 1, build)
		for _, s := range set.Statuses() {
			cluster := metric.WithAttributes(attribute.String("cluster", s.Cluster))
			isValid := int64(0)
			if s.State == tokens.StateValid {
				isValid = 1
			}
			o.ObserveInt64(valid, isValid, cluster)
			if s.ExpiresAt != nil {
				o.ObserveFloat64(expiry, float64(s.ExpiresAt.Unix()), cluster)
			}
			o.ObserveInt64(rejections, int64(s.UpstreamRejections), cluster)
			o.ObserveInt64(invalidations, int64(s.Invalidations), cluster)
		}
		return nil
	}, valid, expiry, rejections, invalidations, buildInfo)
	return err
}

func (m *metrics) observeAcquisition(cluster string, d time.Duration, err *tokens.FetchError) {
	result := "success"
	if err != nil {
		result = string(err.Class)
	}
	ctx := context.Background()
	m.acquisitions.Add(ctx, 1, metric.WithAttributes(
		attribute.String("cluster", cluster), attribute.String("result", result)))
	m.acquisitionDuration.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("cluster", cluster)))
}

func (m *metrics) observeDecision(api string, d *extproc.Decision, duration time.Duration) {
	cluster := d.Cluster
	if d.Outcome == extproc.OutcomeUnknownCluster {
		// The name comes from the request; keep label values bounded.
		cluster = ""
	}
	ctx := context.Background()
	m.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("api", api),
		attribute.String("cluster", cluster), attribute.String("outcome", d.Outcome)))
	m.decisionDuration.Record(ctx, duration.Seconds(), metric.WithAttributes(attribute.String("api", api)))
}
