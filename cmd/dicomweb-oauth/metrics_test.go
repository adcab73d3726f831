package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// staticSource returns a token valid for an hour.
type staticSource struct{}

func (staticSource) Fetch(context.Context) (*tokens.Token, error) {
	now := time.Now()
	return &tokens.Token{AccessToken: "test-token-metrics", Received: now, Expiry: now.Add(time.Hour)}, nil
}

// varyingValue matches the values that change from run to run: durations
// and timestamps, which the golden file does not fix.
var varyingValue = regexp.MustCompile(`^(dicomweb_oauth_(token_acquisition|decision)_duration_seconds_(sum|bucket)` +
	`|dicomweb_oauth_token_expiry_timestamp_seconds|dicomweb_oauth_build_info)`)

// buildLabels matches the labels of build_info, which depend on the build.
var buildLabels = regexp.MustCompile(`(goversion|version)="[^"]*"`)

// TestMetricsGolden runs a scripted sequence of acquisitions and decisions
// and compares the exported dicomweb_oauth_* series, names, labels and
// counter values, with testdata/metrics.golden. Run with -update to rewrite
// it after a deliberate change.
func TestMetricsGolden(t *testing.T) {
	manager := tokens.NewManager("pacs", staticSource{}, tokens.Settings{}, tokens.WithLogger(quietLogger()))
	if _, err := manager.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	set := tokens.NewSet(manager)
	m, err := newMetrics(set)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.provider.Shutdown(context.Background()) })

	m.observeAcquisition("pacs", 20*time.Millisecond, nil)
	m.observeAcquisition("pacs", 5*time.Second, &tokens.FetchError{Class: tokens.ClassTransient})
	m.observeAcquisition("pacs", time.Second, &tokens.FetchError{Class: tokens.ClassConfig})
	m.observeDecision(extproc.APIExtProc, &extproc.Decision{Cluster: "pacs", Outcome: extproc.OutcomeAllowed}, time.Millisecond)
	m.observeDecision(extproc.APIExtProc, &extproc.Decision{Cluster: "pacs", Outcome: extproc.OutcomeAllowed}, time.Millisecond)
	m.observeDecision(extproc.APIExtAuthz, &extproc.Decision{Cluster: "pacs", Outcome: extproc.OutcomeUnavailable}, time.Millisecond)
	m.observeDecision(extproc.APIHTTP, &extproc.Decision{Cluster: "attacker-chosen", Outcome: extproc.OutcomeUnknownCluster}, time.Millisecond)
	manager.Invalidate("no-such-token")

	got := scrapeSeries(t, m)
	golden := filepath.Join("testdata", "metrics.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestMetricsGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("metrics differ from %s (run with -update after a deliberate change)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	if strings.Contains(got, "attacker-chosen") {
		t.Error("a cluster name from an unknown-cluster request became a label value")
	}
	if strings.Contains(got, "test-token-metrics") {
		t.Error("the metrics contain the token")
	}
}

// scrapeSeries returns the sorted dicomweb_oauth_* series of /metrics, with
// the varying values replaced by "X".
func scrapeSeries(t *testing.T, m *metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))

	var lines []string
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(line, "dicomweb_oauth_") {
			continue
		}
		line = buildLabels.ReplaceAllString(line, `$1="X"`)
		if varyingValue.MatchString(line) {
			i := strings.LastIndexByte(line, ' ')
			line = line[:i] + " X"
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
