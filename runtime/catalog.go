package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
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

// Options are what a Runtime needs besides its configuration.
type Options struct {
	Logger hclog.Logger
	// PathEnv is the PATH searched first, as kubectl searches it.
	PathEnv string
	// KrewRoot is $KREW_ROOT; "" means ~/.krew.
	KrewRoot string
	// CacheFile keeps plugin hashes and help across restarts; "" disables it.
	CacheFile string
	// Clusters are the clusters calls may target; nil means none.
	Clusters *clusters.Registry
	// Server marks the one long-running server, which owns the sandboxes
	// and removes what an earlier one left; commands run beside it do not.
	Server bool
}

// DefaultCacheFile is where the plugin cache lives unless told otherwise.
func DefaultCacheFile() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "kubernetes-mcp-server", "plugins-cache.json")
}

// Runtime knows the plugins, decides what may run and (with a later issue)
// runs them.
type Runtime struct {
	cfg       *config.Config
	log       hclog.Logger
	policy    *policy.Policy
	backend   sandbox.Backend
	discovery *discovery.Manager
	clusters  *clusters.Registry
	limiter   *limiter
	audit     *auditLog

	mu    sync.Mutex
	stats map[string]*usage
}

type usage struct {
	lastUsed time.Time
	count    int
	failures int
	total    time.Duration
}

// New builds a Runtime from a loaded configuration. It runs nothing yet.
func New(cfg *config.Config, opts Options) (*Runtime, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	pol, err := policy.New(policy.Rules{
		Allowed:        cfg.Plugins.AllowedPlugins,
		Blocked:        cfg.Plugins.BlockedPlugins,
		AllowAny:       cfg.Plugins.AllowAnyPlugin,
		ClusterPlugins: cfg.Plugins.ClusterPlugins,
		Destructive:    cfg.Plugins.DestructivePatterns,
		ReadOnly:       cfg.Plugins.ReadOnly,
		Pins:           cfg.Plugins.Pins,
		Requests:       requestRules(cfg.Plugins.Rules),
	})
	if err != nil {
		return nil, fmt.Errorf("plugin policy: %w", err)
	}
	backend, err := selectBackend(context.Background(), cfg, pluginPath(cfg.Plugins.KubectlPath, opts.PathEnv), opts.Server, log)
	if err != nil {
		return nil, err
	}
	if backend != nil && backend.Name() == "none" {
		log.Warn(`sandbox backend is "none": plugins run as plain processes with this server's own rights, files and network`)
	}
	reg := opts.Clusters
	if reg == nil {
		reg = clusters.Empty()
	}
	audit, err := openAudit(cfg.Audit.File, log.Named("audit"))
	if err != nil {
		return nil, err
	}
	r := &Runtime{cfg: cfg, log: log, policy: pol, backend: backend, stats: map[string]*usage{},
		clusters: reg, limiter: newLimiter(cfg.Plugins.MaxConcurrent), audit: audit}
	r.discovery = discovery.NewManager(discovery.Options{
		Dirs:      discovery.SearchDirs(opts.PathEnv, cfg.Plugins.PluginPaths, opts.KrewRoot),
		Backend:   backend,
		CacheFile: opts.CacheFile,
		Logger:    log.Named("discovery"),
	})
	return r, nil
}

// requestRules maps [[plugins.rules]] to policy's request rules.
func requestRules(rules []config.Rule) []policy.RequestRule {
	out := make([]policy.RequestRule, len(rules))
	for i, r := range rules {
		out[i] = policy.RequestRule{Name: r.Name, Plugins: r.Plugins, Clusters: r.Clusters, Verbs: r.Verbs, Resources: r.Resources, Namespaces: r.Namespaces}
	}
	return out
}

