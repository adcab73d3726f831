package oidcprovider

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// server is the library's op.LegacyServer with the token endpoint methods
// replaced; see the package documentation for why.
type server struct {
	*op.LegacyServer
	openID          *op.Provider
	store           *storage
	issuer          string
	tokenURL        string
	defaultAudience string
}

// invalidClient returns an invalid_client error with status 401, which
// RFC 6749 section 5.2 allows for every failed client authentication and
// requires for Basic. The library would return 400.
func invalidClient(format string, args ...any) error {
	return op.NewStatusError(oidc.ErrInvalidClient().WithDescription(format, args...), http.StatusUnauthorized)
}

func invalidGrant(format string, args ...any) error {
	return oidc.ErrInvalidGrant().WithDescription(format, args...)
}

// VerifyClient authenticates the client of a client_credentials or
// refresh_token request, by the method its registration names.
func (s *server) VerifyClient(
	ctx context.Context, r *op.Request[op.ClientCredentials],
) (op.Client, error) {
	record := recordFrom(ctx)
	credentials := r.Data
	if credentials.ClientAssertion != "" {
		return s.verifyClientAssertion(ctx, credentials, record)
	}

	registered, err := s.store.client(credentials.ClientID)
	if err != nil {
		return nil, invalidClient("%v", err)
	}
	switch registered.kind {
	case kindSecret:
		return s.verifySecret(ctx, registered, credentials.ClientSecret, record)
	case kindCertificate:
		return verifyCertificate(registered, record)
	case kindPublic:
		return verifyPublic(registered, credentials.ClientSecret, record)
	case kindServiceAccount:
		return nil, invalidClient("%q is a service account; it uses the %s grant", registered.id, GrantTypeJWTBearer)
	default:
		return nil, invalidClient("client %q must authenticate with a client_assertion (%s)",
			registered.id, registered.authMethod())
	}
}

func (s *server) verifySecret(
	ctx context.Context, registered *client, secret string, record *requestRecord,
) (op.Client, error) {
	method := AuthMethodPost
	if record.basicAuth() {
		method = AuthMethodBasic
	}
	record.setClient(registered.id, method)

	if !slices.Contains(registered.methods, method) {
		return nil, invalidClient("client %q is not registered for %s; it uses %s",
			registered.id, method, registered.authMethod())
	}
	if secret == "" {
		return nil, invalidClient("client %q sent no client_secret", registered.id)
	}
	if err := s.store.AuthorizeClientIDSecret(ctx, registered.id, secret); err != nil {
		return nil, invalidClient("%v", err)
	}
	return registered, nil
}

func verifyCertificate(registered *client, record *requestRecord) (op.Client, error) {
	record.setClient(registered.id, AuthMethodTLSClient)

	presented := record.peerCertificate()
	if presented == nil {
		return nil, invalidClient("client %q uses %s but presented no TLS client certificate",
			registered.id, AuthMethodTLSClient)
	}
	if !bytes.Equal(presented.Raw, registered.certificate.Raw) {
		return nil, invalidClient(
			"certificate mismatch: the TLS client certificate (subject %q) is not the one registered for client %q",
			presented.Subject.String(), registered.id)
	}
	return registered, nil
}

func verifyPublic(registered *client, secret string, record *requestRecord) (op.Client, error) {
	record.setClient(registered.id, AuthMethodNone)
	if secret != "" {
		return nil, invalidClient("client %q is a public client and has no client_secret", registered.id)
	}
	return registered, nil
}

// verifyClientAssertion authenticates a client by private_key_jwt, or by a
// federated credential when a federated credential trusts the assertion's
// issuer.
func (s *server) verifyClientAssertion(
	ctx context.Context, credentials *op.ClientCredentials, record *requestRecord,
) (op.Client, error) {
	claims, err := peekClaims(credentials.ClientAssertion)
	if err != nil {
		return nil, invalidClient("client_assertion is invalid: %v", err)
	}
	if s.store.isFederatedIssuer(claims.Issuer) {
		return s.verifyFederated(ctx, credentials, claims, record)
	}
	return s.verifyPrivateKeyJWT(ctx, credentials, claims, record)
}

func (s *server) verifyPrivateKeyJWT(
	ctx context.Context,
	credentials *op.ClientCredentials,
	claims *oidc.JWTTokenRequest,
	record *requestRecord,
) (op.Client, error) {
	id := claims.Issuer
	record.setClient(id, AuthMethodPrivateKeyJWT)
	if credentials.ClientID != "" && credentials.ClientID != id {
		return nil, invalidClient("client_id %q does not match the client_assertion iss %q", credentials.ClientID, id)
	}
	registered, err := s.store.client(id)
	if err != nil {
		return nil, invalidClient("client_assertion iss: %v", err)
	}
	if registered.kind != kindKey {
		return nil, invalidClient("client %q is not registered for %s; it uses %s",
			id, AuthMethodPrivateKeyJWT, registered.authMethod())
	}

	audience, err := pickAudience(claims.Audience, s.tokenURL, s.issuer)
	if err != nil {
		return nil, invalidClient("client_assertion is invalid: %v", err)
	}
	verifier := op.NewJWTProfileVerifier(s.store, audience, maxAssertionAge, 0)
	verified, err := op.VerifyJWTAssertion(ctx, credentials.ClientAssertion, verifier)
	if err != nil {
		return nil, invalidClient("client_assertion is invalid: %v", err)
	}
	if err := s.checkAssertionExtras(credentials.ClientAssertion, verified, registered); err != nil {
		return nil, invalidClient("client_assertion is invalid: %v", err)
	}
	return registered, nil
}

