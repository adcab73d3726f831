package harness

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestEnvoyWaitHealthy reads /clusters pages in the text format of Envoy's
// admin interface, one "cluster::host::stat::value" per line.
func TestEnvoyWaitHealthy(t *testing.T) {
	tests := []struct {
		name    string
		page    string
		wantErr string
	}{
		{"healthy", "dicomweb_oauth::127.0.0.1:9001::cx_active::1\n" +
			"dicomweb_oauth::127.0.0.1:9001::health_flags::healthy\n", ""},
		{"failed health check", "dicomweb_oauth::127.0.0.1:9001::health_flags::/failed_active_hc\n",
			"failed_active_hc"},
		{"other cluster healthy", "dcm4chee::127.0.0.1:8080::health_flags::healthy\n", "not healthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/clusters" {
					http.NotFound(w, r)
					return
				}
				_, _ = io.WriteString(w, tt.page)
			}))
			t.Cleanup(admin.Close)
			env := NewEnv(t.TempDir())
			t.Cleanup(func() { _ = env.Close() })
			p, err := env.Start(ProcessSpec{Name: "sleeper", Path: "/bin/sh", Args: []string{"-c", "exec sleep 30"}})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			envoy := &Envoy{AdminURL: admin.URL, Process: p}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()

			err = envoy.waitHealthy(ctx, "dicomweb_oauth")

			if tt.wantErr == "" && err != nil {
				t.Errorf("waitHealthy: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("waitHealthy error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
