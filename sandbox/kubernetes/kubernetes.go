package kubernetes

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/ptr"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/internal/warmpool"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes/internal/launch"
)

// Config says which cluster runs the sandbox Pods and what each gets.
type Config struct {
	// REST is the sandbox cluster, with this server's credentials for it:
	// namespaced rights on pods, pods/exec and network policies, which
	// deploy/kubernetes-backend/role-patch.yaml lists (and its test proves
	// are all needed and enough).
	REST      *rest.Config
	Namespace string
	// Image is the sandbox image: the plugin sandbox's root filesystem
	// with kmcp-pod (`make images`).
	Image        string
	PullPolicy   corev1.PullPolicy
	RuntimeClass string
	// NodeName, when set, puts every Pod on that node without a scheduler.
	NodeName string
	User     int64
	Limits   container.Limits
	// GatewayListen is the address this server listens on for the Pods'
	// gateways ("" for every address); GatewayHost is the address the Pods
	// dial, this server's on the pod network.
	GatewayListen, GatewayHost string
	// WarmPool is how many Pods per plugin are made ahead of its calls,
	// each with the plugin loaded, for one call; 0 makes each when its
	// call comes.
	WarmPool int
	// Instance names this server among those sharing Namespace (replicas
	// of one Deployment, say); "" is the host's name. Sweep deletes, at
	// start, every Pod and NetworkPolicy an earlier server of the same
	// instance left there. Only the server may.
	Instance string
	Sweep    bool
	// StartTimeout bounds how long a Pod may take to run; 0 means
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// OperationTimeout bounds each request to the sandbox cluster; 0 means
	// DefaultOperationTimeout.
	OperationTimeout time.Duration
	Logger           hclog.Logger
}

// Defaults for Config's timeouts.
const (
	DefaultStartTimeout     = 2 * time.Minute
	DefaultOperationTimeout = 15 * time.Second
)

// Backend runs each plugin call as its own Pod of the sandbox cluster.
type Backend struct {
	cfg    Config
	log    hclog.Logger
	client kubernetes.Interface
	pool   *warmpool.Pool[poolKey, *prepared]
	// removals are the deletions still running after their call returned.
	removals sync.WaitGroup
}

// The client's own rate limit, unless the configuration sets one. A call
// makes about eight requests (its Pod and NetworkPolicy, a watch, execs,
// deletions, a warm Pod's refill); client-go's default of 5 a second, 10
// at once, made 8 calls in flight queue behind each other for seconds.
// The API server's priority and fairness still protects it.
const (
	clientQPS   = 100
	clientBurst = 300
)

