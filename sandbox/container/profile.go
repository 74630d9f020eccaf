package container

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

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
	// LaunchDir holds the call's argv and environment, read-only, for the
	// container's first program, Launcher, which execs the plugin with them.
	LaunchDir = "/run/launch"
	Launcher  = "/usr/local/libexec/kmcp-launch"
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
	// LaunchDir is the host folder of the call's argv and environment (see
	// Launcher), written when the call starts.
	LaunchDir string
	// Kubeconfig is the host path of the call's kubeconfig, or "" for none.
	Kubeconfig string
	// NetNS is the call's network namespace, or "" for a new, empty one.
	NetNS  string
	User   uint32
	Limits Limits
	// Isolation is the tier that runs the call; see runscFlags for gVisor.
	Isolation Isolation
	// MountDir, under gVisor, is the call's host folder where the mount
	// points of its files are made (see withMountFolder).
	MountDir string
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
	kubeconfigStep := "no cluster: no kubeconfig (KUBECONFIG=/dev/null)"
	networkStep := "network: a new empty namespace, nothing in reach"
	if c.Kubeconfig != "" {
		kubeconfigStep = "the target cluster's kubeconfig only, read-only at " + KubeconfigPath
		networkStep = "network: the call's own namespace, loopback only; the cluster at 127.0.0.1 is the one thing in reach"
	}
	kernelMounts := Option{"/proc, /sys, /dev and /dev/pts read-only; no /dev/mqueue", withReadOnlyKernelMounts("/proc", "/sys", "/dev", "/dev/pts")}
	seccompStep := Option{"containerd's default seccomp profile, without io_uring (" + strings.Join(DeniedSyscalls, ", ") + " fail with EPERM)",
		withSeccompDenying(DeniedSyscalls...)}
	pidsStep := Option{fmt.Sprintf("at most %d processes and threads", c.Limits.Pids), oci.WithPidsLimit(c.Limits.Pids)}
	if c.Isolation.gvisor() {
		networkStep += " (runsc --network=host: gVisor uses the host's sockets of that namespace)"
		kernelMounts = Option{"/dev: gVisor's own, root-owned, writable by root only, not read-only (gVisor refuses writes to /dev/null on a read-only /dev); " +
			"/proc, /sys and /dev/pts read-only; no /dev/mqueue", withReadOnlyKernelMounts("/proc", "/sys", "/dev/pts")}
		seccompStep.Name += ", enforced by gVisor's kernel on the plugin's system calls (runsc --oci-seccomp)"
		host := gvisorHostPids(c.Limits.Pids)
		pidsStep = Option{fmt.Sprintf("at most %d processes and threads (RLIMIT_NPROC, counted by gVisor's kernel for this sandbox alone); "+
			"at most %d host threads for gVisor's kernel and its stubs (pids cgroup)", c.Limits.Pids, host),
			compose(withRlimit("RLIMIT_NPROC", uint64(c.Limits.Pids)), oci.WithPidsLimit(host))}
	}
	opts := []Option{
		{"root filesystem: the sandbox image, read-only", compose(oci.WithRootFSPath(c.Rootfs), oci.WithRootFSReadonly())},
		{fmt.Sprintf("/tmp: a tmpfs of %d MiB, writable", c.Limits.TmpMiB), withTmpfs("/tmp", c.Limits.TmpMiB)},
		{fmt.Sprintf("/dev/shm: a tmpfs of %d MiB for POSIX shared memory, writable, noexec", shmMiB), withTmpfs("/dev/shm", shmMiB, "noexec")},
		kernelMounts,
		{"/run: a root-owned, read-only tmpfs for mount points", withMountDir("/run")},
		{"the plugin file, read-only at " + c.pluginInside(), compose(c.mountDir(PluginDir), withReadOnlyFile(c.Plugin, c.pluginInside()))},
		{kubeconfigStep, c.withKubeconfig()},
		{"the plugin and its arguments as argv, handed in when the call starts the container (runc start; it is created before the call, " +
			"runc create): its first program, " + Launcher + " from the image, execs the plugin with the argv and environment " +
			"the call writes into its own folder, read-only at " + LaunchDir,
			compose(withReadOnlyDir(c.LaunchDir, LaunchDir), oci.WithProcessArgs(Launcher))},
		{"environment: PATH, HOME=/tmp, TMPDIR=/tmp, TERM=dumb, KUBECONFIG, and the call's own variables; nothing of the server's",
			withExactEnv(c.baseEnv())},
		{"working directory /tmp", oci.WithProcessCwd("/tmp")},
		{fmt.Sprintf("user %d, group %d, no supplementary groups", c.User, c.User), compose(oci.WithUIDGID(c.User, c.User), withNoAdditionalGroups)},
		{"no capabilities", withNoCapabilities},
		{"no new privileges", oci.WithNoNewPrivileges},
		seccompStep,
		{"masked and read-only /proc and /sys paths", withMaskedAndReadOnlyPaths},
		{"only the standard devices", oci.WithDefaultUnixDevices},
		pidsStep,
		{fmt.Sprintf("at most %d MiB of memory, no swap", c.Limits.MemoryMiB), withMemory(c.Limits.MemoryMiB)},
		{fmt.Sprintf("at most %d millicores of CPU", c.Limits.CPUMillicores), oci.WithCPUCFS(c.Limits.CPUMillicores*100, 100000)},
		{fmt.Sprintf("at most %d open files", c.Limits.NoFile), withRlimit("RLIMIT_NOFILE", c.Limits.NoFile)},
		{networkStep, withNetwork(c.NetNS)},
		{"hostname sandbox", oci.WithHostname("sandbox")},
	}
	if c.Isolation.gvisor() {
		opts = append([]Option{{"kernel: gVisor's runsc " + strings.Join(runscFlags, " ") +
			": the plugin's system calls are served by gVisor's user-space kernel, not the host's", withRunscFlags}}, opts...)
	}
	return opts
}

