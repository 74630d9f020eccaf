package container

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container/runscexec"
)

// Isolation is the tier between a plugin and the host's kernel.
type Isolation string

const (
	// IsolationRunc is runc: the plugin's system calls reach the host's
	// kernel, filtered by seccomp.
	IsolationRunc Isolation = "runc"
	// IsolationGVisor is gVisor's runsc: the plugin's system calls are
	// served by gVisor's user-space kernel (the sentry), itself confined
	// to a small set of host calls by gVisor's own seccomp filter.
	IsolationGVisor Isolation = "gvisor"
)

// Isolations are the tiers an operator may choose.
var Isolations = []Isolation{IsolationRunc, IsolationGVisor}

func (i Isolation) gvisor() bool { return i == IsolationGVisor }

func (i Isolation) backendName() string {
	if i.gvisor() {
		return "container/gvisor"
	}
	return "container"
}

// runscFlags are the flags runsc runs every sandbox with, before the
// shim's own arguments; `profile show` prints them.
//   - platform ptrace: the one that works without /dev/kvm (a VM, here);
//   - network host: the sandbox joins the network namespace the spec names
//     (the call's own, loopback only, where its gateway listens; or a new
//     empty one) and uses the host's sockets there. gVisor's own network
//     stack (network sandbox) refuses to start on kernels that show
//     net.core sysctls in every namespace (6.x): "cannot run with network
//     enabled in root network namespace";
//   - oci-seccomp: the sentry enforces the spec's seccomp profile on the
//     plugin's system calls; without it runsc ignores it.
var runscFlags = []string{"--platform=ptrace", "--network=host", "--oci-seccomp"}

// runtimeOptions are the shim's options for cfg: the runtime binary it
// runs, or nil for runc on PATH.
func runtimeOptions(cfg Config) (*options.Options, error) {
	switch cfg.Isolation {
	case "", IsolationRunc:
		if cfg.RuntimeBinary == "" {
			return nil, nil
		}
		if err := refuseRunscAsRunc(cfg.RuntimeBinary); err != nil {
			return nil, err
		}
		return &options.Options{BinaryName: cfg.RuntimeBinary}, nil
	case IsolationGVisor:
	default:
		return nil, fmt.Errorf("sandbox isolation %q: want one of %v", cfg.Isolation, Isolations)
	}
	if cfg.RuntimeBinary != "" {
		return nil, fmt.Errorf("sandbox isolation gvisor runs runsc (runsc_binary) itself; runtime_binary %q cannot be used with it", cfg.RuntimeBinary)
	}
	if cfg.Runtime != "" && cfg.Runtime != "io.containerd.runc.v2" {
		return nil, fmt.Errorf("sandbox isolation gvisor runs through containerd's runc shim (io.containerd.runc.v2), not runtime %q", cfg.Runtime)
	}
	runsc, err := lookRunsc(cfg.RunscBinary)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox isolation gvisor: find this program to stand in for runsc: %w", err)
	}
	link, err := runscexec.Install(filepath.Join(cfg.StateDir, "runsc"), self, runscexec.Config{Runsc: runsc, Flags: runscFlags})
	if err != nil {
		return nil, fmt.Errorf("sandbox isolation gvisor: %w", err)
	}
	return &options.Options{BinaryName: link}, nil
}

// refuseRunscAsRunc refuses runsc (or a wrapper of it) as runc's
// runtime_binary: runc's profile does not hold under it (gVisor's gofer
// would make mount points in the shared image, /dev/null would refuse
// writes, fork limits would crash the sandbox), isolation "gvisor" is the
// profile that does.
func refuseRunscAsRunc(binary string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, binary, "--version").CombinedOutput()
	if strings.Contains(string(out), "runsc version") {
		return fmt.Errorf("sandbox runtime_binary %s is gVisor's runsc, which runc's profile does not hold under; set isolation = \"gvisor\" (and runsc_binary) instead", binary)
	}
	return nil
}

// lookRunsc finds runsc and checks it runs, so a missing or broken runsc
// fails the start-up, not every call.
func lookRunsc(name string) (string, error) {
	if name == "" {
		name = "runsc"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("sandbox isolation gvisor needs gVisor's runsc (Debian: apt-get install runsc; or set [sandbox] runsc_binary): %w", err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return "", fmt.Errorf("runsc at %s: %w", name, err)
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "runsc version") {
		return "", fmt.Errorf("sandbox isolation gvisor: %s --version did not answer as runsc does: %v: %q", path, err, out)
	}
	return path, nil
}

// gvisorHostPids is the pids cgroup limit of a gVisor sandbox whose
// plugin may have pids processes and threads. The cgroup counts host
// threads: gVisor's kernel's own, and under ptrace a stub thread per
// plugin thread and kernel thread that ran it. Reaching it crashes the
// whole sandbox (the kernel panics on a failed clone), so the plugin's own
// limit is RLIMIT_NPROC, which gVisor enforces in its kernel, refusing a
// fork as Linux does; this bound stays above it, as a backstop.
func gvisorHostPids(pids int64) int64 { return 64 + 32*pids }

// runscFlagsAnnotation carries runscFlags in the spec, so the spec that
// `profile show` prints says how runsc runs it; runsc ignores it.
const runscFlagsAnnotation = "kubernetes-mcp-server/runsc-flags"

func withRunscFlags(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[runscFlagsAnnotation] = strings.Join(runscFlags, " ")
	return nil
}
