package container

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Paths inside every sandbox.
const (
	PluginDir      = "/plugin"          // the plugin file is mounted here, read-only
	KubeconfigPath = "/run/kube/config" // the call's kubeconfig, read-only
	ImagePath      = "/usr/local/bin:/usr/bin:/bin"
)

// Limits bound what one call's container may use.
type Limits struct {
	MemoryMiB     int64 // memory, swap included
	Pids          int64 // processes and threads
	CPUMillicores int64 // 1000 is one core
	NoFile        uint64
	TmpMiB        int64 // the /tmp tmpfs
}

// Call is what the profile needs to know of one call.
type Call struct {
	ID     string
	Rootfs string
	// Plugin is the resolved host path of the plugin file.
	Plugin string
	Args   []string
	// Env holds extra variables, after PATH, HOME, TMPDIR and KUBECONFIG.
	Env []string
	// Kubeconfig is the host path of the call's kubeconfig, or "" for none.
	Kubeconfig string
	// NetNS is the call's network namespace, or "" for a new, empty one.
	NetNS  string
	User   uint32
	Limits Limits
}

// Option is one named step of the sandbox profile. Read top to bottom,
// the options are what a sandbox allows; `profile show` prints them.
type Option struct {
	Name  string
	Apply oci.SpecOpts
}

// Profile is the sandbox of one call, as a list of small named options in
// the style of containerd's oci.SpecOpts.
func Profile(c Call) []Option {
	pluginInside := PluginDir + "/" + filepath.Base(c.Plugin)
	kubeconfig := "/dev/null"
	kubeconfigStep := "no cluster: no kubeconfig (KUBECONFIG=/dev/null)"
	networkStep := "network: a new empty namespace, nothing in reach"
	if c.Kubeconfig != "" {
		kubeconfig = KubeconfigPath
		kubeconfigStep = "the target cluster's kubeconfig only, read-only at " + KubeconfigPath
		networkStep = "network: the call's own namespace, loopback only; the cluster at 127.0.0.1 is the one thing in reach"
	}
	return []Option{
		{"root filesystem: the sandbox image, read-only", compose(oci.WithRootFSPath(c.Rootfs), oci.WithRootFSReadonly())},
		{fmt.Sprintf("/tmp: a tmpfs of %d MiB, the only writable place", c.Limits.TmpMiB), withTmpfs("/tmp", c.Limits.TmpMiB)},
		{"the plugin file, read-only at " + pluginInside, compose(withMountDir(PluginDir), withReadOnlyFile(c.Plugin, pluginInside))},
		{kubeconfigStep, withKubeconfig(c.Kubeconfig)},
		{"the plugin and its arguments as argv", oci.WithProcessArgs(append([]string{pluginInside}, c.Args...)...)},
		{"environment: PATH, HOME=/tmp, TMPDIR=/tmp, TERM=dumb, KUBECONFIG; nothing of the server's", withExactEnv(append([]string{"PATH=" + ImagePath, "HOME=/tmp", "TMPDIR=/tmp", "TERM=dumb", "KUBECONFIG=" + kubeconfig}, c.Env...))},
		{"working directory /tmp", oci.WithProcessCwd("/tmp")},
		{fmt.Sprintf("user %d, group %d, no supplementary groups", c.User, c.User), compose(oci.WithUIDGID(c.User, c.User), withNoAdditionalGroups)},
		{"no capabilities", withNoCapabilities},
		{"no new privileges", oci.WithNoNewPrivileges},
		{"containerd's default seccomp profile", seccomp.WithDefaultProfile()},
		{"masked and read-only /proc and /sys paths", withMaskedAndReadOnlyPaths},
		{"only the standard devices", oci.WithDefaultUnixDevices},
		{fmt.Sprintf("at most %d processes and threads", c.Limits.Pids), oci.WithPidsLimit(c.Limits.Pids)},
		{fmt.Sprintf("at most %d MiB of memory, no swap", c.Limits.MemoryMiB), withMemory(c.Limits.MemoryMiB)},
		{fmt.Sprintf("at most %d millicores of CPU", c.Limits.CPUMillicores), oci.WithCPUCFS(c.Limits.CPUMillicores*100, 100000)},
		{fmt.Sprintf("at most %d open files", c.Limits.NoFile), withNoFile(c.Limits.NoFile)},
		{networkStep, withNetwork(c.NetNS)},
		{"hostname sandbox", oci.WithHostname("sandbox")},
	}
}

// Spec applies a profile to containerd's default Linux spec: the spec the
// backend hands to containerd, and the one `profile show` prints.
func Spec(ctx context.Context, namespace string, c Call) (*specs.Spec, error) {
	opts := make([]oci.SpecOpts, 0, len(Profile(c)))
	for _, o := range Profile(c) {
		opts = append(opts, o.Apply)
	}
	ctx = namespaces.WithNamespace(ctx, namespace)
	return oci.GenerateSpec(ctx, nil, &containers.Container{ID: c.ID}, opts...)
}

func compose(opts ...oci.SpecOpts) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		for _, o := range opts {
			if err := o(ctx, client, c, s); err != nil {
				return err
			}
		}
		return nil
	}
}

func withTmpfs(path string, mib int64) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: path, Type: "tmpfs", Source: "tmpfs",
		Options: []string{"nosuid", "nodev", "mode=1777", fmt.Sprintf("size=%dm", mib)},
	}})
}

func withReadOnlyFile(source, destination string) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: destination, Type: "bind", Source: source,
		Options: []string{"rbind", "ro", "nosuid", "nodev"},
	}})
}

func withKubeconfig(path string) oci.SpecOpts {
	if path == "" {
		return func(context.Context, oci.Client, *containers.Container, *oci.Spec) error { return nil }
	}
	return compose(withMountDir(filepath.Dir(KubeconfigPath)), withReadOnlyFile(path, KubeconfigPath))
}

// withMountDir puts a tiny root-owned tmpfs where files are bind-mounted:
// runc creates mount points, and must create them there, not in the shared
// read-only image.
func withMountDir(path string) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: path, Type: "tmpfs", Source: "tmpfs",
		Options: []string{"nosuid", "nodev", "noexec", "mode=0755", "size=64k"},
	}})
}

// withExactEnv sets the whole environment: nothing of containerd's default.
func withExactEnv(env []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.Env = append([]string(nil), env...)
		return nil
	}
}

func withNoAdditionalGroups(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	s.Process.User.AdditionalGids = nil
	return nil
}

func withNoCapabilities(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: []string{}, Effective: []string{}, Permitted: []string{}, Inheritable: []string{}, Ambient: []string{},
	}
	return nil
}

func withMaskedAndReadOnlyPaths(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	s.Linux.MaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	s.Linux.ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	return nil
}

func withMemory(mib int64) oci.SpecOpts {
	limit := mib << 20
	return compose(oci.WithMemoryLimit(uint64(limit)), oci.WithMemorySwap(limit))
}

func withNoFile(n uint64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: n, Soft: n}}
		return nil
	}
}

func withNetwork(path string) oci.SpecOpts {
	return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}
