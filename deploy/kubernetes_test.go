package deploy_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"
)

// kubeObjects are the objects of deploy/kubernetes, one of each kind.
type kubeObjects struct {
	deployment    *appsv1.Deployment
	service       *corev1.Service
	configMap     *corev1.ConfigMap
	pdb           *policyv1.PodDisruptionBudget
	networkPolicy *networkingv1.NetworkPolicy
}

// newKubeObject returns an empty object for an apiVersion and kind that
// deploy/kubernetes may use.
func newKubeObject(meta metav1.TypeMeta) (any, error) {
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	}
	return nil, fmt.Errorf("unexpected apiVersion %q and kind %q", meta.APIVersion, meta.Kind)
}

// loadKubernetes decodes every manifest of deploy/kubernetes strictly: an
// unknown or misspelled field is an error, as it is for kubectl apply with
// server-side field validation.
func loadKubernetes(t *testing.T) kubeObjects {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var objs kubeObjects
	for _, file := range files {
		for _, doc := range yamlDocuments(t, file) {
			var meta metav1.TypeMeta
			if err := sigsyaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			obj, err := newKubeObject(meta)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if err := decodeKubernetesYAML(doc, obj); err != nil {
				t.Fatalf("%s does not match the Kubernetes %s schema: %v", file, meta.Kind, err)
			}
			objs.set(t, file, obj)
		}
	}
	objs.requireAll(t)
	return objs
}

func (o *kubeObjects) set(t *testing.T, file string, obj any) {
	t.Helper()
	duplicate := false
	switch v := obj.(type) {
	case *appsv1.Deployment:
		duplicate, o.deployment = o.deployment != nil, v
	case *corev1.Service:
		duplicate, o.service = o.service != nil, v
	case *corev1.ConfigMap:
		duplicate, o.configMap = o.configMap != nil, v
	case *policyv1.PodDisruptionBudget:
		duplicate, o.pdb = o.pdb != nil, v
	case *networkingv1.NetworkPolicy:
		duplicate, o.networkPolicy = o.networkPolicy != nil, v
	}
	if duplicate {
		t.Fatalf("%s: a second %T; the tests expect one of each kind", file, obj)
	}
}

func (o *kubeObjects) requireAll(t *testing.T) {
	t.Helper()
	if o.deployment == nil || o.service == nil || o.configMap == nil || o.pdb == nil || o.networkPolicy == nil {
		t.Fatal("deploy/kubernetes must hold a Deployment, a Service, a ConfigMap, a PodDisruptionBudget " +
			"and a NetworkPolicy")
	}
}

// container returns the Deployment's only container.
func (o *kubeObjects) container(t *testing.T) *corev1.Container {
	t.Helper()
	containers := o.deployment.Spec.Template.Spec.Containers
	if len(containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(containers))
	}
	return &containers[0]
}

func containerPort(c *corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// portNumber resolves a named or numeric port against the container.
func portNumber(c *corev1.Container, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		for _, p := range c.Ports {
			if p.ContainerPort == port.IntVal {
				return p.ContainerPort, true
			}
		}
		return 0, false
	}
	return containerPort(c, port.StrVal)
}

func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("invalid label selector: %v", err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	objs := loadKubernetes(t)
	namespace := objs.deployment.Namespace
	for _, m := range []metav1.ObjectMeta{
		objs.service.ObjectMeta, objs.configMap.ObjectMeta, objs.pdb.ObjectMeta, objs.networkPolicy.ObjectMeta,
	} {
		if m.Namespace != namespace {
			t.Errorf("%s is in namespace %q, the Deployment in %q", m.Name, m.Namespace, namespace)
		}
	}
}

func TestKubernetesDeploymentHardening(t *testing.T) {
	objs := loadKubernetes(t)
	spec := objs.deployment.Spec.Template.Spec
	c := objs.container(t)

	if r := objs.deployment.Spec.Replicas; r == nil || *r != 2 {
		t.Errorf("replicas = %v, want 2", r)
	}
	if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("the pod must set securityContext.runAsNonRoot: true")
	}
	csc := c.SecurityContext
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("the container must set securityContext.readOnlyRootFilesystem: true")
	}
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("the container must set securityContext.allowPrivilegeEscalation: false")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("the container must request CPU and memory")
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("the container must set a memory limit")
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("image %q must carry a version tag", c.Image)
	}
	for _, e := range c.Env {
		upper := strings.ToUpper(e.Name)
		if e.Value != "" && (strings.Contains(upper, "SECRET") || strings.Contains(upper, "PASSWORD") ||
			strings.Contains(upper, "TOKEN")) {
			t.Errorf("env %s has a literal value; mount secrets as files from a Secret", e.Name)
		}
	}
}

