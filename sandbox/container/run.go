package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/internal/netns"
)

// Run implements sandbox.Backend: the call starts a container created for
// it alone, taken from the warm pool or created now, and removed on every
// path once the call is over.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	b.retryPendingInBackground()
	if err := ctx.Err(); err != nil {
		return sandbox.Result{ExitCode: -1, Stopped: true}, nil
	}
	key := poolKey{plugin: spec.Plugin, cluster: spec.Cluster != nil}
	if spec.KeepWarm {
		b.pool.Wanted(key)
	}
	c, warm := b.pool.Take(key)
	if !warm {
		var err error
		if c, err = b.create(ctx, key); err != nil {
			return sandbox.Result{ExitCode: -1}, err
		}
	}
	res, err := b.start(ctx, c, spec)
	res.Warm = warm
	return res, err
}

// created is a container made for one call, created and not started: its
// task exists (runc create) and waits for runc start. Nothing in it is of
// the call yet; start hands the call in.
type created struct {
	id        string
	key       poolKey
	call      Call // the profile's input, without the call's argv and environment
	plugin    fileIdentity
	container containerd.Container
	task      containerd.Task
	exited    <-chan containerd.ExitStatus
	streams   *lateStreams
	// listener is where the call's gateway is served, in the container's
	// own network namespace; nil without a cluster.
	listener net.Listener
	// undo tears down what create made, in reverse order.
	undo []func()
	// stalled is set once a containerd request for it stalled; uncertain,
	// once one that creates something stalled (see pendingRemoval).
	stalled, uncertain atomic.Bool
}

// create makes a container for a call of key's plugin: its folders, its
// network namespace with a listener for the gateway when it reaches a
// cluster, the container and its task, created but not started. What it
// made is undone when it fails.
func (b *Backend) create(ctx context.Context, key poolKey) (c *created, err error) {
	id := "kmcp-" + randomHex(8)
	c = &created{id: id, key: key}
	defer func() {
		if err != nil {
			c.destroy(b)
			c = nil
		}
	}()
	if c.plugin, err = identify(key.plugin); err != nil {
		return c, fmt.Errorf("prepare sandbox %s: %w", id, err)
	}
	callDir := filepath.Join(b.cfg.StateDir, "calls", id)
	if err := os.Mkdir(callDir, 0o711); err != nil {
		return c, fmt.Errorf("prepare sandbox %s: %w", id, err)
	}
	c.undo = append(c.undo, func() { os.RemoveAll(callDir) })
	c.call = b.cfg.CallFor(id, key.plugin, nil, nil, key.cluster)
	for _, dir := range append(c.call.callMountFolders(), c.call.LaunchDir) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return c, fmt.Errorf("prepare sandbox %s: %w", id, err)
		}
	}
	if key.cluster {
		if err := b.prepareCluster(c); err != nil {
			return c, fmt.Errorf("prepare sandbox %s: %w", id, err)
		}
	}
	ociSpec, err := Spec(ctx, b.cfg.Namespace, c.call)
	if err != nil {
		return c, fmt.Errorf("sandbox profile for %s: %w", key.plugin, err)
	}

	// Creation and removal must finish even when the call's ctx ends; each
	// request has the operation deadline instead.
	bg := context.WithoutCancel(ctx)
	labels := map[string]string{LabelOwner: ownerValue}
	var runtimeOpts any
	if b.runtimeOpts != nil {
		runtimeOpts = b.runtimeOpts
	}
	var container containerd.Container
	if err := c.op(b, bg, "create the sandbox", func(ctx context.Context) (err error) {
		container, err = b.client.NewContainer(ctx, id,
			containerd.WithSpec(ociSpec),
			containerd.WithContainerLabels(labels),
			containerd.WithRuntime(b.cfg.Runtime, runtimeOpts))
		return err
	}); err != nil {
		if isStall(err) || errdefs.IsUnavailable(err) {
			b.addPending(id, isStall(err))
		}
		return c, err
	}
	c.container = container
	c.undo = append(c.undo, func() {
		if c.stalled.Load() || c.uncertain.Load() {
			b.log.Warn("containerd stalled; a later retry removes the sandbox", "id", id)
			b.addPending(id, c.uncertain.Load())
			return
		}
		if err := b.removeSandbox(bg, id, container, c.task); err != nil {
			b.log.Warn("sandbox not removed yet; will retry", "id", id, "error", err)
			b.addPending(id, false)
		}
	})
	c.streams = newLateStreams()
	// Whatever ends the container unblocks the stdin copy, should no call
	// ever have been handed in.
	c.undo = append(c.undo, func() { c.streams.bind(nil, nil, nil) })
	if err := c.op(b, bg, "create the sandbox's task", func(ctx context.Context) (err error) {
		c.task, err = container.NewTask(ctx, cio.NewCreator(cio.WithStreams(c.streams.stdin, c.streams.stdout, c.streams.stderr)))
		return err
	}); err != nil {
		c.uncertain.Store(isStall(err))
		return c, err
	}
	task := c.task
	c.undo = append(c.undo, func() {
		// The streams are closed here, before the task goes: output copied
		// after Run returned would race the caller reading it, and the
		// FIFOs would stay open when containerd cannot answer the task's
		// deletion (which closes them otherwise). A drained copy has
		// nothing left to lose.
		pio := task.IO()
		pio.Cancel()
		pio.Close()
		pio.Wait()
	})
	c.undo = append(c.undo, func() { c.streams.bind(nil, nil, nil) }) // before pio.Wait
	// The watch lasts until the container is removed.
	waitCtx, stopWaiting := context.WithCancel(bg)
	c.undo = append(c.undo, stopWaiting)
	if c.exited, err = task.Wait(waitCtx); err != nil {
		return c, fmt.Errorf("watch sandbox for %s: %w", key.plugin, err)
	}
	return c, nil
}

