package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// maxQIDOBody is how much of a QIDO-RS response diagnose reads. One study
// in DICOM JSON takes a few kilobytes.
const maxQIDOBody = 1 << 20

// maxQuotedBody is how many bytes of an unexpected response are shown.
const maxQuotedBody = 200

// checkQIDO sends GET {URL}studies?limit=1 with the token and reports the
// response of the DICOMweb server.
func (d *diagnosis) checkQIDO(ctx context.Context) {
	target := d.opts.qidoURL + "studies?limit=1"
	d.report.info("DICOMweb %s", target)
	if d.token == nil {
		d.report.skip("QIDO-RS", "no token to send")
		return
	}
	client, err := qidoClient(d.opts.qidoCAFile, d.config.Timeout)
	if err != nil {
		d.report.fail(check{name: "QIDO-RS", summary: "invalid --qido-ca-file",
			details: []string{"error: " + err.Error()}, hints: []string{"Give a PEM file with the CA certificates of the DICOMweb server."}})
		return
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		d.report.fail(check{name: "QIDO-RS", summary: "invalid URL: " + err.Error()})
		return
	}
	req.Header.Set("Authorization", "Bearer "+d.token.AccessToken)
	req.Header.Set("Accept", "application/dicom+json")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		d.report.fail(check{name: "QIDO-RS", summary: "request failed",
			details: []string{"error: " + requestError(err).Error()},
			hints:   qidoNetworkHints(err, d.config.Timeout)})
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxQIDOBody))
	d.reportQIDO(resp, body, elapsed(start))
}

// qidoClient returns a client with the system's proxy settings, TLS 1.2
// or later with the roots of caFile (the system roots without it), no
// redirects, and each request bounded by timeout.
func qidoClient(caFile string, timeout time.Duration) (*http.Client, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s contains no PEM certificate", caFile)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = config
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// qidoNetworkHints are the hints of networkHints, except that the CA
// setting for the DICOMweb server is --qido-ca-file.
func qidoNetworkHints(err error, timeout time.Duration) []string {
	var unknownAuthority x509.UnknownAuthorityError
	if errors.As(err, &unknownAuthority) {
		return []string{"The DICOMweb server's certificate is issued by a CA that this host does not " +
			"trust. Give --qido-ca-file a PEM file with that CA's certificate."}
	}
	return networkHints(err, timeout, "Check the URL, and that this host reaches the DICOMweb server.")
}

// requestError returns err without the method and URL that http.Client
// puts in front, because the URL is shown above it.
func requestError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

func (d *diagnosis) reportQIDO(resp *http.Response, body []byte, took time.Duration) {
	status := fmt.Sprintf("HTTP %d", resp.StatusCode)
	details := d.responseDetails(resp, body)
	switch {
	case resp.StatusCode == http.StatusNoContent:
		d.report.ok(check{name: "QIDO-RS", summary: fmt.Sprintf("%s, no studies (%s)", status, took)})
	case resp.StatusCode == http.StatusOK:
		var studies []json.RawMessage
		if err := json.Unmarshal(body, &studies); err != nil {
			d.report.fail(check{name: "QIDO-RS", summary: status + ", but the answer is not DICOM JSON",
				details: details, hints: []string{baseURLHint}})
			return
		}
		summary := fmt.Sprintf("%s, %s (%s)", status, countStudies(len(studies)), took)
		d.report.ok(check{name: "QIDO-RS", summary: summary})
	default:
		d.report.fail(check{name: "QIDO-RS", summary: status, details: details,
			hints: []string{d.qidoStatusHint(resp)}})
	}
}

func countStudies(n int) string {
	if n == 1 {
		return "1 study"
	}
	return fmt.Sprintf("%d studies", n)
}

const baseURLHint = "The URL is probably not the DICOMweb base URL. --qido takes the part " +
	"before /studies, such as https://pacs.example.org/dicom-web/, or " +
	"https://<workspace>-<service>.dicom.azurehealthcareapis.com/v2/ for Azure."

// responseDetails shows the headers and the start of the body that explain
// a response. The access token is cut out, in case the server echoes it.
func (d *diagnosis) responseDetails(resp *http.Response, body []byte) []string {
	var details []string
	for _, header := range []string{"Content-Type", "WWW-Authenticate", "Location"} {
		if value := resp.Header.Get(header); value != "" {
			details = append(details, header+": "+d.redactToken(value))
		}
	}
	if resp.StatusCode != http.StatusOK && len(body) > 0 {
		quoted := strings.Join(strings.Fields(d.redactToken(string(body))), " ")
		if len(quoted) > maxQuotedBody {
			quoted = quoted[:maxQuotedBody] + "..."
		}
		details = append(details, "body: "+quoted)
	}
	return details
}

func (d *diagnosis) redactToken(s string) string {
	return strings.ReplaceAll(s, d.token.AccessToken, "[access token]")
}

func (d *diagnosis) qidoStatusHint(resp *http.Response) string {
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized:
		return "The DICOMweb server rejected the token. Compare the token's issuer and audience " +
			"above with what the server expects. The WWW-Authenticate header, if shown, names the reason."
	case code == http.StatusForbidden && (d.claims == nil || len(d.claims.Roles) == 0):
		return roleHint(d.provider())
	case code == http.StatusForbidden:
		return "The server accepted the token but denies access. The token has the roles " +
			strings.Join(d.claims.Roles, ", ") + ", so the server probably requires another role " +
			"or permission. Assign it to the client."
	case code == http.StatusNotFound:
		return baseURLHint
	case code >= 300 && code < 400:
		return "The server redirects, often to a login page. Check that the URL is the DICOMweb " +
			"base URL and that the server accepts bearer tokens there."
	case code >= 500:
		return "The DICOMweb server failed. Check its logs."
	}
	return "The DICOMweb server did not accept the request. The body above may name the reason."
}

