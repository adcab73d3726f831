package config

import (
	"strings"
	"testing"
)

// setEnv makes lookupEnv read env instead of the process environment until
// the test ends. Tests that call it must not run in parallel.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	saved := lookupEnv
	lookupEnv = func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	t.Cleanup(func() { lookupEnv = saved })
}

func TestExpandEnv(t *testing.T) {
	setEnv(t, map[string]string{"PACS_CLIENT": "orthanc", "EMPTY": "", "HOST_1": "idp.example.test"})

	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"no variable", "orthanc", "orthanc"},
		{"whole value", "${PACS_CLIENT}", "orthanc"},
		{"inside text", "https://${HOST_1}/token", "https://idp.example.test/token"},
		{"two variables", "${PACS_CLIENT}@${HOST_1}", "orthanc@idp.example.test"},
		{"default for unset", "${UNSET:-fallback}", "fallback"},
		{"default for empty", "${EMPTY:-fallback}", "fallback"},
		{"default not used", "${PACS_CLIENT:-fallback}", "orthanc"},
		{"empty default", "${UNSET:-}", ""},
		{"default with colon", "${UNSET:-https://idp.example.test}", "https://idp.example.test"},
		{"set but empty", "${EMPTY}", ""},
		{"dollar dollar", "pa$$word", "pa$word"},
		{"escaped reference", "$${PACS_CLIENT}", "${PACS_CLIENT}"},
		{"lone dollar", "pa$word", "pa$word"},
		{"trailing dollar", "price$", "price$"},
		{"dollar before brace text", "a$b{c}", "a$b{c}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expandEnv(tt.input)
			if err != nil {
				t.Fatalf("expandEnv(%q) failed: %v", tt.input, err)
			}
			if got != tt.want {
				t.Errorf("expandEnv(%q) is %q, expected %q", tt.input, got, tt.want)
			}
		})
	}
}

func TestExpandEnvErrors(t *testing.T) {
	setEnv(t, map[string]string{"PACS_CLIENT": "orthanc"})

	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"unset", "${PACS_SECRET}", "environment variable PACS_SECRET is not set; set it or write ${PACS_SECRET:-default}"},
		{"unterminated", "${PACS_CLIENT", "unterminated ${"},
		{"unterminated after text", "abc${", "unterminated ${"},
		{"empty name", "${}", "invalid environment variable name"},
		{"name starts with digit", "${1PACS}", "invalid environment variable name"},
		{"name with dash", "${PACS-CLIENT}", "invalid environment variable name"},
		{"unset after set", "${PACS_CLIENT}${PACS_SECRET}", "PACS_SECRET is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expandEnv(tt.input)
			if err == nil {
				t.Fatalf("expandEnv(%q) returned %q; expected an error", tt.input, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("expandEnv(%q) error is %q, expected it to contain %q", tt.input, err, tt.want)
			}
		})
	}
}

func TestParseExpandsEnv(t *testing.T) {
	setEnv(t, map[string]string{
		"IDP":         "idp.example.test",
		"PACS_SECRET": testSecret,
	})
	const data = `listen:
  admin: ${ADMIN_ADDR:-127.0.0.1:19901}
clusters:
  pacs:
    hosts: ["${DICOM_HOST:-dicom.example.test}"]
    token:
      token_url: https://${IDP}/oauth2/token
      client_id: orthanc
      client_secret: ${PACS_SECRET}
      params:
        note: cost $$5
`
	f, err := Parse("dicomweb-oauth.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	if f.Listen.Admin != "127.0.0.1:19901" {
		t.Errorf("listen.admin is %q, expected the default 127.0.0.1:19901", f.Listen.Admin)
	}
	c := f.Clusters["pacs"]
	if len(c.Hosts) != 1 || c.Hosts[0] != "dicom.example.test" {
		t.Errorf("hosts are %q, expected [dicom.example.test]", c.Hosts)
	}
	if c.Token.TokenURL != "https://idp.example.test/oauth2/token" {
		t.Errorf("token_url is %q, expected https://idp.example.test/oauth2/token", c.Token.TokenURL)
	}
	if c.Token.ClientSecret != testSecret {
		t.Errorf("client_secret is %q, expected the value of PACS_SECRET", c.Token.ClientSecret)
	}
	if got := c.Token.Params["note"]; got != "cost $5" {
		t.Errorf("params.note is %q, expected %q", got, "cost $5")
	}
}

func TestParseEnvErrors(t *testing.T) {
	setEnv(t, map[string]string{})

	tests := []struct {
		name string
		yaml string
		want []wantError
	}{
		{
			name: "unset variable",
			yaml: strings.Replace(validConfig, "client_id: orthanc", "client_id: ${PACS_CLIENT_ID}", 1),
			want: []wantError{{"clusters.pacs.token.client_id", 6, "environment variable PACS_CLIENT_ID is not set"}},
		},
		{
			name: "unset secret variable",
			yaml: strings.Replace(validConfig, "client_secret: test-secret-value", "client_secret: ${PACS_SECRET}", 1),
			want: []wantError{{"clusters.pacs.token.client_secret", 7, "environment variable PACS_SECRET is not set"}},
		},
		{
			name: "unterminated reference",
			yaml: strings.Replace(validConfig, "client_id: orthanc", "client_id: ${PACS_CLIENT_ID", 1),
			want: []wantError{{"clusters.pacs.token.client_id", 6, "unterminated ${; close it with }, or write $$ for a literal $"}},
		},
		{
			name: "unset variable in listen",
			yaml: "listen:\n  grpc: ${GRPC_ADDR}\n" + validConfig,
			want: []wantError{{"listen.grpc", 2, "environment variable GRPC_ADDR is not set"}},
		},
		{
			name: "unset variable in host",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", `["${DICOM_HOST}"]`, 1),
			want: []wantError{{"clusters.pacs.hosts[0]", 3, "environment variable DICOM_HOST is not set"}},
		},
		{
			name: "unset variable in duration",
			yaml: validConfig + "      timeout: ${TOKEN_TIMEOUT}\n",
			want: []wantError{{"clusters.pacs.token.timeout", 8, "environment variable TOKEN_TIMEOUT is not set"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertErrors(t, parseErrors(t, tt.yaml), tt.want)
		})
	}
}

func TestParseErrorsHideSecrets(t *testing.T) {
	setEnv(t, map[string]string{})

	tests := []struct {
		name   string
		yaml   string
		secret string
	}{
		{
			name:   "secret with unterminated reference",
			yaml:   strings.Replace(validConfig, "test-secret-value", "test-secret-${value", 1),
			secret: "test-secret",
		},
		{
			name:   "secret with invalid variable name",
			yaml:   strings.Replace(validConfig, "test-secret-value", "test-${secret value}", 1),
			secret: "secret value",
		},
		{
			name:   "password in token URL",
			yaml:   strings.Replace(validConfig, "https://", "https://orthanc:test-url-password@", 1),
			secret: "test-url-password",
		},
		{
			name: "both secrets",
			yaml: validConfig + "      client_secret_file: /run/secrets/pacs\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.yaml)
			msg := errs.Error()
			if strings.Contains(msg, testSecret) {
				t.Errorf("the error contains the client secret: %s", msg)
			}
			if tt.secret != "" && strings.Contains(msg, tt.secret) {
				t.Errorf("the error contains %q: %s", tt.secret, msg)
			}
		})
	}
}
