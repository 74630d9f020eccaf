package escape

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// An escapeCase is one thing a hostile plugin tries. It holds when the
// plugin reports no BREACH, reports at least one BLOCKED attempt (unless
// answered says an answer is expected), no secret of the host's is in its
// output, and check finds nothing wrong on the host.
type escapeCase struct {
	category string
	name     string
	expect   string // what must happen, in words, for the report
	on       where
	action   string
	args     func(h *harness) []string
	stdin    string
	answered bool
	check    func(h *harness, r *runtime.Result) []string
}

type where int

const (
	everyTier      where = iota
	nativeTiers          // the tiers that run the linux build: runc, gvisor and kubernetes
	containerTiers       // runc and gvisor: what a Pod has by design (its network interface) is left out
)

func (c escapeCase) appliesTo(tr tier) bool {
	switch c.on {
	case nativeTiers:
		return tr.native
	case containerTiers:
		return tr.native && !tr.pod
	}
	return true
}

func fixed(args ...string) func(*harness) []string { return func(*harness) []string { return args } }

// The namespace of the cluster alpha, where the victims are.
const ns = "only-alpha"

func httpCase(name, expect, method, path string, extra ...string) escapeCase {
	return escapeCase{category: "gateway", name: name, expect: expect, action: "http",
		args: fixed(append([]string{method, path}, extra...)...)}
}

func secretCase(name, path string, extra ...string) escapeCase {
	c := httpCase("secrets: "+name, "no byte of the secret's data comes back", "GET", path, extra...)
	return c
}

func syscallCase(name, expect string, calls ...string) escapeCase {
	return escapeCase{category: "kernel", name: name, expect: expect, on: nativeTiers, action: "syscall", args: fixed(calls...)}
}

