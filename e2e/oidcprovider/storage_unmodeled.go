package oidcprovider

import (
	"context"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The op.Storage methods in this file belong to the authorization code flow,
// ID tokens, userinfo, introspection and revocation, none of which the
// provider serves. They fail with errNotModeled or do nothing.

func (s *storage) CreateAuthRequest(
	context.Context, *oidc.AuthRequest, string,
) (op.AuthRequest, error) {
	return nil, errNotModeled
}

func (s *storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotModeled
}

func (s *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotModeled
}

func (s *storage) SaveAuthCode(context.Context, string, string) error { return errNotModeled }

func (s *storage) DeleteAuthRequest(context.Context, string) error { return errNotModeled }

func (s *storage) TerminateSession(context.Context, string, string) error { return errNotModeled }

func (s *storage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrInvalidRequest().WithParent(errNotModeled).WithDescription("revocation is not modeled")
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SetUserinfoFromScopes(
	context.Context, *oidc.UserInfo, string, string, []string,
) error {
	return nil
}

func (s *storage) SetUserinfoFromToken(
	context.Context, *oidc.UserInfo, string, string, string,
) error {
	return errNotModeled
}

func (s *storage) SetIntrospectionFromToken(
	context.Context, *oidc.IntrospectionResponse, string, string, string,
) error {
	return errNotModeled
}

func (s *storage) GetPrivateClaimsFromScopes(
	context.Context, string, string, []string,
) (map[string]any, error) {
	return nil, nil
}