func (c Call) pluginInside() string { return PluginDir + "/" + filepath.Base(c.Plugin) }

// Launch is what the container's first program, Launcher, execs when the
// call starts it: the spec's process is the launcher, this is the plugin.
type Launch struct {
	Argv []string `json:"argv"`
	// Env is the whole environment: the container's own (baseEnv) and
	// the call's extra variables.
	Env []string `json:"env"`
}

// Launch is c's plugin run, as the launcher execs it.
func (c Call) Launch() Launch {
	return Launch{Argv: append([]string{c.pluginInside()}, c.Args...), Env: append(c.baseEnv(), c.Env...)}
}

// baseEnv is the environment every container of c's kind starts with; it
// is set when the container is created, before the call is known.
func (c Call) baseEnv() []string {
	kubeconfig := "/dev/null"
	if c.Kubeconfig != "" {
		kubeconfig = KubeconfigPath
	}
	return []string{"PATH=" + ImagePath, "HOME=/tmp", "TMPDIR=/tmp", "TERM=dumb", "KUBECONFIG=" + kubeconfig}
}

// nothing is a step the spec does not show: the launcher applies it.
func nothing(context.Context, oci.Client, *containers.Container, *oci.Spec) error { return nil }

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

// withReadOnlyKernelMounts adds "ro" to containerd's default mounts at
// paths, here /proc, /dev and /dev/pts (/sys has it), so that what is not "ro" is writable (see
// writablePlaces). /dev and /dev/pts are root-owned 0755 anyway; a rw
// /proc lets a process write its own entries (comm, oom_score_adj, ...),
// which nothing here needs. runc makes /dev's nodes first and remounts it
// read-only at the end; the nodes stay usable, /dev/stdout and
// /proc/self/fd/N still open the streams themselves, /dev/ptmx still
// makes ptys. containerd mounts no cgroup file system: /sys/fs/cgroup is
// an empty folder of the read-only /sys. /dev/mqueue goes: POSIX message
// queues are a writable place nothing here uses.
func withReadOnlyKernelMounts(paths ...string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		mounts := s.Mounts[:0]
		for _, m := range s.Mounts {
			if m.Destination == "/dev/mqueue" {
				continue
			}
			if slices.Contains(paths, m.Destination) && !mountedReadOnly(m) {
				m.Options = append(append([]string(nil), m.Options...), "ro")
			}
			mounts = append(mounts, m)
		}
		s.Mounts = mounts
		return nil
	}
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