// New checks the configuration, connects to the sandbox cluster and, for
// the server, deletes what an earlier one left.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	switch {
	case cfg.REST == nil:
		return nil, errors.New("no sandbox cluster configuration")
	case cfg.Namespace == "":
		return nil, errors.New("no namespace for the sandbox Pods (kubernetes_namespace)")
	case cfg.Image == "":
		return nil, errors.New("no sandbox image (kubernetes_image)")
	case cfg.GatewayHost == "" || net.ParseIP(cfg.GatewayHost) == nil:
		return nil, fmt.Errorf("kubernetes_gateway_host %q is not an IP address: the Pods dial it to reach their gateway", cfg.GatewayHost)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.OperationTimeout <= 0 {
		cfg.OperationTimeout = DefaultOperationTimeout
	}
	if cfg.REST.QPS == 0 && cfg.REST.RateLimiter == nil {
		cfg.REST = rest.CopyConfig(cfg.REST)
		cfg.REST.QPS, cfg.REST.Burst = clientQPS, clientBurst
	}
	client, err := kubernetes.NewForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("sandbox cluster: %w", err)
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, client: client}
	b.pool = warmpool.New(warmpool.Config[poolKey, *prepared]{Size: cfg.WarmPool, Make: b.warm,
		Discard: func(p *prepared) { b.discard(p) },
		Fresh:   func(_ poolKey, p *prepared) bool { return time.Since(p.created) < warmLife/2 },
		Failed: func(k poolKey, err error) {
			b.log.Debug("warm pod not made; calls take the cold path", "plugin", k.plugin, "error", err)
		}})
	opCtx, cancel := context.WithTimeout(ctx, cfg.OperationTimeout)
	defer cancel()
	if _, err := client.CoreV1().Pods(cfg.Namespace).List(opCtx, metav1.ListOptions{Limit: 1}); err != nil {
		return nil, fmt.Errorf("sandbox cluster %s, namespace %s: %w", cfg.REST.Host, cfg.Namespace, err)
	}
	if cfg.Sweep {
		if err := b.sweep(opCtx); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Name implements sandbox.Backend.
func (b *Backend) Name() string { return "kubernetes" }

// SharedNetwork implements sandbox.SharedNetwork: a pod network is shared,
// so each call's gateway asks for the call's capability.
func (b *Backend) SharedNetwork() bool { return true }

// Close deletes the warm Pods and waits for the deletions still running.
func (b *Backend) Close() error {
	b.pool.Close()
	b.removals.Wait()
	return nil
}

// Warm is how many warm Pods are ready.
func (b *Backend) Warm() int { return b.pool.Count() }

// Settle waits for the warm Pods being made.
func (b *Backend) Settle() { b.pool.Settle() }

// sweep deletes every Pod and NetworkPolicy of this instance's in the
// namespace.
func (b *Backend) sweep(ctx context.Context) error {
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy + "," + LabelInstance + "=" + b.cfg.instance()}
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	if err := b.client.CoreV1().Pods(b.cfg.Namespace).DeleteCollection(ctx, now, sel); err != nil {
		return fmt.Errorf("remove the sandbox Pods an earlier server left: %w", err)
	}
	if err := b.client.NetworkingV1().NetworkPolicies(b.cfg.Namespace).DeleteCollection(ctx, now, sel); err != nil {
		return fmt.Errorf("remove the network policies an earlier server left: %w", err)
	}
	return nil
}

// CallFor is the profile input of one call: the same for a run and for
// `profile show`.
func (cfg Config) CallFor(name, callID, plugin string, args, env []string, withCluster bool, port int, deadline time.Duration) Call {
	secs := int64((deadline + time.Second - 1) / time.Second)
	return Call{Name: name, CallID: callID, Plugin: plugin, Args: args, Env: env, WithCluster: withCluster, GatewayPort: port,
		DeadlineSeconds: max(secs, 1)}
}

// podName is the Pod of a run: its id in the lower case names need, and
// a suffix of its own, as ids need not be unique (discovery's help runs).
func podName(id string) string {
	b := make([]byte, 4)
	rand.Read(b)
	id = strings.Trim(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, id), "-")
	if len(id) > 40 {
		id = strings.TrimRight(id[:40], "-")
	}
	name := "kmcp-"
	if id != "" {
		name += id + "-"
	}
	return name + hex.EncodeToString(b)
}

// DeadlineMargin is what a Pod's activeDeadlineSeconds adds to its call's
// time: the Pod must outlive its call's own timeout, which reports it.
const DeadlineMargin = 30 * time.Second

// poolKey is what a Pod is made for: one plugin file at one digest, with
// or without a cluster (a gateway listener of its own).
type poolKey struct {
	plugin, sha256 string
	cluster        bool
}

// prepared is a Pod made for one call of its key, running and waiting;
// nothing in it is of the call yet but, when loaded, the plugin's bytes.
type prepared struct {
	key     poolKey
	objs    Objects
	pod     *corev1.Pod
	gw      *podGateway // nil without a cluster
	loaded  bool
	created time.Time
}

// warmLife is how long a warm Pod may wait for its call: its
// activeDeadlineSeconds, which its call shortens to the call's own.
const warmLife = time.Hour

