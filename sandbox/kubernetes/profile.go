package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes/internal/launch"
)

// Labels of everything the backend creates: a restarted server deletes
// what carries LabelManagedBy; LabelPod ties a NetworkPolicy to its Pod.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "kubernetes-mcp-server"
	LabelPod       = "kubernetes-mcp-server/pod"
	// LabelInstance names the server that made a Pod, so a server sweeps
	// only what it left itself, not what another replica runs.
	LabelInstance = "kubernetes-mcp-server/instance"
	// AnnotationCall names the call a Pod ran (a warm Pod gets it when its
	// call takes it).
	AnnotationCall = "kubernetes-mcp-server/call-id"
)

// ContainerName is the one container of a sandbox Pod.
const ContainerName = "plugin"

// Call is what the profile needs to know of one call's Pod.
type Call struct {
	// Name is the Pod's, and its NetworkPolicy's.
	Name   string
	CallID string
	// Plugin is the host path of the plugin file.
	Plugin string
	Args   []string
	// Env holds extra variables, after PATH, HOME, TMPDIR and KUBECONFIG.
	Env []string
	// WithCluster is set when the call has a cluster, so a gateway.
	WithCluster bool
	// GatewayPort is where the call's gateway listens, on GatewayHost; 0
	// when it is not known yet (a profile shown ahead of any call).
	GatewayPort int
	// DeadlineSeconds bounds the Pod's life (activeDeadlineSeconds).
	DeadlineSeconds int64
}

// Objects are what one call creates in the sandbox cluster.
type Objects struct {
	Pod           *corev1.Pod
	NetworkPolicy *networkingv1.NetworkPolicy
}

// Option is one named step of the Pod's profile. Read top to bottom, the
// options are what a sandbox Pod allows; `profile show` prints them.
type Option struct {
	Name  string
	Apply func(*Objects)
}

// Profile is the sandbox of one call, as a list of small named options.
func (cfg Config) Profile(c Call) []Option {
	lim := cfg.Limits
	gateway := cfg.GatewayHost + ":" + portName(c.GatewayPort)
	opts := []Option{
		{fmt.Sprintf("a Pod of its own, %s in namespace %s of the sandbox cluster, labelled %s=%s and %s=%s, deleted with grace 0 once the call's result is out",
			c.Name, cfg.Namespace, LabelManagedBy, managedBy, LabelInstance, cfg.instance()), c.withMetadata(cfg.Namespace, cfg.instance())},
		{"restartPolicy Never; terminationGracePeriodSeconds 0", withRestartNever},
		{fmt.Sprintf("activeDeadlineSeconds %d: the kubelet ends the Pod after the call's time even if this server is gone", c.DeadlineSeconds),
			func(o *Objects) { o.Pod.Spec.ActiveDeadlineSeconds = ptr.To(c.DeadlineSeconds) }},
	}
	if cfg.NodeName != "" {
		opts = append(opts, Option{"on node " + cfg.NodeName + " (nodeName: no scheduler is asked)",
			func(o *Objects) { o.Pod.Spec.NodeName = cfg.NodeName }})
	}
	if cfg.RuntimeClass != "" {
		opts = append(opts, Option{"runtimeClassName " + cfg.RuntimeClass,
			func(o *Objects) { o.Pod.Spec.RuntimeClassName = ptr.To(cfg.RuntimeClass) }})
	}
	opts = append(opts,
		Option{fmt.Sprintf("image %s (imagePullPolicy %s), its root filesystem read-only", cfg.Image, cfg.pullPolicy()), cfg.withContainer},
		Option{"no service-account token (automountServiceAccountToken: false), no service links (enableServiceLinks: false)", withNoServiceAccount},
		Option{"no host network, PID or IPC namespace; hostname sandbox", withNoHostNamespaces},
		Option{fmt.Sprintf("user %d, group %d, runAsNonRoot, no supplementary groups", cfg.User, cfg.User), cfg.withUser},
		Option{"no privilege escalation (no_new_privs); all capabilities dropped", withNoPrivileges},
		Option{"seccomp profile RuntimeDefault, the container runtime's; on top of it kmcp-pod's own filter fails " +
			strings.Join(container.DeniedSyscalls, ", ") + " with EPERM (some runtimes' defaults allow them), or the plugin does not run", withSeccomp},
		Option{fmt.Sprintf("at most %d MiB of memory and %d millicores of CPU (limits; requests %d MiB and %d millicores, so that waiting warm Pods "+
			"do not hold a node's capacity); processes: the node's limit (the kubelet's podPidsLimit), which a Pod cannot set",
			lim.MemoryMiB, lim.CPUMillicores, min(lim.MemoryMiB, requestMiB), min(lim.CPUMillicores, requestMillicores)), cfg.withResources},
		Option{fmt.Sprintf("at most %d open files: kmcp-pod lowers RLIMIT_NOFILE, soft and hard, before it execs the plugin", lim.NoFile), nil},
		Option{fmt.Sprintf("/tmp: a memory-backed emptyDir of %d MiB, writable (HOME and TMPDIR)", lim.TmpMiB),
			withMemoryVolume("tmp", "/tmp", lim.TmpMiB)},
		Option{fmt.Sprintf("%s: a memory-backed emptyDir of %d MiB that kmcp-pod writes the plugin's bytes into; it runs them only if their sha256 "+
			"is the one discovery verified", launch.PluginDir, lim.MemoryMiB), withMemoryVolume("plugin", launch.PluginDir, lim.MemoryMiB)},
	)
	kubeconfigStep := "no cluster: no kubeconfig (KUBECONFIG=/dev/null)"
	if c.WithCluster {
		kubeconfigStep = fmt.Sprintf("%s: a memory-backed emptyDir for the call's kubeconfig, which names the call's gateway at %s and holds the call's "+
			"capability only (no credential of any cluster); the gateway takes it for this call, while the call runs, from this Pod's address alone",
			launch.KubeconfigPath, gateway)
	}
	opts = append(opts,
		Option{kubeconfigStep, withMemoryVolume("kube", launch.KubeconfigDir, 1)},
		Option{fmt.Sprintf("first program %s %s, waiting; the call execs %s %s with argv, environment and plugin bytes on its stdin (no shell reads them), "+
			"and the plugin's stdin after them", launch.Program, launch.ModeWait, launch.Program, launch.ModeRun), withFirstProgram},
		Option{"environment: PATH, HOME=/tmp, TMPDIR=/tmp, TERM=dumb, KUBECONFIG, and the call's own variables; nothing of the server's", nil},
	)
	netStep := "NetworkPolicy " + c.Name + ": no ingress, no egress"
	if c.WithCluster {
		netStep = fmt.Sprintf("NetworkPolicy %s: no ingress; egress to the call's gateway at %s (TCP) only", c.Name, gateway)
	}
	netStep += "; it holds only where the cluster's network plugin enforces NetworkPolicy"
	opts = append(opts, Option{netStep, cfg.withNetworkPolicy(c)})
	return opts
}

