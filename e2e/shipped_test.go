package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/chain"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/pki"
)

// TestShippedNginxConfig runs the files that users copy:
// deploy/nginx/dicomweb-oauth.conf in nginx and deploy/nginx/dicomweb-oauth.yaml
// in the service, with only their addresses, token endpoint, client and CA
// file replaced. nginx originates TLS to the gate with SNI pacs.example.org
// and checks the gate's certificate against a CA made for the test. The
// subtests share one chain and run in order; the last one stops the service.
func TestShippedNginxConfig(t *testing.T) {
	t.Parallel()
	c, ctx := startChain(t, chain.Options{
		ServiceBinary: serviceBinary(t),
		Proxy:         chain.ProxyShippedNginx,
	})
	large := generateLarge(t, ctx)

	t.Run("flow", func(t *testing.T) {
		result, err := chain.Run(ctx, c, chain.Samples)
		logResult(t, result)
		if err != nil {
			t.Fatalf("flow: %v", err)
		}

		if !result.OK() {
			t.Error("result is not OK")
		}
		if result.TokenRequests != 1 {
			t.Errorf("token requests = %d, want 1", result.TokenRequests)
		}
		if result.DistinctTokens != 1 {
			t.Errorf("distinct tokens at the gate = %d, want 1", result.DistinctTokens)
		}
		if result.GateNotFound != 0 {
			t.Errorf("gate received %d requests outside %s, want 0", result.GateNotFound, harness.ShippedUpstreamPath)
		}
		requireGateRequests(t, c, harness.ShippedUpstreamHost)
	})

	t.Run("large instance", func(t *testing.T) {
		result, err := chain.RunLarge(ctx, c, large)
		if err != nil {
			t.Fatalf("large instance: %v", err)
		}

		requireLargeArrived(t, large, result)
		requireStreamedThroughNginx(t, c.Nginx, large.Digest.Size)
		requireChunkedAtGate(t, c)
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		otherCA := writeOtherCA(t)
		n, err := c.StartShippedNginx(ctx, "nginx-other-ca", otherCA)
		if err != nil {
			t.Fatalf("start nginx: %v", err)
		}
		accepted := c.Gate.Accepted()

		reply := send(t, ctx, http.MethodGet, n.URL+harness.ShippedLocation+"studies")

		if reply.status != http.StatusBadGateway {
			t.Errorf("nginx status = %d, want 502 (body %q)", reply.status, reply.raw)
		}
		errorLog, err := n.ErrorLog()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(errorLog, "upstream SSL certificate verify error") {
			t.Errorf("nginx error log has no certificate verify error:\n%s", errorLog)
		}
		if got := c.Gate.Accepted(); got != accepted {
			t.Errorf("gate accepted %d more requests, want 0", got-accepted)
		}
	})

	t.Run("default body limit", func(t *testing.T) {
		// Without the shipped client_max_body_size 0, nginx's default of
		// 1 MiB applies. This proves that the large instance needs the
		// shipped line, and so that the subtest above tests it.
		n, err := c.StartShippedNginx(ctx, "nginx-default-limit", c.CAFile,
			harness.Replacement{Old: "    client_max_body_size 0;\n", New: ""})
		if err != nil {
			t.Fatalf("start nginx: %v", err)
		}
		before := instanceCount(t, ctx, c)

		reply := postChunkedStow(t, ctx, n.URL+harness.ShippedLocation+"studies", large.Path)

		if reply.status != http.StatusRequestEntityTooLarge {
			t.Errorf("nginx status = %d, want 413 (body %q)", reply.status, reply.raw)
		}
		if after := instanceCount(t, ctx, c); after != before {
			t.Errorf("Orthanc B stores %d instances, want %d as before", after, before)
		}
	})

	t.Run("service stopped", func(t *testing.T) {
		want, err := harness.ShippedUnavailableBody(c.ShippedNginx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Service.Process.Stop(); err != nil {
			t.Fatalf("stop service: %v", err)
		}
		accepted := c.Gate.Accepted()

		err = uploadAndStow(t, ctx, c)
		reply := send(t, ctx, http.MethodGet, c.Nginx.URL+harness.ShippedLocation+"studies")

		requireStowFailed(t, err)
		if reply.status != http.StatusServiceUnavailable {
			t.Errorf("nginx status = %d, want 503 (body %q)", reply.status, reply.raw)
		}
		if reply.raw != want {
			t.Errorf("nginx body = %q, want the shipped body %q", reply.raw, want)
		}
		if reply.contentType != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", reply.contentType)
		}
		if got := reply.body["error"]; got != "token_unavailable" {
			t.Errorf("error = %v, want token_unavailable", got)
		}
		if got := c.Gate.Accepted(); got != accepted {
			t.Errorf("gate accepted %d more requests, want 0", got-accepted)
		}
	})
}

