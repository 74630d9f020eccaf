package runtime

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// pluginEnv is what every plugin gets besides what its backend sets.
var pluginEnv = []string{"LANG=C.UTF-8"}

// refused wraps why a call was refused, keeping the cause for errors.Is.
func refused(cause error) error {
	return fmt.Errorf("%w: %w", ErrRefused, cause)
}

func (r *Runtime) execute(ctx context.Context, call Call) (*Result, error) {
	if err := r.beginCall(); err != nil {
		return nil, err
	}
	defer r.calls.Done()
	plugin, cluster, err := r.admit(call)
	if err != nil {
		r.log.Info("call refused", "plugin", call.Plugin, "cluster", call.Cluster, "reason", err)
		r.countRefusal(call, "")
		return nil, err
	}
	backend := r.backends.For(plugin.Kind == discovery.KindWasm)
	res := &Result{
		CallID:    newCallID(),
		Plugin:    plugin.Name,
		Cluster:   clusterName(cluster),
		Timestamp: time.Now().UTC(),
		Sandbox:   backend.Name(),
	}
	log := r.log.With("call_id", res.CallID, "plugin", res.Plugin, "cluster", res.Cluster, "sandbox", res.Sandbox)
	// A shutdown whose grace is over ends the call as a cancellation would.
	callCtx, cancelCall := context.WithCancelCause(ctx)
	defer cancelCall(nil)
	stopOnShutdown := context.AfterFunc(r.base, func() { cancelCall(context.Cause(r.base)) })
	defer stopOnShutdown()

	if err := r.slots.acquire(callCtx); err != nil {
		if errors.Is(err, errQueueFull) {
			r.countRefusal(call, res.Sandbox)
			return nil, refused(err)
		}
		// Cancelled while waiting: nothing ran, and the caller asked for it.
		res.Status, res.ExitCode = StatusCancelled, -1
		res.Message = r.finalMessage(fmt.Sprintf("cancelled while waiting for one of %d call slots; the plugin did not run", r.cfg.Plugins.MaxConcurrent))
		if err := r.audit.call(res, call.Args); err != nil { // audited, but not counted as a run
			auditFailed(res, err)
		}
		log.Info("call cancelled while it waited for a slot")
		r.metrics.CallDone(res.Plugin, res.Cluster, res.Sandbox, string(res.Status), 0)
		return res, nil
	}
	defer r.slots.release()
	r.metrics.Running(1)
	defer r.metrics.Running(-1)
	res.Timestamp = time.Now().UTC() // the call's time is the plugin's, not the queue's
	// The file may have been swapped or rewritten while the call waited.
	if err := plugin.Verify(); err != nil {
		return nil, refused(err)
	}
	path := plugin.ResolvedPath
	if r.policy.Pinned(plugin.Name) {
		checked, cleanup, err := r.checkPin(plugin, clusterName(cluster))
		if err != nil {
			return nil, err
		}
		defer cleanup()
		path = checked
	}

	runCtx, cancel := context.WithTimeout(callCtx, r.cfg.Plugins.ExecutionTimeout)
	defer cancel()
	if call.Progress != nil {
		stop := startProgress(runCtx, call.Progress)
		defer stop()
	}
	stdout := sandbox.NewLimitedBuffer(r.cfg.Plugins.MaxOutput)
	stderr := sandbox.NewLimitedBuffer(r.cfg.Plugins.MaxOutput)
	spec := sandbox.Spec{
		ID:       res.CallID,
		Plugin:   path,
		SHA256:   plugin.SHA256,
		Args:     call.Args,
		Env:      pluginEnv,
		Stdout:   stdout,
		Stderr:   stderr,
		KeepWarm: true,
	}
	var gw *gateway.Gateway
	var records recordList
	if cluster != nil {
		gw, err = r.gatewayFor(res.CallID, plugin.Name, cluster, &records, sharedNetwork(backend))
		if err != nil {
			return nil, fmt.Errorf("start the API gateway of call %s: %w", res.CallID, err)
		}
		defer gw.Close()
		spec.Cluster = &sandbox.ClusterAccess{Serve: gw.Serve, Handler: gw.Handler(), Kubeconfig: gw.Kubeconfig}
	}
	if call.Stdin != "" {
		spec.Stdin = strings.NewReader(call.Stdin)
	}
	log.Debug("running the plugin in its sandbox", "args", len(call.Args))
	runStarted := time.Now()
	run, runErr := backend.Run(runCtx, spec)
	if runErr == nil {
		r.metrics.SandboxStart(res.Sandbox, run.Warm, time.Since(runStarted)-run.Duration)
	}
	if gw != nil {
		gw.Close() // every request is audited once Close returns
	}
	res.APIRequests = records.all()
	res.Duration = time.Since(res.Timestamp)
	res.DurationMS = res.Duration.Milliseconds()
	res.Output, res.Error, res.ExitCode = stdout.String(), stderr.String(), run.ExitCode
	res.Warm = run.Warm
	if dropped := stdout.Truncated() + stderr.Truncated(); dropped > 0 {
		res.Truncated = true
		res.Message = fmt.Sprintf("output truncated: %d bytes beyond the %d-byte cap per stream were dropped", dropped, r.cfg.Plugins.MaxOutput)
	}
	if n, why := notAudited(res.APIRequests); n > 0 {
		res.Message = join(res.Message, fmt.Sprintf("API requests not forwarded because they could not be audited: %d (%s)", n, why))
	}
	if n, why := unanswered(res.APIRequests); n > 0 {
		res.Message = join(res.Message, fmt.Sprintf("API requests that did not complete: %d (%s)", n, why))
	}
	switch {
	case runErr != nil:
		res.Status, res.ExitCode = StatusFailed, -1
		res.Message = join(res.Message, fmt.Sprintf("the plugin could not run: %v", runErr))
	case run.Stopped && r.base.Err() != nil && ctx.Err() == nil:
		res.Status = StatusCancelled
		res.Message = join(res.Message, fmt.Sprintf("cancelled: the server is shutting down and the call outlasted its grace period (server.shutdown_grace, %s); the plugin and everything it started were killed", r.cfg.Server.ShutdownGrace))
	case run.Stopped && ctx.Err() != nil:
		res.Status = StatusCancelled
		res.Message = join(res.Message, "cancelled by the caller; the plugin and everything it started were killed")
	case run.Stopped:
		res.Status = StatusTimeout
		res.Message = join(res.Message, fmt.Sprintf("timed out after %s (execution_timeout); the plugin and everything it started were killed", r.cfg.Plugins.ExecutionTimeout))
	case run.Signal != "":
		res.Status = StatusKilled
		res.Message = join(res.Message, "the plugin was "+run.Describe())
	case run.ExitCode != 0:
		res.Status = StatusFailed
		res.Message = join(res.Message, fmt.Sprintf("the plugin exited with code %d", run.ExitCode))
	default:
		res.Status = StatusOK
	}
	if res.Status != StatusCancelled || r.base.Err() == nil {
		res.Message = r.finalMessage(res.Message)
	}
	if err := records.auditErr(); err != nil {
		auditFailed(res, err)
	}
	return r.finish(res, call, log), nil
}

