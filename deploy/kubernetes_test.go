package deploy_test

// Tests of deploy/kubernetes: the real kubectl-validate plugin checks every
// manifest, run through this server's own runtime in the container sandbox;
// a real kube-apiserver accepts every object (server-side dry-run, strict
// field validation, the "restricted" Pod Security Standard) and shows the
// ServiceAccount can do nothing; and the Deployment, parsed, holds the
// security context, probes, resources and writable mounts the server's
// configuration (loaded with the config package) needs. Helpers are named
// kube*; nothing is shared with the image's tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	mcpruntime "github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

const (
	kubeDir        = "kubernetes"
	kubeNamespace  = "kubernetes-mcp-server"
	kubeName       = "kubernetes-mcp-server"
	kubeConfigFile = "/etc/kubernetes-mcp-server/config.toml"
	kubeUID        = int64(65532)
	kubePort       = int32(8080)
	// kubeValidateVersion is the newest Kubernetes whose schemas
	// kubectl-validate v0.0.4 embeds: it validates offline.
	kubeValidateVersion = "1.30"
)

// kubeFile is one manifest of deploy/kubernetes: one object per file.
type kubeFile struct {
	Name string
	Data []byte
	Obj  *unstructured.Unstructured
}

// kubeFiles reads the manifests kustomization.yaml lists, in its order,
// and fails unless it lists every YAML file of the folder, each holding
// exactly one object.
func kubeFiles(t *testing.T) []kubeFile {
	t.Helper()
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	kubeUnmarshal(t, "kustomization.yaml", kubeRead(t, "kustomization.yaml"), &kust)
	if kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: kind %q", kust.Kind)
	}
	entries, err := os.ReadDir(kubeDir)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, e := range entries {
		if ext := path.Ext(e.Name()); (ext == ".yaml" || ext == ".yml") && e.Name() != "kustomization.yaml" {
			onDisk = append(onDisk, e.Name())
		}
	}
	if listed := slices.Sorted(slices.Values(kust.Resources)); !slices.Equal(listed, onDisk) {
		t.Fatalf("kustomization.yaml lists %q; the folder has %q", listed, onDisk)
	}
	var files []kubeFile
	for _, name := range kust.Resources {
		data := kubeRead(t, name)
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		var objs []*unstructured.Unstructured
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(m) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
		if len(objs) != 1 {
			t.Fatalf("%s holds %d objects; keep one per file (kubectl-validate reads stdin as one document)", name, len(objs))
		}
		files = append(files, kubeFile{Name: name, Data: data, Obj: objs[0]})
	}
	return files
}

func kubeRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kubeDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// kubeUnmarshal decodes strictly: a field the type does not know fails.
func kubeUnmarshal(t *testing.T, name string, data []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func kubeDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	kubeUnmarshal(t, "deployment.yaml", kubeRead(t, "deployment.yaml"), &d)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	return &d
}

// kubeServerConfig loads the ConfigMap's config.toml with the config
// package, as the server in the pod does: with the container's
// environment (Secret values stand in as placeholders) and its HOME,
// XDG_CACHE_HOME and TMPDIR, so defaults resolve as they would there.
func kubeServerConfig(t *testing.T) (*config.Config, *appsv1.Deployment) {
	t.Helper()
	d := kubeDeployment(t)
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret-" + e.ValueFrom.SecretKeyRef.Name + "-" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil:
			t.Fatalf("env %s: only values and Secret keys are expected", e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	for _, name := range []string{"HOME", "XDG_CACHE_HOME", "TMPDIR"} {
		if env[name] == "" {
			t.Fatalf("the container sets no %s; the test resolves the server's paths with it", name)
		}
		t.Setenv(name, env[name])
	}
	var cm corev1.ConfigMap
	kubeUnmarshal(t, "configmap.yaml", kubeRead(t, "configmap.yaml"), &cm)
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte(cm.Data["config.toml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{File: file, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatalf("the ConfigMap's config.toml does not load: %v", err)
	}
	return cfg, d
}

// kubeMount is the volume mounted at a container path, and how.
type kubeMount struct {
	Mount  corev1.VolumeMount
	Volume corev1.Volume
}

// Writable reports whether the server can write there: a read-write
// emptyDir or PersistentVolumeClaim.
func (m kubeMount) Writable() bool {
	return !m.Mount.ReadOnly && (m.Volume.EmptyDir != nil || m.Volume.PersistentVolumeClaim != nil)
}

// kubeMountFor is the mount whose folder holds p (the deepest one), or
// false when p is on the root filesystem.
func kubeMountFor(t *testing.T, d *appsv1.Deployment, p string) (kubeMount, bool) {
	t.Helper()
	spec := d.Spec.Template.Spec
	var best kubeMount
	found := false
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.SubPath != "" {
			t.Fatalf("mount %s uses subPath; Secrets and ConfigMaps mounted so never update", m.MountPath)
		}
		if p != m.MountPath && !strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		if found && len(m.MountPath) <= len(best.Mount.MountPath) {
			continue
		}
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Fatalf("mount %s names volume %q, which the pod does not have", m.MountPath, m.Name)
		}
		best, found = kubeMount{Mount: m, Volume: spec.Volumes[i]}, true
	}
	return best, found
}

