// Package oidcprovider runs an OpenID provider for tests. It serves discovery,
// JWKS and a token endpoint on https://127.0.0.1 with a port picked at run
// time, under a test CA made at start. Its access tokens are RS256 JWTs signed
// with a key made at start. Tests register clients, service accounts,
// federated credentials and refresh tokens, then inspect the token requests
// the provider received.
//
// # What the library does
//
// The provider is built on the OpenID provider framework of
// github.com/zitadel/oidc/v3 (package op). The package implements the
// library's op.Storage, op.ClientCredentialsStorage and op.Client
// interfaces, and the library does the rest of the following:
//   - routing of the token and JWKS endpoints, parsing of the token request
//     form and of Basic credentials, and the RFC 6749 section 2.3 rule that a
//     client uses one authentication method per request;
//   - error responses in the RFC 6749 section 5.2 format;
//   - the OpenID discovery document and RFC 8414 metadata, including the
//     well-known URLs of an issuer with a path;
//   - minting and signing the JWT access tokens, and verifying them in
//     Provider.Verify;
//   - the RFC 7523 assertion checks of op.VerifyJWTAssertion: aud, exp,
//     iat (required), sub, and an RS256, PS256 or ES256 signature. The
//     package sets the maximum iat age to one hour for private_key_jwt and
//     service accounts, and sets none for federated assertions.
//
// # What is added by hand
//
// The library's op.LegacyServer (v3.52.0) authenticates client_credentials
// requests by secret only, leaves many failures without a description and
// returns 400 for a failed client authentication. The package therefore
// replaces its VerifyClient, ClientCredentialsExchange, JWTProfile and
// RefreshToken methods. They still call the library for verification and
// token minting, and add:
//   - an error_description that names the cause, and status 401 for
//     invalid_client;
//   - private_key_jwt for the client_credentials grant, with aud accepted as
//     the token endpoint or the issuer, an nbf check, a replay check of jti
//     until the assertion expires, and an optional x5t#S256 header check;
//   - tls_client_auth (RFC 8705): the listener requests a TLS client
//     certificate and the token endpoint compares it with the registered one;
//   - federated credentials: a client assertion issued by another issuer,
//     such as a Kubernetes service account token exchanged at Entra ID;
//   - the Google form of the jwt-bearer grant, with the scope claim and
//     invalid_grant instead of the library's invalid_request;
//   - refresh tokens registered by the test, with optional rotation;
//   - the audience and resource request parameters and the Entra ID
//     "<resource>/.default" scope, which set the aud claim;
//   - unsupported_grant_type for every grant but client_credentials,
//     refresh_token and jwt-bearer, before client authentication (the
//     library would authenticate first and return unauthorized_client);
//   - request counting, recording and canned failures (FailNext).
//
// # What is not modeled
//
// The provider has no authorization endpoint, login, consent or ID tokens,
// and it rejects the authorization_code, token exchange and device code
// grants with unsupported_grant_type. It has no introspection or revocation
// endpoint, binds no token to a certificate (no cnf claim), and checks no
// certificate chain: tls_client_auth compares the presented certificate with
// the registered one byte for byte. The thumbprint check reads x5t#S256
// only, not the SHA-1 x5t header that earlier versions of Entra ID's
// "certificate credentials" page specify. It does not
// fetch the discovery document or JWKS of a federated issuer, because the
// test registers that issuer's key. It applies no delegation policy to the
// jwt-bearer grant and no per-client scope policy, and it has no rate
// limits.
//
// The library logs each registered route and each error response through
// the default log/slog logger, which go test shows for failed packages and
// with -v.
package oidcprovider
