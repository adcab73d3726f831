package oidcprovider

import (
	"context"
	"errors"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// metadataServer implements the library's op.MetadataServer: the OpenID
// discovery document and the RFC 8414 metadata, both built by the library's
// discovery code and then corrected to what this provider serves.
type metadataServer struct {
	op.UnimplementedMetadataServer
	legacy           *op.LegacyServer
	issuerPath       string
	advertisedIssuer string
}

// OpenIDConfiguration implements op.MetadataServer.
func (m *metadataServer) OpenIDConfiguration(
	ctx context.Context, r *op.Request[op.MetadataRequest],
) (*op.Response, error) {
	return m.document(ctx, r)
}

// AuthorizationServerMetadata implements op.MetadataServer.
func (m *metadataServer) AuthorizationServerMetadata(
	ctx context.Context, r *op.Request[op.MetadataRequest],
) (*op.Response, error) {
	return m.document(ctx, r)
}

func (m *metadataServer) document(
	ctx context.Context, r *op.Request[op.MetadataRequest],
) (*op.Response, error) {
	if r.Data.IssuerPath != m.issuerPath {
		notFound := oidc.ErrInvalidRequest().WithDescription("no issuer with path %q is served here", r.Data.IssuerPath)
		return nil, op.NewStatusError(notFound, http.StatusNotFound)
	}
	response, err := m.legacy.Discovery(ctx, &op.Request[struct{}]{Data: &struct{}{}})
	if err != nil {
		return nil, err
	}
	config, ok := response.Data.(*oidc.DiscoveryConfiguration)
	if !ok {
		return nil, errors.New("oidcprovider: the library's discovery response is not an *oidc.DiscoveryConfiguration")
	}

	// The library lists the grants and methods of its own handlers, so these
	// lines set the ones that the replaced methods serve.
	config.GrantTypesSupported = []oidc.GrantType{
		oidc.GrantTypeClientCredentials, oidc.GrantTypeRefreshToken, oidc.GrantTypeBearer,
	}
	config.TokenEndpointAuthMethodsSupported = append(config.TokenEndpointAuthMethodsSupported,
		oidc.AuthMethod(AuthMethodTLSClient))
	config.TokenEndpointAuthSigningAlgValuesSupported = []string{"RS256", "PS256", "ES256"}
	if m.advertisedIssuer != "" {
		config.Issuer = m.advertisedIssuer
	}
	return op.NewResponse(config), nil
}
