package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// pluginEnv is what every plugin gets besides what its backend sets.
var pluginEnv = []string{"LANG=C.UTF-8"}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

func (r *Runtime) execute(ctx context.Context, call Call) (*Result, error) {
	plugin, cluster, err := r.admit(call)
	if err != nil {
		r.log.Info("call refused", "plugin", call.Plugin, "cluster", call.Cluster, "reason", err)
		return nil, err
	}
	if err := r.limiter.acquire(ctx); err != nil {
		return nil, fmt.Errorf("%w: gave up waiting for one of %d call slots: %v", ErrRefused, r.cfg.Plugins.MaxConcurrent, err)
	}
	defer r.limiter.release()
	// The file may have been swapped while the call waited.
	if err := plugin.Verify(); err != nil {
		return nil, refused("%v", err)
	}

	res := &Result{
		CallID:    newCallID(),
		Plugin:    plugin.Name,
		Cluster:   clusterName(cluster),
		Timestamp: time.Now().UTC(),
		Sandbox:   r.backend.Name(),
	}
	log := r.log.With("call_id", res.CallID, "plugin", res.Plugin, "cluster", res.Cluster, "sandbox", res.Sandbox)

	runCtx, cancel := context.WithTimeout(ctx, r.cfg.Plugins.ExecutionTimeout)
	defer cancel()
	if call.Progress != nil {
		stop := startProgress(runCtx, call.Progress)
		defer stop()
	}
	stdout := sandbox.NewLimitedBuffer(r.cfg.Plugins.MaxOutput)
	stderr := sandbox.NewLimitedBuffer(r.cfg.Plugins.MaxOutput)
	spec := sandbox.Spec{
		ID:     res.CallID,
		Plugin: plugin.ResolvedPath,
		Args:   call.Args,
		Env:    pluginEnv,
		Stdout: stdout,
		Stderr: stderr,
	}
	var gw *gateway.Gateway
	var records recordList
	if cluster != nil {
		gw, err = r.gatewayFor(res.CallID, plugin.Name, cluster, &records)
		if err != nil {
			return nil, fmt.Errorf("start the API gateway of call %s: %w", res.CallID, err)
		}
		defer gw.Close()
		spec.Cluster = &sandbox.ClusterAccess{Serve: gw.Serve, Kubeconfig: gw.Kubeconfig}
	}
	if call.Stdin != "" {
		spec.Stdin = strings.NewReader(call.Stdin)
	}
	run, runErr := r.backend.Run(runCtx, spec)
	if gw != nil {
		gw.Close() // every request is audited once Close returns
	}
	res.APIRequests = records.all()
	res.Duration = time.Since(res.Timestamp)
	res.DurationMS = res.Duration.Milliseconds()
	res.Output, res.Error, res.ExitCode = stdout.String(), stderr.String(), run.ExitCode
	if dropped := stdout.Truncated() + stderr.Truncated(); dropped > 0 {
		res.Truncated = true
		res.Message = fmt.Sprintf("output truncated: %d bytes beyond the %d-byte cap per stream were dropped", dropped, r.cfg.Plugins.MaxOutput)
	}
	switch {
	case runErr != nil:
		res.Status, res.ExitCode = StatusFailed, -1
		res.Message = join(res.Message, fmt.Sprintf("the plugin could not run: %v", runErr))
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
	r.record(plugin.Name, res)
	r.audit.call(res, call.Args)
	log.Info("call finished", "status", res.Status, "exit_code", res.ExitCode, "duration_ms", res.DurationMS, "truncated", res.Truncated)
	return res, nil
}

// gatewayFor starts the call's API gateway: it holds the cluster's
// credentials, decides every request against the request policy, and
// audits each one.
func (r *Runtime) gatewayFor(callID, plugin string, cluster *clusters.Cluster, records *recordList) (*gateway.Gateway, error) {
	return gateway.New(gateway.Config{
		CallID:   callID,
		Plugin:   plugin,
		Cluster:  cluster.Name,
		Upstream: cluster.REST,
		Decide: func(req gateway.Request) gateway.Decision {
			d := r.policy.DecideRequest(plugin, cluster.Name, policy.Request(req))
			return gateway.Decision{Allowed: d.Allowed, Reason: d.Reason, Rule: d.Rule}
		},
		Audit: func(rec gateway.Record) {
			records.add(rec)
			r.audit.request(rec)
		},
		Logger: r.log.Named("gateway"),
	})
}

// recordList collects a call's audit records as the gateway emits them.
type recordList struct {
	mu      sync.Mutex
	records []gateway.Record
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
	if err := checkPluginName(call.Plugin); err != nil {
		return nil, nil, refused("%v", err)
	}
	if err := checkArgs(call.Args); err != nil {
		return nil, nil, refused("%v", err)
	}
	if len(call.Stdin) > MaxStdin {
		return nil, nil, refused("stdin is %d bytes; at most %d are accepted", len(call.Stdin), MaxStdin)
	}
	plugin, err := r.discovery.Get(call.Plugin)
	if err != nil {
		return nil, nil, refused("%v", err)
	}
	var cluster *clusters.Cluster
	if call.Cluster != "" || r.clusters.Default() != "" {
		if cluster, err = r.clusters.Get(call.Cluster); err != nil {
			return nil, nil, refused("%v", err)
		}
	}
	if d := r.Decide(plugin, clusterName(cluster)); !d.Allowed {
		return nil, nil, refused("%s (rule %s)", d.Reason, d.Rule)
	}
	switch {
	case plugin.Kind == discovery.KindWasm:
		return nil, nil, refused("plugin %s is a WebAssembly module, and the wasm sandbox backend is not available yet", plugin.Name)
	case r.backend == nil:
		return nil, nil, refused(`no sandbox backend is available to run plugins. Set [sandbox] backend = "none" in the configuration to run them as plain processes with this server's rights (no isolation)`)
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

func newCallID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}
