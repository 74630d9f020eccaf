package deploy_test

// Tests of deploy/kubernetes-backend, the overlay of deploy/kubernetes
// with [sandbox] backend = "kubernetes". The overlay is rendered by the
// real kustomize (kubectl v1.37.2's, the one hack/build-image.sh puts in
// the sandbox image); its ConfigMap loads with the config package; its
// Deployment is the base's plus a service account token and the pod's IP;
// its Role is exactly the listed rights. On a real node (TestKubeNode)
// the rendered RBAC objects, with a token of the ServiceAccount and
// nothing else, let the real sandbox/kubernetes backend sweep at start-up
// and run calls, cold and warm, using every right and asking for no
// other; without any one rule the sweep or a call fails or is refused.
// Helpers are named kubeBackend*; the base's kube* helpers are reused.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	sandboxkube "github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes"
)

const (
	kubeBackendDir = "kubernetes-backend"
	// kubeBackendPodIP stands in for the downward API's status.podIP.
	kubeBackendPodIP = "10.244.7.9"
	// kubeBackendInstance is the overlay's fixed kubernetes_instance.
	kubeBackendInstance = "kubernetes-mcp-server"
)

// kubeBackendRules is the overlay's Role, rule by rule: each one a verb
// sandbox/kubernetes calls (role-patch.yaml says where). A right added to
// the overlay fails TestKubeBackendRoleIsExactlyTheList until it is added
// here, and TestKubeBackendRBACOnARealNode until the backend uses it.
var kubeBackendRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"patch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"delete"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"deletecollection"}},
	{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}},
	{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"get"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"create"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"delete"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"deletecollection"}},
}

// kubeBackendRender is one folder rendered by kustomize, once per binary.
type kubeBackendRender struct {
	once sync.Once
	objs []*unstructured.Unstructured
	err  error
}

var kubeBackendRenders = map[string]*kubeBackendRender{kubeDir: {}, kubeBackendDir: {}}

// kubeBackendKustomize renders dir with `kubectl kustomize`, the real
// kustomize (v5.8.1 in kubectl v1.37.2), and returns copies of its objects
// in output order.
func kubeBackendKustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	r := kubeBackendRenders[dir]
	r.once.Do(func() { r.objs, r.err = kubeBackendRun(dir) })
	if r.err != nil {
		t.Fatalf("kustomize %s: %v", dir, r.err)
	}
	out := make([]*unstructured.Unstructured, len(r.objs))
	for i, o := range r.objs {
		out[i] = o.DeepCopy()
	}
	return out
}

