// Package envoy_test checks the Envoy configurations shipped in this folder
// against Envoy's own protobuf schema, from go-control-plane, with the
// decoder that the end-to-end tests share.
package envoy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoyconfig"
)

// Envoy cluster names of dicomweb-oauth's gRPC and HTTP check listeners.
const (
	serviceClusterName     = "dicomweb_oauth"
	serviceHTTPClusterName = "dicomweb_oauth_http"
)

// serviceConfig is the part of dicomweb-oauth.yaml that the Envoy files
// must agree with.
type serviceConfig struct {
	Listen struct {
		GRPC string `yaml:"grpc"`
		HTTP string `yaml:"http"`
	} `yaml:"listen"`
	DecisionTimeout string         `yaml:"decision_timeout"`
	Clusters        map[string]any `yaml:"clusters"`
}

// decisionTimeout is the service's decision_timeout from
// dicomweb-oauth.yaml (150 ms when unset). Envoy's own timeout for the
// service must be longer, so that Envoy receives the service's 503 with
// its reason instead of timing out itself.
var decisionTimeout = 150 * time.Millisecond

// envoyDefaultTimeout is the default of ext_proc's message_timeout and of
// ext_authz's timeout in Envoy.
const envoyDefaultTimeout = 200 * time.Millisecond

// checkOutlastsDecision fails when Envoy's timeout for the service is not
// longer than the service's decision_timeout.
func checkOutlastsDecision(t *testing.T, what string, d *durationpb.Duration) {
	t.Helper()
	timeout := envoyDefaultTimeout
	if d != nil {
		timeout = d.AsDuration()
	}
	if timeout <= decisionTimeout {
		t.Errorf("%s is %v, not longer than the service's decision_timeout %v", what, timeout, decisionTimeout)
	}
}

func loadServiceConfig(t *testing.T) serviceConfig {
	t.Helper()
	data, err := os.ReadFile("dicomweb-oauth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c serviceConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("dicomweb-oauth.yaml: %v", err)
	}
	return c
}

// envoyFiles returns the Envoy bootstrap files: every YAML file here but the
// service configuration.
func envoyFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "dicomweb-oauth.yaml" })
	if len(files) == 0 {
		t.Fatal("no Envoy configuration found")
	}
	return files
}

func TestEnvoyConfigsMatchSchema(t *testing.T) {
	service := loadServiceConfig(t)
	if service.DecisionTimeout != "" {
		d, err := time.ParseDuration(service.DecisionTimeout)
		if err != nil {
			t.Fatalf("dicomweb-oauth.yaml decision_timeout: %v", err)
		}
		decisionTimeout = d
	}
	for _, file := range envoyFiles(t) {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			b, err := envoyconfig.DecodeBootstrap(data)
			if err != nil {
				t.Fatalf("%s does not match Envoy's schema: %v", file, err)
			}
			checkCrossReferences(t, b, service)
		})
	}
}

func checkCrossReferences(t *testing.T, b *bootstrapv3.Bootstrap, service serviceConfig) {
	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	checkServiceEndpoint(t, b, serviceClusterName, service.Listen.GRPC)
	checkServiceEndpoint(t, b, serviceHTTPClusterName, service.Listen.HTTP)

	var routed []string
	decisionFilters := 0
	for _, hcm := range connectionManagers(t, b) {
		authz := extAuthzFilter(hcm)
		for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				routed = append(routed, checkRoute(t, r, clusters)...)
				checkRouteNamesCluster(t, r, authz)
			}
		}
		decisionFilters += checkFilters(t, hcm.GetHttpFilters(), clusters)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		decisionFilters += checkUpstreamFilters(t, c, clusters)
	}
	if decisionFilters == 0 {
		t.Error("no ext_proc or ext_authz filter calls dicomweb-oauth")
	}

	sort.Strings(routed)
	routed = slices.Compact(routed)
	var configured []string
	for name := range service.Clusters {
		configured = append(configured, name)
	}
	sort.Strings(configured)
	if !slices.Equal(routed, configured) {
		t.Errorf("routed clusters %v differ from the clusters in dicomweb-oauth.yaml %v", routed, configured)
	}
}

