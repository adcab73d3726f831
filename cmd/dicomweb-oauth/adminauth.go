package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
)

// openAdminPaths are the admin paths that need no bearer token, because
// liveness and readiness probes (kubelet, Compose, the healthcheck command)
// send none. Neither reveals more than whether the service is up and ready.
var openAdminPaths = map[string]bool{"/healthz": true, "/readyz": true}

// adminRealm is the realm of the WWW-Authenticate challenge.
const adminRealm = "dicomweb-oauth admin"

// errorResponse is the body of a JSON error response outside the refresh
// endpoint, such as 401.
type errorResponse struct {
	Error *apiError `json:"error"`
}

// apiError describes why an admin request failed. It never contains a token
// or a secret.
type apiError struct {
	// Class is a tokens.ErrorClass for a failed token request, or one of the
	// admin API's own classes (classUnauthorized and those of refresh.go).
	Class string `json:"class"`
	// StatusCode is the token endpoint's HTTP status, when it responded.
	StatusCode int `json:"status_code,omitempty"`
	// Code is the OAuth2 error code, such as invalid_client.
	Code string `json:"code,omitempty"`
	// ProviderCodes are provider-specific codes, such as AADSTS7000215.
	ProviderCodes []string `json:"provider_codes,omitempty"`
	Message       string   `json:"message"`
}

// classUnauthorized is the error class of a request without the admin token.
const classUnauthorized = "unauthorized"

// readAdminToken reads the admin bearer token from the file at path, without
// the white space around it, such as a final newline.
func readAdminToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("%s is empty; write the admin bearer token into it", path)
	}
	// The error never quotes the token, only where the bad byte is.
	if i := strings.IndexFunc(token, isNotTokenChar); i >= 0 {
		return "", fmt.Errorf("%s: the token has a space, control or non-ASCII character at byte %d; "+
			"write it on one line of visible ASCII characters", path, i)
	}
	return token, nil
}

// isNotTokenChar reports whether r cannot be sent in an Authorization header
// value as part of a token.
func isNotTokenChar(r rune) bool {
	return r <= ' ' || r > '~'
}

// requireBearer wraps next so that every path except openAdminPaths needs
// "Authorization: Bearer TOKEN". It compares the SHA-256 sums of the sent
// and the expected token in constant time, so neither the token's bytes nor
// its length show in the response time.
func requireBearer(next http.Handler, token string, log *slog.Logger) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openAdminPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}

		sent, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			log.Debug("admin request without bearer token", "path", r.URL.Path, "remote", r.RemoteAddr)
			unauthorized(w, fmt.Sprintf("Bearer realm=%q", adminRealm),
				"missing bearer token; send Authorization: Bearer with the token of admin.token_file")
			return
		}
		got := sha256.Sum256([]byte(sent))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			log.Debug("admin request with wrong bearer token", "path", r.URL.Path, "remote", r.RemoteAddr)
			unauthorized(w, fmt.Sprintf("Bearer realm=%q, error=\"invalid_token\"", adminRealm),
				"invalid bearer token; send the token of admin.token_file")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken returns the token of an Authorization header value of the
// Bearer scheme, whose name is case-insensitive (RFC 9110, section 11.1).
func bearerToken(header string) (string, bool) {
	scheme, token, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// unauthorized sends 401 with a WWW-Authenticate challenge and a JSON body.
func unauthorized(w http.ResponseWriter, challenge, message string) {
	w.Header().Set("WWW-Authenticate", challenge)
	respondJSON(w, http.StatusUnauthorized, errorResponse{
		Error: &apiError{Class: classUnauthorized, Message: message},
	})
}
