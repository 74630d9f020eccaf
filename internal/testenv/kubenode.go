package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
)

// KubeNode is a real single-node Kubernetes that runs Pods: etcd,
// kube-apiserver and a kubelet v1.37.2 on containerd's CRI with runc, all
// in private mount, network and PID namespaces of their own, so nothing of
// the host's is changed and everything dies with the test binary.
//
// The node's network namespace is joined to the host's by one veth pair
// (GatewayIP on the host, NodeIP on the node, a /30) and a host route for
// PodCIDR via NodeIP, without masquerade: a host listener sees the pod's own
// address. The node has no other route, so pods reach other pods, the node
// (the apiserver on NodeIP:6443, the kubelet on NodeIP:10250, both
// authenticated; etcd listens on the node's loopback only) and the host's
// GatewayIP, where anything listening on a wildcard address of the host is
// reachable too.
//
// No scheduler and no controller-manager run: Pods must set spec.nodeName,
// use imagePullPolicy Never (no registry; the images are imported), and
// only Namespace has a "default" ServiceAccount (and a kube-root-ca.crt
// ConfigMap), made by hand. NetworkPolicy objects are accepted but nothing
// enforces them. etcd is Debian's 3.4: a watch opened without a
// resourceVersion may fail with "Too large resource version"; watch from
// the resourceVersion of a create or list.
type KubeNode struct {
	// Kubeconfig is an administrator's kubeconfig file; its server is
	// https://NodeIP:6443, reachable from the host's network namespace.
	Kubeconfig string
	// Config is the same, for client-go.
	Config *rest.Config
	// Namespace is for sandbox pods, with its "default" ServiceAccount.
	Namespace string
	NodeName  string
	// NodeIP is the node's address, in the node's own network namespace.
	NodeIP string
	// GatewayIP is an address of the host's network namespace that pods can
	// reach: a test listens there and a pod connects to it.
	GatewayIP string
	PodCIDR   string
	// SandboxImage is the plugin sandbox image (hack/build-image.sh's root
	// filesystem), imported: pods use imagePullPolicy Never.
	SandboxImage string
	// HolderPID is the process holding the node's namespaces, for
	// `nsenter -t HolderPID -m -n -p`.
	HolderPID int

	index      int
	dir        string
	hostVeth   string
	cgroupRoot string
	lock       *os.File
	holderDone chan struct{}
	stopOnce   sync.Once

	procsMu sync.Mutex
	procs   []*Process
}

const (
	// kubeNodeSlots is how many nodes (test binaries) may run at once.
	kubeNodeSlots = 16
	// Subnets of node N: the veth pair is 10.213.N.0/30, the pods
	// 10.214.N.0/24 (this machine kind routes nothing of 10.213/16 or 10.214/16).
	kubeNodeVethNet = "10.213"
	kubeNodePodNet  = "10.214"
	// sandboxNamespace is KubeNode.Namespace.
	sandboxNamespace = "kmcp-sandbox"
	// apiserverKubeletUser is the apiserver's identity towards the kubelet.
	apiserverKubeletUser = "kube-apiserver-kubelet-client"
)

// The sysctls the kubelet writes; private files are bind-mounted over them
// so the host's values never change.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

var (
	kubeNodeOnce sync.Once
	kubeNode     *KubeNode
	kubeNodeErr  error
)

// TestKubeNode starts the node once per test binary (later calls return
// the same one), stopped by Run at the end; it fails the test with the
// logs' tail when the node does not come up. Without it the test fails:
// it never skips.
func TestKubeNode(t testing.TB) *KubeNode {
	t.Helper()
	kubeNodeOnce.Do(func() {
		if kubeNode, kubeNodeErr = startKubeNode(); kubeNodeErr != nil && kubeNode != nil {
			// Nothing of a node that did not come up is worth keeping.
			kubeNode.stop()
		}
	})
	if kubeNodeErr != nil {
		t.Fatalf("test kubernetes node: %v", kubeNodeErr)
	}
	return kubeNode
}

