package runtime

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/metrics"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/krew"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// PluginInfo is a plugin as agents and operators see it: what discovery
// found, what policy says, and how it has been used. JSON field names follow
// the proposal's PluginInfo.
type PluginInfo struct {
	*discovery.Plugin
	LastUsed       *time.Time `json:"last_used"`
	ExecutionCount int        `json:"execution_count"`
	FailureCount   int        `json:"failure_count"`
	// TotalDurationMS is the time all its calls took together.
	TotalDurationMS int64  `json:"total_duration_ms"`
	Destructive     bool   `json:"destructive"`
	Allowed         bool   `json:"allowed"`
	PolicyReason    string `json:"policy_reason"`
	PolicyRule      string `json:"policy_rule"`
}

// Options are the parts a Runtime is made of, which the composition root
// (cmd, through internal/compose) builds and hands down.
type Options struct {
	Logger hclog.Logger
	// Policy decides which plugin may run where and what each API request
	// of a call may do. Required.
	Policy *policy.Policy
	// Backends run plugins, and discovery's --help, by the kind of plugin;
	// a kind without a backend is listed but never run. The runtime closes
	// them in Close.
	Backends sandbox.Backends
	// Dirs are the folders discovery searches, in order (discovery.SearchDirs).
	Dirs []string
	// CacheFile keeps plugin hashes and help across restarts; "" disables it.
	CacheFile string
	// Clusters are the clusters calls may target; nil means none.
	Clusters *clusters.Registry
	// Container is the container sandbox's configuration, for Profile:
	// `profile show` prints it whether or not containerd answers.
	Container container.Config
	// Wasm is the wasm sandbox's configuration, for Profile.
	Wasm wasm.Config
	// Kubernetes is the kubernetes sandbox's configuration, for Profile:
	// under backend "kubernetes" it prints the Pod a call gets.
	Kubernetes kubernetes.Config
	// Installer installs plugins with krew; nil turns installs off.
	Installer *krew.Installer
	// Metrics count calls, requests, installs and discoveries; nil counts
	// nothing.
	Metrics *metrics.Metrics
}

// Runtime knows the plugins, decides what may run and runs it.
type Runtime struct {
	cfg       *config.Config
	log       hclog.Logger
	policy    *policy.Policy
	backends  sandbox.Backends
	container container.Config
	wasm      wasm.Config
	kube      kubernetes.Config
	discovery *discovery.Manager
	clusters  *clusters.Registry
	slots     *slots
	audit     *auditLog
	installer *krew.Installer
	metrics   *metrics.Metrics

	// Calls in flight, and the shutdown that refuses new ones.
	callsMu      sync.Mutex
	calls        sync.WaitGroup
	shuttingDown bool
	// base ends every call in flight when a shutdown's grace is over.
	base        context.Context
	cancelCalls context.CancelCauseFunc

	closeOnce sync.Once
	closeErr  error

	mu    sync.Mutex
	stats map[string]*usage

	decisionsMu sync.Mutex
	decisions   map[policy.Plugin]policy.Decision // for any cluster; see Decide
}

// maxDecisions bounds what Decide remembers: plugins that come and go
// would otherwise grow it without end.
const maxDecisions = 1 << 14

type usage struct {
	lastUsed time.Time
	count    int
	failures int
	total    time.Duration
}

// New builds a Runtime from a loaded configuration and its parts. It runs
// nothing yet.
func New(cfg *config.Config, opts Options) (*Runtime, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if opts.Policy == nil {
		return nil, errors.New("runtime: Options.Policy is required")
	}
	reg := opts.Clusters
	if reg == nil {
		reg = clusters.Empty()
	}
	if err := checkRuntimeBinary(cfg, opts.Backends); err != nil {
		return nil, err
	}
	audit, err := openAudit(cfg.Audit.File, log.Named("audit"))
	if err != nil {
		return nil, err
	}
	r := &Runtime{cfg: cfg, log: log, policy: opts.Policy, backends: opts.Backends, container: opts.Container, wasm: opts.Wasm, kube: opts.Kubernetes,
		stats: map[string]*usage{}, clusters: reg, audit: audit, installer: opts.Installer, metrics: opts.Metrics,
		slots: newSlots(cfg.Plugins.MaxConcurrent, cfg.Plugins.MaxQueue, opts.Metrics.Waiting)}
	r.base, r.cancelCalls = context.WithCancelCause(context.Background())
	r.discovery = discovery.NewManager(discovery.Options{
		Dirs:      opts.Dirs,
		Backends:  opts.Backends,
		CacheFile: opts.CacheFile,
		Logger:    log.Named("discovery"),
		// Policy before any probe: nothing of a plugin that may not run
		// runs, not even its --help.
		MayRun: func(p *discovery.Plugin) (bool, string) {
			d := r.Decide(p, "")
			return d.Allowed, d.Reason
		},
	})
	return r, nil
}