// The kustomization lists every manifest, each one object.
func TestKubeKustomizationListsEveryManifest(t *testing.T) {
	files := kubeFiles(t)
	var kinds []string
	for _, f := range files {
		kinds = append(kinds, f.Obj.GetKind())
		if ns := f.Obj.GetNamespace(); f.Obj.GetKind() != "Namespace" && ns != kubeNamespace {
			t.Errorf("%s: namespace %q, want %q (set on every object, so kubectl apply -f works without kustomize)", f.Name, ns, kubeNamespace)
		}
	}
	for _, want := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("no %s among the manifests (%q)", want, kinds)
		}
	}
	if kinds[0] != "Namespace" {
		t.Errorf("the kustomization lists %s first; the Namespace must come first", kinds[0])
	}
	for _, f := range files {
		if f.Obj.GetKind() == "Secret" {
			t.Errorf("%s is a Secret: the operator creates those, no value is committed", f.Name)
		}
	}
}

// kubeValidateRuntime is the server's runtime as cmd builds it (compose,
// then runtime.New), on the shared test containerd, serving only the real
// kubectl-validate plugin.
func kubeValidateRuntime(t *testing.T) *mcpruntime.Runtime {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.toml")
	toml := fmt.Sprintf("[plugins]\nplugin_paths = [%q]\nallowed_plugins = [\"validate\"]\nexecution_timeout = \"60s\"\n%s",
		testenv.RealPlugins(t), testenv.SandboxTOML(t, "container", "kmcp-deploy"))
	if err := os.WriteFile(file, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{File: file, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	parts, err := compose.Build(ctx, cfg, compose.Env{KrewRoot: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := mcpruntime.New(cfg, mcpruntime.Options{Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container, Wasm: parts.Wasm})
	if err != nil {
		parts.Backends.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	if _, err := rt.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := rt.Plugin("validate"); err != nil || !p.Allowed {
		t.Fatalf("kubectl-validate is not served: %v %+v", err, p)
	}
	return rt
}

// kubeValidate runs kubectl-validate on a manifest given on stdin, offline
// (the schemas it embeds), and returns the result and the statuses of its
// JSON report.
func kubeValidate(t *testing.T, rt *mcpruntime.Runtime, manifest []byte) (*mcpruntime.Result, []metav1.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := rt.Execute(ctx, mcpruntime.Call{
		Plugin: "validate",
		Args:   []string{"--version", kubeValidateVersion, "-o", "json", "/dev/stdin"},
		Stdin:  string(manifest),
	})
	if err != nil {
		t.Fatalf("kubectl-validate refused: %v", err)
	}
	t.Logf("kubectl-validate in sandbox %s: exit %d in %d ms: %s", res.Sandbox, res.ExitCode, res.DurationMS, strings.Join(strings.Fields(res.Output), " "))
	if res.Sandbox != "container" {
		t.Fatalf("kubectl-validate ran in sandbox %q, want container", res.Sandbox)
	}
	var report map[string][]metav1.Status
	if err := json.Unmarshal([]byte(res.Output), &report); err != nil || len(report) != 1 {
		t.Fatalf("kubectl-validate: exit %d, status %s (%s), output not one file's JSON report (%v):\n%s\nstderr:\n%s",
			res.ExitCode, res.Status, res.Message, err, res.Output, res.Error)
	}
	for _, statuses := range report {
		return res, statuses
	}
	return res, nil
}

// The real kubectl-validate, run through this server's own runtime in the
// container sandbox, accepts every manifest, and rejects broken copies.
func TestKubeValidateInContainerSandbox(t *testing.T) {
	files := kubeFiles(t)
	rt := kubeValidateRuntime(t)
	for _, f := range files {
		t.Run(f.Name, func(t *testing.T) {
			res, statuses := kubeValidate(t, rt, f.Data)
			if res.ExitCode != 0 || res.Status != mcpruntime.StatusOK {
				t.Errorf("exit %d, status %s: %+v\nstderr: %s", res.ExitCode, res.Status, statuses, res.Error)
			}
			for _, s := range statuses {
				if s.Status != metav1.StatusSuccess {
					t.Errorf("%s: %s: %s %+v", f.Name, s.Status, s.Message, s.Details)
				}
			}
		})
	}
	// The check has teeth: each broken copy fails the same way, with
	// kubectl-validate's exit code for an invalid manifest (1, not an
	// argument or internal error) and the field named.
	for _, tc := range kubeBrokenCopies(t) {
		t.Run("broken/"+tc.name, func(t *testing.T) {
			res, statuses := kubeValidate(t, rt, tc.data)
			if res.ExitCode != 1 || res.Status != mcpruntime.StatusFailed {
				t.Errorf("exit %d, status %s; want 1, failed: %s", res.ExitCode, res.Status, res.Output)
			}
			if len(statuses) == 0 || statuses[0].Status != metav1.StatusFailure || !strings.Contains(res.Output, tc.field) {
				t.Errorf("the report does not reject field %q:\n%s", tc.field, res.Output)
			}
		})
	}
}

type kubeBroken struct {
	name, file, field string
	data              []byte
}

// kubeBrokenCopies are manifests with one deliberate mistake each.
func kubeBrokenCopies(t *testing.T) []kubeBroken {
	t.Helper()
	edit := func(name, file, field, old, new string) kubeBroken {
		data := string(kubeRead(t, file))
		if strings.Count(data, old) != 1 {
			t.Fatalf("broken copy %s: %q is in %s %d times, want once; update the test", name, old, file, strings.Count(data, old))
		}
		return kubeBroken{name: name, file: file, field: field, data: []byte(strings.Replace(data, old, new, 1))}
	}
	return []kubeBroken{
		edit("replicas-not-a-number", "deployment.yaml", "replicas", "replicas: 1", `replicas: "one"`),
		edit("unknown-securitycontext-field", "deployment.yaml", "readOnlyRootFileSystem", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"),
		edit("service-port-not-a-number", "service.yaml", "port", "port: 8080", `port: "eighty"`),
	}
}

// kubeWarnings collects the API server's warnings (PodSecurity's among them).
type kubeWarnings struct {
	mu   sync.Mutex
	list []string
}

func (w *kubeWarnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *kubeWarnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// kubeAPI is an administrator's clients of the test kube-apiserver.
type kubeAPI struct {
	dyn      dynamic.Interface
	mapper   meta.RESTMapper
	typed    *kubernetes.Clientset
	warnings *kubeWarnings
}

func kubeAPIFor(t *testing.T, c *testenv.Cluster) *kubeAPI {
	t.Helper()
	w := &kubeWarnings{}
	cfg := rest.CopyConfig(c.REST)
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeAPI{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), typed: typed, warnings: w}
}

// create submits obj with strict field validation, as a dry run unless
// real, and returns the error and the warnings it got.
func (a *kubeAPI) create(ctx context.Context, obj *unstructured.Unstructured, real bool) ([]string, error) {
	gvk := obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
	if !real {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	a.warnings.take()
	_, err = ri.Create(ctx, obj.DeepCopy(), opts)
	return a.warnings.take(), err
}

// A real kube-apiserver accepts every object: a server-side dry run with
// strict field validation, in the namespace created for real from
// namespace.yaml (which enforces the "restricted" Pod Security Standard),
// without a warning. The Deployment's pod passes that standard, weaker
// copies do not, and the ServiceAccount, bound as rolebinding.yaml binds
// it, can do nothing.
func TestKubeAPIServerAcceptsTheManifests(t *testing.T) {
	files := kubeFiles(t)
	api := kubeAPIFor(t, testenv.TestClusters(t).All[0])
	ctx := context.Background()

	ns := files[0]
	if ns.Obj.GetKind() != "Namespace" {
		t.Fatalf("%s is a %s; the Namespace comes first", ns.Name, ns.Obj.GetKind())
	}
	if warnings, err := api.create(ctx, ns.Obj, false); err != nil || len(warnings) > 0 {
		t.Fatalf("dry run of %s: %v, warnings %q", ns.Name, err, warnings)
	}
	// Namespaced objects need their namespace to exist, even in a dry run.
	if _, err := api.create(ctx, ns.Obj, true); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		// No controller-manager runs, so it stays Terminating; gone from use.
		api.typed.CoreV1().Namespaces().Delete(context.Background(), kubeNamespace, metav1.DeleteOptions{})
	})

	t.Run("dry-run", func(t *testing.T) {
		for _, f := range files[1:] {
			warnings, err := api.create(ctx, f.Obj, false)
			if err != nil {
				t.Errorf("%s (%s): rejected: %v", f.Name, f.Obj.GetKind(), err)
			}
			if len(warnings) > 0 {
				t.Errorf("%s (%s): warnings %q", f.Name, f.Obj.GetKind(), warnings)
			}
		}
		// Teeth: strict field validation rejects an unknown field.
		for _, tc := range kubeBrokenCopies(t) {
			var obj unstructured.Unstructured
			if err := yaml.Unmarshal(tc.data, &obj.Object); err != nil {
				t.Fatal(err)
			}
			if _, err := api.create(ctx, &obj, false); err == nil {
				t.Errorf("broken copy %s of %s was accepted", tc.name, tc.file)
			} else if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("broken copy %s: rejected without naming %q: %v", tc.name, tc.field, err)
			}
		}
	})

	t.Run("pod-security-restricted", func(t *testing.T) {
		d := kubeDeployment(t)
		pod := func(mutate func(*corev1.PodSpec)) *corev1.Pod {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "kube-test-pod", Namespace: kubeNamespace, Labels: d.Spec.Template.Labels},
				Spec:       *d.Spec.Template.Spec.DeepCopy(),
			}
			if mutate != nil {
				mutate(&p.Spec)
			}
			return p
		}
		dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}
		api.warnings.take()
		if _, err := api.typed.CoreV1().Pods(kubeNamespace).Create(ctx, pod(nil), dryRun); err != nil {
			t.Fatalf("the Deployment's pod is not admitted under the restricted standard: %v", err)
		}
		if w := api.warnings.take(); len(w) > 0 {
			t.Errorf("the Deployment's pod is admitted with warnings %q", w)
		}
		sc := func(s *corev1.PodSpec) *corev1.SecurityContext { return s.Containers[0].SecurityContext }
		weaker := []struct {
			name   string
			mutate func(*corev1.PodSpec)
		}{
			{"privilege-escalation", func(s *corev1.PodSpec) {
				sc(s).AllowPrivilegeEscalation = new(bool)
				*sc(s).AllowPrivilegeEscalation = true
			}},
			{"capabilities-kept", func(s *corev1.PodSpec) { sc(s).Capabilities = nil }},
			{"root", func(s *corev1.PodSpec) {
				zero := int64(0)
				no := false
				sc(s).RunAsUser, sc(s).RunAsNonRoot = &zero, &no
				s.SecurityContext.RunAsUser, s.SecurityContext.RunAsNonRoot = &zero, &no
			}},
			{"seccomp-unconfined", func(s *corev1.PodSpec) {
				sc(s).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
			}},
		}
		for _, tc := range weaker {
			_, err := api.typed.CoreV1().Pods(kubeNamespace).Create(ctx, pod(tc.mutate), dryRun)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
				t.Errorf("a pod with %s: %v, want forbidden by PodSecurity", tc.name, err)
			}
		}
	})

	t.Run("service-account-can-do-nothing", func(t *testing.T) {
		for _, f := range files {
			switch f.Obj.GetKind() {
			case "ServiceAccount", "Role", "RoleBinding":
				if _, err := api.create(ctx, f.Obj, true); err != nil {
					t.Fatalf("create %s: %v", f.Name, err)
				}
			}
		}
		sa := "system:serviceaccount:" + kubeNamespace + ":" + kubeName
		groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + kubeNamespace, "system:authenticated"}
		allowed := func(attr authorizationv1.ResourceAttributes) (bool, string) {
			t.Helper()
			r, err := api.typed.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: sa, Groups: groups, ResourceAttributes: &attr},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return r.Status.Allowed, r.Status.Reason
		}
		for _, attr := range []authorizationv1.ResourceAttributes{
			{Namespace: kubeNamespace, Verb: "get", Resource: "secrets"},
			{Namespace: kubeNamespace, Verb: "list", Resource: "secrets"},
			{Namespace: kubeNamespace, Verb: "get", Resource: "configmaps"},
			{Namespace: kubeNamespace, Verb: "list", Resource: "pods"},
			{Namespace: kubeNamespace, Verb: "create", Resource: "pods"},
			{Namespace: kubeNamespace, Verb: "create", Resource: "pods", Subresource: "exec"},
			{Namespace: kubeNamespace, Verb: "create", Resource: "serviceaccounts", Subresource: "token"},
			{Namespace: kubeNamespace, Verb: "update", Group: "apps", Resource: "deployments"},
			{Namespace: kubeNamespace, Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "roles"},
			{Namespace: kubeNamespace, Verb: "*", Group: "*", Resource: "*"},
			{Verb: "list", Resource: "namespaces"},
			{Verb: "list", Resource: "nodes"},
			{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		} {
			if ok, reason := allowed(attr); ok {
				t.Errorf("the ServiceAccount may %s %s/%s in %q: %s", attr.Verb, attr.Resource, attr.Subresource, attr.Namespace, reason)
			}
		}
		// Teeth: a grant bound to the same ServiceAccount does show.
		control := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kube-test-control", Namespace: kubeNamespace},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}
		binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kube-test-control", Namespace: kubeNamespace},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: control.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: kubeName, Namespace: kubeNamespace}}}
		if _, err := api.typed.RbacV1().Roles(kubeNamespace).Create(ctx, control, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := api.typed.RbacV1().RoleBindings(kubeNamespace).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, _ := allowed(authorizationv1.ResourceAttributes{Namespace: kubeNamespace, Verb: "get", Resource: "configmaps"})
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a Role granting get configmaps never showed in a SubjectAccessReview: the check above proves nothing")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// The Deployment's pod and container hold the security context,
// probes, resources and volumes.
func TestKubeDeploymentSecurityContext(t *testing.T) {
	d := kubeDeployment(t)
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	pod := spec.SecurityContext
	sc := c.SecurityContext
	if pod == nil || sc == nil {
		t.Fatalf("pod securityContext %v, container securityContext %v: both must be set", pod, sc)
	}
	is := func(p *bool, want bool) bool { return p != nil && *p == want }
	eq := func(p *int64, want int64) bool { return p != nil && *p == want }
	runtimeDefault := func(p *corev1.SeccompProfile) bool {
		return p != nil && p.Type == corev1.SeccompProfileTypeRuntimeDefault
	}
	for _, tc := range []struct {
		what string
		ok   bool
	}{
		{"replicas 1", d.Spec.Replicas != nil && *d.Spec.Replicas == 1},
		{"strategy Recreate (the krew volume is ReadWriteOnce)", d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType},
		{"pod: runAsNonRoot", is(pod.RunAsNonRoot, true)},
		{"pod: runAsUser 65532", eq(pod.RunAsUser, kubeUID)},
		{"pod: runAsGroup 65532", eq(pod.RunAsGroup, kubeUID)},
		{"pod: fsGroup 65532", eq(pod.FSGroup, kubeUID)},
		{"pod: seccomp RuntimeDefault", runtimeDefault(pod.SeccompProfile)},
		{"container: runAsNonRoot", is(sc.RunAsNonRoot, true)},
		{"container: runAsUser 65532", eq(sc.RunAsUser, kubeUID)},
		{"container: runAsGroup 65532", eq(sc.RunAsGroup, kubeUID)},
		{"container: readOnlyRootFilesystem", is(sc.ReadOnlyRootFilesystem, true)},
		{"container: allowPrivilegeEscalation false", is(sc.AllowPrivilegeEscalation, false)},
		{"container: not privileged", sc.Privileged == nil || !*sc.Privileged},
		{"container: capabilities drop ALL, add none", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0},
		{"container: seccomp RuntimeDefault (or the pod's)", sc.SeccompProfile == nil || runtimeDefault(sc.SeccompProfile)},
		{"no service account token in the pod", is(spec.AutomountServiceAccountToken, false)},
		{"serviceAccountName", spec.ServiceAccountName == kubeName},
		{"no host namespaces", !spec.HostNetwork && !spec.HostPID && !spec.HostIPC},
		{"one container, no init containers", len(spec.Containers) == 1 && len(spec.InitContainers) == 0},
		{"image kubernetes-mcp-server:latest", c.Image == "kubernetes-mcp-server:latest"},
		{"args --config " + kubeConfigFile, slices.Equal(c.Args, []string{"--config", kubeConfigFile}) && len(c.Command) == 0},
		{"container port 8080", len(c.Ports) == 1 && c.Ports[0].ContainerPort == kubePort},
	} {
		if !tc.ok {
			t.Errorf("deployment.yaml: want %s", tc.what)
		}
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}

	// Probes: readiness on /health, liveness and startup on /healthz, all
	// on the HTTP port; /health and /healthz answer 200 only while the
	// server serves (mcpserver/health.go).
	port := func(p *corev1.Probe) int32 {
		if p == nil || p.HTTPGet == nil {
			return 0
		}
		if p.HTTPGet.Port.StrVal != "" {
			for _, cp := range c.Ports {
				if cp.Name == p.HTTPGet.Port.StrVal {
					return cp.ContainerPort
				}
			}
			return 0
		}
		return p.HTTPGet.Port.IntVal
	}
	for _, tc := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/health"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
	} {
		if tc.probe == nil || tc.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", tc.name)
			continue
		}
		if tc.probe.HTTPGet.Path != tc.path || port(tc.probe) != kubePort {
			t.Errorf("%s: GET %s on port %d, want %s on %d", tc.name, tc.probe.HTTPGet.Path, port(tc.probe), tc.path, kubePort)
		}
	}
	if p := c.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 120 {
		t.Errorf("startupProbe allows %d s; discovery compiles the WebAssembly plugins cold first, give it 2 minutes at least", p.PeriodSeconds*p.FailureThreshold)
	}

	// Resources: requests and limits of CPU, memory and ephemeral storage.
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		req, okReq := c.Resources.Requests[name]
		lim, okLim := c.Resources.Limits[name]
		if !okReq || !okLim || req.Cmp(lim) > 0 {
			t.Errorf("resources %s: request %v, limit %v: want both, request <= limit", name, req.String(), lim.String())
		}
	}
}

