package deploy_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Istio v1 API types (networking.istio.io/v1, security.istio.io/v1) are
// Go aliases of the v1alpha3 and v1beta1 messages used here; istio.io/api
// keeps one message per resource.

// egressGatewayHost is the Service of the egress gateway that Istio's
// istioctl install creates for components.egressGateways[name:
// istio-egressgateway] in istio-system.
const egressGatewayHost = "istio-egressgateway.istio-system.svc.cluster.local"

// istioResource is a Kubernetes object whose spec is an Istio message.
type istioResource struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
}

type istioObject[T proto.Message] struct {
	meta metav1.ObjectMeta
	spec T
}

// istioObjects are the resources of deploy/istio.
type istioObjects struct {
	serviceEntries   []istioObject[*networkingv1alpha3.ServiceEntry]
	gateways         []istioObject[*networkingv1alpha3.Gateway]
	virtualServices  []istioObject[*networkingv1alpha3.VirtualService]
	destinationRules []istioObject[*networkingv1alpha3.DestinationRule]
	policies         []istioObject[*securityv1beta1.AuthorizationPolicy]
	operator         istioOperator
	mesh             *meshv1alpha1.MeshConfig
}

// istioOperator is the part of the IstioOperator API that mesh-config.yaml
// uses. Its fields are those of Istio's egress gateway task; meshConfig is
// decoded into the MeshConfig message.
type istioOperator struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   *metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec       struct {
		Components struct {
			EgressGateways []gatewayComponent `json:"egressGateways"`
		} `json:"components"`
		MeshConfig json.RawMessage `json:"meshConfig"`
	} `json:"spec"`
}

// gatewayComponent is an entry of components.egressGateways.
type gatewayComponent struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// decodeSpec decodes an Istio spec strictly: protojson rejects unknown
// fields and invalid enum names.
func decodeSpec[T proto.Message](t *testing.T, file string, r istioResource, spec T) istioObject[T] {
	t.Helper()
	if err := protojson.Unmarshal(r.Spec, spec); err != nil {
		t.Fatalf("%s: %s %s does not match Istio's API: %v", file, r.Kind, r.Metadata.Name, err)
	}
	return istioObject[T]{meta: r.Metadata, spec: spec}
}

func loadIstio(t *testing.T) istioObjects {
	t.Helper()
	var objs istioObjects
	for _, file := range []string{"istio/egress.yaml", "istio/authorization-policy.yaml"} {
		for _, doc := range yamlDocuments(t, file) {
			var r istioResource
			if err := decodeKubernetesYAML(doc, &r); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			objs.add(t, file, r)
		}
	}

	if err := decodeKubernetesYAML(readFile(t, "istio/mesh-config.yaml"), &objs.operator); err != nil {
		t.Fatalf("istio/mesh-config.yaml: %v", err)
	}
	if objs.operator.APIVersion != "install.istio.io/v1alpha1" || objs.operator.Kind != "IstioOperator" {
		t.Errorf("istio/mesh-config.yaml is %s %s, want install.istio.io/v1alpha1 IstioOperator",
			objs.operator.APIVersion, objs.operator.Kind)
	}
	objs.mesh = &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal(objs.operator.Spec.MeshConfig, objs.mesh); err != nil {
		t.Fatalf("istio/mesh-config.yaml: spec.meshConfig does not match Istio's MeshConfig: %v", err)
	}
	return objs
}

func (o *istioObjects) add(t *testing.T, file string, r istioResource) {
	t.Helper()
	switch r.APIVersion + " " + r.Kind {
	case "networking.istio.io/v1 ServiceEntry":
		o.serviceEntries = append(o.serviceEntries, decodeSpec(t, file, r, &networkingv1alpha3.ServiceEntry{}))
	case "networking.istio.io/v1 Gateway":
		o.gateways = append(o.gateways, decodeSpec(t, file, r, &networkingv1alpha3.Gateway{}))
	case "networking.istio.io/v1 VirtualService":
		o.virtualServices = append(o.virtualServices, decodeSpec(t, file, r, &networkingv1alpha3.VirtualService{}))
	case "networking.istio.io/v1 DestinationRule":
		o.destinationRules = append(o.destinationRules, decodeSpec(t, file, r, &networkingv1alpha3.DestinationRule{}))
	case "security.istio.io/v1 AuthorizationPolicy":
		o.policies = append(o.policies, decodeSpec(t, file, r, &securityv1beta1.AuthorizationPolicy{}))
	default:
		t.Fatalf("%s: unexpected apiVersion %q and kind %q; use the Istio v1 APIs", file, r.APIVersion, r.Kind)
	}
}