// auditFailed makes a call whose audit records are not all on disk a
// failure that says so, never a silent success; its unaudited output is
// withheld (the server's log holds the records that were not written).
func auditFailed(res *Result, err error) {
	res.Status, res.Output, res.Error = StatusFailed, "", ""
	msg := fmt.Sprintf("%v; the plugin's output is withheld", err)
	if res.Message != "" {
		msg += "; " + res.Message
	}
	res.Message = msg
}

// unanswered counts the allowed requests that failed on the way to or
// from the cluster (down, stalled, cut short, garbage), and says why the
// first one did.
func unanswered(records []gateway.Record) (n int, why string) {
	for _, rec := range records {
		if rec.Decision == gateway.Allow && rec.Reason != "" {
			if n == 0 {
				why = rec.Reason
			}
			n++
		}
	}
	return n, why
}

// notAudited counts the requests the gateway refused for want of an audit
// record, and says why the first one was.
func notAudited(records []gateway.Record) (n int, why string) {
	for _, rec := range records {
		if rec.Rule == gateway.RuleAuditUnavailable {
			if n == 0 {
				why = rec.Reason
			}
			n++
		}
	}
	return n, why
}

// finalMessage adds, during a shutdown, that the server is shutting down.
func (r *Runtime) finalMessage(msg string) string {
	if r.isShuttingDown() {
		return join(msg, shutdownMessage+"; this result was delivered before it stopped")
	}
	return msg
}

