package oidcprovider

import (
	"context"
	"fmt"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Claims are the claims of a verified access token.
type Claims struct {
	Issuer          string
	Subject         string
	Audience        []string
	Scopes          []string // the space-separated scope claim
	ClientID        string   // client_id claim
	AuthorizedParty string   // azp claim, the same client ID
	JWTID           string
	IssuedAt        time.Time
	ExpiresAt       time.Time
}

// Verify checks the RS256 signature, the issuer and the expiry of an access
// token issued by this provider, using the library's access token verifier,
// and returns its claims.
func (p *Provider) Verify(accessToken string) (Claims, error) {
	claims, err := op.VerifyAccessToken[*oidc.AccessTokenClaims](context.Background(), accessToken, p.verifier)
	if err != nil {
		return Claims{}, fmt.Errorf("oidcprovider: verify access token: %w", err)
	}
	return Claims{
		Issuer:          claims.Issuer,
		Subject:         claims.Subject,
		Audience:        claims.Audience,
		Scopes:          claims.Scopes,
		ClientID:        claims.ClientID,
		AuthorizedParty: claims.AuthorizedParty,
		JWTID:           claims.JWTID,
		IssuedAt:        claims.IssuedAt.AsTime(),
		ExpiresAt:       claims.Expiration.AsTime(),
	}, nil
}