// op runs one containerd request for c (see Backend.op), and records
// whether it stalled.
func (c *created) op(b *Backend, ctx context.Context, what string, request func(context.Context) error) error {
	err := b.op(ctx, what+" for "+c.key.plugin, request)
	if isStall(err) {
		c.stalled.Store(true)
	}
	return err
}

// destroy undoes what create made, in reverse order.
func (c *created) destroy(b *Backend) {
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
	c.undo = nil
}

// discard removes a container no call took. runsc takes seconds to
// delete a created sandbox, and refuses to kill one, so it is started
// first, with nothing to run: the launcher finds no argv and exits.
func (b *Backend) discard(c *created) {
	c.streams.bind(nil, nil, nil)
	if b.cfg.Isolation.gvisor() && c.op(b, context.Background(), "start the unused sandbox", func(ctx context.Context) error {
		return c.task.Start(ctx)
	}) == nil {
		select {
		case <-c.exited:
		case <-time.After(b.timeout):
		}
	}
	c.destroy(b)
}

// destroyLater destroys c once its call's result is out, and then lets
// the pool refill.
func (b *Backend) destroyLater(c *created) {
	b.removals.Add(1)
	go func() {
		defer b.removals.Done()
		c.destroy(b)
		b.pool.Refill(c.key)
	}()
}

