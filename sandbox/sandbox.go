package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Backend runs one plugin process in isolation. Every plugin run, whether a
// tool call or discovery's --help, goes through a Backend.
type Backend interface {
	// Name is how results and logs name the backend: "none", "container", "wasm".
	Name() string
	// Run runs the plugin to the end, or until ctx ends, when it kills the
	// plugin and everything it started before returning.
	Run(ctx context.Context, spec Spec) (Result, error)
}

// Preparer is a Backend with work to do once per plugin file, ahead of its
// first run: the wasm backend compiles modules. Discovery calls Prepare for
// every plugin policy lets run; an error says why the plugin cannot run.
// It calls Forget for a plugin file it no longer lists, so what Prepare
// keeps goes with it.
type Preparer interface {
	Prepare(ctx context.Context, plugin string) error
	Forget(plugin string)
}

// SharedNetwork is a Backend whose plugins reach their gateway over a
// network others share (a cluster's pod network): each call's gateway
// then asks for the call's own capability, which the kubeconfig carries.
type SharedNetwork interface {
	SharedNetwork() bool
}

// Backends are the sandbox backends of one server, by the kind of plugin
// they run. A nil field means plugins of that kind are listed but never
// run, not even for --help.
type Backends struct {
	// Native runs executables and scripts.
	Native Backend
	// Wasm runs WebAssembly modules (kubectl-<name>.wasm).
	Wasm Backend
}

// For returns the backend that runs a plugin, wasm or native, or nil.
func (b Backends) For(wasm bool) Backend {
	if wasm {
		return b.Wasm
	}
	return b.Native
}

// Close releases every backend that holds something (a containerd
// connection, sandboxes still being removed).
func (b Backends) Close() error {
	var errs []error
	for _, backend := range []Backend{b.Native, b.Wasm} {
		if c, ok := backend.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Spec is one plugin run. Arguments travel as argv: no shell reads them.
type Spec struct {
	// ID names the run in labels, logs and folders (the call id).
	ID string
	// Plugin is the resolved path of the plugin file.
	Plugin string
	// SHA256 is the hex sha256 of the plugin file as discovery verified it:
	// a backend that sends the file elsewhere checks there what arrived.
	SHA256 string
	// Args are the arguments after the program name.
	Args []string
	// Env holds extra variables, KEY=VALUE. Each backend sets PATH, HOME,
	// TMPDIR and KUBECONFIG itself, and passes nothing else of the server's.
	Env []string
	// Cluster is the plugin's way to its one cluster, or nil for none.
	Cluster *ClusterAccess
	// Stdin is the plugin's standard input; nil means empty.
	Stdin io.Reader
	// Stdout and Stderr receive the plugin's output; nil discards it.
	Stdout, Stderr io.Writer
	// RunTimeout, when set, bounds the plugin's own run, counted from the
	// moment it starts: the time its sandbox takes to set up is not the
	// plugin's. When it passes, the plugin is killed and Stopped is set.
	RunTimeout time.Duration
	// KeepWarm asks for a sandbox made ahead for the plugin's next run of
	// this kind (the container backend's warm pool): tool calls do;
	// discovery's help runs, once per plugin file, do not.
	KeepWarm bool
}

// ClusterAccess is how a plugin reaches its cluster: through the call's API
// gateway, which the backend serves where the plugin, and only it, can
// connect, and a kubeconfig naming that address and holding no secret.
type ClusterAccess struct {
	// Serve serves the gateway on l until l is closed.
	Serve func(l net.Listener) error
	// Handler is the same gateway, served in process, for backends whose
	// plugin cannot open a connection at all (wasm). It never upgrades a
	// request: exec, attach and port-forward are refused, and audited.
	Handler http.Handler
	// Kubeconfig is the plugin's kubeconfig for the gateway at addr.
	Kubeconfig func(addr string) *clientcmdapi.Config
}

// Result is how a run ended.
type Result struct {
	// ExitCode is the plugin's exit status, or -1 when it did not exit by
	// itself (killed by a signal, a timeout or a cancellation).
	ExitCode int
	// Signal names the signal that ended the plugin, if one did.
	Signal   string
	Duration time.Duration
	// Stopped is true when the run was ended because ctx ended.
	Stopped bool
	// Warm is true when the sandbox was made before the call (a warm
	// pool's), false when the call made its own.
	Warm bool
}

// ErrUnavailable is returned when no sandbox backend can run a plugin.
var ErrUnavailable = errors.New("no sandbox backend is available")

// LimitedBuffer keeps the first Limit bytes written to it and counts the rest.
// Writes never fail, so a flooding plugin is not killed by a broken pipe but
// simply truncated.
type LimitedBuffer struct {
	Limit int
	// OnFull, if set, is called once, when the first byte is dropped.
	OnFull func()

	mu        sync.Mutex
	buf       []byte
	truncated int64
}

// NewLimitedBuffer returns a buffer that keeps at most limit bytes.
func NewLimitedBuffer(limit int) *LimitedBuffer { return &LimitedBuffer{Limit: limit} }

func (b *LimitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.Limit - len(b.buf)
	if room < 0 {
		room = 0
	}
	if len(p) > room {
		if b.truncated == 0 && b.OnFull != nil {
			defer b.OnFull()
		}
		b.truncated += int64(len(p) - room)
		b.buf = append(b.buf, p[:room]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

// Bytes returns what was kept.
func (b *LimitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// String returns what was kept.
func (b *LimitedBuffer) String() string { return string(b.Bytes()) }

// Truncated reports how many bytes were dropped.
func (b *LimitedBuffer) Truncated() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truncated
}

// Describe says in words how a run ended, for warnings and errors.
func (r Result) Describe() string {
	switch {
	case r.Stopped:
		return fmt.Sprintf("stopped after %s", r.Duration.Round(time.Millisecond))
	case r.Signal != "":
		return "killed by " + r.Signal
	default:
		return fmt.Sprintf("exit code %d", r.ExitCode)
	}
}