func kubeBackendRun(dir string) ([]*unstructured.Unstructured, error) {
	// The static kubectl of the sandbox image: hack/build-image.sh builds
	// it from images/kubectl (cached), and `make test-deps` runs it.
	rootfs, err := images.PluginRootfs()
	if err != nil {
		return nil, fmt.Errorf("sandbox image (for its kubectl): %w", err)
	}
	home, err := os.MkdirTemp("", "kmcp-kustomize-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cmd := exec.Command(filepath.Join(rootfs, "usr", "local", "bin", "kubectl"), "kustomize", dir)
	// No kubeconfig, no plugins of this machine: only the folder.
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("kubectl kustomize %s: output: %w", dir, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs, nil
}

// kubeBackendObject finds one rendered object and decodes it strictly.
func kubeBackendObject(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
				t.Fatalf("rendered %s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("kustomize rendered no %s %s", kind, name)
}

// kubeBackendServerConfig loads the overlay's rendered config.toml as the
// server in its pod does: with the rendered container's environment
// (Secret values as the base test's placeholders, status.podIP as
// kubeBackendPodIP) and its HOME, XDG_CACHE_HOME and TMPDIR.
func kubeBackendServerConfig(t *testing.T) (*config.Config, *appsv1.Deployment) {
	t.Helper()
	objs := kubeBackendKustomize(t, kubeBackendDir)
	var d appsv1.Deployment
	kubeBackendObject(t, objs, "Deployment", kubeName, &d)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret-" + e.ValueFrom.SecretKeyRef.Name + "-" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = kubeBackendPodIP
		case e.ValueFrom != nil:
			t.Fatalf("env %s: only values, Secret keys and status.podIP are expected", e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	for _, name := range []string{"HOME", "XDG_CACHE_HOME", "TMPDIR"} {
		t.Setenv(name, env[name])
	}
	var cm corev1.ConfigMap
	kubeBackendObject(t, objs, "ConfigMap", "kubernetes-mcp-server-config", &cm)
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte(cm.Data["config.toml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{File: file, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatalf("the overlay's config.toml does not load: %v", err)
	}
	return cfg, &d
}

// The overlay is deploy/kubernetes plus three patches: kustomize renders
// the base's objects, in the base's order, and only the Role, the
// ConfigMap and the Deployment differ; the base's Role stays empty.
func TestKubeBackendKustomization(t *testing.T) {
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Patches    []struct {
			Path string `json:"path"`
		} `json:"patches"`
	}
	data, err := os.ReadFile(filepath.Join(kubeBackendDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Strict: a namespace, images, generators or other fields would change
	// what the base deploys; they need this test changed too.
	kubeUnmarshal(t, kubeBackendDir+"/kustomization.yaml", data, &kust)
	if kust.Kind != "Kustomization" || !slices.Equal(kust.Resources, []string{"../" + kubeDir}) {
		t.Fatalf("kustomization.yaml: kind %q, resources %q; want a Kustomization of ../%s only", kust.Kind, kust.Resources, kubeDir)
	}
	var patches []string
	for _, p := range kust.Patches {
		patches = append(patches, p.Path)
	}
	entries, err := os.ReadDir(kubeBackendDir)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, e := range entries {
		if e.Name() != "kustomization.yaml" {
			onDisk = append(onDisk, e.Name())
		}
	}
	if slices.Sort(patches); !slices.Equal(patches, onDisk) {
		t.Errorf("kustomization.yaml patches %q; the folder has %q", patches, onDisk)
	}

	base, overlay := kubeBackendKustomize(t, kubeDir), kubeBackendKustomize(t, kubeBackendDir)
	id := func(o *unstructured.Unstructured) string {
		return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
	}
	if len(base) != len(overlay) {
		t.Fatalf("the overlay renders %d objects, the base %d", len(overlay), len(base))
	}
	patched := []string{"Role " + kubeNamespace + "/" + kubeName, "ConfigMap " + kubeNamespace + "/kubernetes-mcp-server-config",
		"Deployment " + kubeNamespace + "/" + kubeName}
	for i := range base {
		b, o := base[i], overlay[i]
		if id(b) != id(o) {
			t.Errorf("object %d: the overlay renders %s, the base %s", i, id(o), id(b))
			continue
		}
		switch k := o.GetKind(); {
		case k == "Secret" || k == "ClusterRole" || k == "ClusterRoleBinding":
			t.Errorf("%s: the overlay grants nothing cluster-wide and commits no Secret", id(o))
		case k != "Namespace" && o.GetNamespace() != kubeNamespace:
			t.Errorf("%s: not in namespace %s", id(o), kubeNamespace)
		}
		if !slices.Contains(patched, id(o)) && !apiequality.Semantic.DeepEqual(b.Object, o.Object) {
			t.Errorf("%s differs from the base's; only %q are patched", id(o), patched)
		}
	}
	var baseRole rbacv1.Role
	kubeBackendObject(t, base, "Role", kubeName, &baseRole)
	if len(baseRole.Rules) != 0 {
		t.Errorf("the base's Role grants %+v; it stays empty, the overlay adds the backend's rights", baseRole.Rules)
	}
}

// The overlay's Role is exactly kubeBackendRules: a right added, widened
// (another verb, resource, group, resourceNames or nonResourceURLs) or
// removed fails; it is the namespace the sandbox Pods run in, and the
// base's RoleBinding binds it to the server's ServiceAccount alone.
func TestKubeBackendRoleIsExactlyTheList(t *testing.T) {
	objs := kubeBackendKustomize(t, kubeBackendDir)
	var role rbacv1.Role
	kubeBackendObject(t, objs, "Role", kubeName, &role)
	if !reflect.DeepEqual(role.Rules, kubeBackendRules) {
		got, _ := yaml.Marshal(role.Rules)
		want, _ := yaml.Marshal(kubeBackendRules)
		t.Errorf("Role %s rules:\n%s\nwant exactly:\n%s", role.Name, got, want)
	}
	var rb rbacv1.RoleBinding
	kubeBackendObject(t, objs, "RoleBinding", kubeName, &rb)
	if rb.Namespace != role.Namespace || rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}) ||
		!slices.Equal(rb.Subjects, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: kubeName, Namespace: kubeNamespace}}) {
		t.Errorf("RoleBinding %+v: want the Role bound to ServiceAccount %s alone", rb, kubeName)
	}
	cfg, _ := kubeBackendServerConfig(t)
	if ns := cfg.Sandbox.KubernetesNamespace; ns != role.Namespace {
		t.Errorf("sandbox Pods go to %s, the Role grants in %s", ns, role.Namespace)
	}
}

// The Deployment is the base's with two changes: a service account token
// (the backend's in-cluster configuration) and PLUGINS_KUBERNETES_GATEWAY_HOST
// from status.podIP. Undone, they leave the base's Deployment, so every
// hardening the base tests check holds here too.
func TestKubeBackendDeploymentIsTheBasePlusTokenAndPodIP(t *testing.T) {
	var base, d appsv1.Deployment
	kubeBackendObject(t, kubeBackendKustomize(t, kubeDir), "Deployment", kubeName, &base)
	kubeBackendObject(t, kubeBackendKustomize(t, kubeBackendDir), "Deployment", kubeName, &d)
	spec := &d.Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken %v, want true: the backend uses the in-cluster configuration", spec.AutomountServiceAccountToken)
	}
	c := &spec.Containers[0]
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "PLUGINS_KUBERNETES_GATEWAY_HOST" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Fatalf("env %+v: want PLUGINS_KUBERNETES_GATEWAY_HOST from the downward API's status.podIP", c.Env)
	}
	// Undo both: what is left must be the base's, field for field.
	spec.AutomountServiceAccountToken = ptr.To(false)
	c.Env = slices.Delete(c.Env, i, i+1)
	if !apiequality.Semantic.DeepEqual(base, d) {
		b, _ := yaml.Marshal(base)
		o, _ := yaml.Marshal(d)
		t.Errorf("the overlay's Deployment changes more than the token and the pod's IP:\n%s", kubeBackendLineDiff(string(b), string(o)))
	}
}