// withReadOnlyDir bind-mounts a host folder read-only, with nothing in
// it to execute.
func withReadOnlyDir(source, destination string) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: destination, Type: "bind", Source: source,
		Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
	}})
}

func (c Call) withKubeconfig() oci.SpecOpts {
	if c.Kubeconfig == "" {
		return nothing
	}
	return compose(c.mountDir(filepath.Dir(KubeconfigPath)), withReadOnlyFile(c.Kubeconfig, KubeconfigPath))
}

// mountDir is where the call's files are bind-mounted inside: a tmpfs
// under runc (withMountDir); under gVisor a folder of the call's own
// (withMountFolder).
func (c Call) mountDir(path string) oci.SpecOpts {
	if c.Isolation.gvisor() {
		return withMountFolder(filepath.Join(c.MountDir, filepath.Base(path)), path)
	}
	return withMountDir(path)
}

// withMountFolder bind-mounts the call's own empty host folder, read-only,
// at path. gVisor's gofer makes the mount points of bind-mounted files on
// the host, in the folder the destination's parent is there: a tmpfs at
// path lives in gVisor's kernel only, so without this that folder would
// be the shared image's. The backend makes the folder (see
// callMountFolders); it is removed with the call's folder.
func withMountFolder(source, path string) oci.SpecOpts {
	return withMount(specs.Mount{
		Destination: path, Type: "bind", Source: source,
		Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
	})
}

// callMountFolders are the host folders withMountFolder binds for c.
func (c Call) callMountFolders() []string {
	if !c.Isolation.gvisor() {
		return nil
	}
	dirs := []string{filepath.Join(c.MountDir, filepath.Base(PluginDir))}
	if c.Kubeconfig != "" {
		dirs = append(dirs, filepath.Join(c.MountDir, filepath.Base(filepath.Dir(KubeconfigPath))))
	}
	return dirs
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

// withRlimit sets one resource limit, soft and hard, in place of the
// default's if it has one.
func withRlimit(kind string, n uint64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		limit := specs.POSIXRlimit{Type: kind, Hard: n, Soft: n}
		for i := range s.Process.Rlimits {
			if s.Process.Rlimits[i].Type == kind {
				s.Process.Rlimits[i] = limit
				return nil
			}
		}
		s.Process.Rlimits = append(s.Process.Rlimits, limit)
		return nil
	}
}

func withNetwork(path string) oci.SpecOpts {
	return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}

// DeniedSyscalls are system calls containerd 1.6's default seccomp profile
// allows but no plugin needs: io_uring reaches much of the kernel outside
// seccomp's view (its operations are not system calls) and has been the
// way into many kernel exploits; Docker's default profile and Google's
// servers have dropped it too.
var DeniedSyscalls = []string{"io_uring_setup", "io_uring_enter", "io_uring_register"}

// withSeccompDenying is containerd's default seccomp profile with names
// removed from every rule that allows them, so they meet the profile's
// default action (EPERM).
func withSeccompDenying(names ...string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, ctr *containers.Container, s *specs.Spec) error {
		if err := seccomp.WithDefaultProfile()(ctx, client, ctr, s); err != nil {
			return err
		}
		rules := s.Linux.Seccomp.Syscalls[:0]
		for _, rule := range s.Linux.Seccomp.Syscalls {
			if rule.Action == specs.ActAllow {
				rule.Names = slices.DeleteFunc(rule.Names, func(n string) bool { return slices.Contains(names, n) })
				if len(rule.Names) == 0 {
					continue
				}
			}
			rules = append(rules, rule)
		}
		s.Linux.Seccomp.Syscalls = rules
		return nil
	}
}
