package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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

// adminHandler serves /healthz, /readyz, /metrics and /status. None of them
// ever returns a token or a secret.
func adminHandler(set *tokens.Set, m *metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
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
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		respondJSON(w, http.StatusOK, statusResponse{
			Version: buildVersion(), Ready: set.IsReady(), Clusters: set.Statuses(),
		})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return mux
}

func respondJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = writeJSON(w, v)
}