// checkAssertionExtras runs the checks the library leaves out: nbf, the
// certificate thumbprint when one is registered, and jti replay.
func (s *server) checkAssertionExtras(
	assertion string, verified *oidc.JWTTokenRequest, registered *client,
) error {
	if err := checkNotBefore(verified); err != nil {
		return err
	}
	if registered.certificate != nil {
		if err := checkThumbprint(assertion, registered.certificate); err != nil {
			return err
		}
	}
	return s.store.useJTI(verified.Issuer, verified.JWTID, verified.GetExpiration())
}

func (s *server) verifyFederated(
	ctx context.Context,
	credentials *op.ClientCredentials,
	claims *oidc.JWTTokenRequest,
	record *requestRecord,
) (op.Client, error) {
	record.setClient(credentials.ClientID, AuthMethodFederated)
	credential, err := s.store.federatedCredential(claims.Issuer, claims.Subject, credentials.ClientID)
	if err != nil {
		return nil, invalidClient("federated client_assertion is invalid: %v", err)
	}
	record.setClient(credential.ClientID, AuthMethodFederated)

	if _, err := pickAudience(claims.Audience, credential.Audience); err != nil {
		return nil, invalidClient("federated client_assertion is invalid: %v", err)
	}
	verifier := op.NewJWTProfileVerifierKeySet(federatedKeySet{credential}, credential.Audience, 0, 0,
		op.SubjectCheck(subjectIs(credential.Subject)))
	verified, err := op.VerifyJWTAssertion(ctx, credentials.ClientAssertion, verifier)
	if err != nil {
		return nil, invalidClient("federated client_assertion is invalid: %v", err)
	}
	if err := checkNotBefore(verified); err != nil {
		return nil, invalidClient("federated client_assertion is invalid: %v", err)
	}
	registered, err := s.store.client(credential.ClientID)
	if err != nil {
		return nil, invalidClient("federated credential: %v", err)
	}
	return registered, nil
}

// ClientCredentialsExchange issues a token for the client_credentials grant.
// It replaces the library's method to honour the audience and resource
// parameters.
func (s *server) ClientCredentialsExchange(
	ctx context.Context, r *op.ClientRequest[oidc.ClientCredentialsRequest],
) (*op.Response, error) {
	id := r.Client.GetID()
	if err := s.store.checkScopes(r.Data.Scope); err != nil {
		return nil, err
	}
	request := &tokenRequest{
		subject:  id,
		clientID: id,
		scopes:   r.Data.Scope,
		audience: s.audience(r.Form, r.Data.Scope),
	}
	return s.issue(ctx, request, r.Client)
}

// JWTProfile issues a token for the jwt-bearer grant (RFC 7523 section 2.1)
// in the form Google service accounts use. The assertion's iss is the
// account and its aud the token endpoint. The scope claim or parameter names
// the scopes, and an optional sub names the user to act for.
func (s *server) JWTProfile(
	ctx context.Context, r *op.Request[oidc.JWTProfileGrantRequest],
) (*op.Response, error) {
	record := recordFrom(ctx)
	assertion := r.Data.Assertion
	claims, err := peekClaims(assertion)
	if err != nil {
		return nil, invalidGrant("assertion is invalid: %v", err)
	}
	record.setClient(claims.Issuer, AuthMethodNone)

	account, err := s.verifyServiceAccountAssertion(ctx, assertion, claims)
	if err != nil {
		return nil, err
	}
	scopes := assertionScopes(account.claims, r.Data.Scope)
	if len(scopes) == 0 {
		return nil, oidc.ErrInvalidScope().WithDescription(
			"the assertion has no scope claim and the request no scope parameter")
	}
	if scopes, err = s.store.ValidateJWTProfileScopes(ctx, account.id, scopes); err != nil {
		return nil, err
	}

	request := &tokenRequest{
		subject:  cmp.Or(account.claims.Subject, account.id),
		clientID: account.id,
		scopes:   scopes,
		audience: s.audience(r.Form, scopes),
	}
	return s.issue(ctx, request, account.client)
}

// verifiedAccount is a service account and the claims of its verified
// assertion.
type verifiedAccount struct {
	*client
	claims *oidc.JWTTokenRequest
}