// generateLarge writes the large DICOM instance into a temporary folder.
func generateLarge(t *testing.T, ctx context.Context) chain.LargeInstance {
	t.Helper()
	large, err := chain.GenerateLarge(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if large.Digest.Size < 20<<20 {
		t.Fatalf("large instance has %d bytes, want at least 20 MiB", large.Digest.Size)
	}
	return large
}

// requireLargeArrived checks that Orthanc B stored the very file that was
// generated, and that Orthanc A got it back unchanged with WADO-RS.
func requireLargeArrived(t *testing.T, large chain.LargeInstance, result *chain.LargeResult) {
	t.Helper()
	if result.SentInstances != 1 {
		t.Errorf("Orthanc A reports %d instances sent, want 1", result.SentInstances)
	}
	if result.Arrived != large.Digest {
		t.Errorf("file on Orthanc B: %v, want the generated %v", result.Arrived, large.Digest)
	}
	if result.Retrieved != large.Digest {
		t.Errorf("file on Orthanc A after WADO-RS: %v, want the generated %v", result.Retrieved, large.Digest)
	}
}

// stowLine matches the access log line of a STOW-RS request that nginx
// passed upstream with status 200, in the format of nginx-shipped.conf.tmpl.
var stowLine = regexp.MustCompile(
	`"POST /pacs/studies HTTP/1\.1" status=200 .*request_length=(\d+) transfer_encoding=(\S+)`)

// requireStreamedThroughNginx checks nginx's access log for one STOW-RS
// request with a chunked body of at least size bytes.
func requireStreamedThroughNginx(t *testing.T, n *harness.Nginx, size int64) {
	t.Helper()
	accessLog, err := n.AccessLog()
	if err != nil {
		t.Fatal(err)
	}
	for _, match := range stowLine.FindAllStringSubmatch(accessLog, -1) {
		length, _ := strconv.ParseInt(match[1], 10, 64)
		if length >= size && match[2] == "chunked" {
			return
		}
	}
	t.Errorf("nginx access log has no chunked STOW-RS of at least %d bytes with status 200:\n%s",
		size, accessLog)
}

// requireChunkedAtGate checks that every STOW-RS body reached the gate
// chunked, as Orthanc sent it. nginx forwards a chunked body only when it
// streams it (proxy_request_buffering off); when it reads the whole body
// first, it sends a Content-Length.
func requireChunkedAtGate(t *testing.T, c *chain.Chain) {
	t.Helper()
	posts := 0
	for _, r := range c.Gate.Requests() {
		if r.Method != http.MethodPost {
			continue
		}
		posts++
		if r.ContentLength != -1 {
			t.Errorf("gate got %s %s with Content-Length %d, want a chunked body", r.Method, r.Path, r.ContentLength)
		}
	}
	if posts == 0 {
		t.Error("the gate got no POST request")
	}
}

// requireGateRequests checks that every request the gate forwarded came
// under the shipped upstream path and named the upstream in the Host
// header, and, if wantSNI is set, in TLS SNI. It also checks that STOW-RS,
// QIDO-RS and WADO-RS each made a request.
func requireGateRequests(t *testing.T, c *chain.Chain, wantSNI string) {
	t.Helper()
	requests := c.Gate.Requests()
	if len(requests) == 0 {
		t.Fatal("the gate forwarded no request")
	}
	seen := map[string]bool{}
	for _, r := range requests {
		if !strings.HasPrefix(r.Path, harness.ShippedUpstreamPath) {
			t.Errorf("gate saw path %q, want one under %s", r.Path, harness.ShippedUpstreamPath)
		}
		if r.Host != harness.ShippedUpstreamHost {
			t.Errorf("gate saw Host %q, want %s", r.Host, harness.ShippedUpstreamHost)
		}
		if r.ServerName != wantSNI {
			t.Errorf("gate saw SNI %q, want %q", r.ServerName, wantSNI)
		}
		resource, _, _ := strings.Cut(strings.TrimPrefix(r.Path, harness.ShippedUpstreamPath), "/")
		seen[r.Method+" "+resource] = true
	}
	for _, want := range []string{"POST studies", "GET instances", "GET studies"} {
		if !seen[want] {
			t.Errorf("gate saw no %s request under %s; saw %v", want, harness.ShippedUpstreamPath, seen)
		}
	}
}

// writeOtherCA writes the certificate of a CA that did not issue the gate's
// certificate.
func writeOtherCA(t *testing.T) string {
	t.Helper()
	ca, err := pki.NewCA("other e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := ca.WriteCertificate(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func instanceCount(t *testing.T, ctx context.Context, c *chain.Chain) int {
	t.Helper()
	ids, err := c.OrthancB.Client.Instances(ctx)
	if err != nil {
		t.Fatalf("list instances on Orthanc B: %v", err)
	}
	return len(ids)
}

// postChunkedStow sends a DICOM file as a STOW-RS request with a chunked
// body, as Orthanc's DICOMweb client does.
func postChunkedStow(t *testing.T, ctx context.Context, url, path string) httpReply {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	const boundary = "e2e-stow-boundary"
	// A MultiReader has no known length, so the body goes out chunked.
	body := io.MultiReader(
		strings.NewReader("--"+boundary+"\r\nContent-Type: application/dicom\r\n\r\n"),
		file,
		strings.NewReader("\r\n--"+boundary+"--\r\n"),
	)
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	request.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+boundary)
	return sendRequest(t, request)
}
