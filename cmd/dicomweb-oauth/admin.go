package main

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dicomweb-oauth/dicomweb-oauth/cmd/dicomweb-oauth/internal/config"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// statusResponse is the body of GET /status.
type statusResponse struct {
	Version  string          `json:"version"`
	Ready    bool            `json:"ready"`
	Clusters []tokens.Status `json:"clusters"`
}

// readyResponse is the body of GET /readyz.
type readyResponse struct {
	Ready bool `json:"ready"`
	// Pending lists the clusters whose first token request has not ended.
	Pending []string `json:"pending,omitempty"`
}

// newAdminHandler returns the handler of the admin listener. When
// c.TokenFile is set, it reads the token from that file and requires it on
// every path except /healthz and /readyz.
func newAdminHandler(c config.Admin, set *tokens.Set, m *metrics, log *slog.Logger) (http.Handler, error) {
	routes := adminRoutes(set, m, newRefreshHandler(set, log))
	if c.TokenFile == "" {
		return routes.mux, nil
	}
	token, err := readAdminToken(c.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	return requireBearer(routes.mux, token, log), nil
}

// adminMux is the admin listener's ServeMux with the pattern of every route
// it serves, so that a test can compare them with docs/admin-api.yaml.
type adminMux struct {
	mux      *http.ServeMux
	patterns []string
}

func (a *adminMux) handle(pattern string, h http.Handler) {
	a.mux.Handle(pattern, h)
	a.patterns = append(a.patterns, pattern)
}

// adminRoutes serves /healthz, /readyz, /metrics, /status and
// POST /clusters/{name}/refresh. None of them ever returns a token or a
// secret. A route added here must be added to docs/admin-api.yaml too.
func adminRoutes(set *tokens.Set, m *metrics, refresh http.Handler) *adminMux {
	a := &adminMux{mux: http.NewServeMux()}
	a.handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}))
	a.handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		resp := readyResponse{Ready: true}
		for _, s := range set.Statuses() {
			if s.State == tokens.StatePending {
				resp.Ready = false
				resp.Pending = append(resp.Pending, s.Cluster)
			}
		}
		status := http.StatusOK
		if !resp.Ready {
			status = http.StatusServiceUnavailable
		}
		respondJSON(w, status, resp)
	}))
	a.handle("GET /status", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		respondJSON(w, http.StatusOK, statusResponse{
			Version: buildVersion(), Ready: set.IsReady(), Clusters: set.Statuses(),
		})
	}))
	a.handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	a.handle("POST /clusters/{name}/refresh", refresh)
	return a
}

func respondJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = writeJSON(w, v)
}