// Close waits for the sandboxes of finished calls to be removed, releases
// the backends, and syncs and closes the audit file. Call it after
// Shutdown, so that no call is still writing.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() { r.closeErr = errors.Join(r.backends.Close(), r.audit.Close()) })
	return r.closeErr
}

// Discover finds the plugins again and returns what changed.
func (r *Runtime) Discover(ctx context.Context) ([]discovery.Event, error) {
	started := time.Now()
	events, err := r.discovery.Refresh(ctx)
	if err == nil && r.metrics != nil {
		allowed, refused := 0, 0
		for _, p := range r.discovery.List() {
			if r.Decide(p, "").Allowed {
				allowed++
			} else {
				refused++
			}
		}
		r.metrics.Discovered(time.Since(started), allowed, refused)
	}
	return events, err
}

// Subscribe calls f with every change discovery finds.
func (r *Runtime) Subscribe(f func([]discovery.Event)) { r.discovery.Subscribe(f) }

// RunDiscovery refreshes every refresh_interval while auto_discovery is on,
// until ctx ends.
func (r *Runtime) RunDiscovery(ctx context.Context) {
	if !r.cfg.Plugins.AutoDiscovery {
		return
	}
	t := time.NewTicker(r.cfg.Plugins.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.Discover(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("plugin refresh failed", "error", err)
			}
		}
	}
}

// Plugins lists every discovered plugin with its policy decision.
func (r *Runtime) Plugins() []PluginInfo {
	plugins := r.discovery.List()
	out := make([]PluginInfo, len(plugins))
	for i, p := range plugins {
		out[i] = r.info(p)
	}
	return out
}

// Plugin finds one plugin by any spelling of its name.
func (r *Runtime) Plugin(name string) (PluginInfo, error) {
	p, err := r.discovery.Get(name)
	if err != nil {
		return PluginInfo{}, err
	}
	return r.info(p), nil
}

// Clusters names the clusters calls may target.
func (r *Runtime) Clusters() []string { return r.clusters.Names() }

// DefaultCluster is the cluster of calls that name none, or "".
func (r *Runtime) DefaultCluster() string { return r.clusters.Default() }

// SubscribeClusters calls f after the names of the clusters or the default
// changed (a source such as Rancher refreshed).
func (r *Runtime) SubscribeClusters(f func()) { r.clusters.Subscribe(f) }

// ClusterSources reports each source of clusters beyond files, by name.
func (r *Runtime) ClusterSources() map[string]clusters.SourceStatus { return r.clusters.Sources() }

// Warnings are what the last discovery noticed.
func (r *Runtime) Warnings() []discovery.Warning { return r.discovery.Warnings() }

// Decide says whether a plugin may run on a cluster ("" for any). The
// answer for any cluster is remembered by name and digest: the policy does
// not change while the runtime lives, and every discovery and every listing
// asks it about every plugin.
func (r *Runtime) Decide(p *discovery.Plugin, cluster string) policy.Decision {
	pl := policy.Plugin{Name: p.Name, SHA256: p.SHA256}
	if cluster != "" {
		return r.policy.Decide(pl, cluster)
	}
	r.decisionsMu.Lock()
	d, ok := r.decisions[pl]
	r.decisionsMu.Unlock()
	if ok {
		return d
	}
	d = r.policy.Decide(pl, "")
	r.decisionsMu.Lock()
	if r.decisions == nil || len(r.decisions) >= maxDecisions {
		r.decisions = map[policy.Plugin]policy.Decision{}
	}
	r.decisions[pl] = d
	r.decisionsMu.Unlock()
	return d
}

func (r *Runtime) info(p *discovery.Plugin) PluginInfo {
	d := r.Decide(p, "")
	info := PluginInfo{Plugin: p, Destructive: d.Destructive, Allowed: d.Allowed, PolicyReason: d.Reason, PolicyRule: d.Rule}
	r.mu.Lock()
	if u := r.stats[p.Name]; u != nil {
		t := u.lastUsed
		info.LastUsed, info.ExecutionCount, info.FailureCount = &t, u.count, u.failures
		info.TotalDurationMS = u.total.Milliseconds()
	}
	r.mu.Unlock()
	return info
}
