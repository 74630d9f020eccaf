package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// None runs plugins as plain processes with the server's own rights. It
// isolates nothing: it exists for operators who choose it explicitly with
// [sandbox] backend = "none", and the server says so whenever it is used.
type None struct {
	// PathEnv is the PATH plugins get; a plain default when empty.
	PathEnv string
}

// Name implements Backend.
func (None) Name() string { return "none" }

// Run implements Backend. The plugin gets exactly spec.Env and its own
// process group, so a cancellation ends it and everything it started.
func (n None) Run(ctx context.Context, spec Spec) (_ Result, err error) {
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1, Stopped: true}, nil
	}
	// A folder of its own, as HOME and working directory: never the
	// server's, which a plugin could litter.
	work, err := os.MkdirTemp("", "kmcp-call-")
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("prepare %s: %w", spec.Plugin, err)
	}
	defer os.RemoveAll(work)
	path := n.PathEnv
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	kubeconfig := "/dev/null"
	if spec.Cluster != nil {
		// Any local process can reach this port: none isolates nothing.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Result{ExitCode: -1}, fmt.Errorf("prepare %s: listen for its cluster: %w", spec.Plugin, err)
		}
		served := make(chan error, 1)
		go func() { served <- spec.Cluster.Serve(l) }()
		defer func() {
			l.Close()
			// Serve returns nil once its listener is closed; anything else
			// means the plugin lost its cluster, which its result must say.
			if serveErr := <-served; serveErr != nil && err == nil {
				err = fmt.Errorf("the call's API gateway stopped: %w", serveErr)
			}
		}()
		kubeconfig = filepath.Join(work, "kubeconfig")
		if err := clientcmd.WriteToFile(*spec.Cluster.Kubeconfig(l.Addr().String()), kubeconfig); err != nil {
			return Result{ExitCode: -1}, fmt.Errorf("prepare %s: write kubeconfig: %w", spec.Plugin, err)
		}
	}
	cmd := exec.Command(spec.Plugin, spec.Args...)
	cmd.Env = append([]string{"PATH=" + path, "HOME=" + work, "TMPDIR=" + work, "KUBECONFIG=" + kubeconfig}, spec.Env...)
	cmd.Dir = work
	cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A process that escaped the group could hold the output pipes open; do
	// not wait for it longer than this once the plugin itself has ended.
	cmd.WaitDelay = time.Second

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("start %s: %w", spec.Plugin, err)
	}
	if spec.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.RunTimeout)
		defer cancel()
	}
	done := make(chan struct{})
	stopped := make(chan bool, 1)
	go func() {
		select {
		case <-ctx.Done():
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			stopped <- true
		case <-done:
			stopped <- false
		}
	}()
	err = cmd.Wait()
	close(done)
	// The group may outlive its leader; end whatever is left of it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	res := Result{ExitCode: -1, Duration: time.Since(start), Stopped: <-stopped}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			res.ExitCode = ws.ExitStatus()
		case ws.Signaled():
			res.Signal = ws.Signal().String()
		}
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
		return res, fmt.Errorf("run %s: %w", spec.Plugin, err)
	}
	return res, nil
}