// kubeBackendLineDiff lists the lines only one of a and b has.
func kubeBackendLineDiff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// The rendered config.toml loads with the config package into backend
// "kubernetes" in the server's namespace, with the operator's sandbox
// image, a fixed instance, the pod's IP as gateway host and listen
// address and the in-cluster configuration; every other value is the
// base's.
func TestKubeBackendConfigLoads(t *testing.T) {
	base, _ := kubeServerConfig(t)
	cfg, d := kubeBackendServerConfig(t)
	// The image's tag names the root filesystem hack/build-image.sh builds
	// now (plugin-rootfs-<version>-kubectl-<kubectl>): bumping either means
	// building and pushing a new image.
	tag := strings.TrimPrefix(filepath.Base(filepath.Dir(images.DefaultRootfs())), "plugin-rootfs-")
	s := cfg.Sandbox
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"sandbox.backend", s.Backend, "kubernetes"},
		{"sandbox.kubernetes_namespace (the server's own)", s.KubernetesNamespace, d.Namespace},
		{"sandbox.kubernetes_image", s.KubernetesImage, "registry.example.com/kubernetes-mcp-server-sandbox:" + tag},
		{"sandbox.kubernetes_instance (fixed, so a restart sweeps its predecessor's)", s.KubernetesInstance, kubeBackendInstance},
		{"sandbox.kubernetes_gateway_host (the pod's IP)", s.KubernetesGatewayHost, kubeBackendPodIP},
		{"sandbox.kubernetes_gateway_listen (the pod's IP)", s.KubernetesGatewayListen, kubeBackendPodIP},
		{"sandbox.kubernetes_kubeconfig (in-cluster)", s.KubernetesKubeconfig, ""},
		{"sandbox.kubernetes_context", s.KubernetesContext, ""},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if v := cfg.Values()["sandbox.kubernetes_gateway_host"]; v.Source != config.SourceEnv {
		t.Errorf("sandbox.kubernetes_gateway_host comes from %s, want the environment (PLUGINS_KUBERNETES_GATEWAY_HOST)", v.Source)
	}
	kcfg := compose.KubernetesConfig(cfg, hclog.NewNullLogger())
	if kcfg.Namespace != kubeNamespace || kcfg.Instance != kubeBackendInstance || kcfg.GatewayHost != kubeBackendPodIP {
		t.Errorf("the backend's configuration %+v: namespace, instance or gateway host is not the overlay's", kcfg)
	}

	// Everything else is the base's: a value changed there and not here
	// (or here only) fails.
	changed := []string{"sandbox.backend", "sandbox.kubernetes_namespace", "sandbox.kubernetes_image", "sandbox.kubernetes_instance",
		"sandbox.kubernetes_gateway_listen", "sandbox.kubernetes_gateway_host"}
	ours, theirs := cfg.Values(), base.Values()
	for _, key := range config.Keys() {
		if slices.Contains(changed, key) {
			continue
		}
		if o, b := ours[key], theirs[key]; fmt.Sprint(o.Value) != fmt.Sprint(b.Value) || (o.Source == config.SourceDefault) != (b.Source == config.SourceDefault) {
			t.Errorf("%s = %v (%s) in the overlay, %v (%s) in the base: keep configmap-patch.yaml in step with the base", key, o.Value, o.Source, b.Value, b.Source)
		}
	}
	warned := func(ws []string) []string {
		var keys []string
		for _, w := range ws {
			k, _, _ := strings.Cut(w, " ")
			keys = append(keys, k)
		}
		return keys
	}
	if !slices.Equal(warned(cfg.Warnings), warned(base.Warnings)) {
		t.Errorf("Warnings = %q, want the base's %q", cfg.Warnings, base.Warnings)
	}
}

