package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// ErrShuttingDown refuses calls that arrive once Shutdown has begun. It
// wraps ErrRefused.
var ErrShuttingDown = fmt.Errorf("%w: the server is shutting down and takes no new calls", ErrRefused)

// shutdownMessage is added to every result of a call that was in flight
// when Shutdown began.
const shutdownMessage = "the server is shutting down"

// SandboxInfo says how this runtime's calls run, for descriptions, results
// and /health, so front ends need not know backend names.
type SandboxInfo struct {
	// Name names the backend of native plugins ("container",
	// "container/gvisor" for the container sandbox's gVisor tier, "none"), or
	// "" when none can run them.
	Name string `json:"name"`
	// Available is false when native plugins are listed but cannot run.
	Available bool `json:"available"`
	// Isolated is false for backend "none": plugins run as plain processes
	// with the server's own rights, files and network.
	Isolated bool `json:"isolated"`
	// Wasm is set when WebAssembly plugins (kubectl-*.wasm) run, in the
	// wasm sandbox, whatever the native backend.
	Wasm bool `json:"wasm"`
}

// Sandbox describes where this runtime's calls run.
func (r *Runtime) Sandbox() SandboxInfo {
	info := SandboxInfo{Wasm: r.backends.Wasm != nil}
	if b := r.backends.Native; b != nil {
		info.Name, info.Available, info.Isolated = b.Name(), true, !unsandboxed(b)
	}
	return info
}

// unsandboxed reports whether b isolates nothing: the "none" backend.
func unsandboxed(b sandbox.Backend) bool {
	_, none := b.(sandbox.None)
	return none
}

// Shutdown stops taking calls: every call that arrives from now on is
// refused with ErrShuttingDown, at once. Calls in flight get grace to
// finish; then they are cancelled. Shutdown returns once every call has
// returned its result (each saying the server is shutting down), or when
// ctx ends first, with ctx's error.
func (r *Runtime) Shutdown(ctx context.Context, grace time.Duration) error {
	r.callsMu.Lock()
	r.shuttingDown = true
	r.callsMu.Unlock()
	drained := make(chan struct{})
	go func() {
		r.calls.Wait()
		close(drained)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-drained:
		return nil
	case <-timer.C:
		r.log.Warn("calls still running after the shutdown grace period are cancelled", "grace", grace)
		r.cancelCalls(errors.New(shutdownMessage))
	case <-ctx.Done():
		r.cancelCalls(errors.New(shutdownMessage))
		return ctx.Err()
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// beginCall registers a call in flight, or refuses it during shutdown.
func (r *Runtime) beginCall() error {
	r.callsMu.Lock()
	defer r.callsMu.Unlock()
	if r.shuttingDown {
		return ErrShuttingDown
	}
	r.calls.Add(1)
	return nil
}

// isShuttingDown reports whether Shutdown has begun.
func (r *Runtime) isShuttingDown() bool {
	r.callsMu.Lock()
	defer r.callsMu.Unlock()
	return r.shuttingDown
}
