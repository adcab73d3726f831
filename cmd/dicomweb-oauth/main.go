// Command dicomweb-oauth serves OAuth2 bearer tokens to the proxy in front of
// an Orthanc server's DICOMweb client, over Envoy ext_proc, Envoy ext_authz
// and an HTTP auth-request endpoint.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
