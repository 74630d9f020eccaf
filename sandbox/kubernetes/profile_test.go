package kubernetes

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func profileConfig() Config {
	return Config{Namespace: "sandbox", Image: "kmcp.local/plugin-sandbox:3", User: 65534, GatewayHost: "10.0.0.7", NodeName: "node-1",
		Limits: container.Limits{MemoryMiB: 256, CPUMillicores: 500, TmpMiB: 64, Pids: 128, NoFile: 1024}}
}

// TestTheProfileIsWhatIsCreated: the objects are the options applied top
// to bottom, each option is named, and the Pod is the hardened one the
// issue lists, field by field.
func TestTheProfileIsWhatIsCreated(t *testing.T) {
	cfg := profileConfig()
	c := cfg.CallFor("kmcp-call-1", "call-1", "/opt/plugins/kubectl-kraw", []string{"get", "pods"}, nil, true, 41234, 90*time.Second)
	objs := cfg.Objects(c)
	for _, o := range cfg.Profile(c) {
		if o.Name == "" {
			t.Errorf("an option without a name")
		}
	}
	pod := objs.Pod
	sc := pod.Spec.Containers[0].SecurityContext
	for _, check := range []struct {
		what      string
		got, want any
	}{
		{"name", pod.Name, "kmcp-call-1"},
		{"call annotation", pod.Annotations[AnnotationCall], "call-1"},
		{"managed-by label", pod.Labels[LabelManagedBy], "kubernetes-mcp-server"},
		{"one container", len(pod.Spec.Containers), 1},
		{"no init containers", len(pod.Spec.InitContainers), 0},
		{"runAsNonRoot", *sc.RunAsNonRoot, true},
		{"uid", *sc.RunAsUser, int64(65534)},
		{"gid", *sc.RunAsGroup, int64(65534)},
		{"read-only root", *sc.ReadOnlyRootFilesystem, true},
		{"no escalation", *sc.AllowPrivilegeEscalation, false},
		{"not privileged", *sc.Privileged, false},
		{"capabilities", sc.Capabilities.Drop, []corev1.Capability{"ALL"}},
		{"no added capabilities", len(sc.Capabilities.Add), 0},
		{"seccomp", sc.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault},
		{"no token", *pod.Spec.AutomountServiceAccountToken, false},
		{"no service links", *pod.Spec.EnableServiceLinks, false},
		{"no host network", pod.Spec.HostNetwork || pod.Spec.HostPID || pod.Spec.HostIPC, false},
		{"restart", pod.Spec.RestartPolicy, corev1.RestartPolicyNever},
		{"deadline", *pod.Spec.ActiveDeadlineSeconds, int64(90)},
		{"node", pod.Spec.NodeName, "node-1"},
		{"memory limit", pod.Spec.Containers[0].Resources.Limits.Memory().Value(), int64(256 << 20)},
		{"cpu limit", pod.Spec.Containers[0].Resources.Limits.Cpu().MilliValue(), int64(500)},
		{"memory request", pod.Spec.Containers[0].Resources.Requests.Memory().Value(), int64(32 << 20)},
		{"cpu request", pod.Spec.Containers[0].Resources.Requests.Cpu().MilliValue(), int64(50)},
		{"first program", pod.Spec.Containers[0].Command, []string{"/usr/local/libexec/kmcp-pod", "wait"}},
		{"no args", len(pod.Spec.Containers[0].Args), 0},
		{"no env", len(pod.Spec.Containers[0].Env), 0},
		{"policy selects the pod", objs.NetworkPolicy.Spec.PodSelector.MatchLabels[LabelPod], pod.Labels[LabelPod]},
		{"no ingress", len(objs.NetworkPolicy.Spec.Ingress), 0},
		{"egress to the gateway only", objs.NetworkPolicy.Spec.Egress[0].To[0].IPBlock.CIDR + " " +
			objs.NetworkPolicy.Spec.Egress[0].Ports[0].Port.String(), "10.0.0.7/32 41234"},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("%s: %v, want %v", check.what, check.got, check.want)
		}
	}
	volumes := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory || v.EmptyDir.SizeLimit == nil {
			t.Errorf("volume %s is not a size-limited memory emptyDir: %+v", v.Name, v.VolumeSource)
		}
		volumes[v.Name] = v.EmptyDir.SizeLimit.String()
	}
	if want := map[string]string{"tmp": "64Mi", "plugin": "256Mi", "kube": "1Mi"}; !reflect.DeepEqual(volumes, want) {
		t.Errorf("volumes %v, want %v", volumes, want)
	}
	h := cfg.Launch(c, strings.Repeat("a", 64))
	if h.Argv[0] != "/plugin/kubectl-kraw" || !reflect.DeepEqual(h.Argv[1:], []string{"get", "pods"}) || !slices.Contains(h.Env, "KUBECONFIG=/run/kube/config") {
		t.Errorf("launch %+v", h)
	}
	// What a Pod cannot set, kmcp-pod applies: the open-file limit, and the
	// container backend's own seccomp removals on top of RuntimeDefault.
	if h.NoFile != 1024 || !reflect.DeepEqual(h.DenySyscalls, container.DeniedSyscalls) {
		t.Errorf("launch limits: nofile %d, deny %v", h.NoFile, h.DenySyscalls)
	}
	// No cluster: no egress at all, and no kubeconfig.
	c = cfg.CallFor("kmcp-call-2", "call-2", "/opt/plugins/kubectl-kraw", nil, nil, false, 0, time.Minute)
	if objs := cfg.Objects(c); len(objs.NetworkPolicy.Spec.Egress) != 0 || !slices.Contains(cfg.Launch(c, "").Env, "KUBECONFIG=/dev/null") {
		t.Errorf("without a cluster: egress %+v", objs.NetworkPolicy.Spec.Egress)
	}
}

// TestThePodIsAdmittedUnderRestrictedPodSecurity: a real kube-apiserver
// admits the Pod and its NetworkPolicy, strictly and without a warning, in
// a namespace that enforces Pod Security "restricted".
func TestThePodIsAdmittedUnderRestrictedPodSecurity(t *testing.T) {
	alpha := testenv.TestClusters(t).All[0]
	var warnings warningsSeen
	rc := rest.CopyConfig(alpha.REST)
	rc.WarningHandler = &warnings
	client := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restricted-sandbox", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) })
	cfg := profileConfig()
	cfg.Namespace = ns.Name
	for _, withCluster := range []bool{true, false} {
		objs := cfg.Objects(cfg.CallFor(podName("20261202T101010-0123456789abcdef"), "20261202T101010-0123456789abcdef", "/x/kubectl-kraw", nil, nil, withCluster, 40000, time.Minute))
		dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
		if _, err := client.CoreV1().Pods(ns.Name).Create(ctx, objs.Pod, dry); err != nil {
			data, _ := json.MarshalIndent(objs.Pod, "", "  ")
			t.Fatalf("the pod is not admitted: %v\n%s", err, data)
		}
		if _, err := client.NetworkingV1().NetworkPolicies(ns.Name).Create(ctx, objs.NetworkPolicy, dry); err != nil {
			t.Fatalf("the network policy is not admitted: %v", err)
		}
	}
	if w := warnings.all(); len(w) > 0 {
		t.Errorf("warnings: %q", w)
	}
}

type warningsSeen struct {
	mu   sync.Mutex
	list []string
}

func (w *warningsSeen) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warningsSeen) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.list...)
}
