package tokens

import (
	"context"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// spanAttributes returns a span's attributes as strings by key.
func spanAttributes(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

func TestAcquisitionSpans(t *testing.T) {
	e := newFakeEndpoint(t)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	c := testConfig(e.URL())
	c.Provider = ProviderGeneric
	source, err := NewSource(c, WithSourceTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager("pacs", source, SettingsOf(c), WithLogger(quietLogger), WithTracerProvider(tp))

	if _, err := m.Token(context.Background()); err != nil {
		t.Fatalf("Token: %v", err)
	}
	e.SetRaw(http.StatusUnauthorized, "application/json",
		`{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`, nil)
	m.Invalidate(Fingerprint("test-token-1"))
	if _, err := m.Token(context.Background()); err == nil {
		t.Fatal("Token succeeded after the endpoint started failing")
	}

	var acquisitions []sdktrace.ReadOnlySpan
	clients := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range recorder.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindInternal:
			acquisitions = append(acquisitions, s)
		case trace.SpanKindClient:
			clients[s.Parent().SpanID()] = s
		}
		for _, kv := range s.Attributes() {
			v := kv.Value.Emit()
			if strings.Contains(v, "test-token-1") || strings.Contains(v, "test-secret-value") {
				t.Errorf("span %s attribute %s holds a token or secret: %q", s.Name(), kv.Key, v)
			}
		}
		if strings.Contains(s.Status().Description, "test-secret-value") {
			t.Errorf("span %s status holds the secret", s.Name())
		}
	}
	if len(acquisitions) != 2 {
		t.Fatalf("acquisition spans = %d, want 2", len(acquisitions))
	}

	ok, failed := spanAttributes(acquisitions[0]), spanAttributes(acquisitions[1])
	for key, want := range map[string]string{
		"dicomweb_oauth.cluster": "pacs", "dicomweb_oauth.grant": "client_credentials",
		"dicomweb_oauth.provider": "generic", "dicomweb_oauth.result": "success",
		"dicomweb_oauth.token_lifetime_seconds": "3600",
	} {
		if ok[key] != want {
			t.Errorf("success span %s = %q, want %q", key, ok[key], want)
		}
	}
	for key, want := range map[string]string{
		"dicomweb_oauth.result": "config", "dicomweb_oauth.error_code": "invalid_client",
		"dicomweb_oauth.provider_codes": `["AADSTS7000215"]`, "http.response.status_code": "401",
	} {
		if failed[key] != want {
			t.Errorf("failure span %s = %q, want %q", key, failed[key], want)
		}
	}

	for i, a := range acquisitions {
		client, found := clients[a.SpanContext().SpanID()]
		if !found {
			t.Errorf("acquisition %d has no child client span for the HTTP request", i+1)
			continue
		}
		if client.SpanContext().TraceID() != a.SpanContext().TraceID() {
			t.Errorf("client span of acquisition %d is in another trace", i+1)
		}
	}
}