// pluginPath is the PATH a plugin runs with: the folder of kubectl_path
// when that is a path, the server's PATH, then the standard folders, so
// script plugins find kubectl and the usual tools.
func pluginPath(kubectl, pathEnv string) string {
	dirs := filepath.SplitList(pathEnv)
	if filepath.IsAbs(kubectl) {
		dirs = append([]string{filepath.Dir(kubectl)}, dirs...)
	}
	dirs = append(dirs, "/usr/local/bin", "/usr/bin", "/bin")
	var out []string
	for _, d := range dirs {
		if d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return strings.Join(out, string(filepath.ListSeparator))
}

// containerConfig is the container sandbox the configuration describes.
func containerConfig(cfg *config.Config, log hclog.Logger) container.Config {
	s := cfg.Sandbox
	rootfs := s.Rootfs
	if rootfs == "" {
		rootfs = images.DefaultRootfs()
	}
	return container.Config{
		Address:       s.ContainerdAddress,
		Namespace:     s.ContainerdNamespace,
		Runtime:       s.Runtime,
		RuntimeBinary: s.RuntimeBinary,
		Rootfs:        rootfs,
		StateDir:      s.StateDir,
		User:          uint32(s.User),
		Limits: container.Limits{
			MemoryMiB: int64(s.MemoryMiB), Pids: int64(s.PidsLimit), CPUMillicores: int64(s.CPUMillicores),
			NoFile: uint64(s.NoFileLimit), TmpMiB: int64(s.TmpMiB),
		},
		Logger: log.Named("container"),
	}
}

// selectBackend picks the sandbox backend the configuration asks for.
// "container" must work or the server does not start; "auto" uses it when
// it works and otherwise runs nothing, saying why.
func selectBackend(ctx context.Context, cfg *config.Config, pathEnv string, server bool, log hclog.Logger) (sandbox.Backend, error) {
	switch cfg.Sandbox.Backend {
	case "none":
		return sandbox.None{PathEnv: pathEnv}, nil
	case "container", "auto":
		ccfg := containerConfig(cfg, log)
		ccfg.Sweep = server
		b, err := container.New(ctx, ccfg)
		if err == nil {
			return b, nil
		}
		if cfg.Sandbox.Backend == "container" {
			return nil, fmt.Errorf("sandbox backend container: %w", err)
		}
		log.Warn("no container sandbox available; plugins will not run", "reason", err)
		return nil, nil
	default:
		return nil, fmt.Errorf("sandbox backend %q is not available", cfg.Sandbox.Backend)
	}
}

// Close waits for the sandboxes of finished calls to be removed and
// releases the backend.
func (r *Runtime) Close() error {
	var err error
	if c, ok := r.backend.(io.Closer); ok {
		err = c.Close()
	}
	return errors.Join(err, r.audit.Close())
}

// Backend names the sandbox backend plugins run in, or "" when none is available.
func (r *Runtime) Backend() string {
	if r.backend == nil {
		return ""
	}
	return r.backend.Name()
}

// Discover finds the plugins again and returns what changed.
func (r *Runtime) Discover(ctx context.Context) ([]discovery.Event, error) {
	return r.discovery.Refresh(ctx)
}

// Subscribe calls f with every change discovery finds.
func (r *Runtime) Subscribe(f func([]discovery.Event)) { r.discovery.Subscribe(f) }

// RunDiscovery refreshes every refresh_interval while auto_discovery is on,
// until ctx ends.
func (r *Runtime) RunDiscovery(ctx context.Context) {
	if r.cfg.Plugins.AutoDiscovery {
		r.discovery.Run(ctx, r.cfg.Plugins.RefreshInterval)
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

// Warnings are what the last discovery noticed.
func (r *Runtime) Warnings() []discovery.Warning { return r.discovery.Warnings() }

// Decide says whether a plugin may run on a cluster ("" for any).
func (r *Runtime) Decide(p *discovery.Plugin, cluster string) policy.Decision {
	return r.policy.Decide(policy.Plugin{Name: p.Name, SHA256: p.SHA256}, cluster)
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