// checkServiceEndpoint checks that the named cluster, if present, points at
// the service's listener, and that the gRPC one is health-checked.
func checkServiceEndpoint(t *testing.T, b *bootstrapv3.Bootstrap, name, addr string) {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != name {
			continue
		}
		for _, e := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range e.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
				if got != addr {
					t.Errorf("cluster %s points at %s, but the service listens on %s", name, got, addr)
				}
			}
		}
		if name == serviceClusterName &&
			(len(c.GetHealthChecks()) == 0 || c.GetHealthChecks()[0].GetGrpcHealthCheck() == nil) {
			t.Errorf("cluster %s has no gRPC health check", name)
		}
	}
}

func connectionManagers(t *testing.T, b *bootstrapv3.Bootstrap) []*hcmv3.HttpConnectionManager {
	var out []*hcmv3.HttpConnectionManager
	for _, l := range b.GetStaticResources().GetListeners() {
		out = append(out, listenerManagers(t, l)...)
	}
	if len(out) == 0 {
		t.Fatal("no HTTP connection manager")
	}
	return out
}

func listenerManagers(t *testing.T, l *listenerv3.Listener) []*hcmv3.HttpConnectionManager {
	var out []*hcmv3.HttpConnectionManager
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				continue
			}
			if hcm.GetRequestTimeout().AsDuration() != 0 {
				t.Errorf("listener %s: request_timeout %v would cut long transfers; set 0s",
					l.GetName(), hcm.GetRequestTimeout().AsDuration())
			}
			out = append(out, &hcm)
		}
	}
	return out
}

// checkRoute checks that a route's cluster exists and that its timeout does
// not cut a long transfer. It returns the clusters the route sends to.
func checkRoute(t *testing.T, r *routev3.Route, clusters map[string]bool) []string {
	action := r.GetRoute()
	if action == nil {
		return nil
	}
	name := action.GetCluster()
	if !clusters[name] {
		t.Errorf("route %v names cluster %q, which does not exist", r.GetMatch(), name)
	}
	if action.GetTimeout() == nil || action.GetTimeout().AsDuration() != 0 {
		t.Errorf("route to %s: set timeout: 0s, because Envoy's 15 s default cuts long STOW-RS and WADO-RS", name)
	}
	return []string{name}
}

// checkFilters checks a downstream or upstream filter chain and returns how
// many filters in it call dicomweb-oauth.
func checkFilters(t *testing.T, filters []*hcmv3.HttpFilter, clusters map[string]bool) int {
	t.Helper()
	count := 0
	for _, f := range filters {
		var ep extprocv3.ExternalProcessor
		if f.GetTypedConfig().UnmarshalTo(&ep) == nil {
			checkExtProc(t, &ep)
			count++
		}
		var az extauthzv3.ExtAuthz
		if f.GetTypedConfig().UnmarshalTo(&az) == nil {
			checkExtAuthz(t, &az, clusters)
			count++
		}
	}
	return count
}

func checkExtProc(t *testing.T, ep *extprocv3.ExternalProcessor) {
	t.Helper()
	checkOutlastsDecision(t, "ext_proc message_timeout", ep.GetMessageTimeout())
	if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != serviceClusterName {
		t.Errorf("ext_proc calls cluster %q, want %q", got, serviceClusterName)
	}
	mode := ep.GetProcessingMode()
	if mode.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE ||
		mode.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE {
		t.Error("ext_proc must not receive bodies: set request_body_mode and response_body_mode to NONE")
	}
	if ep.GetFailureModeAllow() {
		t.Error("ext_proc failure_mode_allow would send requests without a token")
	}
	if !slices.Contains(ep.GetRequestAttributes(), "xds.cluster_name") {
		t.Error("ext_proc must send the xds.cluster_name request attribute")
	}
}

