// Command demo runs the DICOMweb flow of the end-to-end tests once and prints
// what was sent, what arrived and how many tokens were fetched. It builds the
// dicomweb-oauth service unless -bin names a binary, starts the chain on free
// ports of 127.0.0.1 in a temporary folder, and stops everything before it
// exits. The exit status is 1 if any step failed.
//
//	go run ./e2e/cmd/demo [-bin PATH] [-proxy nginx] [-large] [-timeout 2m] [-logs] [-keep] [-verbose]
//
// The -proxy values envoysim-ext-proc, envoysim-ext-proc-upstream and
// envoysim-ext-authz put the test bed's simulated Envoy (e2e/envoysim) in
// place of nginx. It runs inside the demo and needs neither nginx nor Envoy.
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
	"slices"
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
	proxy   string
	large   bool
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
	flags.StringVar(&o.proxy, "proxy", string(chain.ProxyNginx), fmt.Sprintf(
		"proxy and configuration: %s (the test bed's nginx.conf), %s (deploy/nginx/), "+
			"%s (envoy/ext-proc.yaml, needs envoy on PATH), "+
			"or the simulated Envoy with one filter: %s, %s or %s",
		chain.ProxyNginx, chain.ProxyShippedNginx, chain.ProxyShippedEnvoy,
		chain.ProxyEnvoySimExtProc, chain.ProxyEnvoySimExtProcUpstream, chain.ProxyEnvoySimExtAuthz))
	flags.BoolVar(&o.large, "large", false, "also send a generated instance of 24 MiB with STOW-RS and retrieve it with WADO-RS")
	flags.DurationVar(&o.timeout, "timeout", 2*time.Minute, "time limit for building, starting and the flow")
	flags.BoolVar(&o.logs, "logs", false, "print the end of each process's output also on success")
	flags.BoolVar(&o.keep, "keep", false, "keep the temporary folder with configurations and logs")
	flags.BoolVar(&o.verbose, "verbose", false, "run Orthanc with --verbose, which logs each DICOMweb call")
	if err := flags.Parse(args); err != nil {
		return o, err
	}
	if !slices.Contains(chain.Proxies, chain.Proxy(o.proxy)) {
		err := fmt.Errorf("invalid -proxy %q", o.proxy)
		fmt.Fprintln(stderr, err)
		flags.Usage()
		return o, err
	}
	return o, nil
}

// run returns the exit status: 0 when the flow passed, 1 when it failed and
// 2 for invalid flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	if err := checkComponents(ctx, chain.Proxy(o.proxy)); err != nil {
		fmt.Fprintf(stderr, "demo: %v\nInstall Orthanc, nginx and pydicom with: make deps\n", err)
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

func checkComponents(ctx context.Context, proxy chain.Proxy) error {
	_, _, orthancErr := harness.FindOrthanc()
	_, samplesErr := chain.SampleDir(ctx)
	var proxyErr error
	switch {
	case proxy.IsEnvoySim():
		// The simulated Envoy runs inside the demo.
	case proxy == chain.ProxyShippedEnvoy:
		_, proxyErr = harness.FindEnvoy()
	default:
		_, proxyErr = harness.FindNginx()
	}
	return errors.Join(orthancErr, proxyErr, samplesErr)
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

	c, err := chain.Start(ctx, env, chain.Options{
		ServiceBinary:  o.binary,
		Proxy:          chain.Proxy(o.proxy),
		OrthancVerbose: o.verbose,
	})
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
		fmt.Fprintf(stdout, "PASS: %d files sent through %s and arrived on Orthanc B "+
			"with %d token request(s) at the issuer\n", len(result.Files), o.proxy, result.TokenRequests)
	}
	if o.large && !failed {
		failed = !runLarge(ctx, c, env.Dir(), stdout)
	}
	if failed {
		return 1
	}
	return 0
}

// runLarge sends a generated large instance through the chain, prints what
// arrived, and reports whether it arrived unchanged.
func runLarge(ctx context.Context, c *chain.Chain, dir string, stdout io.Writer) bool {
	large, err := chain.GenerateLarge(ctx, dir)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL: %v\n", err)
		return false
	}
	result, err := chain.RunLarge(ctx, c, large)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL: large instance: %v\n", err)
		return false
	}
	fmt.Fprintf(stdout, "large instance     %v\n", large.Digest)
	fmt.Fprintf(stdout, "  on Orthanc B     %v\n", result.Arrived)
	fmt.Fprintf(stdout, "  back on A        %v\n", result.Retrieved)
	if result.Arrived != large.Digest || result.Retrieved != large.Digest {
		fmt.Fprintln(stdout, "FAIL: the large instance changed on its way")
		return false
	}
	fmt.Fprintln(stdout, "PASS: the large instance arrived with STOW-RS and came back with WADO-RS unchanged")
	return true
}

func printChain(w io.Writer, c *chain.Chain) {
	var proxyURL, proxyText string
	switch {
	case c.EnvoySim != nil:
		proxyURL, proxyText = c.EnvoySim.URL(), "simulated Envoy (gRPC to dicomweb-oauth)"
	case c.Envoy != nil:
		proxyURL, proxyText = c.Envoy.URL, "Envoy (ext_proc to dicomweb-oauth)"
	default:
		proxyURL, proxyText = c.Nginx.URL, "nginx (auth_request to dicomweb-oauth)"
	}
	fmt.Fprintf(w, "chain: Orthanc A -> %s -> gate -> Orthanc B\n", proxyText)
	fmt.Fprintf(w, "  Orthanc A       %s (DICOMweb server %s)\n", c.OrthancA.URL, c.DicomWebURL)
	fmt.Fprintf(w, "  proxy           %s (%s)\n", proxyURL, c.Options.Proxy)
	fmt.Fprintf(w, "  dicomweb-oauth  %s (admin http://%s)\n", c.CheckURL, c.Service.AdminAddr)
	fmt.Fprintf(w, "  token issuer    %s\n", c.Issuer.URL())
	fmt.Fprintf(w, "  gate            %s%s (audience %s)\n", c.Gate.URL(), c.GatePrefix, chain.Audience)
	fmt.Fprintf(w, "  Orthanc B       %s\n", c.OrthancB.URL)
}
