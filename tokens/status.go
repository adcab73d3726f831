package tokens

import "time"

// Token states reported by Status.
const (
	StatePending = "pending" // the first request has not ended
	StateValid   = "valid"   // a usable token is cached
	StateExpired = "expired" // the cached token expired or was rejected
	StateFailing = "failing" // no token was ever acquired
)

// Status is a snapshot of a Manager for the admin API. It never contains the
// token or a secret.
type Status struct {
	Cluster  string `json:"cluster"`
	Grant    string `json:"grant,omitempty"`
	Provider string `json:"provider,omitempty"`
	State    string `json:"state"`
	// Fingerprint identifies the cached token without revealing it.
	Fingerprint string     `json:"fingerprint,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RefreshAt   *time.Time `json:"refresh_at,omitempty"`
	// ConsecutiveFailures counts failed requests since the last success.
	ConsecutiveFailures int        `json:"consecutive_failures"`
	NextAttempt         *time.Time `json:"next_attempt,omitempty"`
	LastError           *ErrorInfo `json:"last_error,omitempty"`
	// InsecureTLS is true when certificate verification to the token
	// endpoint is turned off.
	InsecureTLS bool `json:"insecure_tls,omitempty"`
	Counts
}

// ErrorInfo describes the last failed token request.
type ErrorInfo struct {
	At            time.Time  `json:"at"`
	Message       string     `json:"message"`
	Class         ErrorClass `json:"class"`
	StatusCode    int        `json:"status_code,omitempty"`
	Code          string     `json:"code,omitempty"`
	ProviderCodes []string   `json:"provider_codes,omitempty"`
}

// Status returns a snapshot of the Manager's state.
func (m *Manager) Status() Status {
	now := m.clock.Now()

	m.mu.Lock()
	defer m.mu.Unlock()

	s := Status{Cluster: m.cluster, Grant: m.settings.Grant, Provider: m.settings.Provider,
		ConsecutiveFailures: m.failures, Counts: m.counts, InsecureTLS: m.settings.InsecureTLS}
	switch {
	case m.token != nil && now.Before(m.usableUntil):
		s.State = StateValid
	case m.token != nil:
		s.State = StateExpired
	case m.lastErr != nil:
		s.State = StateFailing
	default:
		s.State = StatePending
	}
	if m.token != nil {
		s.Fingerprint = m.token.Fingerprint()
		s.ExpiresAt = utc(m.token.Expiry)
		s.RefreshAt = utc(m.refreshAt)
	}
	if !m.nextAttempt.IsZero() {
		s.NextAttempt = utc(m.nextAttempt)
	}
	if e := m.lastErr; e != nil {
		s.LastError = &ErrorInfo{
			At: m.lastErrAt.UTC(), Message: e.Error(), Class: e.Class,
			StatusCode: e.StatusCode, Code: e.Code, ProviderCodes: e.ProviderCodes,
		}
	}
	return s
}

func utc(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}
