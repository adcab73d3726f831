package config

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// testSecret is the client secret of the test configurations. Tests assert
// that it never appears in output.
const testSecret = "test-secret-value"

// validConfig is a complete configuration with one cluster.
const validConfig = `clusters:
  pacs:
    hosts: [dicom.example.test]
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: orthanc
      client_secret: test-secret-value
`

// wantError is one expected configuration error.
type wantError struct {
	path string
	line int
	// msg is a part of the message.
	msg string
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []wantError
	}{
		// Unknown keys.
		{
			name: "unknown top-level key",
			yaml: `lsten:
  grpc: 127.0.0.1:9001
` + validConfig,
			want: []wantError{{"lsten", 1, "unknown key; did you mean listen?"}},
		},
		{
			name: "unknown listen key",
			yaml: `listen:
  grcp: 127.0.0.1:9001
` + validConfig,
			want: []wantError{{"listen.grcp", 2, "unknown key; did you mean grpc?"}},
		},
		{
			name: "unknown log key",
			yaml: `log:
  levle: debug
` + validConfig,
			want: []wantError{{"log.levle", 2, "unknown key; did you mean level?"}},
		},
		{
			name: "unknown cluster key",
			yaml: `clusters:
  pacs:
    host: [dicom.example.test]
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: orthanc
      client_secret: test-secret-value
`,
			want: []wantError{{"clusters.pacs.host", 3, "unknown key; did you mean hosts?"}},
		},
		{
			name: "unknown token key",
			yaml: `clusters:
  pacs:
    token:
      tokne_url: https://idp.example.test/oauth2/token
      client_id: orthanc
      client_secret: test-secret-value
`,
			want: []wantError{
				{"clusters.pacs.token.token_url", 3, "missing"},
				{"clusters.pacs.token.tokne_url", 4, "unknown key; did you mean token_url?"},
			},
		},
		{
			name: "unknown key far from any",
			yaml: "colour: red\n" + validConfig,
			want: []wantError{{"colour", 1, "unknown key; known keys: admin, clusters, decision_timeout, listen, log"}},
		},
		{
			name: "token keys without token section",
			yaml: `clusters:
  pacs:
    token_url: https://idp.example.test/oauth2/token
`,
			want: []wantError{
				{"clusters.pacs.token.token_url", 2, "missing"},
				{"clusters.pacs.token.client_id", 2, "missing"},
				{"clusters.pacs.token.client_secret_file", 2, "missing"},
				{"clusters.pacs.token_url", 3, "unknown key; known keys: hosts, token"},
			},
		},

		// Duplicate keys.
		{
			name: "duplicate token key",
			yaml: `clusters:
  pacs:
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: orthanc
      token_url: https://idp.example.test/other
      client_secret: test-secret-value
`,
			want: []wantError{{"clusters.pacs.token.token_url", 6, "duplicate key"}},
		},
		{
			name: "duplicate cluster",
			yaml: validConfig + `  pacs:
    token: {}
`,
			want: []wantError{{"clusters.pacs", 8, "duplicate key"}},
		},
		{
			name: "duplicate top-level key",
			yaml: "log: {level: info}\nlog: {level: debug}\n" + validConfig,
			want: []wantError{{"log", 2, "duplicate key"}},
		},

		// Missing keys.
		{
			name: "missing token_url",
			yaml: `clusters:
  pacs:
    token:
      client_id: orthanc
      client_secret: test-secret-value
`,
			want: []wantError{{"clusters.pacs.token.token_url", 3, "missing; set the identity provider's token endpoint URL"}},
		},
		{
			name: "missing client_id",
			yaml: `clusters:
  pacs:
    token:
      token_url: https://idp.example.test/oauth2/token
      client_secret: test-secret-value
`,
			want: []wantError{{"clusters.pacs.token.client_id", 3, "missing"}},
		},
		{
			name: "missing secret",
			yaml: `clusters:
  pacs:
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: orthanc
`,
			want: []wantError{{"clusters.pacs.token.client_secret_file", 3, "missing; auth_method client_secret_basic needs client_secret_file (or client_secret)"}},
		},
		{
			name: "missing clusters",
			yaml: "log:\n  level: info\n",
			want: []wantError{{"clusters", 0, "missing; configure at least one cluster"}},
		},
		{
			name: "empty clusters",
			yaml: "clusters: {}\n",
			want: []wantError{{"clusters", 1, "missing; configure at least one cluster"}},
		},
		{
			name: "cluster without value",
			yaml: "clusters:\n  pacs:\n",
			want: []wantError{{"clusters.pacs.token", 2, "missing"}},
		},
		{
			name: "both secrets",
			yaml: validConfig + "      client_secret_file: /run/secrets/pacs\n",
			want: []wantError{{"clusters.pacs.token.client_secret", 7, "set either client_secret or client_secret_file, not both"}},
		},

		// Durations.
		{
			name: "duration in words",
			yaml: validConfig + "      refresh_before: 5 minutes\n",
			want: []wantError{{"clusters.pacs.token.refresh_before", 8, `invalid duration "5 minutes"; use a number with a unit`}},
		},
		{
			name: "duration without unit",
			yaml: validConfig + "      clock_skew: 10\n",
			want: []wantError{{"clusters.pacs.token.clock_skew", 8, `invalid duration "10"`}},
		},
		{
			name: "negative token timeout",
			yaml: validConfig + "      timeout: -1s\n",
			want: []wantError{{"clusters.pacs.token.timeout", 8, "must not be negative, got -1s"}},
		},
		{
			name: "negative refresh_before",
			yaml: validConfig + "      refresh_before: -5m\n",
			want: []wantError{{"clusters.pacs.token.refresh_before", 8, "must not be negative, got -5m0s"}},
		},
		{
			name: "negative decision_timeout",
			yaml: "decision_timeout: -1s\n" + validConfig,
			want: []wantError{{"decision_timeout", 1, "must not be negative, got -1s"}},
		},

		// Token endpoint URLs.
		{
			name: "URL without scheme",
			yaml: strings.Replace(validConfig, "https://idp.example.test/oauth2/token", "idp.example.test/oauth2/token", 1),
			want: []wantError{{"clusters.pacs.token.token_url", 5, "the scheme must be https"}},
		},
		{
			name: "URL with ftp scheme",
			yaml: strings.Replace(validConfig, "https://", "ftp://", 1),
			want: []wantError{{"clusters.pacs.token.token_url", 5, "the scheme must be https"}},
		},
		{
			name: "URL without host",
			yaml: strings.Replace(validConfig, "https://idp.example.test/oauth2/token", "https:///oauth2/token", 1),
			want: []wantError{{"clusters.pacs.token.token_url", 5, "no host"}},
		},
		{
			name: "URL with credentials",
			yaml: strings.Replace(validConfig, "https://", "https://orthanc:url-password@", 1),
			want: []wantError{{"clusters.pacs.token.token_url", 5, "credentials in the URL are not allowed"}},
		},

		// Listeners and logging.
		{
			name: "listen address without host",
			yaml: "listen:\n  grpc: 9001\n" + validConfig,
			want: []wantError{{"listen.grpc", 2, `invalid address "9001"; use host:port`}},
		},
		{
			name: "listen address without port",
			yaml: "listen:\n  admin: localhost\n" + validConfig,
			want: []wantError{{"listen.admin", 2, `invalid address "localhost"`}},
		},
		{
			name: "listen port out of range",
			yaml: "listen:\n  http: 127.0.0.1:99999\n" + validConfig,
			want: []wantError{{"listen.http", 2, `invalid port in "127.0.0.1:99999"`}},
		},
		{
			name: "listen address with scheme",
			yaml: "listen:\n  http: http://127.0.0.1:9002\n" + validConfig,
			want: []wantError{{"listen.http", 2, "invalid address"}},
		},
		{
			name: "same listen address twice",
			yaml: "listen:\n  grpc: 127.0.0.1:9001\n  http: 127.0.0.1:9001\n" + validConfig,
			want: []wantError{{"listen.http", 3, "127.0.0.1:9001 is also used by listen.grpc"}},
		},
		{
			name: "default listen address twice",
			yaml: "listen:\n  admin: " + DefaultGRPCAddr + "\n" + validConfig,
			want: []wantError{{"listen.admin", 2, DefaultGRPCAddr + " is also used by listen.grpc"}},
		},
		{
			name: "admin on every interface without token file",
			yaml: "listen:\n  admin: 0.0.0.0:9901\n" + validConfig,
			want: []wantError{{"admin.token_file", 0,
				"missing; listen.admin 0.0.0.0:9901 is not a loopback address, so set admin.token_file"}},
		},
		{
			name: "admin without host without token file",
			yaml: "listen:\n  admin: \":9901\"\n" + validConfig,
			want: []wantError{{"admin.token_file", 0, "listen.admin :9901 is not a loopback address"}},
		},
		{
			name: "admin on IPv6 any without token file",
			yaml: "listen:\n  admin: \"[::]:9901\"\n" + validConfig,
			want: []wantError{{"admin.token_file", 0, "listen.admin [::]:9901 is not a loopback address"}},
		},
		{
			name: "admin on private address without token file",
			yaml: "listen:\n  admin: 10.0.0.5:9901\n" + validConfig,
			want: []wantError{{"admin.token_file", 0, "listen.admin 10.0.0.5:9901 is not a loopback address"}},
		},
		{
			name: "admin on host name without token file",
			yaml: "listen:\n  admin: admin.example.test:9901\n" + validConfig,
			want: []wantError{{"admin.token_file", 0, "listen.admin admin.example.test:9901 is not a loopback address"}},
		},
		{
			name: "empty admin section on every interface",
			yaml: "admin: {}\nlisten:\n  admin: 0.0.0.0:9901\n" + validConfig,
			want: []wantError{{"admin.token_file", 1, "missing; listen.admin 0.0.0.0:9901"}},
		},
		{
			name: "invalid admin address without token file",
			yaml: "listen:\n  admin: 0.0.0.0\n" + validConfig,
			want: []wantError{{"listen.admin", 2, `invalid address "0.0.0.0"`}},
		},
		{
			name: "unknown admin key",
			yaml: "admin:\n  tokenfile: /run/secrets/admin\n" + validConfig,
			want: []wantError{{"admin.tokenfile", 2, "unknown key; did you mean token_file?"}},
		},
		{
			name: "admin is a scalar",
			yaml: "admin: /run/secrets/admin\n" + validConfig,
			want: []wantError{{"admin", 1, `expected a mapping of keys to values, got "/run/secrets/admin"`}},
		},
		{
			name: "invalid log level",
			yaml: "log:\n  level: verbose\n" + validConfig,
			want: []wantError{{"log.level", 2, `invalid level "verbose"; use debug, info, warn or error`}},
		},
		{
			name: "invalid log format",
			yaml: "log:\n  format: xml\n" + validConfig,
			want: []wantError{{"log.format", 2, `invalid format "xml"; use json or text`}},
		},

		// Hosts and cluster names.
		{
			name: "host with scheme",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", "[https://dicom.example.test]", 1),
			want: []wantError{{"clusters.pacs.hosts[0]", 3, "without scheme or path"}},
		},
		{
			name: "host with path",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", "[dicom.example.test/dicom-web]", 1),
			want: []wantError{{"clusters.pacs.hosts[0]", 3, "without scheme or path"}},
		},
		{
			name: "host with port zero",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", "[dicom.example.test:0]", 1),
			want: []wantError{{"clusters.pacs.hosts[0]", 3, `invalid port in host "dicom.example.test:0"`}},
		},
		{
			name: "empty host",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", `[""]`, 1),
			want: []wantError{{"clusters.pacs.hosts[0]", 3, "a host must not be empty"}},
		},
		{
			name: "host in two clusters",
			yaml: validConfig + `  archive:
    hosts:
      - other.example.test
      - dicom.example.test
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: archive
      client_secret: test-secret-value
`,
			want: []wantError{{"clusters.pacs.hosts[0]", 3, `host "dicom.example.test" is also listed by cluster "archive"`}},
		},
		{
			name: "host in two clusters spelled differently",
			yaml: validConfig + `  archive:
    hosts: [DICOM.Example.Test.]
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: archive
      client_secret: test-secret-value
`,
			want: []wantError{{"clusters.pacs.hosts[0]", 3, `is also listed by cluster "archive"`}},
		},
		{
			name: "host twice in one cluster",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", "[dicom.example.test, dicom.example.test]", 1),
			want: []wantError{{"clusters.pacs.hosts[1]", 3, `host "dicom.example.test" is listed twice`}},
		},
		{
			name: "cluster name with slash",
			yaml: strings.Replace(validConfig, "pacs:", "pacs/eu:", 1),
			want: []wantError{{"clusters.pacs/eu", 2, `invalid cluster name "pacs/eu"`}},
		},

		// Other token keys.
		{
			name: "reserved param grant_type",
			yaml: validConfig + "      params:\n        grant_type: password\n",
			want: []wantError{{"clusters.pacs.token.params.grant_type", 9, "reserved parameter; use the grant key instead"}},
		},
		{
			name: "reserved param scope",
			yaml: validConfig + "      params:\n        scope: dicom\n",
			want: []wantError{{"clusters.pacs.token.params.scope", 9, "reserved parameter; use the scopes key instead"}},
		},
		{
			name: "reserved param client_secret",
			yaml: validConfig + "      params:\n        client_secret: other\n",
			want: []wantError{{"clusters.pacs.token.params.client_secret", 9, "use the client_secret or client_secret_file key instead"}},
		},
		{
			name: "unsupported grant",
			yaml: validConfig + "      grant: password\n",
			want: []wantError{{"clusters.pacs.token.grant", 8, `unsupported grant "password"; supported: client_credentials`}},
		},
		{
			name: "unsupported auth_method",
			yaml: validConfig + "      auth_method: client_secret_jwt\n",
			want: []wantError{{"clusters.pacs.token.auth_method", 8, `unsupported method "client_secret_jwt"`}},
		},
		{
			name: "scope with space",
			yaml: validConfig + "      scopes: [openid, \"dicom read\"]\n",
			want: []wantError{{"clusters.pacs.token.scopes[1]", 8, `invalid scope "dicom read"`}},
		},

		// Values of the wrong kind.
		{
			name: "root is a list",
			yaml: "- clusters\n",
			want: []wantError{{"", 1, "expected a mapping of keys to values, got a list"}},
		},
		{
			name: "clusters is a list",
			yaml: "clusters: [pacs]\n",
			want: []wantError{{"clusters", 1, "expected a mapping of names to values, got a list"}},
		},
		{
			name: "cluster is a list",
			yaml: "clusters:\n  pacs: [dicom.example.test]\n",
			want: []wantError{{"clusters.pacs", 2, "expected a mapping of keys to values, got a list"}},
		},
		{
			name: "token is a scalar",
			yaml: "clusters:\n  pacs:\n    token: https://idp.example.test/oauth2/token\n",
			want: []wantError{{"clusters.pacs.token", 3, `expected a mapping of keys to values, got "https://idp.example.test/oauth2/token"`}},
		},
		{
			name: "listen is a scalar",
			yaml: "listen: 127.0.0.1:9001\n" + validConfig,
			want: []wantError{{"listen", 1, `expected a mapping of keys to values, got "127.0.0.1:9001"`}},
		},
		{
			name: "hosts is a scalar",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", "dicom.example.test", 1),
			want: []wantError{{"clusters.pacs.hosts", 3, `expected a list, got "dicom.example.test"`}},
		},
		{
			name: "host is a mapping",
			yaml: strings.Replace(validConfig, "[dicom.example.test]", "[{name: dicom.example.test}]", 1),
			want: []wantError{{"clusters.pacs.hosts[0]", 3, "expected a single value, got a mapping"}},
		},
		{
			name: "token_url is a list",
			yaml: strings.Replace(validConfig, "https://idp.example.test/oauth2/token", "[https://idp.example.test/oauth2/token]", 1),
			want: []wantError{{"clusters.pacs.token.token_url", 5, "expected a single value, got a list"}},
		},
		{
			name: "params is a list",
			yaml: validConfig + "      params: [audience]\n",
			want: []wantError{{"clusters.pacs.token.params", 8, "expected a mapping of names to values, got a list"}},
		},

		// Files that are not a configuration.
		{
			name: "empty file",
			yaml: "",
			want: []wantError{{"", 0, "the file is empty; it needs at least a clusters section"}},
		},
		{
			name: "only comments",
			yaml: "# dicomweb-oauth\n\n",
			want: []wantError{{"", 0, "the file is empty"}},
		},
		{
			name: "invalid YAML",
			yaml: "clusters:\n  pacs: a\n   token: b\n",
			want: []wantError{{"", 0, "invalid YAML: line 3: "}},
		},
		{
			name: "tab indentation",
			yaml: "clusters:\n\tpacs:\n",
			want: []wantError{{"", 0, "invalid YAML: line 2: "}},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, tt.yaml)
			assertErrors(t, errs, tt.want)
		})
	}
}

