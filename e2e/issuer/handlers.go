package issuer

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Client authentication methods, named as in the OAuth 2.0 dynamic client
// registration metadata (RFC 7591).
const (
	AuthMethodBasic = "client_secret_basic"
	AuthMethodPost  = "client_secret_post"
	AuthMethodNone  = "none"
)

// maxFormBytes caps the size of a token request body.
const maxFormBytes = 64 << 10

func (iss *Issuer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", iss.handleDiscovery)
	mux.HandleFunc("GET /jwks", iss.handleJWKS)
	mux.HandleFunc("/token", iss.handleToken)
	return mux
}

func (iss *Issuer) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	document := map[string]any{
		"issuer":                                iss.url,
		"token_endpoint":                        iss.TokenURL(),
		"jwks_uri":                              iss.JWKSURL(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{AuthMethodBasic, AuthMethodPost},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
	}
	writeJSON(w, http.StatusOK, document)
}

func (iss *Issuer) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	public := jose.JSONWebKey{
		Key:       &iss.key.PublicKey,
		KeyID:     iss.keyID,
		Algorithm: string(jose.RS256),
		Use:       "sig",
	}
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{public}})
}

// handleToken serves the token endpoint (RFC 6749 section 4.4) and records
// every request, whatever its outcome.
func (iss *Issuer) handleToken(w http.ResponseWriter, r *http.Request) {
	iss.tokenRequests.Add(1)

	request := TokenRequest{AuthMethod: AuthMethodNone}
	request.Status = iss.serveToken(w, r, &request)
	iss.recordTokenRequest(request)
}

// serveToken writes the token response, fills in request from the form and
// returns the HTTP status code it sent.
func (iss *Issuer) serveToken(w http.ResponseWriter, r *http.Request, request *TokenRequest) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeError(w, http.StatusMethodNotAllowed, "invalid_request",
			"the token endpoint accepts POST only")
	}
	if status := iss.failStatus.Load(); status != 0 {
		return writeError(w, int(status), "temporarily_unavailable", "the issuer is set to fail")
	}

	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return writeError(w, http.StatusBadRequest, "invalid_request", "invalid form body")
	}
	request.GrantType = r.PostForm.Get("grant_type")
	request.Scope = r.PostForm.Get("scope")
	request.Audience = r.PostForm.Get("audience")

	clientID, secret, method, err := clientCredentials(r)
	request.ClientID = clientID
	request.AuthMethod = method
	if err != nil {
		return writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
	}
	if !iss.validClient(clientID, secret) {
		if method == AuthMethodBasic {
			w.Header().Set("WWW-Authenticate", `Basic realm="e2e-issuer"`)
		}
		return writeError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
	}

	switch request.GrantType {
	case "client_credentials":
	case "":
		return writeError(w, http.StatusBadRequest, "invalid_request", "missing grant_type")
	default:
		return writeError(w, http.StatusBadRequest, "unsupported_grant_type",
			fmt.Sprintf("grant_type %q is not supported", request.GrantType))
	}

	return iss.issueToken(w, *request)
}

// issueToken signs a token for an authenticated client_credentials request
// and writes the RFC 6749 section 5.1 response.
func (iss *Issuer) issueToken(w http.ResponseWriter, request TokenRequest) int {
	audience := request.Audience
	if audience == "" {
		audience = iss.cfg.DefaultAudience
	}
	lifetime := time.Duration(iss.lifetime.Load())

	token, err := iss.sign(MintOptions{
		Subject:  request.ClientID,
		Audience: audience,
		Scope:    request.Scope,
		Issuer:   iss.url,
		Lifetime: lifetime,
		IssuedAt: time.Now(),
	})
	if err != nil {
		return writeError(w, http.StatusInternalServerError, "server_error", "signing failed")
	}
	iss.tokensIssued.Add(1)

	response := map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   int64(lifetime / time.Second),
	}
	if request.Scope != "" {
		response["scope"] = request.Scope
	}
	writeJSON(w, http.StatusOK, response)
	return http.StatusOK
}

// clientCredentials extracts the client ID and secret from the Authorization
// header (client_secret_basic) or from the form (client_secret_post). With
// Basic, both parts are form-urlencoded before encoding (RFC 6749 section
// 2.3.1), so they are decoded here.
func clientCredentials(r *http.Request) (id, secret, method string, err error) {
	basicID, basicSecret, hasBasic := r.BasicAuth()
	formID := r.PostForm.Get("client_id")
	formSecret := r.PostForm.Get("client_secret")

	if !hasBasic {
		if formSecret != "" {
			return formID, formSecret, AuthMethodPost, nil
		}
		return formID, "", AuthMethodNone, nil
	}

	if formSecret != "" {
		return "", "", AuthMethodBasic, errors.New("client used more than one authentication method")
	}
	id, err = url.QueryUnescape(basicID)
	if err != nil {
		return "", "", AuthMethodBasic, errors.New("invalid form encoding of the Basic user name")
	}
	secret, err = url.QueryUnescape(basicSecret)
	if err != nil {
		return id, "", AuthMethodBasic, errors.New("invalid form encoding of the Basic password")
	}
	return id, secret, AuthMethodBasic, nil
}

// validClient compares both credentials in constant time.
func (iss *Issuer) validClient(id, secret string) bool {
	idMatch := subtle.ConstantTimeCompare([]byte(id), []byte(iss.cfg.ClientID))
	secretMatch := subtle.ConstantTimeCompare([]byte(secret), []byte(iss.cfg.ClientSecret))
	return idMatch&secretMatch == 1
}

// writeError writes an RFC 6749 section 5.2 error response and returns status.
func writeError(w http.ResponseWriter, status int, code, description string) int {
	writeJSON(w, status, map[string]string{
		"error":             code,
		"error_description": description,
	})
	return status
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	encoded, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(encoded, '\n'))
}
