package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// verifyingSource checks every token of its inner source before it is used:
// the signature against the key set, the issuer, the expiry and the
// audience. A token that fails is not used; the failure is a configuration
// error, because a wrong scope or audience does not fix itself.
type verifyingSource struct {
	inner  Source
	config VerifyConfig
	client *http.Client
	now    func() time.Time

	mu   sync.Mutex // guards keys
	keys *oidc.RemoteKeySet
}

func newVerifyingSource(inner Source, c VerifyConfig, client *http.Client) *verifyingSource {
	return &verifyingSource{inner: inner, config: c, client: client, now: time.Now}
}

func (s *verifyingSource) Fetch(ctx context.Context) (*Token, error) {
	tok, err := s.inner.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.verify(ctx, tok.AccessToken); err != nil {
		// A key set that cannot be fetched is an outage, retried as such;
		// a token that fails the checks is a configuration error.
		class := ClassConfig
		var urlErr *url.Error
		var fe *FetchError
		switch {
		case errors.As(err, &fe):
			class = fe.Class
		case errors.As(err, &urlErr):
			class = ClassTransient
		}
		return nil, &FetchError{Class: class, Description: "the acquired token failed verification: " +
			err.Error() + "; it was not used"}
	}
	return tok, nil
}

// verifiedClaims are the claims the verification reads.
type verifiedClaims struct {
	Issuer   string          `json:"iss"`
	Audience json.RawMessage `json:"aud"`
	Expiry   json.Number     `json:"exp"`
}

func (s *verifyingSource) verify(ctx context.Context, accessToken string) error {
	keys, err := s.keySet(ctx)
	if err != nil {
		return err
	}
	payload, err := keys.VerifySignature(ctx, accessToken)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}

	var claims verifiedClaims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("claims are not JSON: %w", err)
	}
	if s.config.Issuer != "" && claims.Issuer != s.config.Issuer {
		return fmt.Errorf("issuer is %q, expected %q", claims.Issuer, s.config.Issuer)
	}
	exp, err := claims.Expiry.Int64()
	if err != nil || !time.Unix(exp, 0).After(s.now()) {
		return fmt.Errorf("the token has no exp claim or has expired")
	}
	audiences := audienceList(claims.Audience)
	if !slices.Contains(audiences, s.config.Audience) {
		return fmt.Errorf("audience is %q, expected it to contain %q; check the scope, resource or audience "+
			"that the token request names, or the provider's audience mapping", audiences, s.config.Audience)
	}
	return nil
}

// keySet returns the remote key set, finding its URL through discovery when
// only the issuer is configured.
func (s *verifyingSource) keySet(ctx context.Context) (*oidc.RemoteKeySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys != nil {
		return s.keys, nil
	}

	jwksURL := s.config.JWKSURL
	if jwksURL == "" {
		doc, err := discover(ctx, s.client, s.config.Issuer)
		if err != nil {
			return nil, fmt.Errorf("discovering the key set of %s: %w", s.config.Issuer, err)
		}
		if doc.JWKSURI == "" {
			return nil, fmt.Errorf("the discovery document of %s has no jwks_uri", s.config.Issuer)
		}
		jwksURL = doc.JWKSURI
	}
	// The key set keeps this context to fetch keys later, so it must not
	// be a request's context.
	keysClient := *s.client
	base := s.client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	keysClient.Transport = outageTransport{base: base}
	keysCtx := oidc.ClientContext(context.Background(), &keysClient)
	s.keys = oidc.NewRemoteKeySet(keysCtx, jwksURL)
	return s.keys, nil
}

// audienceList reads aud as a string or a list of strings.
func audienceList(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

// outageTransport turns a 5xx or 429 answer of the key set into a transport
// error, which the HTTP client returns as a *url.Error, so that Fetch
// classes a key set outage as transient rather than as a token that failed
// verification.
type outageTransport struct {
	base http.RoundTripper
}

func (t outageTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		resp.Body.Close()
		return nil, fmt.Errorf("the key set responded with HTTP %d", resp.StatusCode)
	}
	return resp, nil
}
