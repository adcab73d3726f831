package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/cmd/dicomweb-oauth/internal/config"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

const diagnoseUsage = `usage: dicomweb-oauth diagnose --config FILE [CLUSTER] [--qido URL] [--show-token]
                                [--use-refresh-token]

Checks each cluster, or only CLUSTER, step by step: the token endpoint
(DNS, TCP, TLS), a token request, the token's claims, what the
configuration expects of them and, with --qido, one QIDO-RS request to
the DICOMweb server. It prints one line per check and a hint under each
failure. Exit status: 0 when every check passed, 1 when one failed,
2 for a usage error.
`

// diagnoseOptions are the command line settings of diagnose.
type diagnoseOptions struct {
	configPath string
	cluster    string
	// qidoURL is the DICOMweb base URL, ending in a slash.
	qidoURL    string
	qidoCAFile string
	showToken  bool
	// useRefreshToken allows the token request of the refresh_token grant.
	useRefreshToken bool
}

// network contains the lookups that diagnose runs itself, so that tests
// can replace them. The token request and the QIDO-RS request use the
// system's resolver and proxy settings.
type network struct {
	lookupHost func(ctx context.Context, host string) ([]string, error)
	// proxy returns the proxy of a request, or nil for a direct connection.
	proxy func(*http.Request) (*url.URL, error)
}

var systemNetwork = network{
	lookupHost: net.DefaultResolver.LookupHost,
	proxy:      http.ProxyFromEnvironment,
}

// diagnose runs the diagnose command and returns its exit code.
func diagnose(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runDiagnose(ctx, args, stdout, stderr, systemNetwork)
}

func runDiagnose(ctx context.Context, args []string, stdout, stderr io.Writer, nw network) int {
	opts, code, ok := parseDiagnoseArgs(args, stderr)
	if !ok {
		return code
	}
	cfg, err := config.Load(opts.configPath)
	if err != nil {
		fmt.Fprintf(stderr, "invalid configuration:\n%v\n", err)
		return exitFailed
	}
	names, err := selectClusters(cfg, opts)
	if err != nil {
		fmt.Fprintf(stderr, "diagnose: %v\n", err)
		return exitUsage
	}

	failed := 0
	for i, name := range names {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		d := &diagnosis{
			cluster: name, config: cfg.Clusters[name].Token, opts: opts,
			network: nw, report: &report{w: stdout},
		}
		if d.run(ctx) > 0 {
			failed++
		}
	}
	if failed > 0 {
		return exitFailed
	}
	return exitOK
}

// parseDiagnoseArgs reads the flags and the optional cluster name, which
// may stand before, between or after the flags. When ok is false, the
// command ends with code, after the usage went to stderr.
func parseDiagnoseArgs(args []string, stderr io.Writer) (opts diagnoseOptions, code int, ok bool) {
	flags := newDiagnoseFlags(&opts, stderr)
	var positional []string
	for {
		if err := flags.Parse(args); errors.Is(err, flag.ErrHelp) {
			return opts, exitOK, false
		} else if err != nil {
			// The flag package has printed the error and the usage.
			return opts, exitUsage, false
		}
		if flags.NArg() == 0 {
			break
		}
		positional = append(positional, flags.Arg(0))
		args = flags.Args()[1:]
	}

	if err := checkDiagnoseOptions(&opts, positional); err != nil {
		fmt.Fprintf(stderr, "diagnose: %v\n\n", err)
		flags.Usage()
		return opts, exitUsage, false
	}
	return opts, exitOK, true
}