func checkExtAuthz(t *testing.T, az *extauthzv3.ExtAuthz, clusters map[string]bool) {
	t.Helper()
	if az.GetFailureModeAllow() {
		t.Error("ext_authz failure_mode_allow would send requests without a token")
	}
	if az.GetWithRequestBody() != nil {
		t.Error("ext_authz with_request_body buffers DICOM bodies; remove it")
	}
	if grpc := az.GetGrpcService(); grpc != nil {
		checkOutlastsDecision(t, "ext_authz grpc_service timeout", grpc.GetTimeout())
		if got := grpc.GetEnvoyGrpc().GetClusterName(); got != serviceClusterName {
			t.Errorf("ext_authz calls cluster %q, want %q", got, serviceClusterName)
		}
		return
	}
	http := az.GetHttpService()
	checkOutlastsDecision(t, "HTTP ext_authz server_uri timeout", http.GetServerUri().GetTimeout())
	if !clusters[http.GetServerUri().GetCluster()] {
		t.Errorf("HTTP ext_authz calls cluster %q, which does not exist", http.GetServerUri().GetCluster())
	}
	if http.GetPathPrefix() != "/check" {
		t.Errorf("HTTP ext_authz path_prefix = %q, want /check", http.GetPathPrefix())
	}
	allowed := false
	for _, p := range http.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
		allowed = allowed || strings.EqualFold(p.GetExact(), "authorization")
	}
	if !allowed {
		t.Error("HTTP ext_authz must list authorization in allowed_upstream_headers")
	}
}

// extAuthzFilter returns the connection manager's ext_authz filter, or nil.
func extAuthzFilter(hcm *hcmv3.HttpConnectionManager) *extauthzv3.ExtAuthz {
	for _, f := range hcm.GetHttpFilters() {
		var az extauthzv3.ExtAuthz
		if f.GetTypedConfig().UnmarshalTo(&az) == nil {
			return &az
		}
	}
	return nil
}

// checkRouteNamesCluster checks that ext_authz learns a route's cluster: from
// the per-route context extension with gRPC, from the path prefix with HTTP.
func checkRouteNamesCluster(t *testing.T, r *routev3.Route, authz *extauthzv3.ExtAuthz) {
	t.Helper()
	cluster := r.GetRoute().GetCluster()
	if authz == nil || cluster == "" {
		return
	}
	if authz.GetHttpService() != nil {
		if want := "/" + cluster + "/"; r.GetMatch().GetPrefix() != want {
			t.Errorf("route to %s: prefix %q, want %q so that the check path names the cluster",
				cluster, r.GetMatch().GetPrefix(), want)
		}
		return
	}
	var perRoute extauthzv3.ExtAuthzPerRoute
	config, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
	if !ok || config.UnmarshalTo(&perRoute) != nil {
		t.Errorf("route to %s has no ext_authz per-route config naming its cluster", cluster)
		return
	}
	if got := perRoute.GetCheckSettings().GetContextExtensions()["cluster"]; got != cluster {
		t.Errorf("route to %s: context extension cluster = %q, want %q", cluster, got, cluster)
	}
}

// checkUpstreamFilters checks the upstream HTTP filters of a cluster and
// returns how many call dicomweb-oauth.
func checkUpstreamFilters(t *testing.T, c *clusterv3.Cluster, clusters map[string]bool) int {
	t.Helper()
	config, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !ok {
		return 0
	}
	var options upstreamhttpv3.HttpProtocolOptions
	if err := config.UnmarshalTo(&options); err != nil {
		t.Errorf("cluster %s: %v", c.GetName(), err)
		return 0
	}
	filters := options.GetHttpFilters()
	if len(filters) == 0 {
		return 0
	}
	if last := filters[len(filters)-1].GetName(); last != "envoy.filters.http.upstream_codec" {
		t.Errorf("cluster %s: the last upstream filter is %s, want envoy.filters.http.upstream_codec", c.GetName(), last)
	}
	return checkFilters(t, filters, clusters)
}

// TestDecodeRejectsMisspelledField proves the schema check catches a typo.
func TestDecodeRejectsMisspelledField(t *testing.T) {
	data, err := os.ReadFile("ext-proc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, typo := range []struct{ field, misspelled string }{
		{"message_timeout:", "message_timout:"},
		{"request_attributes:", "request_atributes:"},
		{"prefix_rewrite:", "prefix_rewite:"},
		{"connect_timeout: 0.25s", "connect_timeout: 250"},
	} {
		bad := strings.Replace(string(data), typo.field, typo.misspelled, 1)
		if bad == string(data) {
			t.Fatalf("ext-proc.yaml has no %q to misspell", typo.field)
		}
		if _, err := envoyconfig.DecodeBootstrap([]byte(bad)); err == nil {
			t.Errorf("decoding with %q succeeded, want an error", typo.misspelled)
		}
	}
}
