package tokens

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func workloadIdentityConfig(tokenURL, assertionFile string) *Config {
	c := &Config{
		Grant:         GrantWorkloadIdentity,
		TokenURL:      tokenURL,
		ClientID:      "orthanc-egress",
		AssertionFile: assertionFile,
		Scopes:        []string{"api://dicom/.default"},
	}
	c.SetDefaults()
	return c
}

// TestWorkloadIdentityRereadsAssertion: the platform rotates the assertion
// file, and every request sends the content it has at that moment.
func TestWorkloadIdentityRereadsAssertion(t *testing.T) {
	e := newFakeEndpoint(t)
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	src := newTestSource(t, workloadIdentityConfig(e.URL(), file))

	exp := time.Now().Add(time.Hour).Unix()
	for i, assertion := range []string{testJWT(exp), testJWT(exp + 1)} {
		if err := os.WriteFile(file, []byte(assertion+"\n"), 0o600); err != nil {
			t.Fatalf("writing the assertion: %v", err)
		}
		if _, err := src.Fetch(context.Background()); err != nil {
			t.Fatalf("Fetch %d: %v", i+1, err)
		}

		form, auth := e.Last()
		if got := form.Get("client_assertion"); got != assertion {
			t.Errorf("request %d: client_assertion = %q, want the file's current content %q", i+1, got, assertion)
		}
		if got := form.Get("client_assertion_type"); got != ClientAssertionType {
			t.Errorf("request %d: client_assertion_type = %q, want %q", i+1, got, ClientAssertionType)
		}
		if got := form.Get("grant_type"); got != "client_credentials" {
			t.Errorf("request %d: grant_type = %q, want client_credentials", i+1, got)
		}
		if got := form.Get("client_id"); got != "orthanc-egress" {
			t.Errorf("request %d: client_id = %q, want orthanc-egress", i+1, got)
		}
		if got := form.Get("scope"); got != "api://dicom/.default" {
			t.Errorf("request %d: scope = %q, want api://dicom/.default", i+1, got)
		}
		if auth != "" {
			t.Errorf("request %d: Authorization header = %q, want none", i+1, auth)
		}
	}
}

func TestWorkloadIdentityAssertionErrors(t *testing.T) {
	tests := []struct {
		name    string
		content *string
		wantIn  []string
	}{
		{"empty file", ptr(" \n"), []string{"empty"}},
		{"expired assertion", ptr(testJWT(time.Now().Add(-time.Minute).Unix())), []string{"expired"}},
		{"missing file", nil, []string{"no such file"}},
	}
	e := newFakeEndpoint(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "azure-identity-token")
			if tt.content != nil {
				if err := os.WriteFile(file, []byte(*tt.content), 0o600); err != nil {
					t.Fatalf("writing the assertion: %v", err)
				}
			}
			before := e.requests.Load()

			_, err := newTestSource(t, workloadIdentityConfig(e.URL(), file)).Fetch(context.Background())
			if err == nil {
				t.Fatal("Fetch succeeded, want an error")
			}
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FetchError", err, err)
			}
			if fe.Class != ClassConfig {
				t.Errorf("class = %q, want %q", fe.Class, ClassConfig)
			}
			for _, s := range append(tt.wantIn, file) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if n := e.requests.Load() - before; n != 0 {
				t.Errorf("endpoint saw %d requests, want none without a usable assertion", n)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
