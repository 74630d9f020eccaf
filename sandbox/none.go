package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// None runs plugins as plain processes with the server's own rights. It
// isolates nothing: it exists for operators who choose it explicitly with
// [sandbox] backend = "none", and the server says so whenever it is used.
type None struct{}

// Name implements Backend.
func (None) Name() string { return "none" }

// Run implements Backend. The plugin gets exactly spec.Env and its own
// process group, so a cancellation ends it and everything it started.
func (None) Run(ctx context.Context, spec Spec) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1, Stopped: true}, nil
	}
	cmd := exec.Command(spec.Plugin, spec.Args...)
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would mean the server's own environment
	}
	// Never the server's own working directory, which a plugin could litter.
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A process that escaped the group could hold the output pipes open; do
	// not wait for it longer than this once the plugin itself has ended.
	cmd.WaitDelay = time.Second

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("start %s: %w", spec.Plugin, err)
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
	err := cmd.Wait()
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
