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
	"time"

	"github.com/containerd/containerd"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/defaults"
	"github.com/containerd/containerd/errdefs"
	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/internal/netns"
)

// The label every container of ours carries, so a restarted server finds
// and removes what a crashed one left. A container is made before its
// call is known (see warmPool), so no label names the call.
const (
	LabelOwner = "kubernetes-mcp-server/owner"
	ownerValue = "kubernetes-mcp-server"
)

// Config says where containerd is and what each sandbox gets.
type Config struct {
	Address   string // containerd's socket
	Namespace string // containerd namespace of our containers
	Runtime   string // e.g. io.containerd.runc.v2
	// RuntimeBinary is the OCI runtime the shim runs; "" means runc on PATH.
	// Under IsolationGVisor it must be "": the backend runs runsc itself.
	RuntimeBinary string
	// Isolation is the tier between plugin and host kernel: IsolationRunc
	// ("" too) or IsolationGVisor.
	Isolation Isolation
	// RunscBinary is gVisor's runsc, for IsolationGVisor; "" means runsc on
	// PATH.
	RunscBinary string
	Rootfs      string // the sandbox image, a root filesystem folder
	// StateDir holds per-call folders and network namespaces.
	StateDir string
	User     uint32
	Limits   Limits
	Logger   hclog.Logger
	// Sweep removes, at start, every sandbox an earlier server left. Only
	// the server may: a command run beside it would remove its live calls.
	Sweep bool
	// WarmPool is how many containers per plugin are created ahead of its
	// calls (see warmPool); 0 creates each when its call comes.
	WarmPool int
	// OperationTimeout bounds each request to containerd; 0 means
	// DefaultOperationTimeout. The plugin's own run is bounded by its
	// call's context instead.
	OperationTimeout time.Duration
}

// DefaultOperationTimeout is how long a containerd request may take.
// containerd answers in milliseconds, so one this late means a stalled
// containerd, and the call fails rather than hang (holding its slot).
const DefaultOperationTimeout = 15 * time.Second

// CallFor is the profile input of one call: the same for a run and for
// `profile show`, so what an operator audits is what runs.
func (cfg Config) CallFor(id, plugin string, args, env []string, withCluster bool) Call {
	c := Call{ID: id, Rootfs: cfg.Rootfs, Plugin: plugin, Args: args, Env: env, User: cfg.User, Limits: cfg.Limits,
		Isolation: cfg.Isolation, LaunchDir: filepath.Join(cfg.StateDir, "calls", id, "launch")}
	if cfg.Isolation.gvisor() {
		c.MountDir = filepath.Join(cfg.StateDir, "calls", id, "mounts")
	}
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

	timeout time.Duration // of each containerd request
	// runtimeOpts are the shim's options: the runtime binary it runs.
	runtimeOpts *options.Options

	pool *warmPool

	mu       sync.Mutex
	pending  map[string]*pendingRemoval // containers whose removal failed, retried later
	retrying sync.Mutex                 // one retry of pending at a time
	removals sync.WaitGroup             // removals still running after their call returned
}

// pendingRemoval is a container an earlier call could not remove.
type pendingRemoval struct {
	// mayAppear is set when a request that creates the container or its
	// task stalled: containerd may still carry it out once it answers
	// again, and a removal racing that would miss what is created after it.
	mayAppear bool
	// settled is when such a removal may start: one operation deadline
	// after containerd answered again, when every request it held has been
	// carried out or has expired.
	settled time.Time
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
	if _, err := os.Stat(filepath.Join(cfg.Rootfs, Launcher)); err != nil {
		return nil, fmt.Errorf("sandbox image %s lacks %s, the containers' first program (`make images` builds an image with it; "+
			"for an image of your own, copy it in from that one): %w", cfg.Rootfs, Launcher, err)
	}
	// No socket answers at once; dialing it would wait for the timeout.
	if _, err := os.Stat(cfg.Address); err != nil {
		return nil, fmt.Errorf("containerd: no socket at %s: %w", cfg.Address, err)
	}
	timeout := cfg.OperationTimeout
	if timeout <= 0 {
		timeout = DefaultOperationTimeout
	}
	if cfg.Runtime == "" {
		cfg.Runtime = defaults.DefaultRuntime
	}
	runtimeOpts, err := runtimeOptions(cfg)
	if err != nil {
		return nil, err
	}
	// Naming the runtime spares containerd.New a request without deadline
	// (it would ask the namespace's default).
	dialed := time.Now()
	client, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(cfg.Namespace),
		containerd.WithDefaultRuntime(cfg.Runtime), containerd.WithTimeout(timeout))
	if err != nil {
		// grpc's dial error does not wrap the deadline; the time tells.
		if time.Since(dialed) >= timeout {
			return nil, fmt.Errorf("connect to containerd at %s: it did not answer within %s: %w", cfg.Address, timeout, err)
		}
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	b := &Backend{cfg: cfg, log: log, client: client, timeout: timeout, runtimeOpts: runtimeOpts, pending: map[string]*pendingRemoval{}}
	b.pool = newWarmPool(b, cfg.WarmPool)
	if err := b.op(ctx, "ask containerd at "+cfg.Address+" its version", func(ctx context.Context) error {
		_, err := client.Version(ctx)
		return err
	}); err != nil {
		client.Close()
		return nil, err
	}
	for _, dir := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "calls")} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			client.Close()
			return nil, fmt.Errorf("sandbox state folder: %w", err)
		}
	}
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

