package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/internal/netns"
)

// Labels every container of ours carries, so a restarted server finds
// and removes what a crashed one left.
const (
	LabelOwner  = "kubernetes-mcp-server/owner"
	LabelCallID = "kubernetes-mcp-server/call-id"
	ownerValue  = "kubernetes-mcp-server"
)

// Config says where containerd is and what each sandbox gets.
type Config struct {
	Address   string // containerd's socket
	Namespace string // containerd namespace of our containers
	Runtime   string // e.g. io.containerd.runc.v2
	// RuntimeBinary is the OCI runtime the shim runs; "" means runc on PATH.
	RuntimeBinary string
	Rootfs        string // the sandbox image, a root filesystem folder
	// StateDir holds per-call folders and network namespaces.
	StateDir string
	User     uint32
	Limits   Limits
	Logger   hclog.Logger
	// Sweep removes, at start, every sandbox an earlier server left. Only
	// the server may: a command run beside it would remove its live calls.
	Sweep bool
}

// CallFor is the profile input of one call: the same for a run and for
// `profile show`, so what an operator audits is what runs.
func (cfg Config) CallFor(id, plugin string, args, env []string, withCluster bool) Call {
	c := Call{ID: id, Rootfs: cfg.Rootfs, Plugin: plugin, Args: args, Env: env, User: cfg.User, Limits: cfg.Limits}
	if withCluster {
		c.Kubeconfig = filepath.Join(cfg.StateDir, "calls", id, "kubeconfig")
		c.NetNS = filepath.Join(cfg.StateDir, "netns", id)
	}
	return c
}

// Backend runs plugins in containerd containers, one per call.
type Backend struct {
	cfg    Config
	log    hclog.Logger
	client *containerd.Client

	mu       sync.Mutex
	pending  map[string]bool // containers whose removal failed, retried later
	removals sync.WaitGroup  // removals still running after their call returned
}

// New connects to containerd, checks the image, and removes what an
// earlier server left behind.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if _, err := os.Stat(filepath.Join(cfg.Rootfs, "bin", "sh")); err != nil {
		return nil, fmt.Errorf("sandbox image %s is not usable (build it with `make images`): %w", cfg.Rootfs, err)
	}
	// No socket answers at once; dialing it would wait for the timeout.
	if _, err := os.Stat(cfg.Address); err != nil {
		return nil, fmt.Errorf("containerd: no socket at %s: %w", cfg.Address, err)
	}
	client, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(3*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	vctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := client.Version(vctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", cfg.Address, err)
	}
	for _, dir := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "calls")} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			client.Close()
			return nil, fmt.Errorf("sandbox state folder: %w", err)
		}
	}
	b := &Backend{cfg: cfg, log: log, client: client, pending: map[string]bool{}}
	if !cfg.Sweep {
		return b, nil
	}
	if n, err := b.Sweep(ctx); err != nil {
		log.Warn("could not remove every leftover sandbox", "error", err)
	} else if n > 0 {
		log.Info("removed leftover sandboxes of an earlier server", "count", n)
	}
	return b, nil
}

// Name implements sandbox.Backend.
func (b *Backend) Name() string { return "container" }

// Close waits for the removals still running, then releases the
// connection to containerd.
func (b *Backend) Close() error {
	b.removals.Wait()
	return b.client.Close()
}

// Quiesce waits until every finished call's sandbox is removed.
func (b *Backend) Quiesce() { b.removals.Wait() }

// Sweep removes every container, network namespace and call folder of ours.
func (b *Backend) Sweep(ctx context.Context) (int, error) {
	containers, err := b.client.Containers(ctx, fmt.Sprintf("labels.%q==%s", LabelOwner, ownerValue))
	if err != nil {
		return 0, fmt.Errorf("list leftover containers: %w", err)
	}
	var errs []error
	for _, c := range containers {
		errs = append(errs, b.remove(ctx, c.ID()))
	}
	n, err := netns.Sweep(filepath.Join(b.cfg.StateDir, "netns"))
	errs = append(errs, err)
	calls, _ := os.ReadDir(filepath.Join(b.cfg.StateDir, "calls"))
	for _, c := range calls {
		errs = append(errs, os.RemoveAll(filepath.Join(b.cfg.StateDir, "calls", c.Name())))
	}
	return max(len(containers), n), errors.Join(errs...)
}