func newDiagnoseFlags(opts *diagnoseOptions, stderr io.Writer) *flag.FlagSet {
	flags := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprint(stderr, diagnoseUsage+"\nOptions:\n")
		flags.PrintDefaults()
	}
	flags.StringVar(&opts.configPath, "config", "", "path of the YAML or JSON configuration `file`")
	flags.StringVar(&opts.qidoURL, "qido", "",
		"DICOMweb base `URL` of the cluster, such as https://pacs.example.org/dicom-web/;\n"+
			"sends GET URL/studies?limit=1 with the token")
	flags.StringVar(&opts.qidoCAFile, "qido-ca-file", "",
		"PEM `file` of the CAs that replace the system roots for --qido")
	flags.BoolVar(&opts.showToken, "show-token", false,
		"print the access token; it is a secret that grants access until it expires")
	flags.BoolVar(&opts.useRefreshToken, "use-refresh-token", false,
		"request a token for refresh_token clusters too, which can rotate the refresh token;\n"+
			"stop the service first and restart it afterwards")
	return flags
}

func checkDiagnoseOptions(opts *diagnoseOptions, positional []string) error {
	if opts.configPath == "" {
		return errors.New("missing --config FILE")
	}
	if len(positional) > 1 {
		return fmt.Errorf("one CLUSTER at most, got %q", positional)
	}
	if len(positional) == 1 {
		opts.cluster = positional[0]
	}
	if opts.qidoCAFile != "" && opts.qidoURL == "" {
		return errors.New("--qido-ca-file needs --qido URL")
	}
	if opts.qidoURL == "" {
		return nil
	}
	u, err := url.Parse(opts.qidoURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("invalid --qido URL %q; write the DICOMweb base URL, such as "+
			"https://pacs.example.org/dicom-web/", opts.qidoURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid --qido URL %q; write the base URL without credentials, query or fragment",
			opts.qidoURL)
	}
	if !strings.HasSuffix(opts.qidoURL, "/") {
		opts.qidoURL += "/"
	}
	return nil
}

// selectClusters returns the clusters to check, in name order.
func selectClusters(cfg *config.File, opts diagnoseOptions) ([]string, error) {
	names := cfg.ClusterNames()
	if opts.cluster != "" {
		if !slices.Contains(names, opts.cluster) {
			return nil, fmt.Errorf("unknown cluster %q; the configuration has: %s",
				opts.cluster, strings.Join(names, ", "))
		}
		return []string{opts.cluster}, nil
	}
	if opts.qidoURL != "" && len(names) > 1 {
		return nil, fmt.Errorf("--qido needs a CLUSTER, because the configuration has %d clusters (%s)",
			len(names), strings.Join(names, ", "))
	}
	return names, nil
}

// diagnosis is the run of the checks for one cluster.
type diagnosis struct {
	cluster string
	config  tokens.Config
	opts    diagnoseOptions
	network network
	report  *report

	// token and claims are set once the token check passes; claims stays
	// nil for a token that is not a JWT.
	token  *tokens.Token
	claims *tokens.Claims
}

// run prints the checks of one cluster and returns the number that failed.
func (d *diagnosis) run(ctx context.Context) int {
	fmt.Fprintf(d.report.w, "cluster %s (grant %s%s)\n", d.cluster, d.config.Grant, d.providerSuffix())

	reachable := d.checkEndpoint(ctx)
	if reachable {
		d.checkToken(ctx)
	} else {
		d.report.skip("token", "not run, because an endpoint check above failed")
	}
	if d.token != nil {
		d.checkClaims()
		d.checkExpectations(ctx)
	}
	if d.opts.qidoURL != "" {
		d.checkQIDO(ctx)
	}
	d.report.summary(d.cluster)
	return d.report.failed
}

func (d *diagnosis) providerSuffix() string {
	if d.config.Provider == "" {
		return ""
	}
	return ", provider " + d.config.Provider
}

// stepContext bounds one network step by token.timeout.
func (d *diagnosis) stepContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.config.Timeout)
}

// formatTime writes t in UTC to the second, with its distance from now.
func formatTime(t, now time.Time) string {
	s := t.UTC().Format("2006-01-02 15:04:05 UTC")
	switch d := t.Sub(now).Round(time.Second); {
	case d > 0:
		return s + " (in " + formatDuration(d) + ")"
	case d < 0:
		return s + " (" + formatDuration(-d) + " ago)"
	}
	return s + " (now)"
}

// formatDuration writes d as whole days from two days on, and as
// time.Duration.String below that.
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= 2*day {
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}
