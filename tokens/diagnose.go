package tokens

import (
	"context"
	"crypto/tls"
	"fmt"
)

// The functions in this file expose, for the diagnose command, the parts of
// a cluster's token requests that it checks one by one. They change nothing
// in how a Source works.

// TokenEndpointURL returns the URL that the source of c sends its token
// requests to. That is token_url, or else the token_endpoint of the
// issuer's discovery document, fetched with c's TLS settings and timeout.
// For jwt_bearer without token_url it is the token_uri of the Google
// service account key, and for managed_identity and metadata_server it is
// endpoint. It returns "" for the file and exec grants, which send no HTTP
// request. A discovery failure is a *FetchError. c must have passed
// SetDefaults and Validate.
func TokenEndpointURL(ctx context.Context, c *Config) (string, error) {
	switch c.Grant {
	case GrantFile, GrantExec:
		return "", nil
	case GrantManagedIdentity, GrantMetadataServer:
		return c.Endpoint, nil
	}

	client, err := newHTTPClient(c, nil)
	if err != nil {
		return "", err
	}
	switch c.Grant {
	case GrantJWTBearer:
		source, err := newJWTBearer(c, client)
		if err != nil {
			return "", err
		}
		return source.config.TokenURL, nil
	case GrantClientCredentials, GrantWorkloadIdentity, GrantRefreshToken:
		return newTokenEndpoint(c, client).url(ctx)
	}
	return "", fmt.Errorf("grant: unsupported grant %q", c.Grant)
}

// TLSClientConfig returns a new TLS configuration with the settings of c's
// token requests: TLS 1.2 or later, tls.ca_file in place of the system
// roots, the client certificate, and tls.insecure_skip_verify.
func TLSClientConfig(c *Config) (*tls.Config, error) {
	return newTLSConfig(c.TLS)
}

// VerifyAccessToken checks accessToken as a Source built with c.Verify
// does before it uses a token: the signature against the key set, the
// issuer, the expiry and the audience. It fetches the key set (and, with
// only verify.issuer, the discovery document) with c's TLS settings and
// timeout. It returns nil when c.Verify is not enabled.
func VerifyAccessToken(ctx context.Context, c *Config, accessToken string) error {
	if !c.Verify.Enabled() {
		return nil
	}
	client, err := newHTTPClient(c, nil)
	if err != nil {
		return err
	}
	return newVerifyingSource(nil, c.Verify, client).verify(ctx, accessToken)
}