// instance is cfg.Instance as a label value: the host's name when unset.
func (cfg Config) instance() string {
	name := cfg.Instance
	if name == "" {
		name, _ = os.Hostname()
	}
	return labelValue(name)
}

// labelValue is s in the characters and length a label value allows.
func labelValue(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '-'
	}, s)
	if len(s) > 63 {
		s = s[:63]
	}
	s = strings.Trim(s, "-._")
	if s == "" {
		return "unnamed"
	}
	return s
}

func portName(port int) string {
	if port == 0 {
		return "PORT"
	}
	return fmt.Sprint(port)
}

// Objects applies the profile to empty objects: what the backend creates,
// and what `profile show` prints.
func (cfg Config) Objects(c Call) Objects {
	o := Objects{Pod: &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}}
	for _, opt := range cfg.Profile(c) {
		if opt.Apply != nil {
			opt.Apply(&o)
		}
	}
	return o
}

// Launch is the header of c's run (without its kubeconfig, which the
// call's gateway writes): what kmcp-pod execs.
func (cfg Config) Launch(c Call, sha256 string) launch.Header {
	kubeconfig := "/dev/null"
	if c.WithCluster {
		kubeconfig = launch.KubeconfigPath
	}
	env := append([]string{"PATH=" + container.ImagePath, "HOME=/tmp", "TMPDIR=/tmp", "TERM=dumb", "KUBECONFIG=" + kubeconfig}, c.Env...)
	return launch.Header{Argv: append([]string{pluginInside(c.Plugin)}, c.Args...), Env: env, SHA256: sha256, NoFile: cfg.Limits.NoFile,
		DenySyscalls: container.DeniedSyscalls}
}

func pluginInside(plugin string) string { return launch.PluginDir + "/" + filepath.Base(plugin) }