func (s *server) verifyServiceAccountAssertion(
	ctx context.Context, assertion string, claims *oidc.JWTTokenRequest,
) (verifiedAccount, error) {
	account, err := s.store.client(claims.Issuer)
	if err != nil || account.kind != kindServiceAccount {
		return verifiedAccount{}, invalidGrant("assertion iss %q is not a registered service account", claims.Issuer)
	}
	audience, err := pickAudience(claims.Audience, s.tokenURL, s.issuer)
	if err != nil {
		return verifiedAccount{}, invalidGrant("assertion is invalid: %v", err)
	}
	verifier := op.NewJWTProfileVerifier(s.store, audience, maxAssertionAge, 0, op.SubjectCheck(anySubject))
	verified, err := op.VerifyJWTAssertion(ctx, assertion, verifier)
	if err != nil {
		return verifiedAccount{}, invalidGrant("assertion is invalid: %v", err)
	}
	if err := s.checkAssertionExtras(assertion, verified, account); err != nil {
		return verifiedAccount{}, invalidGrant("assertion is invalid: %v", err)
	}
	return verifiedAccount{client: account, claims: verified}, nil
}

// assertionScopes returns the scope claim of the assertion, space
// separated, followed by the scopes of the request parameter.
func assertionScopes(claims *oidc.JWTTokenRequest, requested []string) []string {
	var scopes []string
	if claim, ok := claims.GetCustomClaim("scope").(string); ok {
		scopes = strings.Fields(claim)
	}
	for _, scope := range requested {
		if !slices.Contains(scopes, scope) {
			scopes = append(scopes, scope)
		}
	}
	return scopes
}

// RefreshToken issues a token for a refresh token registered with
// AddRefreshToken. It replaces the library's method to describe each
// failure and to issue no ID token.
func (s *server) RefreshToken(
	ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest],
) (*op.Response, error) {
	stored, err := s.store.TokenRequestByRefreshToken(ctx, r.Data.RefreshToken)
	if err != nil {
		return nil, invalidGrant("%v", err)
	}
	request, ok := stored.(*refreshRequest)
	if !ok {
		return nil, fmt.Errorf("oidcprovider: refresh token request has type %T", stored)
	}
	if request.clientID != r.Client.GetID() {
		return nil, invalidGrant("refresh token was issued to client %q, not to %q", request.clientID, r.Client.GetID())
	}
	if len(r.Data.Scopes) > 0 {
		if err := s.store.checkScopes(r.Data.Scopes); err != nil {
			return nil, err
		}
		request.SetCurrentScopes(r.Data.Scopes)
	}
	request.audience = s.audience(r.Form, request.scopes)

	accessToken, refreshToken, validity, err := op.CreateAccessToken(
		ctx, request, op.AccessTokenTypeJWT, s.openID, r.Client, r.Data.RefreshToken)
	if err != nil {
		return nil, err
	}
	return op.NewResponse(&oidc.AccessTokenResponse{
		AccessToken:  accessToken,
		RefreshToken: refreshToken,
		TokenType:    oidc.BearerToken,
		ExpiresIn:    expiresIn(validity),
		Scope:        request.scopes,
	}), nil
}

// issue mints an access token with the library and returns the response.
func (s *server) issue(
	ctx context.Context, request *tokenRequest, issuedTo op.AccessTokenClient,
) (*op.Response, error) {
	accessToken, _, validity, err := op.CreateAccessToken(
		ctx, request, op.AccessTokenTypeJWT, s.openID, issuedTo, "")
	if err != nil {
		return nil, err
	}
	return op.NewResponse(&oidc.AccessTokenResponse{
		AccessToken: accessToken,
		TokenType:   oidc.BearerToken,
		ExpiresIn:   expiresIn(validity),
		Scope:       request.scopes,
	}), nil
}

// expiresIn returns the expires_in value for a token valid for validity:
// whole seconds, rounded, and at least 1. The library truncates instead, so
// a one-second token would get expires_in 0. Its JSON encoding leaves that
// out, and golang.org/x/oauth2 (v0.38.0) then sets no expiry on the token.
func expiresIn(validity time.Duration) uint64 {
	return uint64(max(validity.Round(time.Second), time.Second) / time.Second)
}

// audience returns the aud claim for a token request: the audience
// parameters, then the resource parameters (RFC 8707), then the resource of
// each Entra ID style "<resource>/.default" scope. With none of these it
// returns Options.DefaultAudience, or nil, which makes the library use the
// client ID.
func (s *server) audience(form url.Values, scopes []string) []string {
	var audience []string
	add := func(value string) {
		if value != "" && !slices.Contains(audience, value) {
			audience = append(audience, value)
		}
	}
	for _, value := range form["audience"] {
		add(value)
	}
	for _, value := range form["resource"] {
		add(value)
	}
	for _, scope := range scopes {
		if resource, ok := strings.CutSuffix(scope, "/.default"); ok {
			add(resource)
		}
	}
	if len(audience) == 0 && s.defaultAudience != "" {
		audience = []string{s.defaultAudience}
	}
	return audience
}