// startKubeNode returns the node, once it has one, with any error, so
// that what did come up can be stopped.
func startKubeNode() (*KubeNode, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the kubernetes node needs root; these tests run as uid %d", os.Geteuid())
	}
	for _, tool := range []string{"nsenter", "ip", "etcd", "containerd", "ctr", "runc", "tar", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s: %w (run `make test-deps`, which installs it)", tool, err)
		}
	}
	apiserverBin, err := kubeBinary("kube-apiserver")
	if err != nil {
		return nil, err
	}
	kubeletBin, err := kubeBinary("kubelet")
	if err != nil {
		return nil, err
	}
	pauseBin, pauseImg, err := pauseProgram()
	if err != nil {
		return nil, err
	}
	// The sandbox image is packed (first time only) while the node comes up.
	type imageResult struct {
		img nodeImage
		err error
	}
	sandboxDone := make(chan imageResult, 1)
	go func() {
		rootfs, err := images.PluginRootfs()
		if err != nil {
			sandboxDone <- imageResult{err: err}
			return
		}
		img, err := sandboxImage(rootfs)
		sandboxDone <- imageResult{img, err}
	}()

	index, lock, err := acquireKubeNodeSlot()
	if err != nil {
		return nil, err
	}
	k := &KubeNode{
		index:      index,
		lock:       lock,
		dir:        fmt.Sprintf("/tmp/kmcp-kubenode-%d", index),
		hostVeth:   fmt.Sprintf("kmcp-kn%d", index),
		cgroupRoot: fmt.Sprintf("/kmcp-kubenode-%d", index),
		Namespace:  sandboxNamespace,
		NodeName:   fmt.Sprintf("kmcp-node-%d", index),
		GatewayIP:  fmt.Sprintf("%s.%d.1", kubeNodeVethNet, index),
		NodeIP:     fmt.Sprintf("%s.%d.2", kubeNodeVethNet, index),
		PodCIDR:    fmt.Sprintf("%s.%d.0/24", kubeNodePodNet, index),
	}
	atExit(k.stop)
	k.removeLeftovers()
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return k, err
	}
	if err := k.startHolder(pauseBin); err != nil {
		return k, err
	}
	if err := k.setUpNamespaces(); err != nil {
		return k, err
	}
	if err := makeCgroupRoot(k.cgroupRoot); err != nil {
		return k, err
	}
	cfg, err := k.writeConfigs(pauseImg)
	if err != nil {
		return k, err
	}

	// etcd and the apiserver come up beside containerd and the kubelet,
	// which waits for the apiserver by itself.
	var wg sync.WaitGroup
	var apiErr, runtimeErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		apiErr = k.startControlPlane(apiserverBin, cfg)
	}()
	go func() {
		defer wg.Done()
		if runtimeErr = k.startContainerd(cfg, pauseImg); runtimeErr != nil {
			return
		}
		if runtimeErr = k.startKubelet(kubeletBin); runtimeErr != nil {
			return
		}
		res := <-sandboxDone
		if runtimeErr = res.err; runtimeErr != nil {
			return
		}
		k.SandboxImage = res.img.Name
		runtimeErr = k.importImages(cfg, res.img)
	}()
	wg.Wait()
	if err := errors.Join(apiErr, runtimeErr); err != nil {
		return k, k.withLogs(err)
	}
	if err := k.waitNodeReady(); err != nil {
		return k, k.withLogs(err)
	}
	return k, nil
}

// kubeBinary returns a cached Kubernetes component (kube-apiserver or
// kubelet) that hack/build-kubernetes.sh builds the first time on this
// machine.
func kubeBinary(name string) (string, error) {
	root, err := images.RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "build-kubernetes.sh"), name)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// acquireKubeNodeSlot takes the first free index: its lock is held (the
// file stays open) for the test binary's life and dies with it.
func acquireKubeNodeSlot() (int, *os.File, error) {
	for i := range kubeNodeSlots {
		f, err := os.OpenFile(fmt.Sprintf("/run/lock/kmcp-kubenode-%d.lock", i), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return 0, nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return i, f, nil
		}
		f.Close()
	}
	return 0, nil, fmt.Errorf("all %d kubernetes node slots (/run/lock/kmcp-kubenode-N.lock) are in use", kubeNodeSlots)
}

// holderName is the holder's argv[0], by which a leftover is recognised.
func (k *KubeNode) holderName() string { return fmt.Sprintf("kmcp-kubenode-holder-%d", k.index) }

