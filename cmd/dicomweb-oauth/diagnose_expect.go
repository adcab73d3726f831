package main

import (
	"context"
	"slices"
	"strings"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// checkExpectations compares the token's audience and scopes with what
// the configuration implies, then runs the verify settings on it.
func (d *diagnosis) checkExpectations(ctx context.Context) {
	if d.claims == nil {
		d.report.skip("audience", "the token has no claims to compare")
		d.report.skip("scopes", "the token has no claims to compare")
	} else {
		d.checkAudience()
		d.checkScopes()
	}
	d.checkVerify(ctx)
}

// expectedAudience returns the audience the token should carry and the
// setting it comes from: verify.audience, resource, audience, or the
// resource of an Entra ID "<resource>/.default" scope.
func expectedAudience(c *tokens.Config) (audience, source string) {
	switch {
	case c.Verify.Audience != "":
		return c.Verify.Audience, "verify.audience"
	case c.Resource != "":
		return c.Resource, "token.resource"
	case c.Audience != "":
		return c.Audience, "token.audience"
	}
	for _, scope := range c.Scopes {
		if resource, ok := strings.CutSuffix(scope, "/.default"); ok {
			return resource, "the scope " + scope
		}
	}
	return "", ""
}

// audienceMatches reports whether aud contains expected. verify.audience
// must match exactly, as serve checks it. An audience implied by the
// request may differ by a trailing slash, and Entra ID v2.0 tokens for a
// scope "api://<application ID>/.default" can carry the application ID
// alone.
func audienceMatches(aud []string, expected string, exact bool) bool {
	if slices.Contains(aud, expected) {
		return true
	}
	if exact {
		return false
	}
	want := strings.TrimSuffix(strings.TrimPrefix(expected, "api://"), "/")
	for _, a := range aud {
		if strings.TrimSuffix(strings.TrimPrefix(a, "api://"), "/") == want {
			return true
		}
	}
	return false
}

func (d *diagnosis) checkAudience() {
	expected, source := expectedAudience(&d.config)
	if expected == "" {
		d.report.skip("audience", "no verify.audience, resource, audience or /.default scope to compare with")
		return
	}
	aud := d.claims.Audience
	if audienceMatches(aud, expected, source == "verify.audience") {
		d.report.ok(check{name: "audience", summary: "aud contains " + expected + " (from " + source + ")"})
		return
	}

	details := []string{"token aud: " + listOrNone(aud), "expected: " + expected + " (from " + source + ")"}
	if source == "verify.audience" {
		details = append(details, "serve does not use a token without this audience")
	}
	d.report.fail(check{name: "audience", summary: "aud does not contain " + expected,
		details: details, hints: []string{audienceHint(aud, expected)}})
}

func audienceHint(aud []string, expected string) string {
	if len(aud) == 1 && aud[0] == "account" {
		return "Keycloak puts only \"account\" in aud when no audience mapper adds the DICOMweb " +
			"server. In Keycloak, create a client scope with an Audience mapper whose Included Client " +
			"Audience is " + expected + " and whose Add to access token is on. Add that scope to this " +
			"client as a Default client scope."
	}
	return "The token is for another audience than " + expected + ". Check the scopes, resource " +
		"or audience that the configuration requests, and the audience that the provider sets for " +
		"this client."
}

// checkScopes compares the token's scopes with token.scopes.
func (d *diagnosis) checkScopes() {
	var configured []string
	for _, scope := range d.config.Scopes {
		if !strings.HasSuffix(scope, "/.default") {
			configured = append(configured, scope)
		}
	}
	switch {
	case len(d.config.Scopes) == 0:
		d.report.skip("scopes", "token.scopes is not set")
		return
	case len(configured) == 0:
		d.report.skip("scopes",
			"a /.default scope names a resource, not scopes; Entra ID puts app roles in roles")
		return
	case len(d.claims.Scopes) == 0:
		d.report.skip("scopes", "the token has no scp or scope claim to compare token.scopes with")
		return
	}

	var missing []string
	for _, scope := range configured {
		if !slices.Contains(d.claims.Scopes, scope) {
			missing = append(missing, scope)
		}
	}
	if len(missing) == 0 {
		d.report.ok(check{name: "scopes", summary: "the token has every scope of token.scopes"})
		return
	}
	d.report.fail(check{name: "scopes", summary: "the token lacks " + strings.Join(missing, ", "),
		details: []string{
			"token scopes: " + listOrNone(d.claims.Scopes),
			"token.scopes: " + strings.Join(configured, ", "),
		},
		hints: []string{"The provider did not grant these scopes. Grant them to the client at the " +
			"provider, or remove them from token.scopes."}})
}

// checkVerify runs the checks that serve runs on each token when verify
// is set: signature, issuer, expiry and audience.
func (d *diagnosis) checkVerify(ctx context.Context) {
	if !d.config.Verify.Enabled() {
		d.report.skip("verify", "no verify settings, so serve uses tokens without checking them")
		return
	}
	// Discovery and the key set request are each bounded by token.timeout.
	ctx, cancel := context.WithTimeout(ctx, 2*d.config.Timeout)
	defer cancel()
	err := tokens.VerifyAccessToken(ctx, &d.config, d.token.AccessToken)
	if err == nil {
		d.report.ok(check{name: "verify",
			summary: "signature, issuer, expiry and audience pass the verify settings"})
		return
	}
	d.report.fail(check{name: "verify", summary: "serve would not use this token",
		details: []string{"error: " + err.Error()}, hints: d.verifyHints(err)})
}

func (d *diagnosis) verifyHints(err error) []string {
	message := err.Error()
	switch {
	case strings.Contains(message, "audience is"):
		return []string{"Fix the audience as the audience check above explains."}
	case strings.Contains(message, "issuer is"):
		return []string{"Set verify.issuer to the token's iss shown above, exactly, if that is the " +
			"issuer the DICOMweb server trusts."}
	case strings.Contains(message, "signature"):
		return []string{"The key set of verify.jwks_url (or of verify.issuer) did not sign this token. " +
			"Point it at the key set of the provider that issued the token."}
	}
	if hint := networkHint(err, d.config.Timeout); hint != "" {
		return []string{hint}
	}
	return fetchHints(err, &d.config)
}