// externalHost returns the DICOMweb host of the only ServiceEntry.
func (o *istioObjects) externalHost(t *testing.T) string {
	t.Helper()
	if len(o.serviceEntries) != 1 || len(o.serviceEntries[0].spec.GetHosts()) != 1 {
		t.Fatal("deploy/istio must hold one ServiceEntry with one host")
	}
	return o.serviceEntries[0].spec.GetHosts()[0]
}

func (o *istioObjects) destinationRule(t *testing.T, host string) istioObject[*networkingv1alpha3.DestinationRule] {
	t.Helper()
	for _, dr := range o.destinationRules {
		if dr.spec.GetHost() == host {
			return dr
		}
	}
	t.Fatalf("no DestinationRule for host %s", host)
	return istioObject[*networkingv1alpha3.DestinationRule]{}
}

func portTLS(dr *networkingv1alpha3.TrafficPolicy, port uint32) *networkingv1alpha3.ClientTLSSettings {
	for _, p := range dr.GetPortLevelSettings() {
		if p.GetPort().GetNumber() == port {
			return p.GetTls()
		}
	}
	return nil
}

func TestIstioResourcesDecodeStrictly(t *testing.T) {
	objs := loadIstio(t)
	counts := map[string]int{
		"ServiceEntry":        len(objs.serviceEntries),
		"Gateway":             len(objs.gateways),
		"VirtualService":      len(objs.virtualServices),
		"DestinationRule":     len(objs.destinationRules),
		"AuthorizationPolicy": len(objs.policies),
	}
	want := map[string]int{
		"ServiceEntry": 1, "Gateway": 1, "VirtualService": 1, "DestinationRule": 2, "AuthorizationPolicy": 1,
	}
	for kind, n := range want {
		if counts[kind] != n {
			t.Errorf("%d %s resources, want %d", counts[kind], kind, n)
		}
	}
}

// TestIstioEgressRouting follows a request from Orthanc's sidecar through
// the egress gateway to the DICOMweb server.
func TestIstioEgressRouting(t *testing.T) {
	objs := loadIstio(t)
	host := objs.externalHost(t)
	se := objs.serviceEntries[0]
	namespace := se.meta.Namespace

	if se.spec.GetResolution() != networkingv1alpha3.ServiceEntry_DNS {
		t.Errorf("ServiceEntry resolution = %v, want DNS", se.spec.GetResolution())
	}
	if se.spec.GetLocation() != networkingv1alpha3.ServiceEntry_MESH_EXTERNAL {
		t.Errorf("ServiceEntry location = %v, want MESH_EXTERNAL", se.spec.GetLocation())
	}
	sePorts := map[uint32]string{}
	for _, p := range se.spec.GetPorts() {
		sePorts[p.GetNumber()] = p.GetProtocol()
	}
	if sePorts[80] != "HTTP" || sePorts[443] != "HTTPS" {
		t.Errorf("ServiceEntry ports = %v, want 80 HTTP and 443 HTTPS", sePorts)
	}

	gw := objs.gateways[0]
	if gw.spec.GetSelector()["istio"] != "egressgateway" {
		t.Errorf("Gateway selector = %v, want istio: egressgateway", gw.spec.GetSelector())
	}
	var gatewayPort uint32
	for _, s := range gw.spec.GetServers() {
		if slices.Contains(s.GetHosts(), host) {
			gatewayPort = s.GetPort().GetNumber()
			if s.GetTls().GetMode() != networkingv1alpha3.ServerTLSSettings_ISTIO_MUTUAL {
				t.Errorf("Gateway server for %s has TLS mode %v, want ISTIO_MUTUAL", host, s.GetTls().GetMode())
			}
		}
	}
	if gatewayPort == 0 {
		t.Fatalf("the Gateway has no server for %s", host)
	}

	checkVirtualService(t, objs, host, gatewayPort)

	origination := portTLS(objs.destinationRule(t, host).spec.GetTrafficPolicy(), 443)
	if origination.GetMode() != networkingv1alpha3.ClientTLSSettings_SIMPLE {
		t.Errorf("port 443 of %s: TLS mode = %v, want SIMPLE", host, origination.GetMode())
	}
	if origination.GetSni() != host || !slices.Contains(origination.GetSubjectAltNames(), host) {
		t.Errorf("port 443 of %s: sni %q and subjectAltNames %v must name the host", host,
			origination.GetSni(), origination.GetSubjectAltNames())
	}

	for _, m := range []metav1.ObjectMeta{gw.meta, objs.virtualServices[0].meta,
		objs.destinationRule(t, egressGatewayHost).meta, objs.destinationRule(t, host).meta} {
		if m.Namespace != namespace {
			t.Errorf("%s is in namespace %q; keep the egress resources with the ServiceEntry in %q",
				m.Name, m.Namespace, namespace)
		}
	}
}