func TestKubernetesProbes(t *testing.T) {
	objs := loadKubernetes(t)
	c := objs.container(t)
	for _, tc := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	} {
		if tc.probe == nil || tc.probe.HTTPGet == nil {
			t.Errorf("%s must be an httpGet probe", tc.name)
			continue
		}
		if tc.probe.HTTPGet.Path != tc.path {
			t.Errorf("%s path = %q, want %q", tc.name, tc.probe.HTTPGet.Path, tc.path)
		}
		port, ok := portNumber(c, tc.probe.HTTPGet.Port)
		if !ok {
			t.Errorf("%s port %s is not a container port", tc.name, tc.probe.HTTPGet.Port.String())
		} else if port != 9901 {
			t.Errorf("%s port = %d, want the admin port 9901", tc.name, port)
		}
	}
}

func TestKubernetesSelectorsAndPorts(t *testing.T) {
	objs := loadKubernetes(t)
	podLabels := objs.deployment.Spec.Template.Labels
	c := objs.container(t)

	if !selects(t, objs.deployment.Spec.Selector, podLabels) {
		t.Error("the Deployment's selector does not match its pod template labels")
	}
	if !selects(t, &metav1.LabelSelector{MatchLabels: objs.service.Spec.Selector}, podLabels) {
		t.Errorf("the Service selector %v does not match the pod labels %v", objs.service.Spec.Selector, podLabels)
	}
	if !selects(t, objs.pdb.Spec.Selector, podLabels) {
		t.Error("the PodDisruptionBudget selector does not match the pod labels")
	}
	if !selects(t, &objs.networkPolicy.Spec.PodSelector, podLabels) {
		t.Error("the NetworkPolicy podSelector does not match the pod labels")
	}

	if minAvailable := objs.pdb.Spec.MinAvailable; minAvailable == nil || minAvailable.IntValue() < 1 ||
		minAvailable.IntValue() >= int(*objs.deployment.Spec.Replicas) {
		t.Errorf("PodDisruptionBudget minAvailable %v must be at least 1 and below the replicas", minAvailable)
	}

	wantPorts := map[string]struct {
		number      int32
		appProtocol string
	}{
		"grpc":  {9001, "grpc"},
		"http":  {9002, "http"},
		"admin": {9901, "http"},
	}
	for _, p := range objs.service.Spec.Ports {
		want, ok := wantPorts[p.Name]
		if !ok {
			t.Errorf("Service port %q is unexpected", p.Name)
			continue
		}
		delete(wantPorts, p.Name)
		target, ok := portNumber(c, p.TargetPort)
		if !ok {
			t.Errorf("Service port %s targets %s, which is not a container port", p.Name, p.TargetPort.String())
		}
		if p.Port != want.number || target != want.number {
			t.Errorf("Service port %s = %d -> %d, want %d", p.Name, p.Port, target, want.number)
		}
		if p.AppProtocol == nil || *p.AppProtocol != want.appProtocol {
			t.Errorf("Service port %s appProtocol = %v, want %s", p.Name, p.AppProtocol, want.appProtocol)
		}
	}
	for name := range wantPorts {
		t.Errorf("the Service has no port %s", name)
	}

	for _, rule := range objs.networkPolicy.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil {
				t.Error("every NetworkPolicy port must name a port")
			} else if _, ok := portNumber(c, *p.Port); !ok {
				t.Errorf("NetworkPolicy port %s is not a container port", p.Port.String())
			}
		}
	}
}

// kubeConfigMounts is how the Deployment hands the service its
// configuration and client secrets.
type kubeConfigMounts struct {
	configPath string
	secretDir  string
	secretName string
	env        map[string]string
}

