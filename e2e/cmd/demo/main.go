// Command demo runs the DICOMweb flow of the end-to-end tests once and prints
// what was sent, what arrived and how many tokens were fetched. It builds the
// dicomweb-oauth service unless -bin names a binary, starts the chain on free
// ports of 127.0.0.1 in a temporary folder, and stops everything before it
// exits. The exit status is 1 if any step failed.
//
//	go run ./e2e/cmd/demo [-bin PATH] [-timeout 2m] [-logs] [-keep] [-verbose]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/chain"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
)

// logTailLines is how many lines of each process's output -logs and a
// failure print.
const logTailLines = 40

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	binary  string
	timeout time.Duration
	logs    bool
	keep    bool
	verbose bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	flags := flag.NewFlagSet("demo", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&o.binary, "bin", "", "dicomweb-oauth binary to run; empty builds "+harness.ServicePackage)
	flags.DurationVar(&o.timeout, "timeout", 2*time.Minute, "time limit for building, starting and the flow")
	flags.BoolVar(&o.logs, "logs", false, "print the end of each process's output also on success")
	flags.BoolVar(&o.keep, "keep", false, "keep the temporary folder with configurations and logs")
	flags.BoolVar(&o.verbose, "verbose", false, "run Orthanc with --verbose, which logs each DICOMweb call")
	err := flags.Parse(args)
	return o, err
}

// run returns the exit status: 0 when the flow passed, 1 when it failed and
// 2 for invalid flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	if err := checkComponents(ctx); err != nil {
		fmt.Fprintf(stderr, "demo: %v\nInstall them with: make deps\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "dicomweb-oauth-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "demo: create temporary folder: %v\n", err)
		return 1
	}
	if o.keep {
		fmt.Fprintf(stdout, "configurations and logs are kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	if o.binary == "" {
		o.binary = filepath.Join(dir, "bin", "dicomweb-oauth")
		fmt.Fprintf(stdout, "building %s ...\n", harness.ServicePackage)
		if err := harness.BuildService(ctx, o.binary); err != nil {
			fmt.Fprintf(stderr, "demo: %v\n", err)
			return 1
		}
	}
	return runChain(ctx, harness.NewEnv(dir), o, stdout, stderr)
}

func checkComponents(ctx context.Context) error {
	_, _, orthancErr := harness.FindOrthanc()
	_, nginxErr := harness.FindNginx()
	_, samplesErr := chain.SampleDir(ctx)
	return errors.Join(orthancErr, nginxErr, samplesErr)
}

// runChain starts the chain in env, runs the flow, prints the result and
// stops every process.
func runChain(ctx context.Context, env *harness.Env, o options, stdout, stderr io.Writer) int {
	failed := false
	defer func() {
		if failed || o.logs {
			fmt.Fprintf(stderr, "\noutput of the test bed processes:\n%s", env.LogTails(logTailLines))
		}
		if err := env.Close(); err != nil {
			fmt.Fprintf(stderr, "demo: stop test bed: %v\n", err)
		}
	}()

	c, err := chain.Start(ctx, env, chain.Options{ServiceBinary: o.binary, OrthancVerbose: o.verbose})
	if err != nil {
		failed = true
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	printChain(stdout, c)

	result, err := chain.Run(ctx, c, chain.Samples)
	fmt.Fprintln(stdout)
	if tableErr := result.WriteTable(stdout); tableErr != nil {
		fmt.Fprintf(stderr, "demo: write table: %v\n", tableErr)
	}
	fmt.Fprintln(stdout)

	switch {
	case err != nil:
		failed = true
		fmt.Fprintf(stdout, "FAIL: %v\n", err)
	case !result.OK() || result.TokenRequests == 0:
		failed = true
		fmt.Fprintln(stdout, "FAIL: the flow finished but the result is incomplete")
	default:
		fmt.Fprintf(stdout, "PASS: %d files sent through nginx and arrived on Orthanc B "+
			"with %d token request(s) at the issuer\n", len(result.Files), result.TokenRequests)
	}
	if failed {
		return 1
	}
	return 0
}

func printChain(w io.Writer, c *chain.Chain) {
	fmt.Fprintln(w, "chain: Orthanc A -> nginx (auth_request to dicomweb-oauth) -> gate -> Orthanc B")
	fmt.Fprintf(w, "  Orthanc A       %s\n", c.OrthancA.URL)
	fmt.Fprintf(w, "  nginx           %s\n", c.Nginx.URL)
	fmt.Fprintf(w, "  dicomweb-oauth  %s (admin http://%s)\n", c.CheckURL, c.Service.AdminAddr)
	fmt.Fprintf(w, "  token issuer    %s\n", c.Issuer.URL())
	fmt.Fprintf(w, "  gate            %s (audience %s)\n", c.Gate.URL(), chain.Audience)
	fmt.Fprintf(w, "  Orthanc B       %s\n", c.OrthancB.URL)
}
