package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// refreshInterval is the minimum time between two forced refreshes of one
// cluster. Each one sends a token request, so the limit keeps a script or
// a repeated click from flooding the identity provider.
const refreshInterval = 10 * time.Second

// Error classes of the refresh endpoint's own responses. A failed token
// request has the class of its tokens.FetchError instead.
const (
	classUnknownCluster   = "unknown_cluster"
	classTooManyRefreshes = "too_many_refreshes"
)

// refreshResponse is the body of POST /clusters/{name}/refresh. It never
// contains the token or a secret.
type refreshResponse struct {
	Cluster string `json:"cluster"`
	OK      bool   `json:"ok"`
	// Status is the cluster's status after the token request.
	Status *tokens.Status `json:"status,omitempty"`
	// Fingerprint identifies the new token, as in Status.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Claims are the new token's decoded, unverified claims.
	Claims *tokens.Claims `json:"claims,omitempty"`
	// ClaimsUnavailable is the reason Claims is missing, for an opaque token.
	ClaimsUnavailable string    `json:"claims_unavailable,omitempty"`
	Error             *apiError `json:"error,omitempty"`
}

// refreshHandler serves POST /clusters/{name}/refresh: it forces a token
// request for the cluster, waits for it, and returns the new token's
// fingerprint and claims, or the failure.
type refreshHandler struct {
	set     *tokens.Set
	limiter *refreshLimiter
	log     *slog.Logger
}

func newRefreshHandler(set *tokens.Set, log *slog.Logger) *refreshHandler {
	return &refreshHandler{set: set, limiter: newRefreshLimiter(refreshInterval, time.Now), log: log}
}

func (h *refreshHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m := h.set.Manager(name)
	if m == nil {
		respondJSON(w, http.StatusNotFound, refreshResponse{Cluster: name, Error: &apiError{
			Class:   classUnknownCluster,
			Message: fmt.Sprintf("unknown cluster %q; GET /status lists the configured clusters", name),
		}})
		return
	}

	if wait, ok := h.limiter.allow(name); !ok {
		seconds := retryAfterSeconds(wait)
		w.Header().Set("Retry-After", strconv.Itoa(seconds))
		respondJSON(w, http.StatusTooManyRequests, refreshResponse{Cluster: name, Error: &apiError{
			Class: classTooManyRefreshes,
			Message: fmt.Sprintf("cluster %q allows one forced refresh per %s; retry in %d s",
				name, refreshInterval, seconds),
		}})
		return
	}

	h.log.Info("forced refresh requested", "cluster", name, "remote", r.RemoteAddr)
	tok, err := m.Refresh(r.Context())
	status := m.Status()
	if err != nil {
		fail := fetchFailure(err)
		h.log.Info("forced refresh failed", "cluster", name, "class", fail.Class, "error", fail.Message)
		respondJSON(w, http.StatusBadGateway, refreshResponse{Cluster: name, Status: &status, Error: fail})
		return
	}
	h.log.Info("forced refresh succeeded", "cluster", name, "fingerprint", tok.Fingerprint())
	respondJSON(w, http.StatusOK, refreshSuccess(name, &status, tok))
}

// refreshSuccess describes a new token by its fingerprint and claims.
func refreshSuccess(cluster string, status *tokens.Status, tok *tokens.Token) refreshResponse {
	resp := refreshResponse{Cluster: cluster, OK: true, Status: status, Fingerprint: tok.Fingerprint()}
	claims, err := tokens.DecodeClaims(tok.AccessToken)
	if err != nil {
		resp.ClaimsUnavailable = err.Error()
	} else {
		resp.Claims = claims
	}
	return resp
}

// fetchFailure describes a failed forced refresh by its class, the token
// endpoint's HTTP status and codes, and the message.
func fetchFailure(err error) *apiError {
	var fe *tokens.FetchError
	if !errors.As(err, &fe) {
		// Refresh returns no FetchError only when the admin request's
		// context ended, that is when the client left or the service stops.
		return &apiError{Class: string(tokens.ClassTransient), Message: err.Error()}
	}
	return &apiError{
		Class: string(fe.Class), StatusCode: fe.StatusCode, Code: fe.Code,
		ProviderCodes: fe.ProviderCodes, Message: fe.Error(),
	}
}

// retryAfterSeconds rounds wait up to whole seconds, at least 1, for the
// Retry-After header.
func retryAfterSeconds(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}

// refreshLimiter admits at most one forced refresh per cluster per
// interval. It is safe for concurrent use. It stores one entry per cluster
// it admitted, and the handler admits configured clusters only.
type refreshLimiter struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last map[string]time.Time // guarded by mu; when each cluster's last refresh was admitted
}

func newRefreshLimiter(interval time.Duration, now func() time.Time) *refreshLimiter {
	return &refreshLimiter{interval: interval, now: now, last: map[string]time.Time{}}
}

// allow admits a refresh of cluster now and reports true, or returns how
// long until the next one is admitted and false.
func (l *refreshLimiter) allow(cluster string) (time.Duration, bool) {
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()

	if last, ok := l.last[cluster]; ok {
		if wait := last.Add(l.interval).Sub(now); wait > 0 {
			return wait, false
		}
	}
	l.last[cluster] = now
	return 0, true
}
