package extproc

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func TestDecideHook(t *testing.T) {
	type call struct {
		api      string
		decision Decision
	}
	tests := []struct {
		name      string
		source    *fakeSource
		named     string
		authority string
		want      Decision
	}{
		{"allowed", &fakeSource{}, "pacs-a", "", Decision{
			Cluster: "pacs-a", Outcome: OutcomeAllowed, Header: "Bearer test-token-a", Status: 200,
		}},
		{"unknown", &fakeSource{}, "", "other.example.test", Decision{
			Outcome: OutcomeUnknownCluster, Status: 403,
		}},
		{"unavailable", &fakeSource{block: true}, "", "pacs-b.example.test:8443", Decision{
			Cluster: "pacs-b", Outcome: OutcomeUnavailable, Status: 503,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []call
			decider := newTestDecider(t, tt.source, slog.New(slog.DiscardHandler))
			decider.Timeout = 10 * time.Millisecond
			decider.Hook = func(api string, d *Decision, _ time.Duration) {
				calls = append(calls, call{api, *d})
			}

			dec := decider.Decide(context.Background(), APIExtAuthz, tt.named, tt.authority)

			if len(calls) != 1 {
				t.Fatalf("hook called %d times, want 1", len(calls))
			}
			if calls[0].api != APIExtAuthz {
				t.Errorf("hook api = %q, want %q", calls[0].api, APIExtAuthz)
			}
			if calls[0].decision != *dec {
				t.Errorf("hook decision = %+v, want the returned %+v", calls[0].decision, *dec)
			}
			if dec.Cluster != tt.want.Cluster || dec.Outcome != tt.want.Outcome ||
				dec.Header != tt.want.Header || dec.Status != tt.want.Status {
				t.Errorf("decision = %+v, want %+v", *dec, tt.want)
			}
			if tt.want.Outcome != OutcomeAllowed && dec.Message == "" {
				t.Error("denial has no message, want the reason")
			}
		})
	}
}

func TestDecisionBody(t *testing.T) {
	dec := &Decision{
		Cluster: "pacs-a", Outcome: OutcomeUnavailable, Status: 503,
		Message: `token endpoint returned "500" (fake)`,
	}

	body := dec.Body()

	if body[len(body)-1] != '\n' {
		t.Errorf("body %q does not end with a newline", body)
	}
	got := decodeDenial(t, body)
	want := denial{
		Error:   OutcomeUnavailable,
		Cluster: "pacs-a",
		Message: `token endpoint returned "500" (fake)`,
	}
	if got != want {
		t.Errorf("body = %+v, want %+v", got, want)
	}
}

func BenchmarkDecide(b *testing.B) {
	decider := newTestDecider(b, staticSource("Bearer test-token-a"), slog.New(slog.DiscardHandler))
	ctx := context.Background()

	b.ReportAllocs()
	for b.Loop() {
		dec := decider.Decide(ctx, APIExtProc, "", "pacs-a.example.test:443")
		if dec.Outcome != OutcomeAllowed {
			b.Fatalf("outcome = %q, want %q", dec.Outcome, OutcomeAllowed)
		}
	}
}