// start hands the call to c, starts it, and waits for the plugin's end or
// the call's. c is removed after the call, at once when it failed.
func (b *Backend) start(ctx context.Context, c *created, spec sandbox.Spec) (res sandbox.Result, err error) {
	res = sandbox.Result{ExitCode: -1}
	var link *gatewayLink
	defer func() {
		link.stop() // every request is answered before the result is out
		b.destroyLater(c)
	}()
	call := c.call
	call.Args, call.Env = spec.Args, spec.Env
	if err := writeLaunch(call); err != nil {
		return res, fmt.Errorf("prepare sandbox %s: %w", c.id, err)
	}
	if spec.Cluster != nil {
		if link, err = serveGateway(c, spec.Cluster); err != nil {
			return res, fmt.Errorf("prepare sandbox %s: %w", c.id, err)
		}
	}
	// The shim keeps its own writer on the stdin FIFO, so the plugin sees EOF
	// only after CloseIO; ours closes after the last byte, so none is lost.
	stdinEOF := make(chan struct{})
	c.streams.bind(&eofReader{r: orEmpty(spec.Stdin), eof: stdinEOF}, orDiscard(spec.Stdout), orDiscard(spec.Stderr))

	bg := context.WithoutCancel(ctx)
	started := time.Now()
	if err := c.op(b, bg, "start the plugin in its sandbox", func(ctx context.Context) error { return c.task.Start(ctx) }); err != nil {
		c.uncertain.Store(isStall(err))
		return res, err
	}
	if spec.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.RunTimeout)
		defer cancel()
	}
	callOver := make(chan struct{})
	defer close(callOver)
	go func() {
		select {
		case <-stdinEOF:
			if err := c.op(b, bg, "close the plugin's stdin", func(ctx context.Context) error {
				return c.task.CloseIO(ctx, containerd.WithStdinCloser)
			}); err != nil && !errdefs.IsNotFound(err) {
				b.log.Debug("close stdin", "id", c.id, "error", err)
			}
		case <-callOver:
		}
	}()
	var status containerd.ExitStatus
	select {
	case status = <-c.exited:
	case <-ctx.Done():
		res.Stopped = true
		if err := c.op(b, bg, "stop the plugin", func(ctx context.Context) error {
			return c.task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
		}); isStall(err) {
			return res, err
		} else if err != nil && !errdefs.IsNotFound(err) {
			b.log.Warn("kill sandbox", "id", c.id, "error", err)
		}
		select {
		case status = <-c.exited:
		case <-time.After(10 * time.Second):
			return res, fmt.Errorf("sandbox for %s did not stop within 10s of SIGKILL", spec.Plugin)
		}
	}
	res.Duration = time.Since(started)
	code, _, err := status.Result()
	if err != nil {
		return res, fmt.Errorf("sandbox for %s: containerd lost track of the plugin: %w", spec.Plugin, err)
	}
	// All output is in once the plugin's streams are drained; removing
	// the sandbox need not delay the result.
	c.task.IO().Wait()
	// The shim reports death by signal N as 128+N.
	if code > 128 && code < 160 {
		res.Signal = syscall.Signal(code - 128).String()
	} else {
		res.ExitCode = int(code)
	}
	if err := link.failed(); err != nil {
		return res, err
	}
	return res, nil
}

// writeLaunch writes the call's argv and environment for the launcher:
// NUL-terminated strings, readable by the sandbox's user.
func writeLaunch(call Call) error {
	launch := call.Launch()
	for name, list := range map[string][]string{"argv": launch.Argv, "env": launch.Env} {
		var buf bytes.Buffer
		for _, s := range list {
			if strings.IndexByte(s, 0) >= 0 {
				return fmt.Errorf("the call's %s holds a NUL byte", name)
			}
			buf.WriteString(s)
			buf.WriteByte(0)
		}
		if err := os.WriteFile(filepath.Join(call.LaunchDir, name), buf.Bytes(), 0o444); err != nil {
			return fmt.Errorf("write the call's %s: %w", name, err)
		}
	}
	return nil
}