// removeLeftovers ends what a crashed run of the same index left: its
// holder (and with it every process of the node), the veth and route, the
// cgroups and the folder.
func (k *KubeNode) removeLeftovers() {
	if data, err := os.ReadFile(filepath.Join(k.dir, "holder.pid")); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if pid > 0 && strings.HasPrefix(string(cmdline), k.holderName()+"\x00") {
			syscall.Kill(pid, syscall.SIGKILL)
			for deadline := time.Now().Add(10 * time.Second); ProcessAlive(pid) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	exec.Command("ip", "link", "del", k.hostVeth).Run()
	exec.Command("ip", "route", "del", k.PodCIDR).Run()
	removeCgroupRoot(k.cgroupRoot)
	// --one-file-system: never descend into a mount, should one be left.
	exec.Command("rm", "-rf", "--one-file-system", k.dir).Run()
}

// startHolder starts the pause program as PID 1 of new PID and network
// namespaces, in a new mount namespace (Go makes its mounts private). When
// it dies, the kernel kills every process of the node, shims and
// containers included, and the node's network namespace, veth and route
// go away.
func (k *KubeNode) startHolder(pauseBin string) error {
	log, err := os.Create(filepath.Join(k.dir, "holder.log"))
	if err != nil {
		return err
	}
	cmd := &exec.Cmd{
		Path:   pauseBin,
		Args:   []string{k.holderName()},
		Stdout: log,
		Stderr: log,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:   syscall.CLONE_NEWPID | syscall.CLONE_NEWNET,
			Unshareflags: syscall.CLONE_NEWNS,
			Setpgid:      true,
			Pdeathsig:    syscall.SIGKILL,
		},
	}
	spawnThread.do(func() { err = cmd.Start() })
	if err != nil {
		log.Close()
		return fmt.Errorf("start the node's namespace holder: %w", err)
	}
	k.HolderPID = cmd.Process.Pid
	k.holderDone = make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		close(k.holderDone)
	}()
	return os.WriteFile(filepath.Join(k.dir, "holder.pid"), []byte(strconv.Itoa(k.HolderPID)+"\n"), 0o644)
}

// spawnThread starts the node's processes. Pdeathsig fires when the
// thread that started a child ends, not the process, and Go ends a thread
// when a goroutine locked to it returns: this one is locked and never
// returns, so the node dies with the test binary and only then.
var spawnThread = newLockedThread()

type lockedThread chan func()

func newLockedThread() lockedThread {
	c := make(lockedThread)
	go func() {
		runtime.LockOSThread()
		for f := range c {
			f()
		}
	}()
	return c
}

// do runs f on the thread and waits for it.
func (c lockedThread) do(f func()) {
	done := make(chan struct{})
	c <- func() { defer close(done); f() }
	<-done
}

// nsenter is a command run in the node's namespaces. Paths must be
// absolute: entering the mount namespace resets the working directory.
func (k *KubeNode) nsenter(argv ...string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(k.HolderPID), "-m", "-n", "-p", "--"}, argv...)
	return exec.Command("nsenter", args...)
}

// setUpNamespaces joins the node's network namespace to the host's and
// prepares its mounts: its own /proc (of its PID namespace), a tmpfs on
// /run (shim sockets go to /run/containerd/s whatever containerd's state
// folder is), overlays on /var/lib and /var/log (the kubelet hard-codes
// /var/lib/kubelet/device-plugins and /var/log/containers), and private
// copies of the sysctls the kubelet writes.
func (k *KubeNode) setUpNamespaces() error {
	ip := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := ip("link", "add", k.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(k.HolderPID)); err != nil {
		return err
	}
	if err := ip("addr", "add", k.GatewayIP+"/30", "dev", k.hostVeth); err != nil {
		return err
	}
	if err := ip("link", "set", k.hostVeth, "up"); err != nil {
		return err
	}
	script := fmt.Sprintf(`set -euo pipefail
mount -t proc proc /proc
mount -t tmpfs -o mode=0755 tmpfs /run
for d in lib log; do
	mkdir -p %[1]s/var/$d.upper %[1]s/var/$d.work
	mount -t overlay overlay -o lowerdir=/var/$d,upperdir=%[1]s/var/$d.upper,workdir=%[1]s/var/$d.work /var/$d
done
mkdir -p %[1]s/sysctl
for s in %[2]s; do
	f=%[1]s/sysctl/${s//\//.}
	cat /proc/sys/$s >"$f"
	mount --bind "$f" /proc/sys/$s
done
ip link set lo up
ip addr add %[3]s/30 dev eth0
ip link set eth0 up
echo 1 >/proc/sys/net/ipv4/ip_forward
`, k.dir, strings.Join(kubeletSysctls, " "), k.NodeIP)
	if out, err := k.nsenter("bash", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("set up the node's namespaces: %v\n%s", err, out)
	}
	// No masquerade anywhere: the host sees pods' own addresses and answers
	// them through the node.
	return ip("route", "add", k.PodCIDR, "via", k.NodeIP, "dev", k.hostVeth)
}

