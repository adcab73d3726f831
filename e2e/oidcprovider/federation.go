package oidcprovider

import (
	"context"
	"crypto"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// DefaultFederationAudience is the audience Entra ID expects in federated
// client assertions, used when FederatedCredential.Audience is empty.
const DefaultFederationAudience = "api://AzureADTokenExchange"

// FederatedCredential trusts tokens of another issuer as client assertions
// of one client, as an Entra ID federated identity credential trusts the
// service account tokens of a Kubernetes cluster. The client sends such a
// token as client_assertion with client_assertion_type
// ClientAssertionTypeJWTBearer, and usually its client_id too.
type FederatedCredential struct {
	// Issuer is the iss claim of the external tokens.
	Issuer string

	// Key verifies the signature of the external tokens: an *rsa.PublicKey
	// or *ecdsa.PublicKey. The provider fetches no JWKS from Issuer.
	Key crypto.PublicKey

	// KeyID, when set, is the kid the tokens must carry in their header.
	KeyID string

	// Subject is the sub claim the tokens must carry, such as
	// "system:serviceaccount:NAMESPACE:NAME".
	Subject string

	// Audience is a value the aud claim must contain. Empty means
	// DefaultFederationAudience.
	Audience string

	// ClientID is the client the tokens authenticate. It is registered if
	// it is not yet a client.
	ClientID string
}

// TrustFederation adds a federated credential. Federated assertions are
// checked for signature, iss, sub, aud, exp, iat and nbf, but not for jti
// replay, because a workload presents the same service account token until
// it is renewed.
func (p *Provider) TrustFederation(credential FederatedCredential) {
	p.tb.Helper()
	if err := checkPublicKey(credential.Key); err != nil {
		p.tb.Fatalf("oidcprovider: TrustFederation(%q): %v", credential.Issuer, err)
	}
	if credential.Issuer == "" || credential.Subject == "" || credential.ClientID == "" {
		p.tb.Fatalf("oidcprovider: TrustFederation: Issuer, Subject and ClientID are required, got %q, %q and %q",
			credential.Issuer, credential.Subject, credential.ClientID)
	}
	if credential.Audience == "" {
		credential.Audience = DefaultFederationAudience
	}

	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.federations = append(p.store.federations, credential)
	if _, ok := p.store.clients[credential.ClientID]; !ok {
		p.store.clients[credential.ClientID] = &client{id: credential.ClientID, kind: kindFederated}
	}
}

// isFederatedIssuer reports whether any federated credential trusts issuer.
func (s *storage) isFederatedIssuer(issuer string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()

	for _, credential := range s.federations {
		if credential.Issuer == issuer {
			return true
		}
	}
	return false
}

// federatedCredential finds the credential of issuer that accepts subject,
// among those of clientID when it is set.
func (s *storage) federatedCredential(
	issuer, subject, clientID string,
) (FederatedCredential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	var forClient, matches []FederatedCredential
	for _, credential := range s.federations {
		if credential.Issuer == issuer && (clientID == "" || credential.ClientID == clientID) {
			forClient = append(forClient, credential)
		}
	}
	for _, credential := range forClient {
		if credential.Subject == subject {
			matches = append(matches, credential)
		}
	}

	switch {
	case len(forClient) == 0:
		return FederatedCredential{}, fmt.Errorf(
			"no federated credential of client %q trusts issuer %q", clientID, issuer)
	case len(matches) == 0:
		return FederatedCredential{}, fmt.Errorf(
			"no federated credential for issuer %q accepts subject %q", issuer, subject)
	case len(matches) > 1 && clientID == "":
		return FederatedCredential{}, fmt.Errorf(
			"subject %q of issuer %q is trusted by several clients, so send client_id", subject, issuer)
	}
	return matches[0], nil
}

// federatedKeySet implements oidc.KeySet with the key of one credential.
type federatedKeySet struct {
	credential FederatedCredential
}

func (k federatedKeySet) VerifySignature(
	_ context.Context, jws *jose.JSONWebSignature,
) ([]byte, error) {
	kid, _ := oidc.GetKeyIDAndAlg(jws)
	if k.credential.KeyID != "" && kid != k.credential.KeyID {
		return nil, fmt.Errorf("kid %q is not the registered kid %q of issuer %q",
			kid, k.credential.KeyID, k.credential.Issuer)
	}
	return jws.Verify(k.credential.Key)
}
