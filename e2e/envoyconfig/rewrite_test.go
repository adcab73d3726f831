package envoyconfig

import (
	"fmt"
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// shippedExtProc is the shipped Envoy configuration, relative to this folder.
const shippedExtProc = "../../envoy/ext-proc.yaml"

var testLoopback = Loopback{
	Listener:        "127.0.0.1:18080",
	Admin:           "127.0.0.1:18081",
	Service:         "127.0.0.1:18082",
	UpstreamCluster: "dcm4chee",
	Upstream:        "127.0.0.1:18083",
}

func readShipped(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(shippedExtProc)
	if err != nil {
		t.Fatalf("read shipped configuration: %v", err)
	}
	return data
}

// rewriteShipped rewrites the shipped file and decodes the result with
// Envoy's schema.
func rewriteShipped(t *testing.T, values Loopback) *bootstrapv3.Bootstrap {
	t.Helper()
	out, err := Rewrite(readShipped(t), values)
	if err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	b, err := DecodeBootstrap(out)
	if err != nil {
		t.Fatalf("rewritten configuration does not match Envoy's schema: %v\n%s", err, out)
	}
	return b
}

func TestShippedConfigDecodes(t *testing.T) {
	if _, err := DecodeBootstrap(readShipped(t)); err != nil {
		t.Fatalf("DecodeBootstrap: %v", err)
	}
}

func TestRewriteAddresses(t *testing.T) {
	b := rewriteShipped(t, testLoopback)

	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if got := fmt.Sprintf("%s:%d", admin.GetAddress(), admin.GetPortValue()); got != testLoopback.Admin {
		t.Errorf("admin address = %s, want %s", got, testLoopback.Admin)
	}
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(listeners))
	}
	listener := listeners[0].GetAddress().GetSocketAddress()
	got := fmt.Sprintf("%s:%d", listener.GetAddress(), listener.GetPortValue())
	if got != testLoopback.Listener {
		t.Errorf("listener address = %s, want %s", got, testLoopback.Listener)
	}
}

func TestRewriteClusters(t *testing.T) {
	b := rewriteShipped(t, testLoopback)

	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	if len(clusters) != 2 {
		t.Errorf("%d clusters, want 2 (the service and the upstream)", len(clusters))
	}
	if _, found := clusters["azure-dicom"]; found {
		t.Error("cluster azure-dicom is left; Envoy would resolve its host at startup")
	}

	service := clusters[ServiceCluster]
	if got := endpoint(service); got != testLoopback.Service {
		t.Errorf("%s endpoint = %s, want %s", ServiceCluster, got, testLoopback.Service)
	}
	if len(service.GetHealthChecks()) == 0 {
		t.Errorf("%s lost its health check", ServiceCluster)
	}

	upstream := clusters[testLoopback.UpstreamCluster]
	if got := endpoint(upstream); got != testLoopback.Upstream {
		t.Errorf("upstream endpoint = %s, want %s", got, testLoopback.Upstream)
	}
	if upstream.GetType() != clusterv3.Cluster_STATIC {
		t.Errorf("upstream type = %v, want STATIC", upstream.GetType())
	}
	if upstream.GetTransportSocket() != nil {
		t.Error("upstream keeps its transport_socket; the gate speaks plain HTTP")
	}
	var options upstreamhttpv3.HttpProtocolOptions
	typed := upstream.GetTypedExtensionProtocolOptions()[httpProtocolOptions]
	if err := typed.UnmarshalTo(&options); err != nil {
		t.Fatalf("upstream HTTP protocol options: %v", err)
	}
	if options.GetExplicitHttpConfig().GetHttpProtocolOptions() == nil {
		t.Error("upstream does not set http_protocol_options (HTTP/1.1)")
	}
}

func TestRewriteRoutes(t *testing.T) {
	b := rewriteShipped(t, testLoopback)

	var routed []string
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					t.Fatalf("filter %s: %v", f.GetName(), err)
				}
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						routed = append(routed, r.GetMatch().GetPrefix()+" -> "+r.GetRoute().GetCluster())
					}
				}
			}
		}
	}

	if want := "/dcm4chee/ -> dcm4chee"; len(routed) != 1 || routed[0] != want {
		t.Errorf("routes = %v, want [%s]", routed, want)
	}
}

// TestRewriteKeepsProcessingMode checks that the rewrite leaves the ext_proc
// filter as shipped, which is what the Envoy test runs.
func TestRewriteKeepsProcessingMode(t *testing.T) {
	out, err := Rewrite(readShipped(t), testLoopback)
	if err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	for _, want := range []string{"request_body_mode: NONE", "failure_mode_allow: false", "xds.cluster_name"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten configuration lacks %q", want)
		}
	}
}

func TestRewriteRejects(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Loopback)
		source func(string) string
		want   string
	}{
		{"unknown upstream cluster", func(l *Loopback) { l.UpstreamCluster = "nowhere" }, nil, "no route"},
		{"address not on loopback", func(l *Loopback) { l.Upstream = "192.0.2.1:80" }, nil, "not on 127.0.0.1"},
		{"address without port", func(l *Loopback) { l.Admin = "127.0.0.1" }, nil, "invalid address"},
		{"no service cluster", nil, func(s string) string {
			return strings.ReplaceAll(s, "name: dicomweb_oauth", "name: renamed")
		}, "no cluster named"},
		{"second listener", nil, func(s string) string {
			return strings.Replace(s, "  listeners:\n", "  listeners:\n  - name: extra\n", 1)
		}, "2 listeners"},
		{"not YAML", nil, func(string) string { return "admin: [" }, "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values := testLoopback
			if tt.edit != nil {
				tt.edit(&values)
			}
			source := string(readShipped(t))
			if tt.source != nil {
				source = tt.source(source)
			}

			_, err := Rewrite([]byte(source), values)

			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Rewrite error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func endpoint(c *clusterv3.Cluster) string {
	endpoints := c.GetLoadAssignment().GetEndpoints()
	if len(endpoints) != 1 || len(endpoints[0].GetLbEndpoints()) != 1 {
		return fmt.Sprintf("%d endpoint groups", len(endpoints))
	}
	sa := endpoints[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	return fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
}
