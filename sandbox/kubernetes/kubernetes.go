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
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/utils/ptr"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes/internal/launch"
)

// Config says which cluster runs the sandbox Pods and what each gets.
type Config struct {
	// REST is the sandbox cluster, with this server's credentials for it:
	// namespaced rights to create, get, watch and delete pods, pods/exec
	// and network policies (deploy/kubernetes/ lists them).
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
	// Sweep deletes, at start, every Pod and NetworkPolicy of ours an
	// earlier server left in Namespace. Only the server may.
	Sweep bool
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
	// removals are the deletions still running after their call returned.
	removals sync.WaitGroup
}

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
	client, err := kubernetes.NewForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("sandbox cluster: %w", err)
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, client: client}
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

// Close waits for the deletions still running.
func (b *Backend) Close() error {
	b.removals.Wait()
	return nil
}

// sweep deletes every Pod and NetworkPolicy of ours in the namespace.
func (b *Backend) sweep(ctx context.Context) error {
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy}
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

// Run implements sandbox.Backend.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (res sandbox.Result, err error) {
	res = sandbox.Result{ExitCode: -1}
	if ctx.Err() != nil {
		res.Stopped = true
		return res, nil
	}
	plugin, err := os.Open(spec.Plugin)
	if err != nil {
		return res, fmt.Errorf("prepare %s: %w", spec.Plugin, err)
	}
	defer plugin.Close()
	info, err := plugin.Stat()
	if err != nil {
		return res, fmt.Errorf("prepare %s: %w", spec.Plugin, err)
	}

	var gw *podGateway
	if spec.Cluster != nil {
		if gw, err = b.listenGateway(spec.Cluster); err != nil {
			return res, fmt.Errorf("prepare %s: %w", spec.Plugin, err)
		}
		defer func() {
			if serveErr := gw.close(); serveErr != nil && err == nil {
				err = fmt.Errorf("the call's API gateway stopped: %w", serveErr)
			}
		}()
	}
	deadline := b.cfg.StartTimeout + spec.RunTimeout + DeadlineMargin
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d) + DeadlineMargin
	}
	call := b.cfg.CallFor(podName(spec.ID), spec.ID, spec.Plugin, spec.Args, spec.Env, spec.Cluster != nil, gw.port(), deadline)
	objs := b.cfg.Objects(call)
	defer b.remove(objs)
	pod, err := b.create(ctx, objs)
	if err != nil {
		if ctx.Err() != nil {
			res.Stopped = true
			return res, nil
		}
		return res, fmt.Errorf("start sandbox for %s: %w", spec.Plugin, err)
	}
	if gw != nil {
		gw.admit(pod.Status.PodIP)
		gw.serve()
	}

	header := b.cfg.Launch(call, spec.SHA256)
	header.Size = info.Size()
	if gw != nil {
		if header.Kubeconfig, err = clientcmd.Write(*spec.Cluster.Kubeconfig(gw.addr())); err != nil {
			return res, fmt.Errorf("prepare %s: kubeconfig: %w", spec.Plugin, err)
		}
	}
	var stdin bytes.Buffer
	if err := launch.Write(&stdin, header); err != nil {
		return res, fmt.Errorf("prepare %s: %w", spec.Plugin, err)
	}
	in := []io.Reader{&stdin, io.LimitReader(plugin, header.Size)}
	if spec.Stdin != nil {
		in = append(in, spec.Stdin)
	}
	return b.exec(ctx, pod.Name, io.MultiReader(in...), spec)
}

// exec runs the plugin in the running Pod, through kmcp-pod run, with
// stdin; its own run is bounded by spec.RunTimeout.
func (b *Backend) exec(ctx context.Context, name string, stdin io.Reader, spec sandbox.Spec) (sandbox.Result, error) {
	res := sandbox.Result{ExitCode: -1}
	req := b.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(b.cfg.Namespace).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: ContainerName, Command: []string{launch.Program, launch.ModeRun},
			Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	executor, err := b.executor(req.URL())
	if err != nil {
		return res, fmt.Errorf("start %s in its sandbox: %w", spec.Plugin, err)
	}
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
	err = executor.StreamWithContext(runCtx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
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

// remove deletes the call's Pod and NetworkPolicy, at once (grace 0),
// whatever ctx the call had: after a cancellation too.
func (b *Backend) remove(objs Objects) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.OperationTimeout)
	defer cancel()
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	if err := b.client.CoreV1().Pods(b.cfg.Namespace).Delete(ctx, objs.Pod.Name, now); err != nil && !apierrors.IsNotFound(err) {
		b.log.Warn("delete sandbox pod", "pod", objs.Pod.Name, "error", err)
	}
	if err := b.client.NetworkingV1().NetworkPolicies(b.cfg.Namespace).Delete(ctx, objs.NetworkPolicy.Name, now); err != nil && !apierrors.IsNotFound(err) {
		b.log.Warn("delete network policy", "name", objs.NetworkPolicy.Name, "error", err)
	}
}