// parseErrors parses data and returns its errors, failing the test when the
// data is valid.
func parseErrors(t *testing.T, data string) Errors {
	t.Helper()
	f, err := Parse("dicomweb-oauth.yaml", []byte(data))
	if err == nil {
		t.Fatalf("Parse returned no error and %+v; expected an error", f)
	}
	if f != nil {
		t.Errorf("Parse returned a configuration with its error; expected nil")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse returned %T (%v); expected config.Errors", err, err)
	}
	return errs
}

func assertErrors(t *testing.T, errs Errors, want []wantError) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, expected %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		e := errs[i]
		if e.Path != w.path {
			t.Errorf("error %d: path is %q, expected %q (%v)", i, e.Path, w.path, e)
		}
		if e.Line != w.line {
			t.Errorf("error %d: line is %d, expected %d (%v)", i, e.Line, w.line, e)
		}
		if !strings.Contains(e.Msg, w.msg) {
			t.Errorf("error %d: message is %q, expected it to contain %q", i, e.Msg, w.msg)
		}
		if e.File != "dicomweb-oauth.yaml" {
			t.Errorf("error %d: file is %q, expected dicomweb-oauth.yaml", i, e.File)
		}
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	t.Parallel()
	const data = `listen:
  grcp: 127.0.0.1:9001
log:
  level: verbose
clusters:
  pacs:
    token:
      token_url: ftp://idp.example.test/oauth2/token
      client_id: orthanc
      client_secret: test-secret-value
      refresh_before: 5 minutes
      params:
        scope: dicom
`
	errs := parseErrors(t, data)

	assertErrors(t, errs, []wantError{
		{"listen.grcp", 2, "did you mean grpc?"},
		{"log.level", 4, "invalid level"},
		{"clusters.pacs.token.token_url", 8, "the scheme must be https"},
		{"clusters.pacs.token.refresh_before", 11, "invalid duration"},
		{"clusters.pacs.token.params.scope", 13, "reserved parameter"},
	})
}