// kubeBackendAtom is one right: a verb on a resource (with its
// subresource) of an API group.
type kubeBackendAtom struct{ Group, Resource, Verb string }

func (a kubeBackendAtom) String() string { return a.Verb + " " + a.Resource }

func kubeBackendAtoms(rules []rbacv1.PolicyRule) []kubeBackendAtom {
	var out []kubeBackendAtom
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, kubeBackendAtom{g, res, v})
				}
			}
		}
	}
	return out
}

// kubeBackendRequest is one request the backend made, and its answer.
type kubeBackendRequest struct {
	Method, Path string
	Info         request.RequestInfo
	Code         int
	Err          string
}

// Refused is a request the API server denied, or that got no answer; a
// 404 (a delete of what a failed create never made) is not one.
func (q kubeBackendRequest) Refused() bool {
	return q.Code == http.StatusUnauthorized || q.Code == http.StatusForbidden || q.Code == 0
}

// Needs are the rights the request is authorized with: its verb on its
// resource, and create for a WebSocket exec (GET pods/exec), which the
// API server checks on the upgrade since 1.35.
func (q kubeBackendRequest) Needs() []kubeBackendAtom {
	if !q.Info.IsResourceRequest {
		return []kubeBackendAtom{{"", "nonresource " + q.Path, q.Info.Verb}}
	}
	res := q.Info.Resource
	if q.Info.Subresource != "" {
		res += "/" + q.Info.Subresource
	}
	needs := []kubeBackendAtom{{q.Info.APIGroup, res, q.Info.Verb}}
	if res == "pods/exec" && q.Info.Verb == "get" {
		needs = append(needs, kubeBackendAtom{q.Info.APIGroup, res, "create"})
	}
	return needs
}

func (q kubeBackendRequest) String() string {
	return fmt.Sprintf("%s %s (%v) -> %d %s", q.Method, q.Path, q.Needs(), q.Code, q.Err)
}

// kubeBackendRecorder records every request of a rest.Config, typed
// clients and exec (WebSocket and SPDY) alike, with the API server's own
// request parser.
type kubeBackendRecorder struct {
	mu   sync.Mutex
	list []kubeBackendRequest
	info request.RequestInfoFactory
}

func newKubeBackendRecorder() *kubeBackendRecorder {
	return &kubeBackendRecorder{info: request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}}
}

func (r *kubeBackendRecorder) config(c *rest.Config) *rest.Config {
	c = rest.CopyConfig(c)
	c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return kubeBackendRoundTripper{rt, r} }
	return c
}

func (r *kubeBackendRecorder) requests() []kubeBackendRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

type kubeBackendRoundTripper struct {
	rt http.RoundTripper
	r  *kubeBackendRecorder
}

func (t kubeBackendRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	q := kubeBackendRequest{Method: req.Method, Path: req.URL.Path}
	if info, err := t.r.info.NewRequestInfo(req); err == nil {
		q.Info = *info
	}
	resp, err := t.rt.RoundTrip(req)
	if resp != nil {
		q.Code = resp.StatusCode
	}
	if err != nil {
		q.Err = err.Error()
		// A refused WebSocket upgrade comes back as an error holding the
		// API server's status.
		cause := err
		var upgrade *httpstream.UpgradeFailureError
		if errors.As(err, &upgrade) {
			cause = upgrade.Cause
		}
		var status *apierrors.StatusError
		if errors.As(cause, &status) {
			q.Code = int(status.ErrStatus.Code)
		}
	}
	t.r.mu.Lock()
	t.r.list = append(t.r.list, q)
	t.r.mu.Unlock()
	return resp, err
}

type kubeBackendLog struct{ t *testing.T }

func (w kubeBackendLog) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// kubeBackendNode is the overlay's RBAC objects on the test node, and a
// token of its ServiceAccount.
type kubeBackendNode struct {
	node  *testenv.KubeNode
	admin *kubernetes.Clientset
	// sa is the ServiceAccount's configuration: the API server, its CA and
	// the token, as rest.InClusterConfig makes it in the pod.
	sa     *rest.Config
	saCli  *kubernetes.Clientset
	role   *rbacv1.Role
	server *config.Config
}