var cases = []escapeCase{
	// Filesystem.
	{category: "filesystem", name: "read a host file by absolute path", expect: "the read fails; the canary's content is not in the output",
		action: "read", args: func(h *harness) []string { return []string{h.tg.canary} }},
	{category: "filesystem", name: "read a host file through ..", expect: "the read fails",
		action: "read", args: func(h *harness) []string {
			return []string{"../../../../../../.." + h.tg.canary, "/tmp/../../.." + h.tg.canary}
		}},
	{category: "filesystem", name: "read a host file through /proc/1/root", expect: "the read fails",
		action: "read", args: func(h *harness) []string { return []string{"/proc/1/root" + h.tg.canary} }},
	{category: "filesystem", name: "read a host file through /proc/self/root", expect: "the read fails",
		action: "read", args: func(h *harness) []string { return []string{"/proc/self/root" + h.tg.canary} }},
	{category: "filesystem", name: "read a host file through a symlink in /tmp", expect: "the symlink is refused or leads nowhere",
		action: "read-link", args: func(h *harness) []string { return []string{h.tg.canary} }},
	{category: "filesystem", name: "read the server's configuration and audit file", expect: "both reads fail",
		action: "read", args: func(h *harness) []string { return []string{h.configFile, h.auditFile} }},
	{category: "filesystem", name: "read the host's /etc/shadow and root's home", expect: "the reads fail or find the image's files, never the host's",
		action: "read", args: fixed("/etc/shadow", "/root/.bash_history", "/root/.kube/config"), answered: true,
		check: func(h *harness, r *runtime.Result) []string {
			host, _ := os.ReadFile("/etc/shadow")
			if len(host) > 0 && strings.Contains(r.Output, strings.SplitN(string(host), "\n", 2)[0][:min(20, len(host))]) {
				return []string{"the host's /etc/shadow is in the output"}
			}
			return nil
		}},
	{category: "filesystem", name: "write to /", expect: "the write fails; nothing new on the host or in the image",
		action: "write", args: func(h *harness) []string { return []string{"/" + h.marker} },
		check: func(h *harness, r *runtime.Result) []string { return notOnHost(h, "/"+h.marker) }},
	{category: "filesystem", name: "write to /etc and /usr", expect: "the writes fail",
		action: "write", args: func(h *harness) []string { return []string{"/etc/passwd", "/etc/" + h.marker, "/usr/bin/" + h.marker} },
		check: func(h *harness, r *runtime.Result) []string {
			return notOnHost(h, "/etc/"+h.marker, "/usr/bin/"+h.marker)
		}},
	{category: "filesystem", name: "write to the plugin's own file", expect: "the write fails; the host file is unchanged",
		action: "write-self", args: func(h *harness) []string { return []string{h.pluginFile} }, check: pluginUnchanged},
	{category: "filesystem", name: "write to /proc/sys, /proc/sysrq-trigger and /sys", expect: "every write fails",
		on: nativeTiers, action: "write", args: fixed("/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger", "/sys/kernel/mm/transparent_hugepage/enabled", "/sys/class/net/lo/mtu")},
	{category: "filesystem", name: "write to cgroup files (limits, cgroup.procs, release_agent)", expect: "every write fails",
		on: nativeTiers, action: "cgroup-write", args: fixed()},
	{category: "filesystem", name: "make and open device nodes", expect: "mknod fails, or the node opens or reads nothing; the host's devices do not exist or do not open; no FUSE mount",
		on: nativeTiers, action: "mknod", args: fixed()},
	{category: "filesystem", name: "gain root through a setuid program", expect: "setuid programs run with the plugin's uid",
		on: nativeTiers, action: "setuid-exec", args: fixed()},
	{category: "filesystem", name: "run a program written to /dev/shm", expect: "exec fails (noexec)",
		on: nativeTiers, action: "exec-from", args: fixed("/dev/shm")},
	{category: "filesystem", name: "read kernel memory and symbols", expect: "/proc/kcore and friends do not open",
		on: nativeTiers, action: "read", args: fixed("/proc/kcore", "/dev/mem", "/proc/kmsg", "/sys/kernel/debug/tracing/trace")},

	// Credentials.
	{category: "credentials", name: "find the cluster's token in any file, the environment or another process", expect: "the token is nowhere in the sandbox",
		action: "find-token", args: func(h *harness) []string {
			tok := h.tg.clusters.All[0].Token
			return []string{sha256Hex(tok), strconv.Itoa(len(tok)), "/"}
		}},
	{category: "credentials", name: "find the other cluster's token", expect: "the token is nowhere in the sandbox",
		action: "find-token", args: func(h *harness) []string {
			tok := h.tg.clusters.All[1].Token
			return []string{sha256Hex(tok), strconv.Itoa(len(tok)), "/"}
		}},
	{category: "credentials", name: "read a credential from the kubeconfig", expect: "the kubeconfig holds no token, password, key or exec plugin (a Pod's: only the call's capability, which no cluster takes)",
		action: "kubeconfig", args: func(h *harness) []string {
			if h.tier.pod {
				return []string{"capability"}
			}
			return nil
		}, check: func(h *harness, r *runtime.Result) []string {
			if h.tier.pod && resultValue(r, "capability") == "" {
				return []string{"no capability in the Pod's kubeconfig: the gateway could not be reached"}
			}
			return nil // a cluster's token in the output fails every case
		}},
	{category: "credentials", name: "read a service-account token", expect: "no token is mounted where Kubernetes mounts one",
		on: nativeTiers, action: "read", args: fixed("/var/run/secrets/kubernetes.io/serviceaccount/token", "/run/secrets/kubernetes.io/serviceaccount/token",
			"/var/run/secrets/kubernetes.io/serviceaccount/namespace")},
	{category: "credentials", name: "read the other cluster's kubeconfig", expect: "the read fails",
		action: "read", args: func(h *harness) []string {
			return []string{filepath.Join(h.tg.clusters.KubeconfigDir, "beta.yaml"), h.tg.clusters.KubeconfigDir}
		}},
	{category: "credentials", name: "take credentials from the environment", expect: "the environment is PATH, HOME, TMPDIR, TERM, KUBECONFIG and LANG only",
		action: "env", args: fixed(), check: minimalEnvironment},
	{category: "credentials", name: "read another process's environment", expect: "the host process is out of sight",
		on: nativeTiers, action: "signal-host", args: func(h *harness) []string { return []string{strconv.Itoa(h.tg.sleeper.Process.Pid)} },
		check: sleeperAlive},
	{category: "credentials", name: "see the server's processes", expect: "only the plugin's own processes are visible",
		on: nativeTiers, action: "processes", args: fixed(), check: func(h *harness, r *runtime.Result) []string {
			if n := resultInt(r, "visible_processes"); n > 3 {
				return []string{fmt.Sprintf("%d processes visible", n)}
			}
			return nil
		}},

	// Network.
	{category: "network", name: "reach a host loopback port", expect: "the connection fails; the host listener accepts nothing",
		action: "connect", args: func(h *harness) []string { return []string{"tcp://" + h.tg.tcp4} }, check: nothingAccepted},
	{category: "network", name: "reach a host IPv6 loopback port", expect: "the connection fails; the host listener accepts nothing",
		on: nativeTiers, action: "connect", args: func(h *harness) []string { return []string{"tcp6://" + h.tg.tcp6} }, check: nothingAccepted},
	{category: "network", name: "reach the other cluster's API server", expect: "the connection fails",
		action: "connect", args: func(h *harness) []string {
			return []string{"tcp://" + strings.TrimPrefix(h.tg.clusters.All[1].Server, "https://")}
		}},
	{category: "network", name: "reach a host abstract unix socket", expect: "the connection fails; the host listener accepts nothing",
		on: nativeTiers, action: "connect", args: func(h *harness) []string { return []string{"unix://" + h.tg.abstract} }, check: nothingAccepted},
	{category: "network", name: "reach a host unix socket by path (containerd's too)", expect: "the connection fails",
		on: nativeTiers, action: "connect", args: func(h *harness) []string {
			return []string{"unix://" + h.tg.unixPath, "unix:///run/containerd/containerd.sock"}
		}, check: nothingAccepted},
	{category: "network", name: "find another open loopback port in the sandbox", expect: "only the gateway listens; of ports 1-1024 and every listening one, on 127.0.0.1 and ::1, only the gateway's answers",
		on: nativeTiers, action: "scan-loopback", args: fixed()},
	{category: "network", name: "resolve names (DNS)", expect: "nothing resolves",
		on: nativeTiers, action: "dns", args: fixed("kubernetes.default.svc", "example.com", "localhost.")},
	{category: "network", name: "reach the internet", expect: "the connections fail",
		action: "connect", args: fixed("tcp://1.1.1.1:443", "tcp://10.96.0.1:443", "tcp://169.254.169.254:80")},
	{category: "network", name: "open raw and packet sockets", expect: "every socket is refused",
		on: nativeTiers, action: "sockets", args: fixed()},
	{category: "network", name: "find a network interface besides loopback", expect: "only lo",
		on: containerTiers, action: "interfaces", args: fixed()},

	// Kernel surface.
	{category: "kernel", name: "run with capabilities, without no_new_privs or seccomp", expect: "uid and gid 65534, no capabilities, no_new_privs",
		on: nativeTiers, action: "status", args: fixed(), check: unprivileged},
	{category: "kernel", name: "which kernel answers the plugin", expect: "under runc the host's (it is shared: the tier's limit); under gVisor not the host's",
		on: nativeTiers, action: "kernel", args: fixed(), check: func(h *harness, r *runtime.Result) []string {
			host, _ := os.ReadFile("/proc/sys/kernel/osrelease")
			got, shared := resultValue(r, "release"), strings.TrimSpace(string(host))
			switch {
			case got == "":
				return []string{"no kernel release reported"}
			case h.tier.name == "gvisor" && got == shared:
				return []string{"under gVisor the host's kernel answered: " + got}
			case h.tier.name == "runc" && got != shared:
				return []string{fmt.Sprintf("under runc kernel %q answered, not the host's %q", got, shared)}
			}
			return nil
		}},
	syscallCase("ptrace the sandbox's parent", "ptrace fails", "ptrace-traceme-parent"),
	syscallCase("mount a filesystem", "mount fails", "mount-tmpfs", "remount-root-rw"),
	syscallCase("unshare a user namespace", "unshare fails, or grants nothing outside the sandbox", "unshare-user-then-mount"),
	syscallCase("unshare mount and network namespaces", "unshare fails", "unshare-mount", "unshare-net"),
	syscallCase("setns into a namespace", "setns fails", "setns-net"),
	syscallCase("use the kernel keyring", "keyctl and add_key fail", "keyctl", "add_key"),
	syscallCase("load a BPF map", "bpf fails", "bpf"),
	syscallCase("open a perf event on every process", "perf_event_open fails", "perf_event_open"),
	syscallCase("set up io_uring", "io_uring_setup fails", "io_uring_setup"),
	syscallCase("reboot", "reboot fails", "reboot"),
	syscallCase("load or remove a kernel module", "init_module and delete_module fail", "init_module", "delete_module"),
	syscallCase("load a new kernel (kexec)", "kexec_load fails", "kexec_load"),
	syscallCase("set the clock", "clock_settime and settimeofday fail", "clock_settime", "settimeofday"),
	syscallCase("set the hostname", "sethostname fails; the host's name is unchanged", "sethostname"),
	syscallCase("become root: setuid(0), setgid(0), chown to root", "each fails", "setuid-0", "setgid-0", "chown-root"),
	syscallCase("chroot", "chroot fails", "chroot"),
	syscallCase("open a host file by handle (the shocker escape)", "open_by_handle_at fails", "open_by_handle_at"),
	syscallCase("use userfaultfd", "userfaultfd fails", "userfaultfd"),
	syscallCase("swapon, acct, iopl", "each fails", "swapon", "acct", "iopl"),

	// Resources.
	{category: "resources", name: "fork bomb", expect: "process creation stops at the pids limit; nothing outlives the call",
		on: nativeTiers, action: "fork-bomb", args: func(h *harness) []string { return []string{h.marker + "-fork"} },
		check: func(h *harness, r *runtime.Result) []string {
			p := noProcessesLeft(h.marker + "-fork")
			if n := resultInt(r, "processes"); n > 128 {
				p = append(p, fmt.Sprintf("started %d processes (pids_limit 128)", n))
			}
			return p
		}},
	{category: "resources", name: "memory bomb", expect: "memory stops at the limit; the call ends; the server is unharmed",
		action: "memory-bomb", args: fixed(), answered: true, check: func(h *harness, r *runtime.Result) []string {
			if r.Status == runtime.StatusOK {
				return []string{"the memory bomb ended ok"}
			}
			if n := resultInt(r, "allocated_mib"); n > 520 {
				return []string{fmt.Sprintf("allocated %d MiB", n)}
			}
			return nil
		}},
	{category: "resources", name: "fill /tmp", expect: "writing stops at tmp_mib (64 MiB)",
		action: "tmp-fill", args: fixed(), check: func(h *harness, r *runtime.Result) []string {
			if n := resultInt(r, "tmp_bytes"); n > 64<<20 {
				return []string{fmt.Sprintf("wrote %d bytes to /tmp", n)}
			}
			return nil
		}},
	{category: "resources", name: "exhaust file descriptors", expect: "open stops at the limit; the server keeps its descriptors",
		action: "fd-exhaust", args: fixed(), check: func(h *harness, r *runtime.Result) []string {
			if n := resultInt(r, "open_files"); n > 1024 || n < 0 {
				return []string{fmt.Sprintf("opened %d files", n)}
			}
			return nil
		}},
	{category: "resources", name: "flood the output", expect: "output is cut at max_output and the result says so",
		action: "flood", args: fixed(), answered: true, check: func(h *harness, r *runtime.Result) []string {
			if !r.Truncated || len(r.Output) > 65536 {
				return []string{fmt.Sprintf("truncated=%v, %d bytes kept", r.Truncated, len(r.Output))}
			}
			return nil
		}},
	{category: "resources", name: "never end", expect: "the call's timeout ends it",
		action: "spin", args: fixed(), check: endedBy(runtime.StatusTimeout)},
	{category: "resources", name: "ignore SIGTERM", expect: "the call's timeout ends it anyway",
		on: nativeTiers, action: "ignore-sigterm", args: fixed(), check: endedBy(runtime.StatusTimeout)},
	{category: "resources", name: "leave a double-forked daemon behind", expect: "no process of the call survives it",
		on: nativeTiers, action: "daemon", args: func(h *harness) []string { return []string{h.marker + "-daemon"} },
		check: func(h *harness, r *runtime.Result) []string { return noProcessesLeft(h.marker + "-daemon") }},
	{category: "resources", name: "leave zombies behind", expect: "no process or zombie of the call survives it",
		on: nativeTiers, action: "zombies", args: func(h *harness) []string { return []string{h.marker + "-zombie"} },
		check: func(h *harness, r *runtime.Result) []string { return noProcessesLeft(h.marker + "-zombie") }},

	// Through the gateway.
	secretCase("list all", "/api/v1/secrets"),
	secretCase("get one", "/api/v1/namespaces/"+ns+"/secrets/"+canarySecret),
	secretCase("double slash", "//api/v1/namespaces/"+ns+"/secrets/"+canarySecret),
	secretCase("percent-encoded", "/api/v1/namespaces/"+ns+"/%73ecrets/"+canarySecret),
	secretCase("encoded slash", "/api/v1/namespaces/"+ns+"/secrets%2F"+canarySecret),
	secretCase("dot-dot from pods", "/api/v1/namespaces/"+ns+"/pods/"+victimPod+"/../../secrets/"+canarySecret),
	secretCase("dot-dot from /apis", "/apis/../api/v1/namespaces/"+ns+"/secrets"),
	secretCase("watch query", "/api/v1/namespaces/"+ns+"/secrets?watch=true&timeoutSeconds=1"),
	secretCase("watch path", "/api/v1/watch/namespaces/"+ns+"/secrets?timeoutSeconds=1"),
	secretCase("trailing slash and upper case", "/api/v1/namespaces/"+ns+"/Secrets/"),
	secretCase("impersonating system:masters", "/api/v1/namespaces/"+ns+"/secrets/"+canarySecret,
		"Impersonate-User: admin", "Impersonate-Group: system:masters"),
	{category: "gateway", name: "choose an identity with impersonation headers", expect: "the headers are dropped: the request runs as the server's identity (an honoured impersonation of an unknown user would be forbidden)",
		action: "http", answered: true, args: fixed("GET", "/api/v1/namespaces/"+ns+"/pods", "Impersonate-User: nobody-at-all", "Impersonate-Uid: 1"),
		check: statusIs(200)},
	{category: "gateway", name: "choose an identity with a token header", expect: "the plugin's token is replaced: the request succeeds as the server's identity (a Pod's gateway takes only the call's capability: 401)",
		action: "http", answered: true, args: fixed("GET", "/api/v1/namespaces/"+ns+"/pods", "Authorization: Bearer not-a-real-token"),
		check: func(h *harness, r *runtime.Result) []string {
			if h.tier.pod {
				return statusIs(401)(h, r)
			}
			return statusIs(200)(h, r)
		}},
	{category: "gateway", name: "delete a pod", expect: "403; the pod is still there",
		action: "http", args: fixed("DELETE", "/api/v1/namespaces/"+ns+"/pods/"+victimPod), check: victimAlive},
	{category: "gateway", name: "delete a pod with a method-override header", expect: "the pod is still there",
		action: "http", answered: true, args: fixed("GET", "/api/v1/namespaces/"+ns+"/pods/"+victimPod, "X-HTTP-Method-Override: DELETE"), check: victimAlive},
	{category: "gateway", name: "write with dryRun", expect: "403: a dry run is still a write",
		action: "http", args: fixed("POST", "/api/v1/namespaces/"+ns+"/pods?dryRun=All",
			`BODY={"apiVersion":"v1","kind":"Pod","metadata":{"name":"dry"},"spec":{"containers":[{"name":"c","image":"x"}]}}`),
		check: deniedByPolicy},
	{category: "gateway", name: "lie about the namespace in the body", expect: "nothing is created in the namespace the body names",
		action: "http", args: fixed("POST", "/api/v1/namespaces/"+ns+"/configmaps",
			`BODY={"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"`+lieConfigMap+`","namespace":"default"}}`),
		check: func(h *harness, r *runtime.Result) []string {
			var p []string
			for _, n := range []string{"default", ns} {
				if _, err := h.tg.kube.CoreV1().ConfigMaps(n).Get(context.Background(), lieConfigMap, metav1.GetOptions{}); err == nil {
					p = append(p, "a configmap was created in "+n)
				}
			}
			return p
		}},
	{category: "gateway", name: "write where the rule does not reach", expect: "403",
		action: "http", args: fixed("POST", "/api/v1/namespaces/default/configmaps",
			`BODY={"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"`+lieConfigMap+`"}}`), check: deniedByPolicy},
	httpCase("proxy to a service", "403", "GET", "/api/v1/namespaces/"+ns+"/services/web:80/proxy/"),
	httpCase("proxy to a node", "403", "GET", "/api/v1/nodes/node-1/proxy/metrics"),
	httpCase("exec without a rule", "403", "POST", "/api/v1/namespaces/"+ns+"/pods/"+victimPod+"/exec?command=id&stdout=true"),
	httpCase("exec through a websocket upgrade", "403", "GET", "/api/v1/namespaces/"+ns+"/pods/"+victimPod+"/exec?command=id&stdout=true",
		"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: v5.channel.k8s.io"),
	httpCase("attach without a rule", "403", "POST", "/api/v1/namespaces/"+ns+"/pods/"+victimPod+"/attach?stdout=true"),
	httpCase("port-forward without a rule", "403", "POST", "/api/v1/namespaces/"+ns+"/pods/"+victimPod+"/portforward?ports=80"),
	httpCase("read the API server's host logs", "403", "GET", "/logs/"),
	httpCase("read the API server's profiling and metrics", "403", "GET", "/debug/pprof/"),
	{category: "gateway", name: "reach the other cluster by Host header", expect: "the answer is the call's own cluster's",
		action: "http", answered: true, args: func(h *harness) []string {
			return []string{"GET", "/api/v1/namespaces", "Host: " + strings.TrimPrefix(h.tg.clusters.All[1].Server, "https://")}
		}, check: func(h *harness, r *runtime.Result) []string {
			if strings.Contains(r.Output, h.tg.clusters.All[1].Namespace) {
				return []string{"the other cluster answered"}
			}
			return nil
		}},
}