// nodeConfig is what the node's parts were given.
type nodeConfig struct {
	pki                                 *nodePKI
	apiserverCert, apiserverKey         string
	kubeletClientCert, kubeletClientKey string // the apiserver's, towards the kubelet
	kubeletCert, kubeletKey             string
	saKey, tokens                       string
	containerdConfig, containerdSock    string
}

func (k *KubeNode) writeConfigs(pause nodeImage) (*nodeConfig, error) {
	var c nodeConfig
	var err error
	if c.pki, err = newNodePKI(filepath.Join(k.dir, "pki")); err != nil {
		return nil, err
	}
	nodeIP := net.ParseIP(k.NodeIP)
	if c.apiserverCert, c.apiserverKey, err = c.pki.issue("apiserver", "kube-apiserver", nil,
		[]net.IP{nodeIP, net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}); err != nil {
		return nil, err
	}
	if c.kubeletClientCert, c.kubeletClientKey, err = c.pki.issue("apiserver-kubelet-client", apiserverKubeletUser, nil, nil, nil); err != nil {
		return nil, err
	}
	if c.kubeletCert, c.kubeletKey, err = c.pki.issue("kubelet", k.NodeName, nil, []net.IP{nodeIP}, []string{k.NodeName}); err != nil {
		return nil, err
	}
	c.saKey = filepath.Join(k.dir, "pki", "sa.key")
	if err := writeRSAKey(c.saKey); err != nil {
		return nil, err
	}
	adminToken, kubeletToken := randomHex(16), randomHex(16)
	c.tokens = filepath.Join(k.dir, "tokens.csv")
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n%s,system:node:%s,kubelet,system:nodes\n", adminToken, kubeletToken, k.NodeName)
	if err := os.WriteFile(c.tokens, []byte(tokens), 0o600); err != nil {
		return nil, err
	}

	server := "https://" + net.JoinHostPort(k.NodeIP, "6443")
	k.Config = &rest.Config{Host: server, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.CAData}}
	k.Kubeconfig = filepath.Join(k.dir, "admin.kubeconfig")
	if err := clientcmd.WriteToFile(tokenKubeconfig(k.NodeName, server, c.pki.CAData, adminToken), k.Kubeconfig); err != nil {
		return nil, err
	}
	if err := clientcmd.WriteToFile(tokenKubeconfig(k.NodeName, server, c.pki.CAData, kubeletToken), filepath.Join(k.dir, "kubelet.kubeconfig")); err != nil {
		return nil, err
	}

	// One bridge, addresses from host-local, no masquerade.
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "kmcp-pods", "plugins": [{
	"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
	"ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
}]}
`, k.PodCIDR)
	if err := os.MkdirAll(filepath.Join(k.dir, "cni"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(k.dir, "cni", "10-kmcp.conflist"), []byte(cni), 0o644); err != nil {
		return nil, err
	}

	c.containerdSock = filepath.Join(k.dir, "containerd.sock")
	// restrict_oom_score_adj: this machine kind lacks CAP_SYS_RESOURCE, and
	// runc fails every sandbox without it ("can't get final child's PID
	// from pipe"). The streaming server stays on the node's loopback.
	ctrd := fmt.Sprintf(`version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"

[grpc]
  address = %[2]q

[plugins."io.containerd.internal.v1.opt"]
  path = "%[1]s/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[3]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[1]s/cni"
