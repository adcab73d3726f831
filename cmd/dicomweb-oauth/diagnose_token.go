package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// clockTolerance is the largest difference between this host's clock and
// the provider's (from iat, nbf or a Date header) that the clock check
// passes. A Date header has whole seconds and arrives after it was written,
// so an exact comparison would fail on clocks that agree.
const clockTolerance = 5 * time.Second

const refreshTokenHint = "A token request can make the provider rotate the refresh token. " +
	"The running service would then keep using the old one, which the provider may reject. " +
	"To check this cluster, stop the service, run diagnose with --use-refresh-token as the " +
	"service's user, and start the service again, which then reads the new refresh token " +
	"from refresh_token_file."

// checkToken requests a token with the cluster's token source. The verify
// settings are left out of that source and checked by checkVerify, so that
// the claims of a token that fails them can still be shown.
func (d *diagnosis) checkToken(ctx context.Context) {
	if d.config.Grant == tokens.GrantRefreshToken && !d.opts.useRefreshToken {
		d.report.skipWithHints(check{name: "token", summary: "not run without --use-refresh-token",
			hints: []string{refreshTokenHint}})
		return
	}
	c := d.config
	c.Verify = tokens.VerifyConfig{}
	source, err := tokens.NewSource(&c)
	if err != nil {
		d.report.fail(check{name: "token", summary: "the token source cannot be built",
			details: []string{"error: " + err.Error()}, hints: fetchHints(err, &c)})
		return
	}

	// The discovery request and the token request are each bounded by
	// token.timeout.
	ctx, cancel := context.WithTimeout(ctx, 2*c.Timeout)
	defer cancel()
	start := time.Now()
	token, err := source.Fetch(ctx)
	received := time.Now()
	if err != nil {
		d.report.fail(fetchErrorCheck("token", err, &c))
		d.checkServerDate(err, received)
		return
	}

	d.token = token
	d.report.ok(check{name: "token", summary: "acquired in " + elapsed(start).String(), details: []string{
		"fingerprint: " + token.Fingerprint(),
		"expires: " + formatTime(token.Expiry, token.Received),
	}})
	if d.opts.showToken {
		fmt.Fprintf(d.report.w, "%saccess token (a secret until it expires; do not share it):\n%s\n",
			detailIndent, token.AccessToken)
	}
}

// fetchErrorCheck describes a failed token or discovery request.
func fetchErrorCheck(name string, err error, c *tokens.Config) check {
	result := check{name: name, summary: "request failed", hints: fetchHints(err, c)}
	var fe *tokens.FetchError
	if !errors.As(err, &fe) {
		result.details = []string{"error: " + err.Error()}
		return result
	}

	var parts []string
	if fe.StatusCode != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", fe.StatusCode))
	}
	if fe.Code != "" {
		parts = append(parts, fe.Code)
	}
	if len(parts) > 0 {
		result.summary = "request failed: " + strings.Join(parts, ", ")
	}
	result.details = fetchErrorDetails(fe)
	return result
}

func fetchErrorDetails(fe *tokens.FetchError) []string {
	details := []string{"error class: " + string(fe.Class)}
	if fe.StatusCode != 0 {
		details = append(details,
			fmt.Sprintf("HTTP status: %d %s", fe.StatusCode, http.StatusText(fe.StatusCode)))
	}
	if fe.Code != "" {
		details = append(details, "OAuth2 error: "+fe.Code)
	}
	if len(fe.ProviderCodes) > 0 {
		details = append(details, "provider codes: "+strings.Join(fe.ProviderCodes, ", "))
	}
	if fe.Description != "" {
		details = append(details, "description: "+fe.Description)
	}
	if fe.Err != nil && fe.Code == "" {
		details = append(details, "error: "+fe.Err.Error())
	}
	return details
}