// kubeBackendSetUp creates the overlay's Namespace, ServiceAccount, Role
// and RoleBinding on the node as rendered, dry-runs the other objects, and
// gets the ServiceAccount a token.
func kubeBackendSetUp(t *testing.T) *kubeBackendNode {
	t.Helper()
	node := testenv.TestKubeNode(t)
	api := kubeAPIFor(t, &testenv.Cluster{Name: node.NodeName, REST: node.Config})
	objs := kubeBackendKustomize(t, kubeBackendDir)
	ctx := context.Background()
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "Role", "RoleBinding":
			warnings, err := api.create(ctx, o, true)
			if err != nil || len(warnings) > 0 {
				t.Fatalf("create %s %s: %v, warnings %q", o.GetKind(), o.GetName(), err, warnings)
			}
			if o.GetKind() == "Namespace" {
				// No controller-manager on the node makes the namespace's
				// "default" ServiceAccount, which the sandbox Pods run as.
				sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: kubeNamespace}}
				if _, err := api.typed.CoreV1().ServiceAccounts(kubeNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
					t.Fatalf("create the default ServiceAccount: %v", err)
				}
			}
		}
	}
	// The rest as a dry run: strict fields, no warning (the Deployment's
	// pod, with its token now, under the namespace's restricted standard).
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "Role", "RoleBinding":
		default:
			if warnings, err := api.create(ctx, o, false); err != nil || len(warnings) > 0 {
				t.Errorf("dry run of %s %s: %v, warnings %q", o.GetKind(), o.GetName(), err, warnings)
			}
		}
	}
	tr, err := api.typed.CoreV1().ServiceAccounts(kubeNamespace).CreateToken(ctx, kubeName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of ServiceAccount %s: %v", kubeName, err)
	}
	sa := &rest.Config{Host: node.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: node.Config.CAData}}
	// Its own client for the access reviews, without client-go's default
	// rate limit (5 a second), which would only slow the test down.
	reviews := rest.CopyConfig(sa)
	reviews.QPS, reviews.Burst = 200, 200
	saCli, err := kubernetes.NewForConfig(reviews)
	if err != nil {
		t.Fatal(err)
	}
	role, err := api.typed.RbacV1().Roles(kubeNamespace).Get(ctx, kubeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	server, _ := kubeBackendServerConfig(t)
	return &kubeBackendNode{node: node, admin: api.typed, sa: sa, saCli: saCli, role: role, server: server}
}

// allowed asks, as the ServiceAccount, whether it may do attr.
func (k *kubeBackendNode) allowed(t *testing.T, attr authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := k.saCli.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(),
		&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject access review %+v: %v", attr, err)
	}
	return r.Status.Allowed
}

func kubeBackendAttr(a kubeBackendAtom, ns string) authorizationv1.ResourceAttributes {
	res, sub, _ := strings.Cut(a.Resource, "/")
	return authorizationv1.ResourceAttributes{Namespace: ns, Group: a.Group, Resource: res, Subresource: sub, Verb: a.Verb}
}

// setRules makes the Role grant rules and waits until the authorizer
// answers so for every right of kubeBackendRules.
func (k *kubeBackendNode) setRules(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	role, err := k.admin.RbacV1().Roles(kubeNamespace).Get(ctx, kubeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role.Rules = rules
	if _, err := k.admin.RbacV1().Roles(kubeNamespace).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update Role: %v", err)
	}
	want := kubeBackendAtoms(rules)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		settled := true
		for _, a := range kubeBackendAtoms(kubeBackendRules) {
			if k.allowed(t, kubeBackendAttr(a, kubeNamespace)) != slices.Contains(want, a) {
				settled = false
				break
			}
		}
		if settled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the authorizer does not answer as the updated Role says")
		}
	}
}

// backendConfig is the real kubernetes backend's configuration as the
// server builds it from the overlay's config.toml (compose.KubernetesConfig: namespace, instance,
// user, limits, start timeout), with the start-up sweep, on rest, with
// what the node needs instead: its imported image, never pulled, its node
// name (no scheduler) and its gateway address for the pod's IP.
func (k *kubeBackendNode) backendConfig(t *testing.T, rc *rest.Config, warm int) sandboxkube.Config {
	t.Helper()
	c := compose.KubernetesConfig(k.server, hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: kubeBackendLog{t}}))
	c.REST, c.Sweep, c.WarmPool = rc, true, warm
	c.Image, c.PullPolicy, c.NodeName = k.node.SandboxImage, corev1.PullNever, k.node.NodeName
	c.GatewayListen, c.GatewayHost = k.node.GatewayIP, k.node.GatewayIP
	return c
}