// checkVirtualService checks the two hops: mesh to the egress gateway over
// Istio mutual TLS, and egress gateway to the host's port 443.
func checkVirtualService(t *testing.T, objs istioObjects, host string, gatewayPort uint32) {
	t.Helper()
	vs := objs.virtualServices[0]
	gatewayName := objs.gateways[0].meta.Name
	if !slices.Contains(vs.spec.GetHosts(), host) {
		t.Errorf("VirtualService hosts %v lack %s", vs.spec.GetHosts(), host)
	}
	if !slices.Contains(vs.spec.GetGateways(), "mesh") || !slices.Contains(vs.spec.GetGateways(), gatewayName) {
		t.Errorf("VirtualService gateways %v must be mesh and %s", vs.spec.GetGateways(), gatewayName)
	}

	egressDR := objs.destinationRule(t, egressGatewayHost)
	hops := map[string]bool{}
	for _, route := range vs.spec.GetHttp() {
		if d := route.GetTimeout().AsDuration(); route.GetTimeout() != nil && d != 0 {
			t.Errorf("route %v has a timeout of %v, which would cut long transfers", route.GetMatch(), d)
		}
		for _, match := range route.GetMatch() {
			for _, gateway := range match.GetGateways() {
				dest := route.GetRoute()[0].GetDestination()
				hops[gateway] = true
				switch gateway {
				case "mesh":
					checkMeshHop(t, egressDR.spec, dest, host, gatewayPort)
				case gatewayName:
					if dest.GetHost() != host || dest.GetPort().GetNumber() != 443 {
						t.Errorf("the egress gateway routes to %s:%d, want %s:443",
							dest.GetHost(), dest.GetPort().GetNumber(), host)
					}
				}
			}
		}
	}
	if !hops["mesh"] || !hops[gatewayName] {
		t.Errorf("the VirtualService must route from mesh and from %s; it routes from %v", gatewayName, hops)
	}
}

func checkMeshHop(t *testing.T, egressDR *networkingv1alpha3.DestinationRule,
	dest *networkingv1alpha3.Destination, host string, gatewayPort uint32) {
	t.Helper()
	if dest.GetHost() != egressGatewayHost || dest.GetPort().GetNumber() != gatewayPort {
		t.Errorf("sidecars route to %s:%d, want %s:%d", dest.GetHost(), dest.GetPort().GetNumber(),
			egressGatewayHost, gatewayPort)
	}
	for _, subset := range egressDR.GetSubsets() {
		if subset.GetName() != dest.GetSubset() {
			continue
		}
		tls := portTLS(subset.GetTrafficPolicy(), gatewayPort)
		if tls.GetMode() != networkingv1alpha3.ClientTLSSettings_ISTIO_MUTUAL || tls.GetSni() != host {
			t.Errorf("subset %s: TLS %v sni %q, want ISTIO_MUTUAL and sni %s", subset.GetName(),
				tls.GetMode(), tls.GetSni(), host)
		}
		return
	}
	t.Errorf("the route uses subset %q, which the egress gateway's DestinationRule lacks", dest.GetSubset())
}