// finish records and audits a call that reached the point of running.
func (r *Runtime) finish(res *Result, call Call, log hclog.Logger) *Result {
	r.record(res.Plugin, res)
	r.metrics.CallDone(res.Plugin, res.Cluster, res.Sandbox, string(res.Status), res.Duration)
	if err := r.audit.call(res, call.Args); err != nil {
		auditFailed(res, err)
	}
	log.Info("call finished", "status", res.Status, "exit_code", res.ExitCode, "duration_ms", res.DurationMS, "truncated", res.Truncated)
	return res
}

// checkPin copies a pinned plugin's file into a folder of the call's own
// while hashing it, and decides again on that digest: the bytes that run
// are the bytes that were checked, whatever happens to the file meanwhile.
// cleanup removes the copy.
func (r *Runtime) checkPin(plugin *discovery.Plugin, cluster string) (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "kmcp-pinned-")
	if err != nil {
		return "", nil, fmt.Errorf("check the pin of %s: %w", plugin.Name, err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	// The copy keeps the file's name: sandboxes mount it as /plugin/<name>.
	path = filepath.Join(dir, filepath.Base(plugin.ResolvedPath))
	sum, err := copyHashed(plugin.ResolvedPath, path)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("check the pin of %s: %w", plugin.Name, err)
	}
	if d := r.policy.Decide(policy.Plugin{Name: plugin.Name, SHA256: sum}, cluster); !d.Allowed {
		cleanup()
		return "", nil, refused(fmt.Errorf("%s (rule %s)", d.Reason, d.Rule))
	}
	return path, cleanup, nil
}

// copyHashed copies src to dst (read and execute for all, written by none)
// and returns the hex sha256 of what it wrote.
func copyHashed(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o555)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// gatewayFor starts the call's API gateway: it holds the cluster's
// credentials, decides every request against the request policy, and
// audits each one.
func (r *Runtime) gatewayFor(callID, plugin string, cluster *clusters.Cluster, records *recordList, withCapability bool) (*gateway.Gateway, error) {
	var capability string
	if withCapability {
		b := make([]byte, 32)
		rand.Read(b)
		capability = hex.EncodeToString(b)
	}
	return gateway.New(gateway.Config{
		CallID:     callID,
		Capability: capability,
		Plugin:     plugin,
		Cluster:    cluster.Name,
		Upstream:   cluster.REST,
		Decide: func(req gateway.Request) gateway.Decision {
			return r.policy.DecideRequest(plugin, cluster.Name, req)
		},
		Audit: func(rec gateway.Record) {
			records.add(rec)
			r.metrics.Request(rec.Verb, rec.Resource, rec.Decision)
			if err := r.audit.request(rec); err != nil {
				records.fail(err)
			}
		},
		AuditReady: r.audit.ready,
		Logger:     r.log.Named("gateway"),
	})
}

