package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// metadataSource requests tokens from a cloud metadata endpoint with GET:
// Azure's instance metadata service (IMDS) for managed identity, or a
// Google compute metadata server. The endpoint is always configured; the
// service never guesses a metadata address.
type metadataSource struct {
	endpoint string
	// header is the header the endpoint requires to tell the request from
	// one a browser was tricked into sending.
	header, headerValue string
	query               url.Values
	client              *http.Client
	defaultLifetime     time.Duration
	now                 func() time.Time
}

// azureIMDSVersion is the IMDS api-version for managed identity tokens.
const azureIMDSVersion = "2018-02-01"

// newManagedIdentity requests from IMDS: GET endpoint?api-version&resource[&client_id]
// with "Metadata: true". client_id selects a user-assigned identity.
func newManagedIdentity(c *Config, client *http.Client) *metadataSource {
	query := url.Values{"api-version": {azureIMDSVersion}, "resource": {managedIdentityResource(c)}}
	if c.ClientID != "" {
		query.Set("client_id", c.ClientID)
	}
	return &metadataSource{
		endpoint: c.Endpoint, header: "Metadata", headerValue: "true", query: query,
		client: client, defaultLifetime: c.DefaultLifetime, now: time.Now,
	}
}

// managedIdentityResource returns resource, or the resource of a
// ".default" scope: IMDS takes a resource, not a scope.
func managedIdentityResource(c *Config) string {
	if c.Resource != "" || len(c.Scopes) == 0 {
		return c.Resource
	}
	return strings.TrimSuffix(c.Scopes[0], "/.default")
}

// newMetadataServer requests from a Google metadata server: GET endpoint[?scopes=...]
// with "Metadata-Flavor: Google".
func newMetadataServer(c *Config, client *http.Client) *metadataSource {
	query := url.Values{}
	if len(c.Scopes) > 0 {
		query.Set("scopes", strings.Join(c.Scopes, ","))
	}
	return &metadataSource{
		endpoint: c.Endpoint, header: "Metadata-Flavor", headerValue: "Google", query: query,
		client: client, defaultLifetime: c.DefaultLifetime, now: time.Now,
	}
}

func (s *metadataSource) Fetch(ctx context.Context) (*Token, error) {
	u, err := url.Parse(s.endpoint)
	if err != nil {
		return nil, &FetchError{Class: ClassConfig, Err: err}
	}
	q := u.Query()
	for k, v := range s.query {
		q[k] = v
	}
	u.RawQuery = q.Encode()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &FetchError{Class: ClassConfig, Err: err}
	}
	req.Header.Set(s.header, s.headerValue)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, &FetchError{Class: ClassTransient, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	received := s.now()
	if err != nil {
		return nil, &FetchError{Class: ClassTransient, StatusCode: resp.StatusCode, Err: err}
	}
	tok, err := parseJSONToken(resp, body, received, s.defaultLifetime)
	var fe *FetchError
	if errors.As(err, &fe) && (fe.StatusCode == http.StatusNotFound || fe.StatusCode == http.StatusGone) &&
		fe.Code == "" {
		// IMDS returns 404 and 410 while it is being updated or starting,
		// and its documentation requests retries with backoff. So these are
		// not configuration errors, as they are at a token endpoint.
		fe.Class = ClassTransient
	}
	return tok, err
}

// jsonTokenResponse is a token response in JSON, or an OAuth2 error.
type jsonTokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        any    `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// parseJSONToken turns a metadata endpoint's response into a Token or a
// *FetchError, with the same rules as a token endpoint's response.
func parseJSONToken(resp *http.Response, body []byte, received time.Time, defaultLifetime time.Duration) (*Token, error) {
	var tr jsonTokenResponse
	jsonErr := json.Unmarshal(body, &tr)

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fe := &FetchError{
			Class: ClassTransient, StatusCode: resp.StatusCode,
			Code: tr.Error, Description: trimDescription(tr.ErrorDescription),
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), received),
		}
		classifyStatus(fe)
		if fe.Code == "" && fe.Description == "" {
			fe.Description = describeBody(resp, body)
		}
		return nil, fe
	}
	if jsonErr != nil {
		return nil, &FetchError{Class: ClassBadResponse, StatusCode: resp.StatusCode,
			Description: "the response is not a token: " + describeBody(resp, body)}
	}
	tok, err := newToken(tokenFields{accessToken: tr.AccessToken, tokenType: tr.TokenType, expiresIn: tr.ExpiresIn},
		received, defaultLifetime)
	if err != nil {
		return nil, &FetchError{Class: ClassBadResponse, StatusCode: resp.StatusCode, Err: err}
	}
	return tok, nil
}

// classifyStatus sets the class of a failed response from its code and status.
func classifyStatus(fe *FetchError) {
	switch {
	case configErrorCodes[fe.Code]:
		fe.Class = ClassConfig
	case fe.StatusCode == http.StatusTooManyRequests:
		fe.Class = ClassRateLimited
	case fe.StatusCode == http.StatusServiceUnavailable && fe.RetryAfter > 0:
		fe.Class = ClassRateLimited
	case fe.StatusCode == http.StatusUnauthorized || fe.StatusCode == http.StatusForbidden,
		fe.StatusCode == http.StatusBadRequest, fe.StatusCode == http.StatusNotFound:
		fe.Class = ClassConfig
	}
}