// findConfigMounts follows the ConfigMap and Secret volumes and the
// ConfigMap environment variables into the container.
func findConfigMounts(t *testing.T, objs kubeObjects) kubeConfigMounts {
	t.Helper()
	c := objs.container(t)
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
		if !m.ReadOnly {
			t.Errorf("volume mount %s must be readOnly", m.Name)
		}
	}

	var found kubeConfigMounts
	for _, v := range objs.deployment.Spec.Template.Spec.Volumes {
		m, mounted := mounts[v.Name]
		if !mounted {
			t.Errorf("volume %s is not mounted", v.Name)
			continue
		}
		switch {
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != objs.configMap.Name {
				t.Errorf("volume %s mounts ConfigMap %q, but the ConfigMap is %q",
					v.Name, v.ConfigMap.Name, objs.configMap.Name)
			}
			for _, item := range v.ConfigMap.Items {
				if _, ok := objs.configMap.Data[item.Key]; !ok {
					t.Errorf("volume %s mounts key %q, which the ConfigMap lacks", v.Name, item.Key)
				}
				if item.Key == "config.yaml" {
					found.configPath = m.MountPath + "/" + item.Path
				}
			}
		case v.Secret != nil:
			found.secretDir, found.secretName = m.MountPath, v.Secret.SecretName
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440 {
				t.Errorf("secret volume defaultMode = %v, want 0440", v.Secret.DefaultMode)
			}
		}
	}
	if found.configPath == "" || found.secretDir == "" {
		t.Fatal("the Deployment must mount config.yaml from the ConfigMap and the client secret from a Secret")
	}

	found.env = map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.ConfigMapKeyRef
		value, ok := objs.configMap.Data[ref.Key]
		if ref.Name != objs.configMap.Name || !ok {
			t.Errorf("env %s refers to ConfigMap %s key %s, which does not exist", e.Name, ref.Name, ref.Key)
		}
		found.env[e.Name] = value
	}
	return found
}

// kubernetesConfig runs check-config on the configuration that the pod
// would read, and returns it resolved.
func kubernetesConfig(t *testing.T, objs kubeObjects) resolvedConfig {
	t.Helper()
	mounts := findConfigMounts(t, objs)
	config := []byte(objs.configMap.Data["config.yaml"])
	return checkServiceConfig(t, "kubernetes/configmap.yaml config.yaml", config,
		[]string{mounts.secretDir}, mounts.env)
}

// TestKubernetesConfigAndSecret follows the ConfigMap and the Secret into
// the container and runs check-config on the configuration it would read.
func TestKubernetesConfigAndSecret(t *testing.T) {
	objs := loadKubernetes(t)
	c := objs.container(t)
	mounts := findConfigMounts(t, objs)
	if !strings.Contains(strings.Join(c.Args, " "), "--config "+mounts.configPath) {
		t.Errorf("args %v do not read the mounted configuration %s", c.Args, mounts.configPath)
	}

	resolved := kubernetesConfig(t, objs)
	for _, l := range []struct{ name, addr string }{
		{"grpc", resolved.Listen.GRPC}, {"http", resolved.Listen.HTTP}, {"admin", resolved.Listen.Admin},
	} {
		port, _ := containerPort(c, l.name)
		if want := fmt.Sprintf("0.0.0.0:%d", port); l.addr != want {
			t.Errorf("listen.%s = %s, want %s so the container port %s reaches it", l.name, l.addr, want, l.name)
		}
	}

	config := []byte(objs.configMap.Data["config.yaml"])
	checkSecretItems(t, objs, mounts.secretName, mounts.secretDir, config)
}

// checkSecretItems checks that each client_secret_file is an item of the
// mounted Secret, and that docs/kubernetes.md creates that Secret with that
// key.
func checkSecretItems(t *testing.T, objs kubeObjects, secretName, secretDir string, config []byte) {
	t.Helper()
	// keys maps a file name in the mounted folder to its key in the Secret.
	keys := map[string]string{}
	for _, v := range objs.deployment.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			for _, item := range v.Secret.Items {
				keys[item.Path] = item.Key
			}
		}
	}
	doc := string(readFile(t, "../docs/kubernetes.md"))
	if !strings.Contains(doc, "create secret generic "+secretName) {
		t.Errorf("docs/kubernetes.md does not create the Secret %s", secretName)
	}
	for cluster, path := range secretFiles(t, "config.yaml", config) {
		key, ok := keys[strings.TrimPrefix(path, secretDir+"/")]
		if !ok {
			t.Errorf("clusters.%s.token.client_secret_file %s is not an item of the Secret volume", cluster, path)
			continue
		}
		if !strings.Contains(doc, "--from-file="+key+"=") {
			t.Errorf("docs/kubernetes.md does not put the key %s into the Secret", key)
		}
	}
}
