package discovery

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// Options configures a Manager.
type Options struct {
	// Dirs are the folders searched, in order; see SearchDirs.
	Dirs []string
	// Backend runs plugins' --help. Nil means help is not run, and plugins
	// are listed without parameters.
	Backend sandbox.Backend
	// HelpTimeout bounds one --help run; 5s when zero.
	HelpTimeout time.Duration
	// HelpOutputLimit caps what one --help may print; 256 KiB when zero.
	HelpOutputLimit int
	// CacheFile keeps hashes and parsed help across restarts; "" keeps them in memory only.
	CacheFile string
	Logger    hclog.Logger
}

// EventType says how a plugin changed between two discoveries.
type EventType string

const (
	Added   EventType = "added"
	Removed EventType = "removed"
	Changed EventType = "changed"
)

// Event is one change found by a refresh.
type Event struct {
	Type   EventType `json:"type"`
	Plugin string    `json:"plugin"`
}

// Manager discovers plugins and keeps the current set.
type Manager struct {
	opts Options
	log  hclog.Logger

	refreshMu sync.Mutex // one refresh at a time

	mu          sync.RWMutex
	plugins     map[string]*Plugin
	order       []string
	warnings    []Warning
	refreshed   time.Time
	cache       map[string]*cacheEntry // by identity key
	subscribers []func([]Event)
}

// NewManager returns a Manager that has discovered nothing yet.
func NewManager(opts Options) *Manager {
	if opts.HelpTimeout == 0 {
		opts.HelpTimeout = 5 * time.Second
	}
	if opts.HelpOutputLimit == 0 {
		opts.HelpOutputLimit = 256 << 10
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Manager{opts: opts, log: log, plugins: map[string]*Plugin{}, cache: loadCache(opts.CacheFile)}
}

// Subscribe calls f with the changes of every refresh that finds some.
func (m *Manager) Subscribe(f func([]Event)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subscribers = append(m.subscribers, f)
}

// Refresh discovers the plugins again. Unchanged files cost a stat: their
// hash and help come from the cache. It returns what changed.
func (m *Manager) Refresh(ctx context.Context) ([]Event, error) {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()

	found, warnings := scan(m.opts.Dirs)
	var missing []*Plugin
	m.mu.RLock()
	for _, p := range found {
		if e := m.cache[p.identity.key()]; e == nil || m.stale(p, e) {
			missing = append(missing, p)
		}
	}
	m.mu.RUnlock()
	learnt := m.learn(ctx, missing)

	m.mu.Lock()
	for key, e := range learnt {
		m.cache[key] = e
	}
	next := make(map[string]*Plugin, len(found))
	order := make([]string, 0, len(found))
	for _, p := range found {
		e := m.cache[p.identity.key()]
		if e == nil {
			continue // its file went away while we read it
		}
		p.SHA256 = e.SHA256
		p.Description = e.Help.Description
		if e.Help.Parameters != nil {
			p.Parameters = e.Help.Parameters
		}
		p.HelpWarning = e.HelpWarning
		next[p.Name] = p
		order = append(order, p.Name)
	}
	sort.Strings(order)
	events := diff(m.plugins, next)
	m.plugins, m.order, m.warnings, m.refreshed = next, order, warnings, time.Now()
	if len(learnt) > 0 {
		m.prune()
	}
	subscribers := make([]func([]Event), len(m.subscribers))
	copy(subscribers, m.subscribers)
	var cacheCopy map[string]*cacheEntry
	if len(learnt) > 0 {
		cacheCopy = make(map[string]*cacheEntry, len(m.cache))
		for k, v := range m.cache {
			cacheCopy[k] = v
		}
	}
	m.mu.Unlock()

	if cacheCopy != nil {
		if err := saveCache(m.opts.CacheFile, cacheCopy); err != nil {
			m.log.Warn("plugin cache not saved", "error", err)
		}
	}
	if len(events) > 0 {
		m.log.Info("plugins changed", "events", len(events), "plugins", len(next))
		for _, f := range subscribers {
			f(events)
		}
	}
	return events, ctx.Err()
}

// stale reports whether a cached entry was made without the help the
// current backend could give.
func (m *Manager) stale(p *Plugin, e *cacheEntry) bool {
	return m.backendFor(p) != nil && e.Backend != m.opts.Backend.Name()
}

func (m *Manager) backendFor(p *Plugin) sandbox.Backend {
	if p.Kind != KindExec {
		return nil // the wasm backend arrives with its issue
	}
	return m.opts.Backend
}

// prune drops cache entries of files no discovered plugin has any more.
func (m *Manager) prune() {
	live := make(map[string]bool, len(m.plugins))
	for _, p := range m.plugins {
		live[p.identity.key()] = true
	}
	for k := range m.cache {
		if !live[k] {
			delete(m.cache, k)
		}
	}
}

// learn hashes new plugin files and runs their --help, a few at a time.
func (m *Manager) learn(ctx context.Context, plugins []*Plugin) map[string]*cacheEntry {
	out := make(map[string]*cacheEntry, len(plugins))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan *Plugin)
	for range min(4, len(plugins)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				e, err := m.learnOne(ctx, p)
				if err != nil {
					m.log.Warn("plugin skipped", "path", p.Path, "error", err)
					continue
				}
				mu.Lock()
				out[p.identity.key()] = e
				mu.Unlock()
			}
		}()
	}
	for _, p := range plugins {
		work <- p
	}
	close(work)
	wg.Wait()
	return out
}