// checkServerDate compares this host's clock with the Date header of a
// failed token response. It prints nothing when no response arrived.
func (d *diagnosis) checkServerDate(err error, received time.Time) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return
	}
	date, parseErr := http.ParseTime(re.Response.Header.Get("Date"))
	if parseErr != nil {
		d.report.skip("clock", "the token response has no Date header to compare this host's clock with")
		return
	}

	details := []string{
		"token endpoint's Date header: " + date.UTC().Format(time.RFC1123),
		"this host's clock: " + received.UTC().Format(time.RFC1123),
	}
	// The Date header has whole seconds, so the local clock is compared
	// at whole seconds too.
	offset := date.Sub(received.Truncate(time.Second))
	if offset.Abs() <= clockTolerance {
		d.report.ok(check{name: "clock",
			summary: "this host's clock agrees with the token endpoint's Date header", details: details})
		return
	}
	d.report.fail(check{name: "clock", summary: "this host's clock is " + describeOffset(offset) +
		" the token endpoint's", details: details, hints: []string{clockHint}})
}

// describeOffset writes how far this host's clock is from a server's
// clock that is offset ahead of it.
func describeOffset(offset time.Duration) string {
	if offset > 0 {
		return offset.Round(time.Second).String() + " behind"
	}
	return (-offset).Round(time.Second).String() + " ahead of"
}

// checkClaims shows the claims of a JWT access token, then compares its
// iat and nbf with this host's clock.
func (d *diagnosis) checkClaims() {
	claims, err := tokens.DecodeClaims(d.token.AccessToken)
	if err != nil {
		d.report.skip("claims", "the token is not a JWT but an opaque token, so it has no claims to show")
		return
	}
	d.claims = claims
	d.report.ok(check{name: "claims", summary: "decoded from the JWT, without checking its signature",
		details: claimDetails(claims, d.token.Received)})
	d.checkClock()
}

func claimDetails(c *tokens.Claims, now time.Time) []string {
	details := []string{
		"issuer (iss): " + orNone(c.Issuer),
		"audience (aud): " + listOrNone(c.Audience),
		"scopes: " + listOrNone(c.Scopes),
		"roles: " + listOrNone(c.Roles),
		"client: " + orNone(c.ClientID),
		"subject (sub): " + orNone(c.Subject),
	}
	if c.TenantID != "" {
		details = append(details, "tenant (tid): "+c.TenantID)
	}
	for _, claim := range []struct {
		label string
		t     *time.Time
	}{{"issued at (iat)", c.IssuedAt}, {"not before (nbf)", c.NotBefore}, {"expires (exp)", c.Expiry}} {
		if claim.t != nil {
			details = append(details, claim.label+": "+formatTime(*claim.t, now))
		}
	}
	if c.Expiry != nil && c.IssuedAt != nil {
		details = append(details, "lifetime: "+c.Expiry.Sub(*c.IssuedAt).String())
	}
	return details
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func listOrNone(values []string) string {
	return orNone(strings.Join(values, ", "))
}

// checkClock fails when the token's iat or nbf is later than this host's
// clock at receipt: then the provider's clock is ahead of this host's. A
// host clock that is ahead does not show here, because providers may set
// iat in the past on purpose.
func (d *diagnosis) checkClock() {
	c := d.claims
	received := d.token.Received
	if c.IssuedAt == nil && c.NotBefore == nil {
		d.report.skip("clock", "the token has no iat or nbf claim to compare this host's clock with")
		return
	}

	claim, ahead := "iat", time.Duration(0)
	if c.IssuedAt != nil {
		ahead = c.IssuedAt.Sub(received)
	}
	if c.NotBefore != nil && c.NotBefore.Sub(received) > ahead {
		claim, ahead = "nbf", c.NotBefore.Sub(received)
	}
	if ahead <= clockTolerance {
		d.report.ok(check{name: "clock", summary: "iat and nbf are not later than this host's clock"})
		return
	}
	ahead = ahead.Round(time.Second)
	d.report.fail(check{name: "clock",
		summary: fmt.Sprintf("the token's %s is %s later than this host's clock", claim, ahead),
		details: []string{"this host's clock at receipt: " + received.UTC().Format(time.RFC1123)},
		hints: []string{clockHint + fmt.Sprintf(" This host's clock is behind the provider's by at least %s.",
			ahead)}})
}