// left is what this instance left in the namespace, as the administrator
// sees it.
func (k *kubeBackendNode) left(t *testing.T, instance string) (pods, policies []string) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: sandboxkube.LabelInstance + "=" + instance}
	ps, err := k.admin.CoreV1().Pods(kubeNamespace).List(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	nps, err := k.admin.NetworkingV1().NetworkPolicies(kubeNamespace).List(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps.Items {
		pods = append(pods, p.Name)
	}
	for _, p := range nps.Items {
		policies = append(policies, p.Name)
	}
	return pods, policies
}

// clean deletes, as the administrator, what instance left.
func (k *kubeBackendNode) clean(t *testing.T, instance string) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: sandboxkube.LabelInstance + "=" + instance}
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	if err := k.admin.CoreV1().Pods(kubeNamespace).DeleteCollection(context.Background(), now, sel); err != nil {
		t.Fatal(err)
	}
	if err := k.admin.NetworkingV1().NetworkPolicies(kubeNamespace).DeleteCollection(context.Background(), now, sel); err != nil {
		t.Fatal(err)
	}
}

// kubeBackendPlugin is a small script plugin, ready to run.
func kubeBackendPlugin(t *testing.T) sandbox.Spec {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubectl-hello")
	if err := os.WriteFile(path, []byte("#!/bin/bash\nprintf 'hello %s as %s\\n' \"$1\" \"$(id -u)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := discovery.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return sandbox.Spec{ID: "20261202T120000-overlay", Plugin: path, SHA256: sum}
}

// call runs the plugin with arg; the error is Run's.
func kubeBackendCall(b *sandboxkube.Backend, spec sandbox.Spec, arg string, keepWarm bool) (sandbox.Result, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut := sandbox.NewLimitedBuffer(1<<16), sandbox.NewLimitedBuffer(1<<16)
	spec.Args, spec.KeepWarm, spec.Stdout, spec.Stderr = []string{arg}, keepWarm, out, errOut
	res, err := b.Run(ctx, spec)
	if err != nil {
		err = fmt.Errorf("%w (stderr %q)", err, errOut.String())
	}
	return res, out.String(), err
}

// On a real node, the overlay's rendered RBAC objects and a token of its
// ServiceAccount, nothing else, let the real backend (configured from the
// overlay's config.toml) sweep what a predecessor of its instance left,
// and run a cold call and a warm one; it asks for every right of the Role
// and for no other, and is refused nothing. The ServiceAccount may do
// nothing beyond the Role: no Secrets, nothing in other namespaces,
// nothing cluster-wide. And without any one rule, the sweep or a call
// fails, leaves its Pod or NetworkPolicy behind, or is refused the
// request that needs it.
func TestKubeBackendRBACOnARealNode(t *testing.T) {
	start := time.Now()
	k := kubeBackendSetUp(t)
	t.Logf("node and RBAC objects ready in %s", time.Since(start).Round(time.Millisecond))
	if !reflect.DeepEqual(k.role.Rules, kubeBackendRules) {
		t.Fatalf("the Role on the node grants %+v, want kubeBackendRules", k.role.Rules)
	}
	spec := kubeBackendPlugin(t)

	t.Run("the-service-account-may-do-the-role-and-nothing-else", func(t *testing.T) {
		for _, a := range kubeBackendAtoms(kubeBackendRules) {
			if !k.allowed(t, kubeBackendAttr(a, kubeNamespace)) {
				t.Errorf("the ServiceAccount may not %s in %s", a, kubeNamespace)
			}
		}
		for _, attr := range []authorizationv1.ResourceAttributes{
			{Namespace: kubeNamespace, Verb: "get", Resource: "secrets"},
			{Namespace: kubeNamespace, Verb: "list", Resource: "secrets"},
			{Namespace: kubeNamespace, Verb: "get", Resource: "configmaps"},
			{Namespace: kubeNamespace, Verb: "get", Resource: "pods"},
			{Namespace: kubeNamespace, Verb: "update", Resource: "pods"},
			{Namespace: kubeNamespace, Verb: "get", Resource: "pods", Subresource: "log"},
			{Namespace: kubeNamespace, Verb: "create", Resource: "pods", Subresource: "attach"},
			{Namespace: kubeNamespace, Verb: "create", Resource: "pods", Subresource: "portforward"},
			{Namespace: kubeNamespace, Verb: "patch", Resource: "pods", Subresource: "ephemeralcontainers"},
			{Namespace: kubeNamespace, Verb: "list", Group: "networking.k8s.io", Resource: "networkpolicies"},
			{Namespace: kubeNamespace, Verb: "update", Group: "networking.k8s.io", Resource: "networkpolicies"},
			{Namespace: kubeNamespace, Verb: "create", Resource: "serviceaccounts", Subresource: "token"},
			{Namespace: kubeNamespace, Verb: "update", Group: "apps", Resource: "deployments"},
			{Namespace: kubeNamespace, Verb: "update", Group: "rbac.authorization.k8s.io", Resource: "roles"},
			{Namespace: kubeNamespace, Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "roles"},
			{Namespace: kubeNamespace, Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "rolebindings"},
			{Namespace: kubeNamespace, Verb: "*", Group: "*", Resource: "*"},
			{Namespace: "default", Verb: "create", Resource: "pods"},
			{Namespace: k.node.Namespace, Verb: "create", Resource: "pods"},
			{Namespace: k.node.Namespace, Verb: "create", Resource: "pods", Subresource: "exec"},
			{Namespace: k.node.Namespace, Verb: "create", Group: "networking.k8s.io", Resource: "networkpolicies"},
			{Verb: "list", Resource: "pods"},
			{Verb: "list", Resource: "namespaces"},
			{Verb: "list", Resource: "nodes"},
			{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		} {
			if k.allowed(t, attr) {
				t.Errorf("the ServiceAccount may %s %s/%s in %q", attr.Verb, attr.Resource, attr.Subresource, attr.Namespace)
			}
		}
	})

	t.Run("sufficient-sweep-cold-and-warm-call", func(t *testing.T) {
		rec := newKubeBackendRecorder()
		cfg := k.backendConfig(t, rec.config(k.sa), 1)
		if cfg.Namespace != kubeNamespace || cfg.Instance != kubeBackendInstance {
			t.Fatalf("the backend would run in %s as %s, not the overlay's %s as %s", cfg.Namespace, cfg.Instance, kubeNamespace, kubeBackendInstance)
		}
		// What a crashed predecessor of this instance left (Pods that never
		// ran: no node name, no scheduler), and what another server's
		// instance runs, which the sweep must not touch.
		const other = "another-server"
		for _, tc := range []struct{ instance, name string }{{kubeBackendInstance, "kmcp-left-by-a-crash"}, {other, "kmcp-of-another-server"}} {
			c := cfg
			c.Instance, c.NodeName = tc.instance, ""
			objs := c.Objects(c.CallFor(tc.name, "", spec.Plugin, nil, nil, false, 0, time.Hour))
			if _, err := k.admin.NetworkingV1().NetworkPolicies(kubeNamespace).Create(context.Background(), objs.NetworkPolicy, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := k.admin.CoreV1().Pods(kubeNamespace).Create(context.Background(), objs.Pod, metav1.CreateOptions{}); err != nil {
				t.Fatalf("a sandbox Pod is not admitted in the overlay's namespace: %v", err)
			}
		}
		defer k.clean(t, other)

		b, err := sandboxkube.New(context.Background(), cfg)
		if err != nil {
			t.Fatalf("the backend does not start with the Role's rights: %v", err)
		}
		closed := false
		defer func() {
			if !closed {
				b.Close()
			}
		}()
		if pods, policies := k.left(t, kubeBackendInstance); len(pods)+len(policies) > 0 {
			t.Errorf("the start-up sweep left %q and %q", pods, policies)
		}
		if pods, policies := k.left(t, other); len(pods) != 1 || len(policies) != 1 {
			t.Errorf("the sweep removed another instance's Pod or NetworkPolicy: %q %q left", pods, policies)
		}

		callStart := time.Now()
		res, out, err := kubeBackendCall(b, spec, "cold", true)
		if err != nil || res.ExitCode != 0 || res.Warm || out != "hello cold as 65534\n" {
			t.Fatalf("cold call: %+v %q %v", res, out, err)
		}
		t.Logf("cold call in %s", time.Since(callStart).Round(time.Millisecond))
		b.Settle()
		if b.Warm() != 1 {
			t.Fatalf("%d warm Pods after the first call, want 1", b.Warm())
		}
		res, out, err = kubeBackendCall(b, spec, "warm", false)
		if err != nil || res.ExitCode != 0 || !res.Warm || out != "hello warm as 65534\n" {
			t.Fatalf("warm call: %+v %q %v", res, out, err)
		}
		b.Close()
		closed = true
		if pods, policies := k.left(t, kubeBackendInstance); len(pods)+len(policies) > 0 {
			t.Errorf("left behind: %q and %q", pods, policies)
		}

		// Every request served, and together they needed exactly the Role.
		used := map[kubeBackendAtom]bool{}
		for _, q := range rec.requests() {
			t.Logf("request %s", q)
			if q.Code == 0 || q.Code >= 400 {
				t.Errorf("not served: %s", q)
			}
			for _, a := range q.Needs() {
				used[a] = true
			}
		}
		for _, a := range kubeBackendAtoms(kubeBackendRules) {
			if !used[a] {
				t.Errorf("the Role grants %s, which the backend did not use", a)
			}
			delete(used, a)
		}
		for a := range used {
			t.Errorf("the backend used %s, which the Role does not grant", a)
		}
	})
	if t.Failed() {
		return
	}

	// One rule less each time, and what that costs. failNew: New fails
	// (the reachability check or the sweep); failRun: the call fails;
	// leftPod, leftPolicy: the call's result is out but its Pod or
	// NetworkPolicy stays; refusedOnly: the call works around the refusal
	// (exec falls back to SPDY; a warm Pod keeps the pool's hour as its
	// deadline), which the recorded request shows.
	type effect int
	const (
		failNew effect = iota
		failRun
		leftPod
		leftPolicy
		refusedOnly
	)
	effects := map[kubeBackendAtom]effect{
		{"", "pods", "create"}:                                       failRun,
		{"", "pods", "list"}:                                         failNew,
		{"", "pods", "watch"}:                                        failRun,
		{"", "pods", "patch"}:                                        refusedOnly,
		{"", "pods", "delete"}:                                       leftPod,
		{"", "pods", "deletecollection"}:                             failNew,
		{"", "pods/exec", "create"}:                                  failRun,
		{"", "pods/exec", "get"}:                                     refusedOnly,
		{"networking.k8s.io", "networkpolicies", "create"}:           failRun,
		{"networking.k8s.io", "networkpolicies", "delete"}:           leftPolicy,
		{"networking.k8s.io", "networkpolicies", "deletecollection"}: failNew,
	}
	defer k.setRules(t, kubeBackendRules)
	for i, rule := range kubeBackendRules {
		atom := kubeBackendAtoms([]rbacv1.PolicyRule{rule})[0]
		t.Run("without-"+strings.ReplaceAll(atom.String(), " ", "-"), func(t *testing.T) {
			want, ok := effects[atom]
			if !ok {
				t.Fatalf("no expected effect for a Role without %s", atom)
			}
			k.setRules(t, slices.Delete(slices.Clone(kubeBackendRules), i, i+1))
			defer k.clean(t, kubeBackendInstance)
			rec := newKubeBackendRecorder()
			// The warm pool only where the rule is the warm Pod's claim.
			warm := 0
			if atom.Verb == "patch" {
				warm = 1
			}
			b, err := sandboxkube.New(context.Background(), k.backendConfig(t, rec.config(k.sa), warm))
			switch {
			case want == failNew && err == nil:
				b.Close()
				t.Errorf("the backend started without %s", atom)
			case want == failNew && !apierrors.IsForbidden(err):
				t.Errorf("New: %v, want forbidden", err)
			case want == failNew:
				t.Logf("New: %v", err)
			case err != nil:
				t.Fatalf("New: %v", err)
			default:
				res, out, err := kubeBackendCall(b, spec, "one", warm > 0)
				if warm > 0 && err == nil {
					b.Settle()
					res, out, err = kubeBackendCall(b, spec, "two", false)
					if !res.Warm {
						t.Errorf("the second call did not take the warm Pod: %+v", res)
					}
				}
				// The Pod or NetworkPolicy it could not delete, before Close.
				pods, policies := k.left(t, kubeBackendInstance)
				b.Close()
				switch want {
				case failRun:
					if err == nil {
						t.Errorf("the call ran without %s: %+v %q", atom, res, out)
					} else {
						t.Logf("the call failed: %v", err)
					}
				default:
					if err != nil || res.ExitCode != 0 || !strings.HasPrefix(out, "hello ") {
						t.Errorf("call: %+v %q %v", res, out, err)
					}
				}
				if wantPods := want == leftPod; wantPods != (len(pods) > 0) {
					t.Errorf("Pods left after the call: %q", pods)
				}
				if wantPolicies := want == leftPolicy; wantPolicies != (len(policies) > 0) {
					t.Errorf("NetworkPolicies left after the call: %q", policies)
				}
			}
			// The refusals are those of the missing right, and there are some.
			refused := 0
			for _, q := range rec.requests() {
				if !q.Refused() {
					continue
				}
				refused++
				if !slices.Contains(q.Needs(), atom) || q.Code != http.StatusForbidden {
					t.Errorf("refused, but not for want of %s: %s", atom, q)
				} else {
					t.Logf("refused for want of %s: %s", atom, q)
				}
			}
			if refused == 0 {
				t.Errorf("nothing the backend asked for was refused without %s", atom)
			}
		})
	}
}