// prepareCluster makes c's network namespace and the listener its
// gateway will be served on, and the kubeconfig file the call fills in.
func (b *Backend) prepareCluster(c *created) error {
	ns, err := netns.New(filepath.Dir(c.call.NetNS), c.id)
	if err != nil {
		return err
	}
	if ns.Path != c.call.NetNS {
		ns.Close()
		return fmt.Errorf("network namespace at %s, not %s", ns.Path, c.call.NetNS)
	}
	c.undo = append(c.undo, func() {
		if err := ns.Close(); err != nil {
			b.log.Warn("network namespace not removed", "id", c.id, "error", err)
		}
	})
	l, err := ns.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	c.listener = l
	c.undo = append(c.undo, func() { l.Close() })
	// The file is bind-mounted when the container is created; the call
	// writes it in place.
	f, err := os.OpenFile(c.call.Kubeconfig, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o400)
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = os.Chown(c.call.Kubeconfig, int(c.call.User), int(c.call.User))
	}
	if err != nil {
		return fmt.Errorf("the call's kubeconfig: %w", err)
	}
	return nil
}

// gatewayLink is the call's API gateway, served on its container's
// listener.
type gatewayLink struct {
	listener net.Listener
	served   chan struct{}
	serveErr error // valid once served is closed
}

// serveGateway serves the call's gateway in c's network namespace and
// writes the kubeconfig that names it.
func serveGateway(c *created, access *sandbox.ClusterAccess) (*gatewayLink, error) {
	kubeconfig, err := clientcmd.Write(*access.Kubeconfig(c.listener.Addr().String()))
	if err != nil {
		return nil, fmt.Errorf("the call's kubeconfig: %w", err)
	}
	f, err := os.OpenFile(c.call.Kubeconfig, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.Write(kubeconfig)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		return nil, fmt.Errorf("write the call's kubeconfig: %w", err)
	}
	link := &gatewayLink{listener: c.listener, served: make(chan struct{})}
	go func() {
		defer close(link.served)
		link.serveErr = access.Serve(c.listener)
	}()
	return link, nil
}

// stop closes the listener and waits for the gateway to end.
func (g *gatewayLink) stop() {
	if g == nil {
		return
	}
	g.listener.Close()
	<-g.served
}

// failed returns why the gateway stopped before the call closed it, if it
// did; Serve returns nil when its listener is closed, so nil is no failure.
func (g *gatewayLink) failed() error {
	if g == nil {
		return nil
	}
	select {
	case <-g.served:
		if g.serveErr != nil {
			return fmt.Errorf("the call's API gateway stopped: %w", g.serveErr)
		}
	default:
	}
	return nil
}

// lateStreams are a container's stdio, made when it is created and bound
// to the call's when the call starts it: no byte can flow before, as
// nothing runs in the container until then.
type lateStreams struct {
	stdin          *lateReader
	stdout, stderr *lateWriter
}

func newLateStreams() *lateStreams {
	return &lateStreams{stdin: &lateReader{bound: make(chan struct{})}, stdout: &lateWriter{}, stderr: &lateWriter{}}
}

// bind hands the call's streams in, once; nil stdin reads as empty.
func (s *lateStreams) bind(stdin io.Reader, stdout, stderr io.Writer) {
	s.stdin.once.Do(func() {
		s.stdout.w.Store(&stdout)
		s.stderr.w.Store(&stderr)
		s.stdin.r = orEmpty(stdin)
		close(s.stdin.bound)
	})
}

// lateReader blocks until its reader is bound.
type lateReader struct {
	once  sync.Once
	bound chan struct{}
	r     io.Reader // set before bound is closed
}

func (l *lateReader) Read(p []byte) (int, error) {
	<-l.bound
	return l.r.Read(p)
}

// lateWriter drops what is written before its writer is bound (nothing is,
// see lateStreams).
type lateWriter struct{ w atomic.Pointer[io.Writer] }

func (l *lateWriter) Write(p []byte) (int, error) {
	w := l.w.Load()
	if w == nil || *w == nil {
		return len(p), nil
	}
	return (*w).Write(p)
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return bytes.NewReader(nil)
	}
	return r
}

// fileIdentity tells whether a path still names the file a container
// bound: device, inode, size, and modification and change times.
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func identify(path string) (fileIdentity, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileIdentity{}, fmt.Errorf("plugin file: %w", err)
	}
	return fileIdentity{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, nil
}
