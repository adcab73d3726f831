package tokens

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Token is an access token and the time it stops being valid.
type Token struct {
	// AccessToken is the opaque or JWT access token. It is a secret: never log it.
	AccessToken string

	// Expiry is when the token stops being valid. It is never zero.
	Expiry time.Time

	// Received is the time the token endpoint responded.
	Received time.Time
}

// Lifetime returns the time from receipt to expiry.
func (t *Token) Lifetime() time.Duration {
	return t.Expiry.Sub(t.Received)
}

// Fingerprint returns a short hash of the access token that identifies it in logs
// and status output without revealing it.
func (t *Token) Fingerprint() string {
	return Fingerprint(t.AccessToken)
}

// Fingerprint returns the first 12 hex digits of the SHA-256 of an access token.
func Fingerprint(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return hex.EncodeToString(sum[:6])
}

// ErrInvalidToken marks a token endpoint answer that carries no usable token.
var ErrInvalidToken = errors.New("invalid token response")

// tokenFields holds the fields of a token response that decide whether and how
// long a token can be used.
type tokenFields struct {
	accessToken string
	tokenType   string
	// expiresIn is the raw expires_in value: nil when missing, else a JSON number,
	// a string of digits, or a form-encoded string.
	expiresIn any
}

// newToken checks a token response and computes its expiry. The expiry is the
// earliest of expires_in and the JWT exp claim; without either it is received
// plus defaultLifetime. A token that is already expired is an error.
func newToken(f tokenFields, received time.Time, defaultLifetime time.Duration) (*Token, error) {
	if f.accessToken == "" {
		return nil, fmt.Errorf("%w: the response has no access_token", ErrInvalidToken)
	}
	if !validHeaderValue(f.accessToken) {
		return nil, fmt.Errorf("%w: access_token contains characters that cannot be sent in an HTTP header",
			ErrInvalidToken)
	}
	if f.tokenType != "" && !strings.EqualFold(f.tokenType, "bearer") {
		return nil, fmt.Errorf("%w: token_type is %q, but only Bearer tokens can be sent; "+
			"configure the client at the identity provider to issue Bearer access tokens",
			ErrInvalidToken, f.tokenType)
	}

	expiry, err := tokenExpiry(f, received, defaultLifetime)
	if err != nil {
		return nil, err
	}
	if !expiry.After(received) {
		return nil, fmt.Errorf("%w: the token expired at %s, before it was received at %s; "+
			"check the clocks of this host and of the identity provider",
			ErrInvalidToken, expiry.UTC().Format(time.RFC3339), received.UTC().Format(time.RFC3339))
	}
	return &Token{AccessToken: f.accessToken, Expiry: expiry, Received: received}, nil
}

func tokenExpiry(f tokenFields, received time.Time, defaultLifetime time.Duration) (time.Time, error) {
	var expiry time.Time

	seconds, present, err := parseExpiresIn(f.expiresIn)
	if err != nil {
		return time.Time{}, err
	}
	if present && seconds > 0 {
		expiry = received.Add(time.Duration(seconds) * time.Second)
	}

	if exp, ok := jwtExpiry(f.accessToken); ok && (expiry.IsZero() || exp.Before(expiry)) {
		expiry = exp
	}
	if expiry.IsZero() {
		expiry = received.Add(defaultLifetime)
	}
	return expiry, nil
}

// maxExpiresIn caps expires_in at ten years so the duration cannot overflow.
const maxExpiresIn = 10 * 365 * 24 * 3600

// parseExpiresIn reads expires_in as a JSON number, a string of digits, or
// the int64 or float64 that x/oauth2 makes of a form-encoded value.
// It reports present=false when the field is missing or empty.
func parseExpiresIn(v any) (seconds int64, present bool, err error) {
	var s string
	switch x := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		// x/oauth2 converts numeric form-encoded values to int64 or float64.
		s = strconv.FormatInt(x, 10)
	case int:
		s = strconv.Itoa(x)
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, false, fmt.Errorf("%w: expires_in has type %T, expected a number", ErrInvalidToken, v)
	}
	if s == "" {
		return 0, false, nil
	}

	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(s, "xX_pP") {
		// ParseFloat also takes Inf, NaN, hexadecimal and underscores,
		// which no provider means as a lifetime.
		return 0, false, fmt.Errorf("%w: expires_in is %q, expected a number of seconds", ErrInvalidToken, s)
	}
	if f > maxExpiresIn {
		f = maxExpiresIn
	}
	return int64(f), true, nil
}

// jwtExpiry returns the exp claim of a JWT access token. It does not verify the
// signature: the token is only forwarded, and the resource server verifies it.
func jwtExpiry(accessToken string) (time.Time, bool) {
	parts := strings.Split(accessToken, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 || exp > float64(1<<62)/float64(time.Second) {
		return time.Time{}, false
	}
	return time.Unix(int64(exp), 0), true
}

// validHeaderValue reports whether s can be sent after "Bearer " in an HTTP
// header: visible ASCII only, so no CR, LF or other control characters.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