func TestErrorsMessage(t *testing.T) {
	t.Parallel()
	errs := parseErrors(t, `clusters:
  pacs:
    token:
      tokne_url: https://idp.example.test/oauth2/token
      client_id: orthanc
      client_secret: test-secret-value
`)

	got := errs.Error()
	want := "dicomweb-oauth.yaml:3: clusters.pacs.token.token_url: missing; " +
		"set the identity provider's token endpoint URL, or issuer for discovery\n" +
		"dicomweb-oauth.yaml:4: clusters.pacs.token.tokne_url: unknown key; did you mean token_url?"
	if got != want {
		t.Errorf("Error() is\n%s\nexpected\n%s", got, want)
	}
}

func TestErrorMessageWithoutLine(t *testing.T) {
	t.Parallel()
	e := &Error{File: "dicomweb-oauth.yaml", Path: "clusters", Msg: "missing"}

	if got, want := e.Error(), "dicomweb-oauth.yaml: clusters: missing"; got != want {
		t.Errorf("Error() is %q, expected %q", got, want)
	}
}

func TestParseJSON(t *testing.T) {
	t.Parallel()
	const data = `{
  "listen": {"grpc": "127.0.0.1:19001"},
  "clusters": {
    "pacs": {
      "hosts": ["dicom.example.test"],
      "token": {
        "token_url": "https://idp.example.test/oauth2/token",
        "client_id": "orthanc",
        "client_secret": "test-secret-value",
        "scopes": ["dicom.read"],
        "refresh_before": "2m"
      }
    }
  }
}`
	f, err := Parse("dicomweb-oauth.json", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	if f.Listen.GRPC != "127.0.0.1:19001" {
		t.Errorf("listen.grpc is %q, expected 127.0.0.1:19001", f.Listen.GRPC)
	}
	token := f.Clusters["pacs"].Token
	if token.ClientID != "orthanc" {
		t.Errorf("client_id is %q, expected orthanc", token.ClientID)
	}
	if len(token.Scopes) != 1 || token.Scopes[0] != "dicom.read" {
		t.Errorf("scopes are %q, expected [dicom.read]", token.Scopes)
	}
	if token.RefreshBefore != 2*time.Minute {
		t.Errorf("refresh_before is %s, expected 2m0s", token.RefreshBefore)
	}
}

func TestParseJSONErrorLine(t *testing.T) {
	t.Parallel()
	errs := parseErrors(t, `{
  "clusters": {
    "pacs": {
      "token": {
        "token_url": "https://idp.example.test/oauth2/token",
        "client_id": "orthanc",
        "client_secret": "test-secret-value",
        "timeout": "10 seconds"
      }
    }
  }
}`)

	assertErrors(t, errs, []wantError{{"clusters.pacs.token.timeout", 8, `invalid duration "10 seconds"`}})
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	f, err := Parse("dicomweb-oauth.yaml", []byte(validConfig))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	for key, addr := range map[string]string{
		"listen.grpc": f.Listen.GRPC, "listen.http": f.Listen.HTTP, "listen.admin": f.Listen.Admin,
	} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("%s default %q is not host:port: %v", key, addr, err)
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("%s default %q is not on loopback", key, addr)
		}
		if port == "0" {
			t.Errorf("%s default %q has no fixed port", key, addr)
		}
	}
	if f.Log.Level != "info" {
		t.Errorf("log.level is %q, expected info", f.Log.Level)
	}
	if f.Log.Format != "json" {
		t.Errorf("log.format is %q, expected json", f.Log.Format)
	}
	if f.DecisionTimeout != extproc.DefaultDecisionTimeout {
		t.Errorf("decision_timeout is %s, expected %s", f.DecisionTimeout, extproc.DefaultDecisionTimeout)
	}

	token := f.Clusters["pacs"].Token
	if token.Grant != tokens.GrantClientCredentials {
		t.Errorf("grant is %q, expected %q", token.Grant, tokens.GrantClientCredentials)
	}
	if token.AuthMethod != tokens.AuthClientSecretBasic {
		t.Errorf("auth_method is %q, expected %q", token.AuthMethod, tokens.AuthClientSecretBasic)
	}
	if token.RefreshBefore != 5*time.Minute {
		t.Errorf("refresh_before is %s, expected 5m0s", token.RefreshBefore)
	}
	if token.DefaultLifetime != tokens.DefaultLifetime {
		t.Errorf("default_lifetime is %s, expected %s", token.DefaultLifetime, tokens.DefaultLifetime)
	}
	if token.Timeout != tokens.DefaultTimeout {
		t.Errorf("timeout is %s, expected %s", token.Timeout, tokens.DefaultTimeout)
	}
	if token.ClockSkew != tokens.DefaultClockSkew {
		t.Errorf("clock_skew is %s, expected %s", token.ClockSkew, tokens.DefaultClockSkew)
	}
}

