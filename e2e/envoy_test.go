package e2e

import (
	"testing"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/chain"
	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/harness"
)

// TestShippedEnvoyConfig runs the flow through real Envoy with the shipped
// envoy/ext-proc.yaml, rewritten by envoyconfig.Rewrite: free ports, the
// service's gRPC address, and the dcm4chee route sent to a plain-HTTP gate
// that serves the upstream path of the shipped Orthanc example. The ext_proc
// filter runs as shipped and requests the header of cluster dcm4chee from
// the service. Envoy is not installable on this project's CI machine, so
// without an envoy binary on PATH the test skips, in CI too.
//
// NOTE: this test has not run on a machine with Envoy yet; only its
// configuration rewrite is tested, by e2e/envoyconfig.
func TestShippedEnvoyConfig(t *testing.T) {
	t.Parallel()
	if _, err := harness.FindEnvoy(); err != nil {
		t.Skip("envoy not on PATH: the ext_proc path is covered by the Envoy driver tests in extproc and e2e/envoysim")
	}
	c, ctx := startChain(t, chain.Options{
		ServiceBinary: serviceBinary(t),
		Proxy:         chain.ProxyShippedEnvoy,
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
		// Envoy speaks plain HTTP to the gate, so there is no SNI.
		requireGateRequests(t, c, "")
	})

	t.Run("large instance", func(t *testing.T) {
		result, err := chain.RunLarge(ctx, c, large)
		if err != nil {
			t.Fatalf("large instance: %v", err)
		}

		requireLargeArrived(t, large, result)
		requireChunkedAtGate(t, c)
	})
}
