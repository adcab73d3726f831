package tokens

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// ErrorClass groups token endpoint failures by what the service should do next.
type ErrorClass string

// Error classes. Each decides how soon the next attempt is made.
const (
	// ClassTransient covers connection errors, timeouts and 5xx responses.
	ClassTransient ErrorClass = "transient"
	// ClassRateLimited covers 429 and 503 responses with Retry-After.
	ClassRateLimited ErrorClass = "rate_limited"
	// ClassConfig covers responses that a retry cannot fix, such as invalid_client.
	ClassConfig ErrorClass = "config"
	// ClassBadResponse covers 2xx responses that carry no usable token.
	ClassBadResponse ErrorClass = "bad_response"
)

// FetchError is a failed token request with what the token endpoint returned.
// It never contains the access token, the client secret or an assertion.
type FetchError struct {
	Class ErrorClass
	// StatusCode is the HTTP status, or 0 when no answer arrived.
	StatusCode int
	// Code is the OAuth2 error code, such as invalid_client.
	Code string
	// Description is the provider's error_description, trimmed.
	Description string
	// ProviderCodes are provider-specific codes, such as Entra ID's error_codes
	// written as AADSTS numbers.
	ProviderCodes []string
	// RetryAfter is the wait the endpoint asked for, or 0.
	RetryAfter time.Duration
	// Err is the underlying error.
	Err error
}

func (e *FetchError) Error() string {
	var b strings.Builder
	b.WriteString("token request failed")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, ": %s", e.Code)
	}
	if len(e.ProviderCodes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(e.ProviderCodes, ", "))
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", withoutLeadingCode(e.Description, e.ProviderCodes))
	}
	if e.Err != nil && e.Code == "" && e.Description == "" {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *FetchError) Unwrap() error { return e.Err }

// configErrorCodes are OAuth2 error codes that a retry does not fix.
var configErrorCodes = map[string]bool{
	"invalid_client":         true,
	"unauthorized_client":    true,
	"invalid_scope":          true,
	"invalid_grant":          true,
	"unsupported_grant_type": true,
	"invalid_request":        true,
	"invalid_target":         true,
}

// maxQuoted is how many bytes of an unexpected response body an error quotes.
const maxQuoted = 120

// classifyRetrieveError turns an oauth2.RetrieveError into a FetchError.
func classifyRetrieveError(re *oauth2.RetrieveError, now time.Time) *FetchError {
	fe := &FetchError{Class: ClassTransient, Err: re}
	if re.Response != nil {
		fe.StatusCode = re.Response.StatusCode
		fe.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), now)
	}
	fe.Code = re.ErrorCode
	fe.Description = trimDescription(re.ErrorDescription)
	if fe.Code == "" {
		// x/oauth2/jwt leaves the error fields of the body unparsed.
		fe.Code, fe.Description = oauthErrorFields(re.Body)
	}
	fe.ProviderCodes = providerCodes(re.Body)
	classifyStatus(fe)
	if fe.Code == "" && fe.Description == "" {
		fe.Description = describeBody(re.Response, re.Body)
	}
	return fe
}

// providerCodes extracts Entra ID's numeric error_codes as AADSTS numbers.
func providerCodes(body []byte) []string {
	var v struct {
		ErrorCodes []json.Number `json:"error_codes"`
	}
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	codes := make([]string, 0, len(v.ErrorCodes))
	for _, c := range v.ErrorCodes {
		codes = append(codes, "AADSTS"+c.String())
	}
	return codes
}

// trimDescription keeps the first line of a provider's description. Entra ID
// appends trace and correlation ids on later lines.
func trimDescription(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return truncate(s, 300)
}

// describeBody quotes the start of an unexpected body with its content type.
// A body that mentions access_token is not quoted, because it may hold a token.
func describeBody(resp *http.Response, body []byte) string {
	contentType := ""
	if resp != nil {
		contentType = resp.Header.Get("Content-Type")
	}
	if contentType == "" {
		contentType = "no content type"
	}
	if len(body) == 0 {
		return fmt.Sprintf("empty body (%s)", contentType)
	}
	if strings.Contains(string(body), "access_token") {
		return fmt.Sprintf("%d-byte body (%s) that could not be parsed", len(body), contentType)
	}
	return fmt.Sprintf("body starts with %q (%s)", truncate(string(body), maxQuoted), contentType)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date. It returns 0
// when the header is missing or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// classifyError wraps any error from a token request in a FetchError.
func classifyError(err error, now time.Time) *FetchError {
	var fe *FetchError
	if errors.As(err, &fe) {
		return fe
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return classifyRetrieveError(re, now)
	}
	if errors.Is(err, ErrInvalidToken) {
		return &FetchError{Class: ClassBadResponse, Err: err}
	}
	return &FetchError{Class: ClassTransient, Err: err}
}

// oauthErrorFields reads error and error_description from a JSON body.
func oauthErrorFields(body []byte) (code, description string) {
	var v struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &v) != nil {
		return "", ""
	}
	return v.Error, trimDescription(v.ErrorDescription)
}

// withoutLeadingCode drops a provider code that starts the description, as
// in Entra ID's "AADSTS7000215: Invalid client secret provided.", because
// the message already names it.
func withoutLeadingCode(description string, codes []string) string {
	for _, code := range codes {
		if rest, found := strings.CutPrefix(description, code+": "); found {
			return rest
		}
	}
	return description
}