`, k.dir, c.containerdSock, pause.Name)
	c.containerdConfig = filepath.Join(k.dir, "containerd.toml")
	if err := os.WriteFile(c.containerdConfig, []byte(ctrd), 0o600); err != nil {
		return nil, err
	}

	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: %[2]s
tlsPrivateKeyFile: %[3]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 10s}
  x509: {clientCAFile: %[4]s}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 1s}
containerRuntimeEndpoint: unix://%[5]s
# cgroup v1 here: 1.35+ refuses it unless told.
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: %[6]s
protectKernelDefaults: false
resolvConf: ""
# Imported images cannot be pulled again: never collect them, never evict
# for a busy test machine.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
podCIDR: %[7]s
serializeImagePulls: false
# A Pod cannot bound its own processes: a sandbox node must (the
# backend's profile says so), or a fork bomb takes the node.
podPidsLimit: 128
`, k.NodeIP, c.kubeletCert, c.kubeletKey, c.pki.CA, c.containerdSock, k.cgroupRoot, k.PodCIDR)
	if err := os.WriteFile(filepath.Join(k.dir, "kubelet.yaml"), []byte(kubelet), 0o600); err != nil {
		return nil, err
	}
	return &c, nil
}

func tokenKubeconfig(name, server string, ca []byte, token string) clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return *cfg
}

// startPart starts one of the node's programs in its namespaces.
func (k *KubeNode) startPart(name string, argv ...string) (*Process, error) {
	var p *Process
	var err error
	spawnThread.do(func() { p, err = StartProcess(name, filepath.Join(k.dir, name+".log"), k.nsenter(argv...)) })
	if err != nil {
		return nil, err
	}
	k.procsMu.Lock()
	k.procs = append(k.procs, p)
	k.procsMu.Unlock()
	return p, nil
}

// startControlPlane starts etcd (its data on the node's /run tmpfs, its
// port on the node's loopback, out of the pods' reach) and the apiserver,
// and makes the objects the missing controllers would.
func (k *KubeNode) startControlPlane(apiserverBin string, c *nodeConfig) error {
	etcd, err := k.startPart("etcd", "etcd",
		"--name=kubenode",
		"--data-dir=/run/etcd",
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=kubenode=http://127.0.0.1:2380",
	)
	if err != nil {
		return err
	}
	api, err := k.startPart("kube-apiserver", apiserverBin,
		"--etcd-servers=http://127.0.0.1:2379",
		"--endpoint-reconciler-type=none",
		"--token-auth-file="+c.tokens,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+c.saKey,
		"--service-account-signing-key-file="+c.saKey,
		"--tls-cert-file="+c.apiserverCert,
		"--tls-private-key-file="+c.apiserverKey,
		"--client-ca-file="+c.pki.CA,
		"--kubelet-client-certificate="+c.kubeletClientCert,
		"--kubelet-client-key="+c.kubeletClientKey,
		"--kubelet-certificate-authority="+c.pki.CA,
		"--kubelet-preferred-address-types=InternalIP",
		"--secure-port=6443",
		"--bind-address="+k.NodeIP,
		"--advertise-address="+k.NodeIP,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	err = waitFor(api, 3*time.Minute, func() error {
		if etcd.Exited() {
			return etcd.failure("exited")
		}
		return readyz(k.Config)
	})
	if err != nil {
		return err
	}
	return k.createObjects(c)
}

// createObjects makes what no controller-manager will: the apiserver's
// kubelet client may use pods/exec, attach and log, and the sandbox
// namespace has its default ServiceAccount and root CA ConfigMap.
func (k *KubeNode) createObjects(c *nodeConfig) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kmcp:apiserver-kubelet-api-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: apiserverKubeletUser}},
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubernetes node: create cluster role binding: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: k.Namespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubernetes node: create namespace %s: %w", k.Namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := client.CoreV1().ServiceAccounts(k.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubernetes node: create service account: %w", err)
	}
	ca := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": string(c.pki.CAData)}}
	if _, err := client.CoreV1().ConfigMaps(k.Namespace).Create(ctx, ca, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubernetes node: create kube-root-ca.crt: %w", err)
	}
	return nil
}