func TestParseKeepsSetValues(t *testing.T) {
	t.Parallel()
	data := `listen:
  grpc: 127.0.0.1:19001
  http: 127.0.0.1:19002
  admin: 127.0.0.1:19901
log:
  level: debug
  format: text
decision_timeout: 50ms
` + validConfig + `      auth_method: client_secret_post
      refresh_before: 90s
      timeout: 3s
`
	f, err := Parse("dicomweb-oauth.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	if f.Listen.Admin != "127.0.0.1:19901" {
		t.Errorf("listen.admin is %q, expected 127.0.0.1:19901", f.Listen.Admin)
	}
	if f.Log.Level != "debug" {
		t.Errorf("log.level is %q, expected debug", f.Log.Level)
	}
	if f.Log.Format != "text" {
		t.Errorf("log.format is %q, expected text", f.Log.Format)
	}
	if f.DecisionTimeout != 50*time.Millisecond {
		t.Errorf("decision_timeout is %s, expected 50ms", f.DecisionTimeout)
	}
	token := f.Clusters["pacs"].Token
	if token.AuthMethod != tokens.AuthClientSecretPost {
		t.Errorf("auth_method is %q, expected %q", token.AuthMethod, tokens.AuthClientSecretPost)
	}
	if token.RefreshBefore != 90*time.Second {
		t.Errorf("refresh_before is %s, expected 1m30s", token.RefreshBefore)
	}
	if token.Timeout != 3*time.Second {
		t.Errorf("timeout is %s, expected 3s", token.Timeout)
	}
}

