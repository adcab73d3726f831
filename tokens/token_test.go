package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testJWT returns an unsigned JWT-shaped token whose payload has the given exp.
func testJWT(exp int64) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
	payload, _ := json.Marshal(map[string]any{"exp": exp, "sub": "test"})
	return header + "." + base64.RawURLEncoding.EncodeToString(payload) + ".c2ln"
}

func TestNewTokenExpiry(t *testing.T) {
	received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	jwtIn := func(d time.Duration) string { return testJWT(received.Add(d).Unix()) }

	tests := []struct {
		name      string
		fields    tokenFields
		want      time.Time
		wantError bool
	}{
		{"number", tokenFields{accessToken: "opaque", expiresIn: float64(3599)}, received.Add(3599 * time.Second), false},
		{"string", tokenFields{accessToken: "opaque", expiresIn: "3599"}, received.Add(3599 * time.Second), false},
		{"json number", tokenFields{accessToken: "opaque", expiresIn: json.Number("60")}, received.Add(time.Minute), false},
		{"missing opaque uses default", tokenFields{accessToken: "opaque"}, received.Add(7 * time.Minute), false},
		{"empty string uses default", tokenFields{accessToken: "opaque", expiresIn: ""}, received.Add(7 * time.Minute), false},
		{"zero uses default", tokenFields{accessToken: "opaque", expiresIn: float64(0)}, received.Add(7 * time.Minute), false},
		{"negative uses default", tokenFields{accessToken: "opaque", expiresIn: float64(-5)}, received.Add(7 * time.Minute), false},
		{"missing jwt uses exp", tokenFields{accessToken: jwtIn(20 * time.Minute)}, received.Add(20 * time.Minute), false},
		{"jwt exp earlier than expires_in", tokenFields{accessToken: jwtIn(10 * time.Minute), expiresIn: float64(3600)}, received.Add(10 * time.Minute), false},
		{"expires_in earlier than jwt exp", tokenFields{accessToken: jwtIn(time.Hour), expiresIn: float64(60)}, received.Add(time.Minute), false},
		{"expired jwt", tokenFields{accessToken: jwtIn(-time.Minute)}, time.Time{}, true},
		{"not a number", tokenFields{accessToken: "opaque", expiresIn: "soon"}, time.Time{}, true},
		{"wrong type", tokenFields{accessToken: "opaque", expiresIn: true}, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := newToken(tt.fields, received, 7*time.Minute)
			if tt.wantError {
				if err == nil {
					t.Fatalf("newToken() = expiry %v, want an error", tok.Expiry)
				}
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("error %v does not wrap ErrInvalidToken", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("newToken() error: %v", err)
			}
			if !tok.Expiry.Equal(tt.want) {
				t.Errorf("expiry = %v, want %v", tok.Expiry, tt.want)
			}
		})
	}
}

func TestNewTokenType(t *testing.T) {
	received := time.Now()
	tests := []struct {
		tokenType string
		wantError bool
	}{
		{"Bearer", false},
		{"bearer", false},
		{"BEARER", false},
		{"", false},
		{"mac", true},
		{"N_A", true},
		{"DPoP", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("type %q", tt.tokenType), func(t *testing.T) {
			_, err := newToken(tokenFields{accessToken: "abc", tokenType: tt.tokenType}, received, time.Minute)
			if tt.wantError && err == nil {
				t.Fatal("newToken() succeeded, want an error for a non-bearer token_type")
			}
			if !tt.wantError && err != nil {
				t.Fatalf("newToken() error: %v", err)
			}
			if tt.wantError && !strings.Contains(err.Error(), tt.tokenType) {
				t.Errorf("error %q does not name the token_type %q", err, tt.tokenType)
			}
		})
	}
}

func TestNewTokenRejectsUnsafeValue(t *testing.T) {
	for _, value := range []string{"", "abc\r\nX-Injected: 1", "abc def", "tab\tin", "caf\xc3\xa9"} {
		if _, err := newToken(tokenFields{accessToken: value}, time.Now(), time.Minute); err == nil {
			t.Errorf("newToken(%q) succeeded, want an error", value)
		}
	}
}

func TestFingerprintHidesToken(t *testing.T) {
	fp := Fingerprint("test-token-value")
	if len(fp) != 12 {
		t.Errorf("fingerprint length = %d, want 12", len(fp))
	}
	if strings.Contains("test-token-value", fp) {
		t.Errorf("fingerprint %q is part of the token", fp)
	}
	if Fingerprint("other-token") == fp {
		t.Error("two tokens have the same fingerprint")
	}
}
