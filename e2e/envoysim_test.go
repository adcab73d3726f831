package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/chain"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/orthanc"
)

// revokedBatch is how many requests the upstream 401 subtest has in flight
// with the revoked token at once.
const revokedBatch = 4

// newTokenTimeout bounds the wait for the service's new token after an
// invalidation.
const newTokenTimeout = 10 * time.Second

// TestEnvoySimProxy runs the chain with envoysim.Proxy in place of nginx,
// once per Envoy filter that the proxy models, with the real service
// behind a real gRPC connection. Each mode has its own chain, and its
// subtests share it and run in order. The last one stops the service.
func TestEnvoySimProxy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		proxy chain.Proxy
		// sendResponseHeaders sets response_header_mode SEND. The upstream
		// 401 subtest needs it and runs only with it.
		sendResponseHeaders bool
		// failureStatus is the status with which the proxy fails a request
		// when the service cannot be reached: 500 for ext_proc under
		// failure_mode_allow: false, and for ext_authz the status_on_error
		// of envoy/ext-authz-grpc.yaml.
		failureStatus int
	}{
		{"ext_proc", chain.ProxyEnvoySimExtProc, true, http.StatusInternalServerError},
		{"ext_proc upstream", chain.ProxyEnvoySimExtProcUpstream, false, http.StatusInternalServerError},
		{"ext_authz", chain.ProxyEnvoySimExtAuthz, false, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, ctx := startChain(t, chain.Options{
				ServiceBinary:       serviceBinary(t),
				Proxy:               tt.proxy,
				SendResponseHeaders: tt.sendResponseHeaders,
			})

			t.Run("flow", func(t *testing.T) {
				testSimFlow(t, ctx, c)
			})
			if tt.sendResponseHeaders {
				t.Run("upstream 401", func(t *testing.T) {
					testUpstreamRejection(t, ctx, c)
				})
			}
			t.Run("service stopped", func(t *testing.T) {
				testSimServiceStopped(t, ctx, c, tt.failureStatus)
			})
		})
	}
}

// testSimFlow runs the DICOMweb flow and checks that every upstream request
// got its header from the service, with one token for all of them.
func testSimFlow(t *testing.T, ctx context.Context, c *chain.Chain) {
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
	if result.GateRejected != 0 {
		t.Errorf("gate rejected %d requests, want 0", result.GateRejected)
	}
	// The proxy speaks plain HTTP to the gate, so there is no SNI.
	requireGateRequests(t, c, "")
	requireChunkedAtGate(t, c)
	requireOneDecisionPerRequest(t, c)
}

// testUpstreamRejection revokes the token at the gate, so the upstream
// responds with 401, and checks that the service replaces the token once,
// however many requests failed with it.
func testUpstreamRejection(t *testing.T, ctx context.Context, c *chain.Chain) {
	revoked := c.Gate.TokenIDs()
	if len(revoked) != 1 {
		t.Fatalf("gate accepted the tokens %v, want 1 before the revocation", revoked)
	}
	before := clusterStatus(t, ctx, c)
	tokenRequests := c.Issuer.TokenRequests()
	c.Gate.RevokeToken(revoked[0], revokedBatch)

	replies, orthancErr := sendRevokedBatch(t, ctx, c, revokedBatch)

	// Orthanc 1.10 with DICOMweb 1.7 fails a QIDO-RS call that the remote
	// server rejected with 401 with a 401 of its own.
	var httpErr *orthanc.HTTPError
	if !errors.As(orthancErr, &httpErr) {
		t.Fatalf("QIDO-RS through Orthanc A: error = %v, want an HTTP error from Orthanc A", orthancErr)
	}
	if httpErr.Status != http.StatusUnauthorized {
		t.Errorf("QIDO-RS through Orthanc A: status = %d, want 401 (body %q)", httpErr.Status, httpErr.Body)
	}
	for i, reply := range replies {
		if reply.status != http.StatusUnauthorized {
			t.Errorf("direct request %d: proxy status = %d, want the gate's 401 (body %q)", i, reply.status, reply.raw)
		}
		if !strings.Contains(reply.challenge, `error="invalid_token"`) {
			t.Errorf("direct request %d: WWW-Authenticate = %q, want the gate's invalid_token challenge",
				i, reply.challenge)
		}
	}
	if got := c.Gate.Rejected(); got != revokedBatch {
		t.Errorf("gate rejected %d requests, want %d", got, revokedBatch)
	}

	after := waitForNewToken(t, ctx, c, before.Fingerprint)
	if after.Invalidations != 1 {
		t.Errorf("/status invalidations = %d, want 1", after.Invalidations)
	}
	if after.UpstreamRejections != revokedBatch {
		t.Errorf("/status upstream_rejections = %d, want %d", after.UpstreamRejections, revokedBatch)
	}
	requireMetric(t, ctx, c, "dicomweb_oauth_token_invalidations_total", "1")
	requireMetric(t, ctx, c, "dicomweb_oauth_upstream_rejections_total", strconv.Itoa(revokedBatch))
	if got := c.Issuer.TokenRequests(); got != tokenRequests+1 {
		t.Errorf("token requests = %d, want %d: one more for %d rejections of one token",
			got, tokenRequests+1, revokedBatch)
	}

	matches, err := c.OrthancA.Client.QIDO(ctx, chain.ServerName, "/instances")
	if err != nil {
		t.Fatalf("QIDO-RS after the new token: %v", err)
	}
	if len(matches) == 0 {
		t.Error("QIDO-RS after the new token found no instances")
	}
	ids := c.Gate.TokenIDs()
	if len(ids) != 2 || !slices.Contains(ids, revoked[0]) {
		t.Errorf("gate accepted the tokens %v, want the revoked %s and one new", ids, revoked[0])
	}
	if got := c.Issuer.TokenRequests(); got != tokenRequests+1 {
		t.Errorf("token requests after QIDO-RS = %d, want %d", got, tokenRequests+1)
	}
	requireOneDecisionPerRequest(t, c)
}