// Name implements sandbox.Backend: "container", or "container/gvisor"
// under gVisor, so results, /health and `profile show` say the tier.
func (b *Backend) Name() string { return b.cfg.Isolation.backendName() }

// Close removes the warm containers, waits for the removals still running
// and retries those that failed, then releases the connection to
// containerd.
func (b *Backend) Close() error {
	b.pool.Close()
	b.Quiesce()
	return b.client.Close()
}

// Quiesce waits until every finished call's sandbox is removed, as far as
// containerd lets it (what it cannot remove is left to the next retry, or
// to the next server's start-up sweep), and the warm pool is refilled.
func (b *Backend) Quiesce() {
	b.removals.Wait()
	b.pool.Settle()
	b.removals.Wait()
	b.drainPending()
}

// Warm counts the containers created ahead of their calls.
func (b *Backend) Warm() int { return b.pool.Count() }

// op runs one containerd request under the operation deadline, so that a
// stalled containerd fails the request, with what it was, instead of
// hanging it.
func (b *Backend) op(ctx context.Context, what string, request func(context.Context) error) error {
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	err := request(rctx)
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return &stallError{what: what, after: b.timeout, err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// stallError is a containerd request that outlived the operation deadline.
type stallError struct {
	what  string
	after time.Duration
	err   error
}

func (e *stallError) Error() string {
	return fmt.Sprintf("%s: containerd did not answer within %s: %v", e.what, e.after, e.err)
}

func (e *stallError) Unwrap() error { return e.err }

func isStall(err error) bool {
	var s *stallError
	return errors.As(err, &s)
}

// Sweep removes every container, network namespace, call folder and
// empty cgroup of ours.
func (b *Backend) Sweep(ctx context.Context) (int, error) {
	var containers []containerd.Container
	if err := b.op(ctx, "list leftover containers", func(ctx context.Context) (err error) {
		containers, err = b.client.Containers(ctx, fmt.Sprintf("labels.%q==%s", LabelOwner, ownerValue))
		return err
	}); err != nil {
		return 0, err
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
	return max(len(containers), n, sweepCgroups(b.cfg.Namespace)), errors.Join(errs...)
}

// sweepCgroups removes the empty cgroups of our sandboxes that outlived
// their containers: a runtime killed with its containerd leaves them, and
// containerd no longer knows them. It returns how many sandboxes had one.
// The cgroup of a live sandbox holds its processes, so the kernel refuses
// its removal; an empty one is dead.
func sweepCgroups(namespace string) int {
	// containerd's default cgroup path is /<namespace>/<id>, under every
	// v1 hierarchy or the one v2 tree.
	v1, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", namespace, "kmcp-*"))
	v2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", namespace, "kmcp-*"))
	swept := map[string]bool{}
	for _, dir := range append(v1, v2...) {
		if os.Remove(dir) == nil {
			swept[filepath.Base(dir)] = true
		}
	}
	return len(swept)
}

// removeSandbox removes a call's task and container with the handles at
// hand, which saves containerd round trips; remove() is the slow path that
// finds whatever is left.
func (b *Backend) removeSandbox(ctx context.Context, id string, container containerd.Container, task containerd.Task) error {
	var err error
	if task != nil {
		err = b.op(ctx, "delete the task of "+id, func(ctx context.Context) error { return b.deleteTask(ctx, task) })
	}
	if err == nil || errdefs.IsNotFound(err) {
		err = b.op(ctx, "delete sandbox "+id, func(ctx context.Context) error { return container.Delete(ctx) })
	}
	if err != nil && !errdefs.IsNotFound(err) && !isStall(err) {
		err = b.remove(ctx, id)
	}
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// remove deletes a container and its task, whatever state they are in,
// within one operation deadline.
func (b *Backend) remove(ctx context.Context, id string) error {
	return b.op(ctx, "remove sandbox "+id, func(ctx context.Context) error {
		c, err := b.client.LoadContainer(ctx, id)
		if errdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if task, err := c.Task(ctx, nil); err == nil {
			if err := b.deleteTask(ctx, task); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("delete task: %w", err)
			}
		} else if !errdefs.IsNotFound(err) {
			return fmt.Errorf("load task: %w", err)
		}
		if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete container: %w", err)
		}
		return nil
	})
}

// deleteTask kills what is left of a task and deletes it. runsc refuses to
// kill a sandbox that has ended with "sandbox is not running", which the
// runc shim does not take for "already finished" as it does runc's words,
// so the kill fails; the task has ended then, and is deleted without it.
// runsc refuses to kill a task that was created and never started, too
// (a warm container no call took), which containerd's client will not
// delete unkilled: the task service deletes it, and the shim deletes a
// created task.
func (b *Backend) deleteTask(ctx context.Context, task containerd.Task) error {
	_, err := task.Delete(ctx, containerd.WithProcessKill)
	if err == nil || errdefs.IsNotFound(err) || ctx.Err() != nil {
		return err
	}
	_, again := task.Delete(ctx)
	if errdefs.IsFailedPrecondition(again) {
		_, again = b.client.TaskService().Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: task.ID()})
		again = errdefs.FromGRPC(again)
	}
	if again != nil && !errdefs.IsNotFound(again) {
		return errors.Join(err, again)
	}
	return nil
}

