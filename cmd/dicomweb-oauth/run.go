package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"go.yaml.in/yaml/v3"

	"github.com/dicomweb-oauth/dicomweb-oauth/cmd/dicomweb-oauth/internal/config"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usage = `usage: dicomweb-oauth COMMAND --config FILE
       dicomweb-oauth diagnose --config FILE [CLUSTER] [--qido URL] [--show-token]
       dicomweb-oauth healthcheck [--url URL]

Commands:
  serve          serve tokens to the proxy until SIGTERM or SIGINT
  check-config   validate the configuration and print it with secrets redacted
  diagnose       check each cluster step by step (DNS, TCP, TLS, token, claims,
                 audience, scopes, and a QIDO-RS request with --qido) and
                 print a hint under each failure
  healthcheck    exit 0 when the running service is ready, that is when every
                 cluster's first token request has ended (a cluster without
                 a token then answers 503); for container health checks in
                 images without curl (default URL http://127.0.0.1:9901/readyz)
  version        print the version
`

// Main runs the command line and returns the process exit code. It returns
// when the command is done or, for serve, when ctx ends.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}

	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve", "check-config":
	case "version", "--version":
		fmt.Fprintln(stdout, buildVersion())
		return exitOK
	case "healthcheck":
		return healthcheck(ctx, rest, stdout, stderr)
	case "diagnose":
		return diagnose(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}

	flags := flag.NewFlagSet(cmd, flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, usage) }
	path := flags.String("config", "", "path of the YAML or JSON configuration `file`")
	if err := flags.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *path == "" || flags.NArg() > 0 {
		fmt.Fprintf(stderr, "%s needs --config FILE and no other arguments\n\n%s", cmd, usage)
		return exitUsage
	}

	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "invalid configuration:\n%v\n", err)
		return exitFailed
	}

	if cmd == "check-config" {
		return checkConfig(cfg, stdout, stderr)
	}
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "dicomweb-oauth: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// checkConfig prints the resolved configuration with secrets redacted. It
// first builds each cluster's token source, which reads the files the grant
// needs (serve fails when one is missing or invalid), and prints only those
// errors when any fails.
func checkConfig(cfg *config.File, stdout, stderr io.Writer) int {
	code := exitOK
	for _, name := range cfg.ClusterNames() {
		// Building the source reads every file the grant needs, such as
		// the client secret or the private key, without any network request.
		if _, err := tokens.NewSource(&cfg.Clusters[name].Token); err != nil {
			fmt.Fprintf(stderr, "clusters.%s.token.%v\n", name, err)
			code = exitFailed
		}
	}
	if cfg.Admin.TokenFile != "" {
		if _, err := readAdminToken(cfg.Admin.TokenFile); err != nil {
			fmt.Fprintf(stderr, "admin.token_file: %v\n", err)
			code = exitFailed
		}
	}
	if code != exitOK {
		return code
	}

	out, err := yaml.Marshal(cfg.Redacted())
	if err != nil {
		fmt.Fprintf(stderr, "printing the configuration: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "# configuration is valid; %d cluster(s); secrets redacted\n%s",
		len(cfg.Clusters), out)
	return exitOK
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
