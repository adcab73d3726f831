package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// The hints below come from the error tables in docs/providers/*.md. Each
// states the cause and the fix, because the reader may have no access to
// the documentation.

const clockHint = "This host's clock and the identity provider's differ. Providers reject " +
	"assertions and servers reject tokens whose time is off. Synchronize this host's clock " +
	"with NTP (timedatectl status shows whether it is synchronized)."

// providerCodeHints are the hints for Entra ID's AADSTS codes.
var providerCodeHints = map[string]string{
	"AADSTS7000215": "The client secret is wrong: the secret's ID was probably sent instead of " +
		"its value. In the app registration, under Certificates & secrets, create a new secret, copy its Value " +
		"(not its Secret ID) into client_secret_file, and restart the service.",
	"AADSTS7000222": "The client secret has expired. Create a new secret in the app registration, " +
		"copy its Value into client_secret_file, and restart the service.",
	"AADSTS700016": "Entra ID has no application with this client_id in this tenant: client_id or " +
		"tenant_id is wrong. Compare both with the Overview page of the app registration.",
	"AADSTS90002": "The tenant in the token URL does not exist. Check tenant_id, and authority_host " +
		"for a sovereign cloud.",
	"AADSTS700024": "The client assertion is outside its valid time range. With a certificate " +
		"(private_key_jwt), this host's clock is probably off: synchronize it with NTP. With workload " +
		"identity, the platform has stopped rotating the assertion file.",
	"AADSTS700027": "The signature of the client assertion did not validate. Upload the certificate " +
		"of private_key.file to the app registration.",
	"AADSTS70011": "The scope is invalid. For the client credentials grant it must be a resource " +
		"followed by /.default, such as https://dicom.healthcareapis.azure.com/.default.",
}

// messageHints are hints for failures that only the error message
// distinguishes. code, when set, must equal the OAuth2 error code.
var messageHints = []struct {
	code, text, hint string
}{
	{"invalid_scope", "Custom scopes are not allowed", "Okta's org authorization server accepts " +
		"no custom scopes. Set authorization_server: default, or the ID of your custom authorization server."},
	{"", "issued in the future", clockHint},            // Keycloak, signed client assertions
	{"", "too far in the past", clockHint},             // Keycloak, signed client assertions
	{"", "in a reasonable timeframe", clockHint},       // Google, jwt_bearer
	{"", "check the clocks of this host", clockHint},   // tokens: the token expired on arrival
	{"", "not within its valid time range", clockHint}, // Entra ID, if the body has no error_codes
	{"", "contains no PEM certificate", "Convert the CA file to PEM, for example with " +
		"openssl x509 -inform der -in ca.der -out ca.pem."},
}

// fetchHints returns the hints for a failed token or discovery request,
// from the most specific source to the least: an Entra ID code, the
// message, the grant, the OAuth2 error code or HTTP status, and the
// network error.
func fetchHints(err error, c *tokens.Config) []string {
	var fe *tokens.FetchError
	if !errors.As(err, &fe) {
		return []string{"Fix the setting or file that the error names. check-config reports the same error."}
	}
	for _, code := range fe.ProviderCodes {
		if hint, ok := providerCodeHints[code]; ok {
			return append([]string{hint}, secretFormHints(code, c)...)
		}
	}
	message := err.Error()
	for _, h := range messageHints {
		if (h.code == "" || h.code == fe.Code) && strings.Contains(message, h.text) {
			return []string{h.hint}
		}
	}
	for _, hint := range []string{grantHint(c.Grant, message), codeHint(fe), networkHint(err, c.Timeout)} {
		if hint != "" {
			return []string{hint}
		}
	}
	if fe.Class == tokens.ClassConfig {
		return []string{"A retry does not fix this. Correct the setting that the description names."}
	}
	return []string{"This may pass later. If it keeps failing, check the network path to the provider."}
}

// grantHint returns the hint for a failure of the exec or file grant, or "".
func grantHint(grant, message string) string {
	switch {
	case grant == tokens.GrantExec && strings.Contains(message, "printed"):
		return "Make the command print a JSON token alone on standard output, such as " +
			`{"access_token": "...", "expires_in": 3600}.`
	case grant == tokens.GrantExec:
		return "Run the command by hand as the service's user. The error ends with its standard error."
	case grant == tokens.GrantFile && strings.Contains(message, "may have stopped"):
		return "The token in token_file has expired. Check the agent that renews the file."
	case grant == tokens.GrantFile:
		return "Check the path of token_file, that the agent that writes it runs, and that the " +
			"service's user can read it."
	}
	return ""
}