// provider returns the provider preset, or the provider that the grant or
// the token's issuer implies, or "".
func (d *diagnosis) provider() string {
	if d.config.Provider != "" && d.config.Provider != tokens.ProviderGeneric {
		return d.config.Provider
	}
	switch d.config.Grant {
	case tokens.GrantJWTBearer, tokens.GrantMetadataServer:
		return tokens.ProviderGoogle
	case tokens.GrantManagedIdentity:
		return tokens.ProviderAzure
	}
	issuer := ""
	if d.claims != nil {
		issuer = d.claims.Issuer
	}
	switch {
	case strings.Contains(issuer, "login.microsoftonline.com"), strings.Contains(issuer, "sts.windows.net"):
		return tokens.ProviderAzure
	case strings.Contains(issuer, "/realms/"):
		return tokens.ProviderKeycloak
	}
	return ""
}

// roleHint names the role assignment that a 403 with a token without
// roles usually lacks.
func roleHint(provider string) string {
	switch provider {
	case tokens.ProviderAzure:
		return "The DICOM service accepted the token, but the app has no DICOM role on it. Azure " +
			"role assignments do not show in the token. On the DICOM service, under Access control " +
			"(IAM), assign DICOM Data Reader (QIDO-RS and WADO-RS) or DICOM Data Owner (also " +
			"STOW-RS) to the app registration or managed identity. A new assignment can take five " +
			"minutes to apply."
	case tokens.ProviderKeycloak:
		return "The archive accepted the token, but the token has no roles: the service account " +
			"lacks the archive's role. In Keycloak, on the client's Service account roles tab, assign " +
			"the role that the archive requires (user, for dcm4chee-arc by default)."
	case tokens.ProviderGoogle:
		return "The Healthcare API accepted the token, but the service account lacks the permission. " +
			"Grant Healthcare DICOM Viewer (QIDO-RS and WADO-RS) or Healthcare DICOM Editor (also " +
			"STOW-RS) on the DICOM store. Google's answer above names the missing permission."
	}
	return "The server accepted the token but denies access, and the token has no roles claim: " +
		"the client lacks the server's role. Assign it, such as DICOM Data Reader or DICOM Data Owner " +
		"on an Azure DICOM service, or the archive's role on the Service account roles tab in Keycloak."
}