func (c Call) withMetadata(namespace, instance string) func(*Objects) {
	return func(o *Objects) {
		o.Pod.ObjectMeta = metav1.ObjectMeta{Name: c.Name, Namespace: namespace,
			Labels: map[string]string{LabelManagedBy: managedBy, LabelInstance: instance, LabelPod: c.Name}}
		if c.CallID != "" {
			o.Pod.Annotations = map[string]string{AnnotationCall: c.CallID}
		}
	}
}

func withRestartNever(o *Objects) {
	o.Pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	o.Pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](0)
}

func (cfg Config) pullPolicy() corev1.PullPolicy {
	if cfg.PullPolicy == "" {
		return corev1.PullIfNotPresent
	}
	return cfg.PullPolicy
}

// container is the Pod's one container, which the options fill in.
func (o *Objects) container() *corev1.Container {
	if len(o.Pod.Spec.Containers) == 0 {
		o.Pod.Spec.Containers = []corev1.Container{{Name: ContainerName}}
	}
	return &o.Pod.Spec.Containers[0]
}

func (o *Objects) securityContext() *corev1.SecurityContext {
	c := o.container()
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	return c.SecurityContext
}

func (cfg Config) withContainer(o *Objects) {
	c := o.container()
	c.Image, c.ImagePullPolicy = cfg.Image, cfg.pullPolicy()
	c.WorkingDir = "/tmp"
	c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	o.securityContext().ReadOnlyRootFilesystem = ptr.To(true)
}

func withNoServiceAccount(o *Objects) {
	o.Pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	o.Pod.Spec.EnableServiceLinks = ptr.To(false)
}

func withNoHostNamespaces(o *Objects) {
	o.Pod.Spec.HostNetwork, o.Pod.Spec.HostPID, o.Pod.Spec.HostIPC = false, false, false
	o.Pod.Spec.Hostname = "sandbox"
}

func (cfg Config) withUser(o *Objects) {
	id := cfg.User
	o.Pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To(id), RunAsGroup: ptr.To(id), RunAsNonRoot: ptr.To(true)}
	sc := o.securityContext()
	sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = ptr.To(id), ptr.To(id), ptr.To(true)
}

func withNoPrivileges(o *Objects) {
	sc := o.securityContext()
	sc.AllowPrivilegeEscalation = ptr.To(false)
	sc.Privileged = ptr.To(false)
	sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
}

func withSeccomp(o *Objects) {
	o.securityContext().SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
}

func (cfg Config) withResources(o *Objects) {
	l := corev1.ResourceList{
		corev1.ResourceMemory: *resource.NewQuantity(cfg.Limits.MemoryMiB<<20, resource.BinarySI),
		corev1.ResourceCPU:    *resource.NewMilliQuantity(cfg.Limits.CPUMillicores, resource.DecimalSI),
	}
	r := corev1.ResourceList{
		corev1.ResourceMemory: *resource.NewQuantity(min(cfg.Limits.MemoryMiB, requestMiB)<<20, resource.BinarySI),
		corev1.ResourceCPU:    *resource.NewMilliQuantity(min(cfg.Limits.CPUMillicores, requestMillicores), resource.DecimalSI),
	}
	o.container().Resources = corev1.ResourceRequirements{Limits: l, Requests: r}
}

// What a sandbox Pod requests of its node: most Pods wait (warm) or run a
// short plugin, and a request of the whole limit would let a few warm
// Pods fill a node.
const (
	requestMiB        = 32
	requestMillicores = 50
)

func withMemoryVolume(name, path string, mib int64) func(*Objects) {
	return func(o *Objects) {
		o.Pod.Spec.Volumes = append(o.Pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: resource.NewQuantity(mib<<20, resource.BinarySI)}}})
		c := o.container()
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: path})
	}
}

func withFirstProgram(o *Objects) {
	o.container().Command = []string{launch.Program, launch.ModeWait}
}

func (cfg Config) withNetworkPolicy(c Call) func(*Objects) {
	return func(o *Objects) {
		np := &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: cfg.Namespace, Labels: map[string]string{LabelManagedBy: managedBy, LabelInstance: cfg.instance()}},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelPod: c.Name}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{},
				Egress:      []networkingv1.NetworkPolicyEgressRule{},
			},
		}
		if c.WithCluster && c.GatewayPort != 0 {
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: hostCIDR(cfg.GatewayHost)}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt(c.GatewayPort))}},
			}}
		}
		o.NetworkPolicy = np
	}
}

// hostCIDR is the one-address block of ip.
func hostCIDR(ip string) string {
	if strings.Contains(ip, ":") {
		return ip + "/128"
	}
	return ip + "/32"
}