// codeHint returns the hint for an OAuth2 error code, an HTTP status or an
// error class, or "".
func codeHint(fe *tokens.FetchError) string {
	switch {
	case fe.Code == "invalid_client" || fe.Code == "unauthorized_client":
		return "The provider did not accept the client's credentials. Check client_id, the secret " +
			"or key, and that auth_method is a method the client is registered for."
	case fe.Code == "invalid_scope":
		return "The provider does not know a scope in token.scopes, or does not allow it for this client."
	case fe.Code == "invalid_grant":
		return "The provider rejected the grant, such as a refresh token that expired or was revoked, " +
			"or a service account key that was deleted."
	case fe.Code != "":
		return ""
	case fe.StatusCode == http.StatusNotFound:
		return "The URL does not exist. Compare it with the provider's discovery document " +
			"(issuer followed by /.well-known/openid-configuration)."
	case fe.StatusCode >= 300 && fe.StatusCode < 400:
		return "The URL redirects. Use the address that it redirects to."
	case fe.StatusCode >= 500:
		return "The provider responded with a server error. Try again later, and check the " +
			"provider's status page."
	case fe.Class == tokens.ClassRateLimited:
		return "The provider limits the request rate. Wait, then run diagnose again."
	case fe.Class == tokens.ClassBadResponse:
		return "The URL responded, but not with a token, for example with a login page. Use the " +
			"token_endpoint of the provider's discovery document."
	}
	return ""
}

// guidPattern matches a GUID, the form of an Entra ID secret's ID. Secret
// values have another form.
var guidPattern = regexp.MustCompile(
	`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// secretFormHints adds, for a wrong Entra ID secret, whether the configured
// secret has the form of a secret ID. It never shows the secret.
func secretFormHints(code string, c *tokens.Config) []string {
	if code != "AADSTS7000215" {
		return nil
	}
	secret := c.ClientSecret
	if c.ClientSecretFile != "" {
		data, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			return nil
		}
		secret = strings.TrimSpace(string(data))
	}
	if !guidPattern.MatchString(secret) {
		return nil
	}
	return []string{"The configured secret has the form of a GUID (8-4-4-4-12 hex digits), " +
		"which is the form of a Secret ID. A secret's Value is not a GUID."}
}

// networkHint returns the hint for a failed DNS lookup, connection or TLS
// handshake, or "" for another error.
func networkHint(err error, timeout time.Duration) string {
	for _, hint := range []string{dnsHint(err), connectionHint(err, timeout), tlsHint(err)} {
		if hint != "" {
			return hint
		}
	}
	return ""
}

// networkHints returns networkHint, or else fallback, as a list of hints.
func networkHints(err error, timeout time.Duration, fallback string) []string {
	if hint := networkHint(err, timeout); hint != "" {
		return []string{hint}
	}
	return []string{fallback}
}

func dnsHint(err error) string {
	var dnsErr *net.DNSError
	switch {
	case !errors.As(err, &dnsErr):
		return ""
	case dnsErr.IsNotFound:
		return "The name " + dnsErr.Name + " does not exist in DNS. Check the host name in the " +
			"configuration. If this host resolves outside names only through a proxy, set HTTPS_PROXY " +
			"in the service's environment."
	case dnsErr.IsTimeout:
		return "The DNS server did not answer in time. Check the name servers in /etc/resolv.conf " +
			"and that this host can reach them."
	}
	return "The DNS lookup failed. Check the name servers in /etc/resolv.conf."
}

func connectionHint(err error, timeout time.Duration) string {
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "Nothing accepts connections on this port: the server is not running, the port in " +
			"the URL is wrong, or a firewall rejects the connection."
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "This host has no network route to the server. Check the network and the firewall, " +
			"or set HTTPS_PROXY if outside traffic must go through a proxy."
	case errors.Is(err, syscall.ECONNRESET):
		return "The connection was reset, often by a firewall or proxy that blocks it."
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("No answer within %s (token.timeout). A firewall may drop the packets, "+
			"or outside traffic must go through a proxy (HTTPS_PROXY).", timeout)
	}
	return ""
}

func tlsHint(err error) string {
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownAuthority):
		return "The server's certificate is issued by a CA that this host does not trust, such as " +
			"an internal CA or a proxy that inspects TLS. Set tls.ca_file to a PEM file with that " +
			"CA's certificate."
	case errors.As(err, &hostnameErr):
		return "The certificate is not valid for this host name. Write the URL with a name from " +
			"the certificate names above."
	case errors.As(err, &invalidErr) && invalidErr.Reason == x509.Expired:
		return "The certificate has expired or is not valid yet. If this host's clock is right, " +
			"the server's certificate must be renewed."
	case errors.As(err, &recordErr):
		return "The server does not speak TLS on this port. Use http:// for a plain HTTP server, " +
			"or the HTTPS port."
	case strings.Contains(err.Error(), "remote error: tls:"):
		return "The server rejected the TLS connection. If it requires a client certificate, set " +
			"tls.client_certificate_file and tls.client_key_file to one that it trusts."
	}
	return ""
}
