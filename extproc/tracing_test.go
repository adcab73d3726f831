package extproc

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
)

// TestDecisionJoinsProxyTrace: a request whose headers carry W3C trace
// context gets a decision span in that trace, as a child of the proxy's
// span, for each API.
func TestDecisionJoinsProxyTrace(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	log, _ := newTestLogger()
	decider := newTestDecider(t, &fakeSource{}, log)
	decider.Tracer = tp.Tracer("test")
	decider.Propagator = propagation.TraceContext{}
	driver := envoysim.StartDriver(t, &ExtProc{Decider: decider, Log: log}, &ExtAuthz{Decider: decider})

	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	wantTrace, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	wantParent, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	headers := envoysim.HeaderMap{{Key: "traceparent", Value: traceparent}}

	if _, err := driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{
		ClusterName: "pacs-a", Authority: "pacs-a.example.test", Headers: headers,
	}); err != nil {
		t.Fatalf("ext_proc: %v", err)
	}
	if _, err := driver.Check(context.Background(), envoysim.AuthzRequest{
		Cluster: "pacs-a", Authority: "pacs-a.example.test", Headers: headers,
	}); err != nil {
		t.Fatalf("ext_authz: %v", err)
	}

	spans := recorder.Ended()
	if len(spans) != 2 {
		t.Fatalf("decision spans = %d, want 2", len(spans))
	}
	for _, s := range spans {
		api := spanAttributes(s)["dicomweb_oauth.api"]
		if s.SpanContext().TraceID() != wantTrace {
			t.Errorf("%s decision span trace = %s, want the proxy's %s", api, s.SpanContext().TraceID(), wantTrace)
		}
		if s.Parent().SpanID() != wantParent {
			t.Errorf("%s decision span parent = %s, want the proxy's span %s", api, s.Parent().SpanID(), wantParent)
		}
		if got := spanAttributes(s)["dicomweb_oauth.outcome"]; got != OutcomeAllowed {
			t.Errorf("%s decision outcome attribute = %q, want allowed", api, got)
		}
	}
}

func spanAttributes(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}
