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
	"strings"
	"syscall"

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
	err = syscall.Exec(h.Argv[0], h.Argv, h.Env)
	return fmt.Errorf("exec %s: %w", h.Argv[0], err)
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