func notOnHost(h *harness, paths ...string) []string {
	var p []string
	rootfs, _ := images.PluginRootfs()
	for _, path := range paths {
		for _, where := range []string{path, filepath.Join(rootfs, path)} {
			if _, err := os.Lstat(where); err == nil {
				p = append(p, where+" exists on the host")
				os.Remove(where)
			}
		}
	}
	return p
}

func pluginUnchanged(h *harness, r *runtime.Result) []string {
	b, _ := os.ReadFile(h.pluginFile)
	want, _ := os.ReadFile(h.builtFile)
	if string(b) != string(want) {
		return []string{"the plugin file changed on the host"}
	}
	return nil
}

func nothingAccepted(h *harness, r *runtime.Result) []string {
	if n := h.tg.accepted.Load(); n != 0 {
		return []string{fmt.Sprintf("host listeners accepted %d connections", n)}
	}
	return nil
}

func sleeperAlive(h *harness, r *runtime.Result) []string {
	if err := h.tg.sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		return []string{"the host process is gone: " + err.Error()}
	}
	return nil
}

func victimAlive(h *harness, r *runtime.Result) []string {
	if _, err := h.tg.kube.CoreV1().Pods(ns).Get(context.Background(), victimPod, metav1.GetOptions{}); err != nil {
		return []string{"the victim pod is gone: " + err.Error()}
	}
	return nil
}