// TestIstioExternalAuthorization checks the chain AuthorizationPolicy ->
// extension provider -> Kubernetes Service -> service configuration.
func TestIstioExternalAuthorization(t *testing.T) {
	objs := loadIstio(t)
	host := objs.externalHost(t)
	kube := loadKubernetes(t)

	policy := objs.policies[0]
	if policy.meta.Namespace != "istio-system" {
		t.Errorf("the AuthorizationPolicy is in %q; it must be in istio-system, with the egress gateway",
			policy.meta.Namespace)
	}
	if policy.spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("action = %v, want CUSTOM", policy.spec.GetAction())
	}
	gwSelector := objs.gateways[0].spec.GetSelector()
	for k, v := range gwSelector {
		if policy.spec.GetSelector().GetMatchLabels()[k] != v {
			t.Errorf("the AuthorizationPolicy does not select the gateway's pods %v", gwSelector)
		}
	}
	var hosts []string
	for _, rule := range policy.spec.GetRules() {
		for _, to := range rule.GetTo() {
			hosts = append(hosts, to.GetOperation().GetHosts()...)
		}
	}
	if !slices.Contains(hosts, host) {
		t.Errorf("the AuthorizationPolicy's hosts %v lack %s", hosts, host)
	}

	gateways := objs.operator.Spec.Components.EgressGateways
	if !slices.ContainsFunc(gateways, func(g gatewayComponent) bool {
		return g.Name == "istio-egressgateway" && g.Enabled
	}) {
		t.Errorf("mesh-config.yaml must enable the egress gateway istio-egressgateway; it has %v", gateways)
	}

	provider := extAuthzProvider(t, objs.mesh, policy.spec.GetProvider().GetName())
	checkProvider(t, provider, kube)

	resolved := kubernetesConfig(t, kube)
	if d := provider.GetTimeout().AsDuration(); d <= resolved.decisionTimeout(t) {
		t.Errorf("provider timeout %v must exceed the service's decision_timeout %s", d, resolved.DecisionTimeout)
	}
	found := false
	for _, c := range resolved.Clusters {
		found = found || slices.Contains(c.Hosts, host)
	}
	if !found {
		t.Errorf("no cluster of kubernetes/configmap.yaml lists %s in hosts; Istio's CUSTOM action sends no "+
			"cluster name, so the service finds the cluster by host", host)
	}
}

func extAuthzProvider(t *testing.T, mesh *meshv1alpha1.MeshConfig,
	name string) *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider {
	t.Helper()
	for _, p := range mesh.GetExtensionProviders() {
		if p.GetName() == name {
			if p.GetEnvoyExtAuthzGrpc() == nil {
				t.Fatalf("extension provider %s must be envoyExtAuthzGrpc", name)
			}
			return p.GetEnvoyExtAuthzGrpc()
		}
	}
	t.Fatalf("the AuthorizationPolicy names provider %q, which mesh-config.yaml does not declare", name)
	return nil
}

func checkProvider(t *testing.T, p *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider,
	kube kubeObjects) {
	t.Helper()
	svc := kube.service
	if want := fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, svc.Namespace); p.GetService() != want {
		t.Errorf("provider service = %s, want the Kubernetes Service %s", p.GetService(), want)
	}
	var grpcPort int32
	for _, port := range svc.Spec.Ports {
		if port.Name == "grpc" {
			grpcPort = port.Port
		}
	}
	if p.GetPort() != uint32(grpcPort) {
		t.Errorf("provider port = %d, want the Service's grpc port %d", p.GetPort(), grpcPort)
	}
	if p.GetFailOpen() {
		t.Error("failOpen must be false: without a token the request must not leave the mesh")
	}
	if p.GetStatusOnError() != "503" {
		t.Errorf("statusOnError = %q, want \"503\"", p.GetStatusOnError())
	}
	if p.GetIncludeRequestBodyInCheck() != nil {
		t.Error("includeRequestBodyInCheck would buffer DICOM bodies; the service does not read them")
	}
	if p.GetTimeout() == nil {
		t.Error("set the provider timeout; Istio's default is 600s")
	}
}