// The ConfigMap's config.toml loads with the config package, keeps the
// proposal's values, serves WebAssembly plugins only, and the Deployment
// gives it what it names: its file, the token, a writable mount for every
// place it writes, and memory for every call slot.
func TestKubeConfigMapLoads(t *testing.T) {
	cfg, d := kubeServerConfig(t)
	c := d.Spec.Template.Spec.Containers[0]

	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"sandbox.backend", cfg.Sandbox.Backend, "wasm"},
		{"server.port", cfg.Server.Port, int(kubePort)},
		{"server.bind_address", cfg.Server.BindAddress, "0.0.0.0"},
		{"server.auth_token_file", cfg.HTTP.AuthTokenFile, "/var/run/secrets/kubernetes-mcp-server/token"},
		{"plugins.krew_root", cfg.Plugins.KrewRoot, "/var/lib/kubernetes-mcp-server/krew"},
		{"plugins.krew_binary", cfg.Plugins.KrewBinary, "/usr/local/bin/kubectl-krew"},
		{"sandbox.wasm_cache_dir", cfg.Sandbox.WasmCacheDir, "/var/cache/kubernetes-mcp-server/wasm"},
		{"audit.file", cfg.Audit.File, "/var/log/kubernetes-mcp-server/audit.jsonl"},
		{"rancher token from the Secret", cfg.Clusters.RancherToken, "secret-kubernetes-mcp-server-rancher-token"},
		{"plugin_paths starts with the image's wasm plugins", cfg.Plugins.PluginPaths[0], "/usr/local/lib/kubernetes-mcp-server/plugins"},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	for _, p := range []string{"score", "manifest_lint", "pod_list"} {
		if !slices.Contains(cfg.Plugins.AllowedPlugins, p) {
			t.Errorf("allowed_plugins %q lacks the image's WebAssembly plugin %s", cfg.Plugins.AllowedPlugins, p)
		}
	}
	// Only the two [nsk] keys the server accepts but does not use warn.
	if len(cfg.Warnings) != 2 || !strings.HasPrefix(cfg.Warnings[0], "nsk.profile") || !strings.HasPrefix(cfg.Warnings[1], "nsk.auto_discovery") {
		t.Errorf("Warnings = %q, want nsk.profile and nsk.auto_discovery only", cfg.Warnings)
	}

	t.Run("keeps-the-proposal's-values", func(t *testing.T) {
		var cm corev1.ConfigMap
		data, err := os.ReadFile(filepath.Join("..", "examples", "config", "configmap.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		kubeUnmarshal(t, "examples/config/configmap.yaml", data, &cm)
		file := filepath.Join(t.TempDir(), "proposal.toml")
		if err := os.WriteFile(file, []byte(cm.Data["config.toml"]), 0o600); err != nil {
			t.Fatal(err)
		}
		proposal, err := config.Load(config.Options{File: file, LookupEnv: func(k string) (string, bool) {
			return "secret-kubernetes-mcp-server-rancher-token", k == "PROD_RANCHER_TOKEN"
		}})
		if err != nil {
			t.Fatal(err)
		}
		ours := cfg.Values()
		for key, v := range proposal.Values() {
			if v.Source == config.SourceDefault {
				continue
			}
			got := ours[key]
			switch key {
			case "clusters.config_dir":
				// Changed on purpose: kubeconfig_dir is a read-only Secret
				// in the pod (configmap.yaml says why).
				if got.Value == v.Value {
					t.Errorf("%s is the proposal's %v: the read-only kubeconfig Secret is mounted there", key, v.Value)
				}
			case "plugins.allowed_plugins":
				if want := v.Value.([]string); !slices.Equal(got.Value.([]string)[:len(want)], want) {
					t.Errorf("%s = %q, want the proposal's %q first", key, got.Value, want)
				}
			case "plugins.plugin_paths":
				for _, p := range v.Value.([]string) {
					if !slices.Contains(got.Value.([]string), p) {
						t.Errorf("%s = %q lacks the proposal's %s", key, got.Value, p)
					}
				}
			default:
				if fmt.Sprint(got.Value) != fmt.Sprint(v.Value) {
					t.Errorf("%s = %v, want the proposal's %v", key, got.Value, v.Value)
				}
			}
		}
	})

	t.Run("files-it-reads-are-mounted", func(t *testing.T) {
		for _, tc := range []struct {
			file string
			kind string // "configMap" or "secret"
			name string // the object and key
			key  string
		}{
			{kubeConfigFile, "configMap", "kubernetes-mcp-server-config", "config.toml"},
			{cfg.HTTP.AuthTokenFile, "secret", "kubernetes-mcp-server-auth", "token"},
		} {
			m, ok := kubeMountFor(t, d, tc.file)
			if !ok || !m.Mount.ReadOnly {
				t.Errorf("%s: not on a read-only mount (%+v)", tc.file, m.Mount)
				continue
			}
			var name string
			var items []corev1.KeyToPath
			switch {
			case tc.kind == "configMap" && m.Volume.ConfigMap != nil:
				name, items = m.Volume.ConfigMap.Name, m.Volume.ConfigMap.Items
			case tc.kind == "secret" && m.Volume.Secret != nil:
				name, items = m.Volume.Secret.SecretName, m.Volume.Secret.Items
				// Owner root, group fsGroup: the server reads it as its
				// group; others never (mcpserver refuses a token others may read).
				if mode := m.Volume.Secret.DefaultMode; mode == nil || *mode&0o007 != 0 || *mode&0o040 == 0 {
					t.Errorf("%s: defaultMode %v; want group-readable, nothing for others", tc.file, mode)
				}
			}
			rel := strings.TrimPrefix(tc.file, m.Mount.MountPath+"/")
			if name != tc.name || !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Key == tc.key && k.Path == rel }) {
				t.Errorf("%s: want key %s of %s %s mounted there, got %s %v", tc.file, tc.key, tc.kind, tc.name, name, items)
			}
		}
		if m, ok := kubeMountFor(t, d, filepath.Join(cfg.Clusters.KubeconfigDir, "c1-sv5.yaml")); !ok || m.Volume.Secret == nil || !m.Mount.ReadOnly {
			t.Errorf("kubeconfig_dir %s: want a read-only Secret mounted there, got %+v", cfg.Clusters.KubeconfigDir, m)
		}
	})

	t.Run("every-place-it-writes-is-a-writable-mount", func(t *testing.T) {
		// The image's contract: these are the writable mounts, and the
		// only ones.
		contract := []string{"/tmp", "/var/cache/kubernetes-mcp-server", "/var/lib/kubernetes-mcp-server", "/var/log/kubernetes-mcp-server"}
		for _, m := range c.VolumeMounts {
			km, _ := kubeMountFor(t, d, m.MountPath)
			if km.Writable() != slices.Contains(contract, m.MountPath) {
				t.Errorf("mount %s: writable %v, want writable exactly at %q", m.MountPath, km.Writable(), contract)
			}
		}
		for _, p := range contract {
			if m, ok := kubeMountFor(t, d, p); !ok || m.Mount.MountPath != p || !m.Writable() {
				t.Errorf("%s: want a writable volume mounted there, got %+v", p, m.Mount)
			}
		}
		// What the server writes, as the loaded configuration and the
		// container's environment resolve it. dir: the folder must be the
		// mount itself (the server does not create it).
		for _, tc := range []struct {
			what, path string
			dir        bool
		}{
			{"audit.file's folder", filepath.Dir(cfg.Audit.File), true},
			{"sandbox.wasm_cache_dir", cfg.Sandbox.WasmCacheDir, false},
			{"plugins.krew_root", cfg.Plugins.KrewRoot, false},
			{"clusters.config_dir (Rancher's kubeconfigs)", cfg.Clusters.ConfigDir, false},
			{"the plugin cache", compose.DefaultCacheFile(), false},
			{"each WebAssembly call's folder (TMPDIR)", os.TempDir(), true},
		} {
			m, ok := kubeMountFor(t, d, tc.path)
			switch {
			case tc.path == "" || !filepath.IsAbs(tc.path):
				t.Errorf("%s: %q is not an absolute path", tc.what, tc.path)
			case !ok || !m.Writable():
				t.Errorf("%s %s: not on a writable mount; the root filesystem is read-only", tc.what, tc.path)
			case tc.dir && m.Mount.MountPath != tc.path:
				t.Errorf("%s %s: must be a mount itself (it is under %s)", tc.what, tc.path, m.Mount.MountPath)
			}
		}
		if m, _ := kubeMountFor(t, d, cfg.Plugins.KrewRoot); m.Volume.PersistentVolumeClaim == nil || m.Volume.PersistentVolumeClaim.ClaimName != "kubernetes-mcp-server-krew" {
			t.Errorf("krew_root %s: want the kubernetes-mcp-server-krew claim mounted there, got %+v", cfg.Plugins.KrewRoot, m.Volume)
		}
	})

	t.Run("memory-for-every-call-slot", func(t *testing.T) {
		// The wasm sandbox gives each guest up to wasm_memory_mib, and
		// max_concurrent calls run at once: the limit must hold them all,
		// with room left for the server.
		lim := c.Resources.Limits[corev1.ResourceMemory]
		need := resource.MustParse(fmt.Sprintf("%dMi", cfg.Plugins.MaxConcurrent*cfg.Sandbox.WasmMemoryMiB+256))
		if lim.Cmp(need) < 0 {
			t.Errorf("memory limit %s < %d guests of %d MiB + 256 MiB for the server", lim.String(), cfg.Plugins.MaxConcurrent, cfg.Sandbox.WasmMemoryMiB)
		}
		tmp, _ := kubeMountFor(t, d, os.TempDir())
		need = resource.MustParse(fmt.Sprintf("%dMi", cfg.Plugins.MaxConcurrent*cfg.Sandbox.TmpMiB))
		if tmp.Volume.EmptyDir == nil || tmp.Volume.EmptyDir.SizeLimit == nil || tmp.Volume.EmptyDir.SizeLimit.Cmp(need) < 0 {
			t.Errorf("/tmp volume %+v: want a sizeLimit of at least %d calls' tmp_mib (%d MiB)", tmp.Volume.EmptyDir, cfg.Plugins.MaxConcurrent, cfg.Sandbox.TmpMiB)
		}
	})
}