// Run implements sandbox.Backend.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (res sandbox.Result, err error) {
	res = sandbox.Result{ExitCode: -1}
	if ctx.Err() != nil {
		res.Stopped = true
		return res, nil
	}
	key := poolKey{plugin: spec.Plugin, sha256: spec.SHA256, cluster: spec.Cluster != nil}
	if spec.KeepWarm {
		b.pool.Wanted(key)
		defer b.pool.Refill(key)
	}
	p, warm := b.pool.Take(key)
	if !warm {
		deadline := b.cfg.StartTimeout + spec.RunTimeout + DeadlineMargin
		if d, ok := ctx.Deadline(); ok {
			deadline = time.Until(d) + DeadlineMargin
		}
		if p, err = b.prepare(ctx, key, spec.ID, spec.ID, deadline, false); err != nil {
			if ctx.Err() != nil {
				res.Stopped = true
				return res, nil
			}
			return res, fmt.Errorf("start sandbox for %s: %w", spec.Plugin, err)
		}
	}
	defer func() {
		if discardErr := b.discard(p); discardErr != nil && err == nil {
			err = discardErr
		}
	}()
	res, err = b.start(ctx, p, spec)
	res.Warm = warm
	if res.Stopped {
		b.killAll(p)
	}
	return res, err
}

// killAll ends every process of a stopped call's Pod at once: deleting the
// Pod ends them only after the kubelet's minimum grace of 2 s, which a
// plugin ignoring SIGTERM would have to itself. The command is fixed: no
// word of the call is in it.
func (b *Backend) killAll(p *prepared) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.OperationTimeout)
	defer cancel()
	err := b.execIn(ctx, p.pod.Name, []string{"/bin/bash", "-c", "kill -KILL -1"}, nil, io.Discard, io.Discard)
	if err != nil {
		b.log.Debug("kill the processes of a stopped call's pod", "pod", p.pod.Name, "error", err)
	}
}

// prepare makes a Pod for a call of key: the gateway's listener when it
// reaches a cluster, the NetworkPolicy, the Pod, running; with load, the
// plugin's bytes in it too. What it made is undone when it fails.
// The Pod's name starts with name; callID is "" for a warm Pod, whose
// call is not known yet.
func (b *Backend) prepare(ctx context.Context, key poolKey, name, callID string, deadline time.Duration, load bool) (p *prepared, err error) {
	p = &prepared{key: key, created: time.Now()}
	if key.cluster {
		if p.gw, err = b.listenGateway(); err != nil {
			return nil, err
		}
	}
	call := b.cfg.CallFor(podName(name), callID, key.plugin, nil, nil, key.cluster, p.gw.port(), deadline)
	p.objs = b.cfg.Objects(call)
	made := p // the deferred undo needs it after p is returned as nil
	defer func() {
		if err != nil {
			b.discard(made)
		}
	}()
	if p.pod, err = b.create(ctx, p.objs); err != nil {
		return nil, err
	}
	p.gw.admit(p.pod.Status.PodIP)
	if load {
		f, size, err := b.openPlugin(key)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		h := b.cfg.Launch(call, key.sha256)
		h.Size = size
		var errOut bytes.Buffer
		if err := b.stream(ctx, p.pod.Name, launch.ModeLoad, b.stdin(h, io.LimitReader(f, size), nil), io.Discard, &errOut); err != nil {
			return nil, fmt.Errorf("load %s into pod %s: %w: %s", key.plugin, p.pod.Name, err, strings.TrimSpace(errOut.String()))
		}
		p.loaded = true
	}
	return p, nil
}

// warm makes a Pod for the pool, with its plugin loaded.
func (b *Backend) warm(ctx context.Context, key poolKey) (*prepared, error) {
	return b.prepare(ctx, key, "warm", "", warmLife, true)
}

