package container

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"

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
		{fmt.Sprintf("/tmp: a tmpfs of %d MiB, writable", c.Limits.TmpMiB), withTmpfs("/tmp", c.Limits.TmpMiB)},
		{fmt.Sprintf("/dev/shm: a tmpfs of %d MiB for POSIX shared memory, writable, noexec", shmMiB), withTmpfs("/dev/shm", shmMiB, "noexec")},
		{"/proc, /sys, /dev and /dev/pts read-only; no /dev/mqueue", withReadOnlyKernelMounts},
		{"/run: a root-owned, read-only tmpfs for mount points", withMountDir("/run")},
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

// shmMiB bounds /dev/shm, where glibc's shm_open and sem_open put POSIX
// shared memory and named semaphores. Nothing in the image uses them, but
// a plugin's own binary may (Python's multiprocessing locks, for one), so
// the folder stays, small: 1 MiB holds hundreds of semaphores (a page
// each) and small segments; bulk data belongs in /tmp, sized by the
// operator. Its pages count against the call's memory limit too.
const shmMiB = 1

// withTmpfs is a writable, size-bounded tmpfs at path, in place of
// containerd's default mount there if it has one.
func withTmpfs(path string, mib int64, options ...string) oci.SpecOpts {
	return withMount(specs.Mount{
		Destination: path, Type: "tmpfs", Source: "tmpfs",
		Options: append([]string{"nosuid", "nodev"}, append(options, "mode=1777", fmt.Sprintf("size=%dm", mib))...),
	})
}

// withMount puts m in place of the mount at its destination, or after all
// the others: containerd's defaults keep their order, so /dev is mounted
// before what goes in it.
func withMount(m specs.Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for i := range s.Mounts {
			if s.Mounts[i].Destination == m.Destination {
				s.Mounts[i] = m
				return nil
			}
		}
		s.Mounts = append(s.Mounts, m)
		return nil
	}
}

// withReadOnlyKernelMounts adds "ro" to containerd's default /proc, /dev
// and /dev/pts (/sys has it), so that what is not "ro" is writable (see
// writablePlaces). /dev and /dev/pts are root-owned 0755 anyway; a rw
// /proc lets a process write its own entries (comm, oom_score_adj, ...),
// which nothing here needs. runc makes /dev's nodes first and remounts it
// read-only at the end; the nodes stay usable, /dev/stdout and
// /proc/self/fd/N still open the streams themselves, /dev/ptmx still
// makes ptys. containerd mounts no cgroup file system: /sys/fs/cgroup is
// an empty folder of the read-only /sys. /dev/mqueue goes: POSIX message
// queues are a writable place nothing here uses.
func withReadOnlyKernelMounts(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	mounts := s.Mounts[:0]
	for _, m := range s.Mounts {
		switch m.Destination {
		case "/dev/mqueue":
			continue
		case "/proc", "/sys", "/dev", "/dev/pts":
			if !mountedReadOnly(m) {
				m.Options = append(append([]string(nil), m.Options...), "ro")
			}
		}
		mounts = append(mounts, m)
	}
	s.Mounts = mounts
	return nil
}

// mountedReadOnly tells whether m's options end up read-only: the last
// of "ro" and "rw" wins, and "rw" is the default.
func mountedReadOnly(m specs.Mount) bool {
	ro := false
	for _, o := range m.Options {
		switch o {
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
	}
	return ro
}

// writablePlaces lists where a sandbox of spec s can write: the root
// filesystem unless it is read-only, and every mount not mounted "ro".
// Any such mount counts, whatever its mode says: runc gives a tmpfs the
// mode of the folder it covers, which the spec does not show, so only
// "ro" is a promise the spec can make.
func writablePlaces(s *specs.Spec) []string {
	var places []string
	if s.Root == nil || !s.Root.Readonly {
		places = append(places, "/")
	}
	for _, m := range s.Mounts {
		if !mountedReadOnly(m) {
			places = append(places, m.Destination)
		}
	}
	sort.Strings(places)
	return places
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
// read-only image. runc remounts a tmpfs "ro" once every mount is made, so
// the mount points get made and nothing is writable there afterwards.
func withMountDir(path string) oci.SpecOpts {
	return withMount(specs.Mount{
		Destination: path, Type: "tmpfs", Source: "tmpfs",
		Options: []string{"nosuid", "nodev", "noexec", "mode=0755", "size=64k", "ro"},
	})
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