func (k *KubeNode) startContainerd(c *nodeConfig, pause nodeImage) error {
	p, err := k.startPart("containerd", "containerd", "--config", c.containerdConfig)
	if err != nil {
		return err
	}
	err = waitFor(p, time.Minute, func() error {
		out, err := exec.Command("ctr", "--address", c.containerdSock, "version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr version: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return k.importImages(c, pause)
}

// importImages imports into the k8s.io namespace, where CRI finds images,
// from the node's mount namespace, where containerd unpacks them.
func (k *KubeNode) importImages(c *nodeConfig, imgs ...nodeImage) error {
	for _, img := range imgs {
		out, err := k.nsenter("ctr", "--address", c.containerdSock, "--namespace", "k8s.io", "images", "import", img.Tar).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import image %s: %v\n%s", img.Name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func (k *KubeNode) startKubelet(bin string) error {
	_, err := k.startPart("kubelet", bin,
		"--config="+k.dir+"/kubelet.yaml",
		"--kubeconfig="+k.dir+"/kubelet.kubeconfig",
		"--hostname-override="+k.NodeName,
		"--node-ip="+k.NodeIP,
		"--v=1",
	)
	return err
}

// waitNodeReady polls until the node reports Ready and the namespace's
// default ServiceAccount is there, or a part exits.
func (k *KubeNode) waitNodeReady() error {
	client, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		return err
	}
	ready := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		node, err := client.CoreV1().Nodes().Get(ctx, k.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var reason string
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					_, err := client.CoreV1().ServiceAccounts(k.Namespace).Get(ctx, "default", metav1.GetOptions{})
					return err
				}
				reason = c.Reason + ": " + c.Message
			}
		}
		return fmt.Errorf("node %s not Ready (%s)", k.NodeName, reason)
	}
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		for _, p := range k.parts() {
			if p.Exited() {
				return p.failure("exited before the node was ready")
			}
		}
		if last = ready(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kubernetes node not ready after 3m: %w", last)
}

func (k *KubeNode) parts() []*Process {
	k.procsMu.Lock()
	defer k.procsMu.Unlock()
	return append([]*Process(nil), k.procs...)
}

// withLogs adds the end of every part's log to err.
func (k *KubeNode) withLogs(err error) error {
	var b strings.Builder
	for _, p := range k.parts() {
		data, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", p.log, strings.Join(lines, "\n"))
	}
	return fmt.Errorf("%w%s", err, b.String())
}

// stop kills the holder, and with it everything of the node, then removes
// what stays on the host: the veth if the kernel has not yet, the cgroups,
// the folder; then frees the index.
func (k *KubeNode) stop() { k.stopOnce.Do(k.stopNow) }

func (k *KubeNode) stopNow() {
	if k.HolderPID > 0 {
		syscall.Kill(k.HolderPID, syscall.SIGKILL)
		<-k.holderDone
	}
	for _, p := range k.parts() {
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			p.Signal(syscall.SIGKILL)
			<-p.Done()
		}
	}
	exec.Command("ip", "link", "del", k.hostVeth).Run()
	removeCgroupRoot(k.cgroupRoot)
	exec.Command("rm", "-rf", "--one-file-system", k.dir).Run()
	k.lock.Close()
}

// cgroupHierarchies are the mounted cgroup hierarchies (v1 controllers,
// named ones, the unified one).
func cgroupHierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range entries {
		dir := filepath.Join("/sys/fs/cgroup", e.Name())
		if fileExists(filepath.Join(dir, "cgroup.procs")) {
			out = append(out, dir)
		}
	}
	return out
}

// makeCgroupRoot makes the kubelet's cgroupRoot in every hierarchy; a new
// cpuset has no CPUs or memory nodes until given its parent's.
func makeCgroupRoot(root string) error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if data, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					return fmt.Errorf("cgroup %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}

// removeCgroupRoot kills whatever still runs in the cgroups under root and
// removes them, the deepest first.
func removeCgroupRoot(root string) {
	var dirs []string
	for _, h := range cgroupHierarchies() {
		filepath.WalkDir(filepath.Join(h, root), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	if len(dirs) == 0 {
		return
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, dir := range dirs {
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// A cgroup is busy a moment after its last process died.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var busy []string
		for _, dir := range dirs {
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
				busy = append(busy, dir)
			}
		}
		if len(busy) == 0 || time.Now().After(deadline) {
			if len(busy) > 0 {
				fmt.Fprintf(os.Stderr, "testenv: kubernetes node: cgroups left: %s\n", strings.Join(busy, " "))
			}
			return
		}
		dirs = busy
		time.Sleep(50 * time.Millisecond)
	}
}
