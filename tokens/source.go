package tokens

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
)

// NewSource builds the token source that a Config describes, after
// SetDefaults and Validate. It reads the files the grant needs at startup
// (client secret, private key, certificates, service account key), so it
// fails when one is missing or invalid; files that the platform rotates
// (assertion, token and refresh token files) are read for every request.
func NewSource(c *Config, opts ...SourceOption) (Source, error) {
	var so sourceOptions
	for _, opt := range opts {
		opt(&so)
	}
	client, err := newHTTPClient(c, so.tracerProvider)
	if err != nil {
		return nil, err
	}

	var source Source
	switch c.Grant {
	case GrantClientCredentials, GrantWorkloadIdentity, GrantRefreshToken:
		source, err = newEndpointSource(c, client)
	case GrantJWTBearer:
		source, err = newJWTBearer(c, client)
	case GrantManagedIdentity:
		source = newManagedIdentity(c, client)
	case GrantMetadataServer:
		source = newMetadataServer(c, client)
	case GrantFile:
		source = newFileSource(c)
	case GrantExec:
		source = newExecSource(c)
	default:
		return nil, fmt.Errorf("grant: unsupported grant %q", c.Grant)
	}
	if err != nil {
		return nil, err
	}

	if c.Verify.Enabled() {
		source = newVerifyingSource(source, c.Verify, client)
	}
	return source, nil
}

// SourceOption changes how NewSource builds a source.
type SourceOption func(*sourceOptions)

type sourceOptions struct {
	tracerProvider trace.TracerProvider
}

// WithSourceTracerProvider gives every HTTP request of the source a client
// span from tp.
func WithSourceTracerProvider(tp trace.TracerProvider) SourceOption {
	return func(o *sourceOptions) { o.tracerProvider = tp }
}

// SettingsOf returns the Manager timing rules of a Config.
func SettingsOf(c *Config) Settings {
	return Settings{
		RefreshBefore: c.RefreshBefore, ClockSkew: c.ClockSkew, Timeout: c.Timeout,
		InsecureTLS: c.TLS.InsecureSkipVerify, Grant: c.Grant, Provider: c.Provider,
	}
}

// newHTTPClient returns the client for token requests: TLS 1.2 or later with
// the configured roots and client certificate, proxy settings from the
// environment, no redirects (a token endpoint that redirects is
// misconfigured, and a redirected POST would lose its body), and the whole
// request bounded by the configured timeout.
func newHTTPClient(c *Config, tp trace.TracerProvider) (*http.Client, error) {
	tlsConfig, err := newTLSConfig(c.TLS)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	var base http.RoundTripper = transport
	if tp != nil {
		// A client span per HTTP request, a child of the acquisition span.
		base = otelhttp.NewTransport(transport, otelhttp.WithTracerProvider(tp))
	}
	return &http.Client{
		Transport: recordingTransport{base: base},
		Timeout:   c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

func newTLSConfig(c TLSConfig) (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}

	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s contains no PEM certificate", c.CAFile)
		}
		config.RootCAs = pool
	}
	if c.ClientCertificateFile != "" {
		cert, err := tls.LoadX509KeyPair(c.ClientCertificateFile, c.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_certificate_file: %w", err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	return config, nil
}