// testSimServiceStopped stops the service and checks that the proxy fails
// each request with wantStatus, as Envoy does with failure_mode_allow:
// false, and that nothing reaches the gate or Orthanc B.
func testSimServiceStopped(t *testing.T, ctx context.Context, c *chain.Chain, wantStatus int) {
	deleteAllOnOrthancB(t, ctx, c)
	before := c.EnvoySim.Stats()
	atGate := c.Gate.Accepted() + c.Gate.Rejected()
	if err := c.Service.Process.Stop(); err != nil {
		t.Fatalf("stop service: %v", err)
	}

	err := uploadAndStow(t, ctx, c)
	reply := send(t, ctx, http.MethodGet, c.DicomWebURL+"studies")

	requireStowFailed(t, err)
	if reply.status != wantStatus {
		t.Errorf("proxy status = %d, want %d (body %q)", reply.status, wantStatus, reply.raw)
	}
	after := c.EnvoySim.Stats()
	requests := after.Requests - before.Requests
	if requests < 2 {
		t.Errorf("proxy got %d requests, want at least 2 (STOW-RS and the direct request)", requests)
	}
	if failed := after.Failures - before.Failures; failed != requests {
		t.Errorf("proxy failed %d of %d requests itself, want all", failed, requests)
	}
	if got := after.Decisions - before.Decisions; got != 0 {
		t.Errorf("service took %d decisions, want 0", got)
	}
	if got := after.UpstreamAttempts - before.UpstreamAttempts; got != 0 {
		t.Errorf("proxy made %d upstream requests, want 0", got)
	}
	if got := c.Gate.Accepted() + c.Gate.Rejected() - atGate; got != 0 {
		t.Errorf("gate saw %d requests, want 0", got)
	}
	requireEmptyOrthancB(t, ctx, c)
}

// requireOneDecisionPerRequest checks the proxy's counts against the
// gate's: each upstream request reached the gate and had one decision of
// the service, and no request failed in the proxy. With response headers
// sent, each upstream response went to the service too.
func requireOneDecisionPerRequest(t *testing.T, c *chain.Chain) {
	t.Helper()
	stats := c.EnvoySim.Stats()
	gate := c.Gate.Stats()
	t.Logf("proxy stats: %+v", stats)

	if atGate := gate.Accepted + gate.Rejected + gate.NotFound; stats.UpstreamAttempts != atGate {
		t.Errorf("proxy made %d upstream requests, but the gate received %d", stats.UpstreamAttempts, atGate)
	}
	if stats.UpstreamAttempts == 0 {
		t.Error("proxy made no upstream request")
	}
	if stats.Decisions != stats.UpstreamAttempts {
		t.Errorf("service decisions = %d, want one per upstream request: %d",
			stats.Decisions, stats.UpstreamAttempts)
	}
	if stats.Failures != 0 {
		t.Errorf("proxy failed %d requests itself, want 0", stats.Failures)
	}
	if stats.Denials != 0 {
		t.Errorf("service denied %d requests, want 0", stats.Denials)
	}
	if stats.UpstreamFailures != 0 {
		t.Errorf("proxy could not reach the gate %d times, want 0", stats.UpstreamFailures)
	}
	if c.Options.SendResponseHeaders && stats.ResponseHeaders != stats.UpstreamAttempts {
		t.Errorf("response_headers replies = %d, want one per upstream request: %d",
			stats.ResponseHeaders, stats.UpstreamAttempts)
	}
}

