package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracingEnv are the variables that turn tracing on. Without any of them,
// or with OTEL_SDK_DISABLED=true, no spans are recorded or sent.
var tracingEnv = []string{
	"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
}

// tracing is the trace provider of the service and how to flush it, and
// the metric readers that send metrics elsewhere than /metrics.
type tracing struct {
	provider      trace.TracerProvider
	propagator    propagation.TextMapPropagator
	shutdown      func(context.Context) error
	metricReaders []sdkmetric.Reader
}

// metricsEnv are the variables that add an OTLP (or other) metric reader.
var metricsEnv = []string{
	"OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
}

// setupTracing configures OpenTelemetry tracing from the standard OTEL_*
// environment variables: the exporter (OTEL_TRACES_EXPORTER, OTLP by
// default), its endpoint, the sampler and the resource attributes.
func setupTracing(ctx context.Context) (*tracing, error) {
	off := &tracing{
		provider:   noop.NewTracerProvider(),
		propagator: propagation.TraceContext{},
		shutdown:   func(context.Context) error { return nil },
	}
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return off, nil
	}
	if anyEnvSet(metricsEnv) {
		reader, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("metrics export: %w; check the OTEL_* environment variables", err)
		}
		off.metricReaders = append(off.metricReaders, reader)
	}
	if !anyEnvSet(tracingEnv) {
		return off, nil
	}

	exporter, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w; check the OTEL_* environment variables", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("dicomweb-oauth"), semconv.ServiceVersion(buildVersion())),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &tracing{
		provider:      tp,
		propagator:    propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		shutdown:      tp.Shutdown,
		metricReaders: off.metricReaders,
	}, nil
}

func anyEnvSet(names []string) bool {
	for _, name := range names {
		if os.Getenv(name) != "" {
			return true
		}
	}
	return false
}