func (b *Backend) openPlugin(key poolKey) (*os.File, int64, error) {
	f, err := os.Open(key.plugin)
	if err != nil {
		return nil, 0, fmt.Errorf("prepare %s: %w", key.plugin, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("prepare %s: %w", key.plugin, err)
	}
	return f, info.Size(), nil
}

// stdin is what one exec of kmcp-pod reads: h, then the plugin's bytes,
// then the plugin's own stdin.
func (b *Backend) stdin(h launch.Header, plugin, rest io.Reader) io.Reader {
	var head bytes.Buffer
	if err := launch.Write(&head, h); err != nil {
		return &failingReader{err}
	}
	in := []io.Reader{&head}
	if plugin != nil {
		in = append(in, plugin)
	}
	if rest != nil {
		in = append(in, rest)
	}
	return io.MultiReader(in...)
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// start hands the call to its Pod: the gateway serves, and kmcp-pod runs
// the plugin with the call's argv, environment and kubeconfig.
func (b *Backend) start(ctx context.Context, p *prepared, spec sandbox.Spec) (sandbox.Result, error) {
	res := sandbox.Result{ExitCode: -1}
	call := b.cfg.CallFor(p.pod.Name, spec.ID, spec.Plugin, spec.Args, spec.Env, spec.Cluster != nil, p.gw.port(), 0)
	h := b.cfg.Launch(call, spec.SHA256)
	if p.gw != nil {
		p.gw.serve(spec.Cluster)
		kubeconfig, err := clientcmd.Write(*spec.Cluster.Kubeconfig(p.gw.addr()))
		if err != nil {
			return res, fmt.Errorf("prepare %s: kubeconfig: %w", spec.Plugin, err)
		}
		h.Kubeconfig = kubeconfig
	}
	var plugin io.Reader
	if !p.loaded {
		f, size, err := b.openPlugin(p.key)
		if err != nil {
			return res, err
		}
		defer f.Close()
		h.Size, plugin = size, io.LimitReader(f, size)
	} else {
		// A warm Pod waited with a long deadline: from now on it is the
		// call's, which the Pod must not outlive.
		b.claim(ctx, p, spec.ID)
	}
	return b.exec(ctx, p.pod.Name, b.stdin(h, plugin, spec.Stdin), spec)
}

// claim names the call on a warm Pod and shortens its deadline to the
// call's, in the background: a warm call does not wait for it.
func (b *Backend) claim(ctx context.Context, p *prepared, callID string) {
	deadline := b.cfg.StartTimeout + DeadlineMargin
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d) + DeadlineMargin
	}
	secs := int64((time.Since(p.created) + deadline + time.Second - 1) / time.Second)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}},"spec":{"activeDeadlineSeconds":%d}}`, AnnotationCall, callID, secs)
	b.removals.Add(1)
	go func() {
		defer b.removals.Done()
		opCtx, cancel := context.WithTimeout(context.Background(), b.cfg.OperationTimeout)
		defer cancel()
		if _, err := b.client.CoreV1().Pods(b.cfg.Namespace).Patch(opCtx, p.pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil &&
			!apierrors.IsNotFound(err) {
			b.log.Warn("shorten a warm pod's deadline to its call's", "pod", p.pod.Name, "error", err)
		}
	}()
}

// exec runs the plugin in the running Pod, through kmcp-pod run, with
// stdin; its own run is bounded by spec.RunTimeout.
func (b *Backend) exec(ctx context.Context, name string, stdin io.Reader, spec sandbox.Spec) (sandbox.Result, error) {
	res := sandbox.Result{ExitCode: -1}
	runCtx := ctx
	if spec.RunTimeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, spec.RunTimeout)
		defer cancel()
	}
	stdout, stderr := spec.Stdout, spec.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	start := time.Now()
	err := b.stream(runCtx, name, launch.ModeRun, stdin, stdout, stderr)
	res.Duration = time.Since(start)
	var exitErr utilexec.ExitError
	switch {
	case runCtx.Err() != nil:
		res.Stopped = true
	case err == nil:
		res.ExitCode = 0
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitStatus()
	default:
		return res, fmt.Errorf("run %s in its sandbox: %w", spec.Plugin, err)
	}
	return res, nil
}

// stream execs kmcp-pod in mode in the Pod, until it ends or ctx does.
func (b *Backend) stream(ctx context.Context, name, mode string, stdin io.Reader, stdout, stderr io.Writer) error {
	return b.execIn(ctx, name, []string{launch.Program, mode}, stdin, stdout, stderr)
}

// execIn execs command in the Pod's container, with stdin when not nil.
func (b *Backend) execIn(ctx context.Context, name string, command []string, stdin io.Reader, stdout, stderr io.Writer) error {
	req := b.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(b.cfg.Namespace).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: ContainerName, Command: command,
			Stdin: stdin != nil, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	executor, err := b.executor(req.URL())
	if err != nil {
		return err
	}
	return executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// executor speaks the exec protocol as kubectl does: WebSocket first,
// SPDY where the cluster does not upgrade to it.
func (b *Backend) executor(u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(b.cfg.REST, "GET", u.String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(b.cfg.REST, "POST", u)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// create makes the call's NetworkPolicy, then its Pod, and waits until the
// Pod runs.
func (b *Backend) create(ctx context.Context, objs Objects) (*corev1.Pod, error) {
	ns := b.cfg.Namespace
	opCtx, cancel := context.WithTimeout(ctx, b.cfg.OperationTimeout)
	defer cancel()
	if _, err := b.client.NetworkingV1().NetworkPolicies(ns).Create(opCtx, objs.NetworkPolicy, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create network policy %s: %w", objs.NetworkPolicy.Name, err)
	}
	pod, err := b.client.CoreV1().Pods(ns).Create(opCtx, objs.Pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s: %w", objs.Pod.Name, err)
	}
	return b.waitRunning(ctx, pod)
}

// waitRunning watches the Pod until its container runs, and fails at once
// when it cannot (an image that is missing, a Pod that ended).
func (b *Backend) waitRunning(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	// From the create's resourceVersion: a watch without one can fail on
	// older etcd ("Too large resource version").
	w, err := b.client.CoreV1().Pods(b.cfg.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", pod.Name).String(), ResourceVersion: pod.ResourceVersion})
	if err != nil {
		return nil, fmt.Errorf("watch pod %s: %w", pod.Name, err)
	}
	defer w.Stop()
	for {
		if ok, err := running(pod); ok || err != nil {
			return pod, err
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return nil, fmt.Errorf("pod %s did not run within %s: %s", pod.Name, b.cfg.StartTimeout, waiting(pod))
			}
			return nil, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, fmt.Errorf("watch pod %s: closed", pod.Name)
			}
			switch ev.Type {
			case watch.Deleted:
				return nil, fmt.Errorf("pod %s was deleted before it ran", pod.Name)
			case watch.Error:
				return nil, fmt.Errorf("watch pod %s: %w", pod.Name, apierrors.FromObject(ev.Object))
			}
			if p, ok := ev.Object.(*corev1.Pod); ok {
				pod = p
			}
		}
	}
}

// running reports whether the Pod's container runs, or why it never will.
func running(pod *corev1.Pod) (bool, error) {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return false, fmt.Errorf("pod %s ended before the call: %s %s", pod.Name, pod.Status.Reason, pod.Status.Message)
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Running != nil && pod.Status.PodIP != "" {
			return true, nil
		}
		if w := s.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return false, fmt.Errorf("pod %s cannot run: %s: %s", pod.Name, w.Reason, w.Message)
			}
		}
		if t := s.State.Terminated; t != nil {
			return false, fmt.Errorf("pod %s ended before the call: %s, exit code %d", pod.Name, t.Reason, t.ExitCode)
		}
	}
	return false, nil
}

// waiting says what a Pod that does not run waits for.
func waiting(pod *corev1.Pod) string {
	for _, s := range pod.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil {
			return fmt.Sprintf("%s %s", w.Reason, w.Message)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return fmt.Sprintf("%s: %s", c.Type, c.Message)
		}
	}
	return "phase " + string(pod.Status.Phase)
}

// discard deletes a Pod and its NetworkPolicy at once (grace 0), whatever
// ctx its call had, and closes its gateway; the error is the gateway's, if
// it failed while serving.
func (b *Backend) discard(p *prepared) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.OperationTimeout)
	defer cancel()
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	if err := b.client.CoreV1().Pods(b.cfg.Namespace).Delete(ctx, p.objs.Pod.Name, now); err != nil && !apierrors.IsNotFound(err) {
		b.log.Warn("delete sandbox pod", "pod", p.objs.Pod.Name, "error", err)
	}
	if err := b.client.NetworkingV1().NetworkPolicies(b.cfg.Namespace).Delete(ctx, p.objs.NetworkPolicy.Name, now); err != nil && !apierrors.IsNotFound(err) {
		b.log.Warn("delete network policy", "name", p.objs.NetworkPolicy.Name, "error", err)
	}
	if p.gw == nil {
		return nil
	}
	if err := p.gw.close(); err != nil {
		return fmt.Errorf("the call's API gateway stopped: %w", err)
	}
	return nil
}
