package main

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestSetupTracingFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantSDK bool
	}{
		{"no variables", nil, false},
		{"console exporter", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"disabled", map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range append(tracingEnv, "OTEL_SDK_DISABLED") {
				t.Setenv(name, "")
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tr, err := setupTracing(context.Background())
			if err != nil {
				t.Fatalf("setupTracing: %v", err)
			}
			t.Cleanup(func() { _ = tr.shutdown(context.Background()) })

			_, isSDK := tr.provider.(*sdktrace.TracerProvider)
			_, isNoop := tr.provider.(noop.TracerProvider)
			if isSDK != tt.wantSDK {
				t.Errorf("SDK provider = %v, want %v", isSDK, tt.wantSDK)
			}
			if !tt.wantSDK && !isNoop {
				t.Errorf("provider %T, want the no-op provider", tr.provider)
			}
		})
	}
}