// sendRevokedBatch sends one QIDO-RS query through Orthanc A and n-1 GET
// requests straight to the proxy, all at once. It returns the replies to
// the direct requests and the error of the query.
func sendRevokedBatch(t *testing.T, ctx context.Context, c *chain.Chain, n int) ([]httpReply, error) {
	t.Helper()
	replies := make([]httpReply, n-1)
	var orthancErr error
	var wg sync.WaitGroup

	wg.Go(func() {
		_, orthancErr = c.OrthancA.Client.QIDO(ctx, chain.ServerName, "/studies")
	})
	for i := range replies {
		wg.Go(func() {
			request, err := http.NewRequestWithContext(ctx, http.MethodGet, c.DicomWebURL+"studies", nil)
			if err != nil {
				t.Errorf("new request: %v", err)
				return
			}
			replies[i], err = doRequest(request)
			if err != nil {
				t.Errorf("direct request %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	return replies, orthancErr
}

// clusterState is the part of a cluster's entry in the service's /status
// that the tests read.
type clusterState struct {
	Cluster            string `json:"cluster"`
	State              string `json:"state"`
	Fingerprint        string `json:"fingerprint"`
	UpstreamRejections int    `json:"upstream_rejections"`
	Invalidations      int    `json:"invalidations"`
}

// clusterStatus returns the chain cluster's entry in the service's /status.
func clusterStatus(t *testing.T, ctx context.Context, c *chain.Chain) clusterState {
	t.Helper()
	reply := send(t, ctx, http.MethodGet, c.Service.AdminURL()+"/status")
	if reply.status != http.StatusOK {
		t.Fatalf("/status status = %d, want 200 (body %q)", reply.status, reply.raw)
	}
	var status struct {
		Clusters []clusterState `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(reply.raw), &status); err != nil {
		t.Fatalf("decode /status: %v (body %q)", err, reply.raw)
	}
	for _, cluster := range status.Clusters {
		if cluster.Cluster == c.Cluster {
			return cluster
		}
	}
	t.Fatalf("/status has no cluster %q: %s", c.Cluster, reply.raw)
	return clusterState{}
}

// waitForNewToken polls /status until the cluster holds a valid token other
// than the one with the old fingerprint, and returns that status.
func waitForNewToken(t *testing.T, ctx context.Context, c *chain.Chain, old string) clusterState {
	t.Helper()
	deadline := time.Now().Add(newTokenTimeout)
	for {
		status := clusterStatus(t, ctx, c)
		if status.State == "valid" && status.Fingerprint != old {
			return status
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new valid token after %v: state %s, fingerprint %s (old %s)",
				newTokenTimeout, status.State, status.Fingerprint, old)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("wait for a new token: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// requireMetric checks the value of a per-cluster counter of the chain's
// cluster in the service's /metrics.
func requireMetric(t *testing.T, ctx context.Context, c *chain.Chain, name, want string) {
	t.Helper()
	reply := send(t, ctx, http.MethodGet, c.Service.AdminURL()+"/metrics")
	if reply.status != http.StatusOK {
		t.Fatalf("/metrics status = %d, want 200", reply.status)
	}
	series := fmt.Sprintf("%s{cluster=%q}", name, c.Cluster)
	scanner := bufio.NewScanner(strings.NewReader(reply.raw))
	for scanner.Scan() {
		value, found := strings.CutPrefix(scanner.Text(), series+" ")
		if !found {
			continue
		}
		if value != want {
			t.Errorf("%s = %s, want %s", series, value, want)
		}
		return
	}
	t.Errorf("/metrics has no series %s", series)
}

// deleteAllOnOrthancB deletes every instance on Orthanc B through its own
// REST API, so that a later check can tell whether anything arrived.
func deleteAllOnOrthancB(t *testing.T, ctx context.Context, c *chain.Chain) {
	t.Helper()
	ids, err := c.OrthancB.Client.Instances(ctx)
	if err != nil {
		t.Fatalf("list instances on Orthanc B: %v", err)
	}
	for _, id := range ids {
		if err := c.OrthancB.Client.DeleteInstance(ctx, id); err != nil {
			t.Fatalf("delete instance %s on Orthanc B: %v", id, err)
		}
	}
	requireEmptyOrthancB(t, ctx, c)
}