// addPending records a container to remove later.
func (b *Backend) addPending(id string, mayAppear bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending[id]
	if p == nil {
		p = &pendingRemoval{}
		b.pending[id] = p
	}
	if mayAppear {
		// Whatever containerd answered before, it stalled again since.
		p.mayAppear, p.settled = true, time.Time{}
	}
}

// retryPendingInBackground retries the pending removals without holding
// up the call that asks: containerd may still be stalled.
func (b *Backend) retryPendingInBackground() {
	b.mu.Lock()
	n := len(b.pending)
	b.mu.Unlock()
	if n == 0 || !b.retrying.TryLock() {
		return
	}
	b.removals.Add(1)
	go func() {
		defer b.removals.Done()
		defer b.retrying.Unlock()
		b.retryPending()
	}()
}

// retryPending removes containers earlier calls could not, such as while
// containerd was down or stalled. It returns how many are left, and when
// the first of those still settling may be removed (zero for none). The
// caller holds b.retrying.
func (b *Backend) retryPending() (left int, next time.Time) {
	b.mu.Lock()
	n := len(b.pending)
	b.mu.Unlock()
	if n == 0 {
		return 0, time.Time{}
	}
	if err := b.op(context.Background(), "ask containerd its version", func(ctx context.Context) error {
		_, err := b.client.Version(ctx)
		return err
	}); err != nil {
		b.log.Debug("containerd does not answer; pending removals wait", "count", n, "error", err)
		return n, time.Time{}
	}
	now := time.Now()
	b.mu.Lock()
	var due []string
	for id, p := range b.pending {
		if p.mayAppear && p.settled.IsZero() {
			p.settled = now.Add(b.timeout)
		}
		if now.Before(p.settled) {
			if next.IsZero() || p.settled.Before(next) {
				next = p.settled
			}
			continue
		}
		due = append(due, id)
	}
	b.mu.Unlock()
	for _, id := range due {
		if err := b.remove(context.Background(), id); err != nil {
			b.log.Debug("sandbox not removed yet", "id", id, "error", err)
			continue
		}
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending), next
}

// drainPending retries the pending removals while some are left that only
// need to settle first; it gives up on the others (containerd does not
// answer, or refuses), and after two operation deadlines.
func (b *Backend) drainPending() {
	b.retrying.Lock()
	defer b.retrying.Unlock()
	deadline := time.Now().Add(2 * b.timeout)
	for {
		left, next := b.retryPending()
		if left == 0 {
			return
		}
		if next.IsZero() || next.After(deadline) {
			b.log.Warn("sandboxes not removed yet; a later call, or the next start-up sweep, retries", "count", left)
			return
		}
		time.Sleep(max(time.Until(next), 100*time.Millisecond))
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