// RBAC grants nothing, the ServiceAccount mounts no token, and the
// Service reaches the Deployment's HTTP port.
func TestKubeRBACAndService(t *testing.T) {
	var sa corev1.ServiceAccount
	kubeUnmarshal(t, "serviceaccount.yaml", kubeRead(t, "serviceaccount.yaml"), &sa)
	if sa.Name != kubeName || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s: automountServiceAccountToken %v, want false", sa.Name, sa.AutomountServiceAccountToken)
	}
	var role rbacv1.Role
	kubeUnmarshal(t, "role.yaml", kubeRead(t, "role.yaml"), &role)
	if len(role.Rules) != 0 {
		// The server calls no API of the cluster it runs in; a rule here
		// is a new right and needs a reason (and this test changed).
		t.Errorf("Role %s grants %+v; the server needs no rights", role.Name, role.Rules)
	}
	var rb rbacv1.RoleBinding
	kubeUnmarshal(t, "rolebinding.yaml", kubeRead(t, "rolebinding.yaml"), &rb)
	if rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}) {
		t.Errorf("RoleBinding binds %+v, want only the Role %s", rb.RoleRef, role.Name)
	}
	if want := (rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: kubeName, Namespace: kubeNamespace}); len(rb.Subjects) != 1 || rb.Subjects[0] != want {
		t.Errorf("RoleBinding subjects %+v, want only %+v", rb.Subjects, want)
	}

	d := kubeDeployment(t)
	var svc corev1.Service
	kubeUnmarshal(t, "service.yaml", kubeRead(t, "service.yaml"), &svc)
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod's labels %v", k, v, d.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != kubePort {
		t.Fatalf("Service: selector %v, ports %+v; want a selector and port %d", svc.Spec.Selector, svc.Spec.Ports, kubePort)
	}
	target := svc.Spec.Ports[0].TargetPort
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return (target.StrVal != "" && p.Name == target.StrVal || target.IntVal == p.ContainerPort) && p.ContainerPort == kubePort
	}) {
		t.Errorf("Service targetPort %s is not the container's port %d", target.String(), kubePort)
	}
	if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %s; keep it ClusterIP and expose it behind TLS", svc.Spec.Type)
	}
}
