// Command kmcp-pod is the first program of every sandbox pod of the
// kubernetes backend. As the container's process ("wait") it waits until
// the pod is deleted, reaping orphans. A call execs it again ("run"): it
// reads the call's header from stdin (argv, environment, kubeconfig, the
// plugin's sha256), writes the plugin's bytes that follow into the
// memory-backed /plugin, refuses to run them unless their sha256 is the
// one discovery verified, and execs the plugin, whose stdin is the rest.
// A warm pod gets its plugin ahead of the call ("load"). It runs under the
// pod's whole security context, so it can do nothing the plugin could not.
// The sandbox image carries it at /usr/local/libexec/kmcp-pod
// (hack/build-image.sh builds it).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes/internal/launch"
)

// exitLaunchFailed is the exit code when the plugin could not be started,
// as a shell's for a command it cannot run.
const exitLaunchFailed = 127

func main() {
	if len(os.Args) != 2 {
		fail(fmt.Errorf("usage: kmcp-pod %s|%s|%s", launch.ModeWait, launch.ModeRun, launch.ModeLoad))
	}
	var err error
	switch os.Args[1] {
	case launch.ModeWait:
		wait()
	case launch.ModeLoad:
		var h launch.Header
		if h, err = launch.Read(os.Stdin); err == nil {
			err = place(h)
		}
		if err == nil {
			os.Exit(0)
		}
	case launch.ModeRun:
		err = run()
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	fail(err)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "kmcp-pod: %v\n", err)
	os.Exit(exitLaunchFailed)
}

// wait is PID 1 of the container: processes a call leaves behind are
// reparented here and reaped; SIGTERM (the pod's deletion) ends it.
func wait() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}

func run() error {
	h, err := launch.Read(os.Stdin)
	if err != nil {
		return err
	}
	if err := place(h); err != nil {
		return err
	}
	if len(h.Kubeconfig) > 0 {
		if err := os.WriteFile(launch.KubeconfigPath, h.Kubeconfig, 0o400); err != nil {
			return fmt.Errorf("write the kubeconfig: %w", err)
		}
	}
	if err := limitOpenFiles(h.NoFile); err != nil {
		return err
	}
	// The filter binds this thread (and, synced, the others); the exec
	// below runs on it.
	runtime.LockOSThread()
	if err := denySyscalls(h.DenySyscalls); err != nil {
		return err
	}
	err = syscall.Exec(h.Argv[0], h.Argv, h.Env)
	return fmt.Errorf("exec %s: %w", h.Argv[0], err)
}

// limitOpenFiles lowers RLIMIT_NOFILE to n (never raises it), soft and
// hard, so the plugin cannot raise it back.
func limitOpenFiles(n uint64) error {
	if n == 0 {
		return nil
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the open-file limit: %w", err)
	}
	lim.Cur, lim.Max = min(lim.Cur, n), min(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("limit open files to %d: %w", n, err)
	}
	return nil
}

// syscallNumbers are the calls denySyscalls knows. Since Linux 5.1 new
// calls have one number on every architecture but alpha, so the filter
// needs no architecture check for them.
var syscallNumbers = map[string]uint32{
	"io_uring_setup":    unix.SYS_IO_URING_SETUP,
	"io_uring_enter":    unix.SYS_IO_URING_ENTER,
	"io_uring_register": unix.SYS_IO_URING_REGISTER,
}

// denySyscalls installs a seccomp filter, inherited across exec, that
// fails names with EPERM and lets every other call through to the
// runtime's own profile. A name it does not know fails the call: a
// filter short of what was asked is not run.
func denySyscalls(names []string) error {
	if len(names) == 0 {
		return nil
	}
	const x32 = 0x40000000 // the x32 ABI's calls: the same numbers with this bit
	var prog []unix.SockFilter
	// A = the call's number, x32 bit cleared.
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: ^uint32(x32)})
	for i, name := range names {
		nr, ok := syscallNumbers[name]
		if !ok {
			return fmt.Errorf("no filter for system call %q", name)
		}
		// Equal: jump over the remaining tests and the allow, to the deny.
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: uint8(len(names) - i), Jf: 0})
	}
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)})
	// The pod sets no_new_privs (allowPrivilegeEscalation: false); a
	// filter needs it without CAP_SYS_ADMIN.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("install the seccomp filter denying %s: %w", strings.Join(names, ", "), errno)
	}
	return nil
}

// place makes sure the plugin file at h.Argv[0] holds the bytes whose
// sha256 is h.SHA256: it writes the h.Size bytes that follow on stdin, or,
// with none, checks the file a load wrote before.
func place(h launch.Header) error {
	path := h.Argv[0]
	if filepath.Dir(path) != launch.PluginDir || strings.HasPrefix(filepath.Base(path), ".") {
		return fmt.Errorf("plugin path %q is not a file of %s", path, launch.PluginDir)
	}
	if len(h.SHA256) != sha256.Size*2 {
		return fmt.Errorf("no sha256 to check the plugin against")
	}
	sum := sha256.New()
	if h.Size > 0 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o500)
		if err != nil {
			return fmt.Errorf("write the plugin: %w", err)
		}
		n, err := io.Copy(io.MultiWriter(f, sum), io.LimitReader(os.Stdin, h.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && n != h.Size {
			err = fmt.Errorf("got %d of its %d bytes", n, h.Size)
		}
		if err != nil {
			os.Remove(path)
			return fmt.Errorf("write the plugin: %w", err)
		}
	} else {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the plugin %s was not loaded", path)
		}
		if err != nil {
			return err
		}
		_, err = io.Copy(sum, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read the plugin: %w", err)
		}
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h.SHA256 {
		os.Remove(path)
		return fmt.Errorf("the plugin's sha256 is %s, not %s, the one the server verified: it does not run", got, h.SHA256)
	}
	return nil
}
