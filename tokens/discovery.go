package tokens

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// tokenEndpoint is a token URL, configured or found through discovery.
type tokenEndpoint struct {
	fixed  string
	issuer string
	client *http.Client

	mu sync.Mutex // guards found
	// found is the discovered token endpoint, kept after the first success.
	found string
}

func newTokenEndpoint(c *Config, client *http.Client) *tokenEndpoint {
	return &tokenEndpoint{fixed: c.TokenURL, issuer: c.Issuer, client: client}
}

// url returns the token URL, fetching the issuer's discovery document on
// first use. A failure is a *FetchError and is retried on the next request.
func (e *tokenEndpoint) url(ctx context.Context) (string, error) {
	if e.fixed != "" {
		return e.fixed, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.found != "" {
		return e.found, nil
	}
	doc, err := discover(ctx, e.client, e.issuer)
	if err != nil {
		return "", err
	}
	if doc.TokenEndpoint == "" {
		return "", &FetchError{Class: ClassConfig, Description: fmt.Sprintf(
			"the discovery document of %s has no token_endpoint", e.issuer)}
	}
	if err := checkURL(doc.TokenEndpoint); err != nil {
		return "", &FetchError{Class: ClassConfig, Description: "discovery: token_endpoint: " + err.Error()}
	}
	e.found = doc.TokenEndpoint
	return e.found, nil
}

// discoveryDocument holds the fields of an OpenID Connect or RFC 8414
// discovery document that the service uses.
type discoveryDocument struct {
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
	JWKSURI       string `json:"jwks_uri"`
}

// discover fetches the discovery document of an issuer: first OpenID
// Connect's /.well-known/openid-configuration appended to the issuer, then
// RFC 8414's /.well-known/oauth-authorization-server inserted before the
// issuer's path. The document's issuer must equal the configured one
// exactly (OpenID Connect Discovery 1.0 section 4.3, RFC 8414 section 3.3).
func discover(ctx context.Context, client *http.Client, issuer string) (*discoveryDocument, error) {
	var firstErr error
	for _, u := range discoveryURLs(issuer) {
		doc, err := fetchDiscovery(ctx, client, u)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if doc.Issuer != issuer {
			return nil, &FetchError{Class: ClassConfig, Description: fmt.Sprintf(
				"the discovery document at %s names issuer %q, but the configured issuer is %q; "+
					"set issuer to exactly the value the provider publishes", u, doc.Issuer, issuer)}
		}
		return doc, nil
	}
	return nil, firstErr
}

func discoveryURLs(issuer string) []string {
	trimmed := strings.TrimSuffix(issuer, "/")
	urls := []string{trimmed + "/.well-known/openid-configuration"}
	if u, err := url.Parse(trimmed); err == nil {
		path := u.Path
		u.Path = "/.well-known/oauth-authorization-server" + path
		u.RawPath = ""
		urls = append(urls, u.String())
	}
	return urls
}

func fetchDiscovery(ctx context.Context, client *http.Client, u string) (*discoveryDocument, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &FetchError{Class: ClassConfig, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, &FetchError{Class: ClassTransient, Description: "discovery: " + err.Error(), Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &FetchError{Class: ClassTransient, StatusCode: resp.StatusCode, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		fe := &FetchError{Class: ClassTransient, StatusCode: resp.StatusCode,
			RetryAfter:  parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
			Description: fmt.Sprintf("discovery document %s: %s", u, describeBody(resp, body))}
		if resp.StatusCode == http.StatusNotFound {
			fe.Class = ClassConfig
		}
		if resp.StatusCode == http.StatusTooManyRequests || fe.RetryAfter > 0 {
			fe.Class = ClassRateLimited
		}
		return nil, fe
	}
	var doc discoveryDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, &FetchError{Class: ClassBadResponse, StatusCode: resp.StatusCode,
			Description: fmt.Sprintf("discovery document %s is not JSON: %s", u, describeBody(resp, body))}
	}
	return &doc, nil
}