func (m *Manager) learnOne(ctx context.Context, p *Plugin) (*cacheEntry, error) {
	sum, err := fileSHA256(p.ResolvedPath)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", p.Path, err)
	}
	e := &cacheEntry{SHA256: sum}
	backend := m.backendFor(p)
	switch {
	case backend == nil && p.Kind == KindWasm:
		e.HelpWarning = "help was not run: WebAssembly plugins need the wasm sandbox backend, which is not available yet"
	case backend == nil:
		e.HelpWarning = `help was not run: no sandbox backend is available (set [sandbox] backend = "none" to run plugins without a sandbox)`
	default:
		e.Backend = backend.Name()
		e.Help, e.HelpWarning = m.runHelp(ctx, backend, p)
	}
	return e, nil
}

// runHelp runs `plugin --help` in the sandbox with a short timeout and an
// output cap. A plugin whose help hangs, floods or crashes gets a warning
// and no parameters; it still runs with raw arguments.
func (m *Manager) runHelp(ctx context.Context, backend sandbox.Backend, p *Plugin) (helpparse.Help, string) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.HelpTimeout)
	defer cancel()
	out := sandbox.NewLimitedBuffer(m.opts.HelpOutputLimit)
	out.OnFull = cancel // a flood need not run until the timeout
	res, err := backend.Run(ctx, sandbox.Spec{
		ID:     "help",
		Plugin: p.ResolvedPath,
		Args:   []string{"--help"},
		// No Kubeconfig: help needs no cluster and gets none.
		Env:    []string{"LANG=C.UTF-8"},
		Stdout: out,
		Stderr: out,
	})
	switch {
	case err != nil:
		return helpparse.Help{}, fmt.Sprintf("help failed to run: %v", err)
	case out.Truncated() > 0:
		return helpparse.Help{}, fmt.Sprintf("help printed more than %d bytes", m.opts.HelpOutputLimit)
	case res.Stopped:
		return helpparse.Help{}, fmt.Sprintf("help did not finish within %s", m.opts.HelpTimeout)
	case res.Signal != "":
		return helpparse.Help{}, fmt.Sprintf("help crashed: %s", res.Describe())
	}
	help := helpparse.Parse(out.String())
	if help.Layout == "" && len(help.Parameters) == 0 {
		return help, fmt.Sprintf("help (%s) could not be parsed into parameters; pass raw arguments", res.Describe())
	}
	return help, ""
}

func diff(prev, next map[string]*Plugin) []Event {
	var events []Event
	for name, p := range next {
		old, ok := prev[name]
		switch {
		case !ok:
			events = append(events, Event{Added, name})
		case old.identity != p.identity || old.SHA256 != p.SHA256 || old.Path != p.Path:
			events = append(events, Event{Changed, name})
		}
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			events = append(events, Event{Removed, name})
		}
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Plugin < events[j].Plugin })
	return events
}

// List returns the current plugins by name. The caller may keep them: they
// are copies.
func (m *Manager) List() []*Plugin {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Plugin, 0, len(m.order))
	for _, name := range m.order {
		c := *m.plugins[name]
		out = append(out, &c)
	}
	return out
}

// Warnings returns what the last discovery noticed.
func (m *Manager) Warnings() []Warning {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]Warning(nil), m.warnings...)
}

// LastRefresh is when discovery last ran.
func (m *Manager) LastRefresh() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.refreshed
}

// Get finds a plugin by any of its spellings: "get_all", "get-all",
// "kubectl-get_all" or the command "foo bar".
func (m *Manager) Get(name string) (*Plugin, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	// Exact spellings first: the file's name, kubectl's command, the file name.
	for _, exact := range []func(*Plugin) bool{
		func(p *Plugin) bool { return p.Name == name },
		func(p *Plugin) bool { return p.Command == name },
		func(p *Plugin) bool { return "kubectl-"+p.Name == name },
	} {
		for _, n := range m.order {
			if p := m.plugins[n]; exact(p) {
				c := *p
				return &c, nil
			}
		}
	}
	want := normalize(name)
	var matches []*Plugin
	for _, n := range m.order {
		if normalize(n) == want {
			matches = append(matches, m.plugins[n])
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("plugin %q not found (%d plugins discovered; plugins_list shows them)", name, len(m.order))
	case 1:
		c := *matches[0]
		return &c, nil
	default:
		names := make([]string, len(matches))
		for i, p := range matches {
			names[i] = p.Name
		}
		return nil, fmt.Errorf("plugin name %q is ambiguous: it may mean %s; use the exact name", name, strings.Join(names, " or "))
	}
}

// Run refreshes every interval until ctx ends.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("plugin refresh failed", "error", err)
			}
		}
	}
}