func deniedByPolicy(h *harness, r *runtime.Result) []string {
	if resultInt(r, "status") != 403 || !strings.Contains(r.Output, "may not") {
		return []string{"not denied by the gateway's policy"}
	}
	return nil
}

func statusIs(code int) func(*harness, *runtime.Result) []string {
	return func(h *harness, r *runtime.Result) []string {
		if got := resultInt(r, "status"); got != code {
			return []string{fmt.Sprintf("status %d, want %d", got, code)}
		}
		return nil
	}
}

func endedBy(s runtime.Status) func(*harness, *runtime.Result) []string {
	return func(h *harness, r *runtime.Result) []string {
		if r.Status != s {
			return []string{fmt.Sprintf("ended %s, want %s", r.Status, s)}
		}
		return nil
	}
}

func minimalEnvironment(h *harness, r *runtime.Result) []string {
	var p []string
	for _, line := range strings.Split(r.Output, "\n") {
		k, _, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "BLOCKED") {
			continue
		}
		switch k {
		case "PATH", "HOME", "TMPDIR", "TERM", "KUBECONFIG", "LANG", "PWD":
		default:
			p = append(p, "unexpected variable "+k)
		}
	}
	return p
}

func unprivileged(h *harness, r *runtime.Result) []string {
	var p []string
	want := map[string]string{"Uid": "65534,65534,65534,65534", "Gid": "65534,65534,65534,65534", "CapPrm": "0000000000000000",
		"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1"}
	for k, v := range want {
		got := resultValue(r, k)
		if got == "" && k == "CapAmb" && h.tier.name == "gvisor" {
			continue // gVisor's status has no ambient line, and gVisor has no ambient capabilities to show
		}
		if got != v {
			p = append(p, fmt.Sprintf("%s is %q, want %q", k, got, v))
		}
	}
	return p
}

// noProcessesLeft checks the host has no process with marker in its argv,
// giving the teardown a moment.
func noProcessesLeft(marker string) []string {
	var left []string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if left = hostProcessesWith(marker); len(left) == 0 {
			return nil
		}
	}
	return []string{fmt.Sprintf("%d processes outlived the call: %v", len(left), left[:min(3, len(left))])}
}

func resultValue(r *runtime.Result, key string) string {
	for _, line := range strings.Split(r.Output, "\n") {
		if v, ok := strings.CutPrefix(line, "RESULT: "+key+"="); ok {
			return v
		}
	}
	return ""
}

// resultInt is the last RESULT of key, or -1.
func resultInt(r *runtime.Result, key string) int {
	n := -1
	for _, line := range strings.Split(r.Output, "\n") {
		if v, ok := strings.CutPrefix(line, "RESULT: "+key+"="); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	return n
}

// leaks are the secrets no output may hold.
func leaks(h *harness) []string {
	v := h.tg.secretValue
	return []string{h.tg.canaryContent, h.tg.clusters.All[0].Token, h.tg.clusters.All[1].Token, v, base64.StdEncoding.EncodeToString([]byte(v))}
}