func TestParseZeroPortsMayRepeat(t *testing.T) {
	t.Parallel()
	data := "listen:\n  grpc: 127.0.0.1:0\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n" + validConfig

	if _, err := Parse("dicomweb-oauth.yaml", []byte(data)); err != nil {
		t.Errorf("Parse rejected three listeners on port 0: %v", err)
	}
}

func TestParseAdminTokenFile(t *testing.T) {
	tests := []struct {
		name      string
		admin     string
		tokenFile string
	}{
		{"IPv4 loopback without token file", "127.0.0.1:9901", ""},
		{"other 127/8 address without token file", "127.8.9.10:9901", ""},
		{"IPv6 loopback without token file", "\"[::1]:9901\"", ""},
		{"localhost without token file", "localhost:9901", ""},
		{"loopback with token file", "127.0.0.1:9901", "/run/secrets/admin-token"},
		{"every interface with token file", "0.0.0.0:9901", "/run/secrets/admin-token"},
		{"host name with token file", "admin.example.test:9901", "/run/secrets/admin-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := "listen:\n  admin: " + tt.admin + "\n" + validConfig
			if tt.tokenFile != "" {
				data = "admin:\n  token_file: " + tt.tokenFile + "\n" + data
			}

			f, err := Parse("dicomweb-oauth.yaml", []byte(data))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if f.Admin.TokenFile != tt.tokenFile {
				t.Errorf("admin.token_file is %q, expected %q", f.Admin.TokenFile, tt.tokenFile)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9901", true},
		{"127.255.255.254:9901", true},
		{"[::1]:9901", true},
		{"[::ffff:127.0.0.1]:9901", true},
		{"localhost:9901", true},
		{"LocalHost:9901", true},
		{"0.0.0.0:9901", false},
		{":9901", false},
		{"[::]:9901", false},
		{"10.0.0.5:9901", false},
		{"128.0.0.1:9901", false},
		{"localhost.example.test:9901", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			if got := IsLoopback(tt.addr); got != tt.want {
				t.Errorf("IsLoopback(%q) is %v, expected %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestRedactedKeepsAdminTokenFile(t *testing.T) {
	t.Parallel()
	data := "admin:\n  token_file: /run/secrets/admin-token\n" + validConfig
	f, err := Parse("dicomweb-oauth.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	out, err := yaml.Marshal(f.Redacted())
	if err != nil {
		t.Fatalf("yaml.Marshal: %v", err)
	}
	if !strings.Contains(string(out), "admin:\n    token_file: /run/secrets/admin-token\n") {
		t.Errorf("the redacted configuration does not show admin.token_file:\n%s", out)
	}
}

func TestClusterNamesAndHosts(t *testing.T) {
	t.Parallel()
	data := validConfig + `  archive:
    token:
      token_url: https://idp.example.test/oauth2/token
      client_id: archive
      client_secret: test-secret-value
`
	f, err := Parse("dicomweb-oauth.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	names := f.ClusterNames()
	if strings.Join(names, ",") != "archive,pacs" {
		t.Errorf("ClusterNames() is %q, expected [archive pacs]", names)
	}
	hosts := f.ClusterHosts()
	if got := hosts["pacs"]; len(got) != 1 || got[0] != "dicom.example.test" {
		t.Errorf("ClusterHosts()[pacs] is %q, expected [dicom.example.test]", got)
	}
	if got, ok := hosts["archive"]; !ok || len(got) != 0 {
		t.Errorf("ClusterHosts()[archive] is %q (present %v), expected an empty entry", got, ok)
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	f, err := Parse("dicomweb-oauth.yaml", []byte(validConfig))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	r := f.Redacted()

	if got := r.Clusters["pacs"].Token.ClientSecret; got != Redacted {
		t.Errorf("redacted client_secret is %q, expected %q", got, Redacted)
	}
	if got := f.Clusters["pacs"].Token.ClientSecret; got != testSecret {
		t.Errorf("Redacted changed the original client_secret to %q, expected %q", got, testSecret)
	}
	if got := r.Clusters["pacs"].Token.ClientID; got != "orthanc" {
		t.Errorf("redacted client_id is %q, expected orthanc", got)
	}
	out, err := yaml.Marshal(r)
	if err != nil {
		t.Fatalf("yaml.Marshal: %v", err)
	}
	if strings.Contains(string(out), testSecret) {
		t.Errorf("the redacted configuration contains the secret:\n%s", out)
	}
	if !strings.Contains(string(out), Redacted) {
		t.Errorf("the redacted configuration does not show %q:\n%s", Redacted, out)
	}
}

func TestRedactedKeepsSecretFile(t *testing.T) {
	t.Parallel()
	data := strings.Replace(validConfig, "client_secret: test-secret-value", "client_secret_file: /run/secrets/pacs", 1)
	f, err := Parse("dicomweb-oauth.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	token := f.Redacted().Clusters["pacs"].Token

	if token.ClientSecret != "" {
		t.Errorf("redacted client_secret is %q, expected empty when client_secret_file is used", token.ClientSecret)
	}
	if token.ClientSecretFile != "/run/secrets/pacs" {
		t.Errorf("redacted client_secret_file is %q, expected /run/secrets/pacs", token.ClientSecretFile)
	}
}

func TestRedactedOutputParses(t *testing.T) {
	t.Parallel()
	f, err := Parse("dicomweb-oauth.yaml", []byte(validConfig))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := yaml.Marshal(f.Redacted())
	if err != nil {
		t.Fatalf("yaml.Marshal: %v", err)
	}

	again, err := Parse("redacted.yaml", out)
	if err != nil {
		t.Fatalf("the printed configuration does not parse: %v\n%s", err, out)
	}
	if again.Clusters["pacs"].Token.RefreshBefore != f.Clusters["pacs"].Token.RefreshBefore {
		t.Errorf("refresh_before is %s after printing, expected %s",
			again.Clusters["pacs"].Token.RefreshBefore, f.Clusters["pacs"].Token.RefreshBefore)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dicomweb-oauth.yaml")
	if err := os.WriteFile(path, []byte(validConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, ok := f.Clusters["pacs"]; !ok {
		t.Errorf("Load returned clusters %q, expected pacs", f.ClusterNames())
	}
}

func TestLoadErrorsNameFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("log:\n  level: loud\n"+validConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	tests := []struct {
		name string
		path string
		want string
	}{
		{"invalid file", invalid, invalid + ":2: log.level: invalid level"},
		{"missing file", missing, "reading the configuration: open " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path)
			if err == nil {
				t.Fatal("Load returned no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error is %q, expected it to contain %q", err, tt.want)
			}
		})
	}
}