// checkRuntimeBinary refuses to start the container sandbox with a
// sandbox.runtime_binary that is not an executable file: every call would
// fail, late and in containerd's words.
func checkRuntimeBinary(cfg *config.Config, backends sandbox.Backends) error {
	bin := cfg.Sandbox.RuntimeBinary
	if bin == "" || backends.Native == nil || backends.Native.Name() != "container" {
		return nil
	}
	st, err := os.Stat(bin)
	switch {
	case err != nil:
		return fmt.Errorf("sandbox.runtime_binary: the OCI runtime %w", err)
	case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("sandbox.runtime_binary: the OCI runtime %s is not an executable file", bin)
	}
	return nil
}

// recordList collects a call's audit records as the gateway emits them.
type recordList struct {
	mu      sync.Mutex
	records []gateway.Record
	err     error // the first record that could not be written
}

func (l *recordList) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
}

func (l *recordList) auditErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *recordList) add(rec gateway.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, rec)
}

func (l *recordList) all() []gateway.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]gateway.Record{}, l.records...)
}

// admit decides, before anything runs, whether the call may run and where.
func (r *Runtime) admit(call Call) (*discovery.Plugin, *clusters.Cluster, error) {
	if err := pluginname.Check(call.Plugin); err != nil {
		return nil, nil, refused(err)
	}
	if err := checkArgs(call.Args); err != nil {
		return nil, nil, refused(err)
	}
	if len(call.Stdin) > MaxStdin {
		return nil, nil, refused(fmt.Errorf("stdin is %d bytes; at most %d are accepted", len(call.Stdin), MaxStdin))
	}
	plugin, err := r.discovery.Get(call.Plugin)
	if err != nil {
		return nil, nil, refused(err)
	}
	var cluster *clusters.Cluster
	if call.Cluster != "" || r.clusters.Default() != "" {
		if cluster, err = r.clusters.Get(call.Cluster); err != nil {
			return nil, nil, refused(err)
		}
	}
	if d := r.Decide(plugin, clusterName(cluster)); !d.Allowed {
		return nil, nil, refused(fmt.Errorf("%s (rule %s)", d.Reason, d.Rule))
	}
	switch wasm := plugin.Kind == discovery.KindWasm; {
	case r.backends.For(wasm) == nil && wasm:
		return nil, nil, refused(fmt.Errorf("plugin %s is a WebAssembly module, and no wasm sandbox backend is available", plugin.Name))
	case r.backends.For(wasm) == nil:
		return nil, nil, refused(errors.New(`no sandbox backend is available to run plugins. Set [sandbox] backend = "none" in the configuration to run them as plain processes with this server's rights (no isolation)`))
	}
	return plugin, cluster, nil
}

func (r *Runtime) record(name string, res *Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.stats[name]
	if u == nil {
		u = &usage{}
		r.stats[name] = u
	}
	u.lastUsed, u.total = res.Timestamp, u.total+res.Duration
	u.count++
	if res.Status != StatusOK {
		u.failures++
	}
}

// startProgress calls report about once a second until stopped.
func startProgress(ctx context.Context, report func(time.Duration)) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-t.C:
				report(time.Since(start))
			}
		}
	}()
	return func() { close(done) }
}

func clusterName(c *clusters.Cluster) string {
	if c == nil {
		return ""
	}
	return c.Name
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// sharedNetwork reports whether b's plugins reach their gateway over a
// network others share, so the gateway must ask for the call's capability.
func sharedNetwork(b sandbox.Backend) bool {
	s, ok := b.(sandbox.SharedNetwork)
	return ok && s.SharedNetwork()
}

func newCallID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}

// countRefusal counts a call refused before it ran. Names agents made up
// are not labels: only a discovered plugin and a known cluster are.
func (r *Runtime) countRefusal(call Call, backend string) {
	if r.metrics == nil {
		return
	}
	plugin, cluster := "", ""
	if p, err := r.discovery.Get(call.Plugin); err == nil {
		plugin = p.Name
	}
	if c, err := r.clusters.Get(call.Cluster); err == nil {
		cluster = c.Name
	}
	r.metrics.CallDone(plugin, cluster, backend, "refused", 0)
}