// Run implements sandbox.Backend: one fresh container and task for the
// call, removed on every path.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	b.retryPending()
	if err := ctx.Err(); err != nil {
		return sandbox.Result{ExitCode: -1, Stopped: true}, nil
	}
	id := "kmcp-" + randomHex(8)
	// Everything the call sets up is undone in reverse order: at once when
	// the call fails, or right after its result is out when it ran.
	var undo []func()
	async := false
	defer func() {
		cleanup := func() {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
		if !async {
			cleanup()
			return
		}
		b.removals.Add(1)
		go func() {
			defer b.removals.Done()
			cleanup()
		}()
	}()
	callDir := filepath.Join(b.cfg.StateDir, "calls", id)
	if err := os.Mkdir(callDir, 0o711); err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("prepare sandbox %s: %w", id, err)
	}
	undo = append(undo, func() { os.RemoveAll(callDir) })

	call := b.cfg.CallFor(id, spec.Plugin, spec.Args, spec.Env, spec.Cluster != nil)
	if spec.Cluster != nil {
		stop, err := b.connectCluster(call, spec.Cluster)
		if err != nil {
			return sandbox.Result{ExitCode: -1}, fmt.Errorf("prepare sandbox %s: %w", id, err)
		}
		undo = append(undo, stop)
	}
	ociSpec, err := Spec(ctx, b.cfg.Namespace, call)
	if err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("sandbox profile for %s: %w", spec.Plugin, err)
	}

	// Creation and removal must finish even when the call's ctx ends.
	bg := context.WithoutCancel(ctx)
	labels := map[string]string{LabelOwner: ownerValue, LabelCallID: spec.ID}
	var runtimeOpts any
	if b.cfg.RuntimeBinary != "" {
		runtimeOpts = &options.Options{BinaryName: b.cfg.RuntimeBinary}
	}
	container, err := b.client.NewContainer(bg, id,
		containerd.WithSpec(ociSpec),
		containerd.WithContainerLabels(labels),
		containerd.WithRuntime(b.cfg.Runtime, runtimeOpts))
	if err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("create sandbox for %s: %w", spec.Plugin, err)
	}
	var task containerd.Task
	undo = append(undo, func() {
		// The handles at hand save containerd round trips; remove() is
		// the slow path that finds whatever is left.
		var err error
		if task != nil {
			_, err = task.Delete(bg, containerd.WithProcessKill)
		}
		if err == nil || errdefs.IsNotFound(err) {
			err = container.Delete(bg)
		}
		if err != nil && !errdefs.IsNotFound(err) {
			err = b.remove(bg, id)
		}
		if err != nil {
			b.log.Warn("sandbox not removed yet; will retry", "id", id, "error", err)
			b.mu.Lock()
			b.pending[id] = true
			b.mu.Unlock()
		}
	})

	stdout, stderr := orDiscard(spec.Stdout), orDiscard(spec.Stderr)
	// The shim keeps its own writer on the stdin FIFO, so the plugin sees EOF
	// only after CloseIO; ours closes after the last byte, so none is lost.
	var stdin io.Reader
	stdinEOF := make(chan struct{})
	if spec.Stdin != nil {
		stdin = &eofReader{r: spec.Stdin, eof: stdinEOF}
	}
	task, err = container.NewTask(bg, cio.NewCreator(cio.WithStreams(stdin, stdout, stderr)))
	if err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("start sandbox for %s: %w", spec.Plugin, err)
	}
	exited, err := task.Wait(bg)
	if err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("watch sandbox for %s: %w", spec.Plugin, err)
	}
	start := time.Now()
	if err := task.Start(bg); err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("start plugin %s in its sandbox: %w", spec.Plugin, err)
	}
	if stdin != nil {
		go func() {
			select {
			case <-stdinEOF:
				if err := task.CloseIO(bg, containerd.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) {
					b.log.Debug("close stdin", "id", id, "error", err)
				}
			case <-ctx.Done():
			}
		}()
	}
	res := sandbox.Result{ExitCode: -1}
	var status containerd.ExitStatus
	select {
	case status = <-exited:
	case <-ctx.Done():
		res.Stopped = true
		if err := task.Kill(bg, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			b.log.Warn("kill sandbox", "id", id, "error", err)
		}
		select {
		case status = <-exited:
		case <-time.After(10 * time.Second):
			return res, fmt.Errorf("sandbox for %s did not stop within 10s of SIGKILL", spec.Plugin)
		}
	}
	res.Duration = time.Since(start)
	code, _, err := status.Result()
	if err != nil {
		return res, fmt.Errorf("sandbox for %s: containerd lost track of the plugin: %w", spec.Plugin, err)
	}
	// All output is in once the plugin's streams are drained; removing
	// the sandbox need not delay the result.
	task.IO().Wait()
	async = true
	// The shim reports death by signal N as 128+N.
	if code > 128 && code < 160 {
		res.Signal = syscall.Signal(code - 128).String()
	} else {
		res.ExitCode = int(code)
	}
	return res, nil
}

// connectCluster makes the call's network namespace, serves the call's
// gateway inside it, and writes the kubeconfig that names it.
func (b *Backend) connectCluster(call Call, access *sandbox.ClusterAccess) (stop func(), err error) {
	ns, err := netns.New(filepath.Dir(call.NetNS), call.ID)
	if err != nil {
		return nil, err
	}
	if ns.Path != call.NetNS {
		ns.Close()
		return nil, fmt.Errorf("network namespace at %s, not %s", ns.Path, call.NetNS)
	}
	l, err := ns.Listen("127.0.0.1:0")
	if err != nil {
		ns.Close()
		return nil, err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		access.Serve(l)
	}()
	stop = func() {
		l.Close()
		<-served
		if err := ns.Close(); err != nil {
			b.log.Warn("network namespace not removed", "id", call.ID, "error", err)
		}
	}
	path := call.Kubeconfig
	if err := clientcmd.WriteToFile(*access.Kubeconfig(l.Addr().String()), path); err == nil {
		err = os.Chown(path, int(call.User), int(call.User))
	}
	if err == nil {
		err = os.Chmod(path, 0o400)
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("write the call's kubeconfig: %w", err)
	}
	return stop, nil
}

// remove deletes a container and its task, whatever state they are in.
func (b *Backend) remove(ctx context.Context, id string) error {
	c, err := b.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("load task %s: %w", id, err)
	}
	if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// retryPending removes containers an earlier call could not, such as while
// containerd was down.
func (b *Backend) retryPending() {
	b.mu.Lock()
	ids := make([]string, 0, len(b.pending))
	for id := range b.pending {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := b.remove(ctx, id)
		cancel()
		if err == nil {
			b.mu.Lock()
			delete(b.pending, id)
			b.mu.Unlock()
		}
	}
}

// eofReader closes eof when its reader is exhausted.
type eofReader struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
