package discovery

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// Options configures a Manager.
type Options struct {
	// Dirs are the folders searched, in order; see SearchDirs.
	Dirs []string
	// Backends run plugins' --help, each plugin in the backend of its
	// kind. A plugin whose kind has no backend is listed without
	// parameters, and nothing of it runs.
	Backends sandbox.Backends
	// MayRun says whether policy lets a plugin run at all, and why not.
	// Discovery runs nothing of a plugin it refuses, not even --help: such
	// plugins are listed with the reason and no parameters. Nil allows all.
	MayRun func(p *Plugin) (ok bool, reason string)
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

	// cacheLoaded is closed once cache holds what the cache file had: it
	// is read while the first refresh lists the folders.
	cacheLoaded chan struct{}

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
	m := &Manager{opts: opts, log: log, plugins: map[string]*Plugin{}, cacheLoaded: make(chan struct{})}
	go func() {
		m.cache = loadCache(opts.CacheFile)
		close(m.cacheLoaded)
	}()
	return m
}

// Subscribe calls f with the changes of every refresh that finds some.
func (m *Manager) Subscribe(f func([]Event)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subscribers = append(m.subscribers, f)
}

// Refresh discovers the plugins again: find the files, hash the new ones,
// ask policy, and only then run the --help of plugins policy lets run.
// Unchanged files cost a stat: their hash and help come from the cache. It
// returns what changed.
func (m *Manager) Refresh(ctx context.Context) ([]Event, error) {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()

	found, warnings := scan(m.opts.Dirs)
	<-m.cacheLoaded
	var unhashed []*Plugin
	m.mu.RLock()
	for _, p := range found {
		if m.cache[p.cacheKey] == nil {
			unhashed = append(unhashed, p)
		}
	}
	m.mu.RUnlock()
	learnt := m.hash(unhashed)

	// Policy decides on the digest, before anything of the plugin runs.
	var probe, prepare []*Plugin
	refused := map[string]string{}
	m.mu.RLock()
	for _, p := range found {
		e := learnt[p.cacheKey]
		if e == nil {
			e = m.cache[p.cacheKey]
		}
		if e == nil {
			continue // its file went away while we read it
		}
		p.SHA256 = e.SHA256
		if ok, reason := m.mayRun(p); !ok {
			refused[p.Name] = reason
			continue
		}
		b := m.backendFor(p)
		if _, ok := b.(sandbox.Preparer); ok {
			prepare = append(prepare, p)
		}
		if b != nil && e.Backend != b.Name() {
			probe = append(probe, p)
		}
	}
	m.mu.RUnlock()
	unfit := m.prepare(ctx, prepare)
	probe = slices.DeleteFunc(probe, func(p *Plugin) bool { return unfit[p.cacheKey] != "" })
	helped, notes := m.probe(ctx, probe)

	m.mu.Lock()
	for key, e := range learnt {
		m.cache[key] = e
	}
	for key, e := range helped {
		m.cache[key] = e
	}
	next := make(map[string]*Plugin, len(found))
	order := make([]string, 0, len(found))
	for _, p := range found {
		e := m.cache[p.cacheKey]
		if e == nil {
			continue
		}
		p.SHA256 = e.SHA256
		backend := m.backendFor(p)
		switch reason, isRefused := refused[p.Name]; {
		case isRefused:
			p.HelpWarning = "help was not run: policy does not let this plugin run (" + reason + ")"
		case unfit[p.cacheKey] != "":
			p.HelpWarning = "this plugin cannot run: " + unfit[p.cacheKey]
		case backend == nil && p.Kind == KindWasm:
			p.HelpWarning = "help was not run: WebAssembly plugins need the wasm sandbox backend, which is not available"
		case backend == nil:
			p.HelpWarning = `help was not run: no sandbox backend is available (set [sandbox] backend = "none" to run plugins without a sandbox)`
		case e.Backend == backend.Name():
			p.Description = e.Help.Description
			if e.Help.Parameters != nil {
				p.Parameters = e.Help.Parameters
			}
			p.HelpWarning = e.HelpWarning
		case notes[p.cacheKey] != "":
			p.HelpWarning = notes[p.cacheKey]
		default:
			p.HelpWarning = "help has not run yet; it runs on the next discovery"
		}
		next[p.Name] = p
		order = append(order, p.Name)
	}
	sort.Strings(order)
	gone := goneFiles(m.plugins, next)
	events := diff(m.plugins, next)
	m.plugins, m.order, m.warnings, m.refreshed = next, order, warnings, time.Now()
	changedCache := len(learnt) > 0 || len(helped) > 0
	if changedCache {
		m.prune()
	}
	subscribers := make([]func([]Event), len(m.subscribers))
	copy(subscribers, m.subscribers)
	var cacheCopy map[string]*cacheEntry
	if changedCache {
		cacheCopy = make(map[string]*cacheEntry, len(m.cache))
		for k, v := range m.cache {
			cacheCopy[k] = v
		}
	}
	m.mu.Unlock()

	for _, p := range gone {
		if b, ok := m.backendFor(p).(sandbox.Preparer); ok {
			b.Forget(p.ResolvedPath)
		}
	}
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

func (m *Manager) mayRun(p *Plugin) (bool, string) {
	if m.opts.MayRun == nil {
		return true, ""
	}
	return m.opts.MayRun(p)
}

func (m *Manager) backendFor(p *Plugin) sandbox.Backend {
	return m.opts.Backends.For(p.Kind == KindWasm)
}

// prune drops cache entries of files no discovered plugin has any more.
func (m *Manager) prune() {
	live := make(map[string]bool, len(m.plugins))
	for _, p := range m.plugins {
		live[p.cacheKey] = true
	}
	for k := range m.cache {
		if !live[k] {
			delete(m.cache, k)
		}
	}
}

// hash reads new plugin files for their digest. Reading runs nothing.
func (m *Manager) hash(plugins []*Plugin) map[string]*cacheEntry {
	out := make(map[string]*cacheEntry, len(plugins))
	var mu sync.Mutex
	forEach(plugins, func(p *Plugin) {
		sum, err := FileSHA256(p.ResolvedPath)
		if err != nil {
			m.log.Warn("plugin skipped: its file cannot be read", "path", p.Path, "error", err)
			return
		}
		mu.Lock()
		out[p.cacheKey] = &cacheEntry{SHA256: sum}
		mu.Unlock()
	})
	return out
}

// prepare has the backends of plugins do their work ahead of the first run
// (the wasm backend compiles modules), a few at a time, and returns why
// those that cannot run cannot. A cancelled discovery leaves the rest to
// their first run.
func (m *Manager) prepare(ctx context.Context, plugins []*Plugin) map[string]string {
	unfit := map[string]string{}
	var mu sync.Mutex
	forEach(plugins, func(p *Plugin) {
		if ctx.Err() != nil {
			return
		}
		err := m.backendFor(p).(sandbox.Preparer).Prepare(ctx, p.ResolvedPath)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("plugin cannot run", "plugin", p.Name, "error", err)
			mu.Lock()
			unfit[p.cacheKey] = err.Error()
			mu.Unlock()
		}
	})
	return unfit
}

// probe runs the --help of plugins policy lets run, a few at a time. Help
// that ran to its end (or flooded, or crashed) is a fact about the file and
// is cached; help cut short by a cancellation, a timeout or a failing
// backend is not, so a later refresh tries again. notes says why those
// plugins have no parameters for now.
func (m *Manager) probe(ctx context.Context, plugins []*Plugin) (helped map[string]*cacheEntry, notes map[string]string) {
	helped, notes = map[string]*cacheEntry{}, map[string]string{}
	var mu sync.Mutex
	forEach(plugins, func(p *Plugin) {
		key := p.cacheKey
		if ctx.Err() != nil {
			mu.Lock()
			notes[key] = "help was not run: discovery was cancelled; it runs on the next discovery"
			mu.Unlock()
			return
		}
		backend := m.backendFor(p)
		help, warning, final := m.runHelp(ctx, backend, p)
		mu.Lock()
		defer mu.Unlock()
		if !final {
			notes[key] = warning
			return
		}
		helped[key] = &cacheEntry{SHA256: p.SHA256, Backend: backend.Name(), Help: help, HelpWarning: warning}
	})
	return helped, notes
}

// forEach calls f for every plugin, four at a time.
func forEach(plugins []*Plugin, f func(*Plugin)) {
	var wg sync.WaitGroup
	work := make(chan *Plugin)
	for range min(4, len(plugins)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				f(p)
			}
		}()
	}
	for _, p := range plugins {
		work <- p
	}
	close(work)
	wg.Wait()
}

// runHelp runs `plugin --help` in the sandbox with a short timeout and an
// output cap. A plugin whose help floods or crashes gets a warning and no
// parameters; it still runs with raw arguments. final is false when the
// run says nothing about the file: cancelled with ctx, timed out, or the
// backend failed.
func (m *Manager) runHelp(ctx context.Context, backend sandbox.Backend, p *Plugin) (help helpparse.Help, warning string, final bool) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := sandbox.NewLimitedBuffer(m.opts.HelpOutputLimit)
	out.OnFull = cancel // a flood need not run until the timeout
	res, err := backend.Run(runCtx, sandbox.Spec{
		ID:     "help",
		Plugin: p.ResolvedPath,
		SHA256: p.SHA256,
		Args:   []string{"--help"},
		// No Kubeconfig: help needs no cluster and gets none.
		Env:    []string{"LANG=C.UTF-8"},
		Stdout: out,
		Stderr: out,
		// The plugin's own time: a busy host's slow sandbox set-up is not
		// a hanging plugin.
		RunTimeout: m.opts.HelpTimeout,
	})
	switch {
	case out.Truncated() > 0:
		return helpparse.Help{}, fmt.Sprintf("help printed more than %d bytes", m.opts.HelpOutputLimit), true
	case ctx.Err() != nil:
		return helpparse.Help{}, "help was cut short: discovery was cancelled; it runs again on the next discovery", false
	case err != nil:
		return helpparse.Help{}, fmt.Sprintf("help failed to run: %v; it runs again on the next discovery", err), false
	case res.Stopped:
		return helpparse.Help{}, fmt.Sprintf("help did not finish within %s; it runs again on the next discovery", m.opts.HelpTimeout), false
	case res.Signal != "":
		return helpparse.Help{}, fmt.Sprintf("help crashed: %s", res.Describe()), true
	}
	help = detach(helpparse.Parse(out.String()))
	if help.Layout == "" && len(help.Parameters) == 0 {
		return help, fmt.Sprintf("help (%s) could not be parsed into parameters; pass raw arguments", res.Describe()), true
	}
	return help, "", true
}

// detach copies what was parsed out of a help text: the parsed strings
// point into it, and the cache would otherwise keep every plugin's whole
// help (up to HelpOutputLimit) alive for as long as it keeps the plugin.
func detach(h helpparse.Help) helpparse.Help {
	h.Description, h.Usage, h.Layout = strings.Clone(h.Description), strings.Clone(h.Usage), strings.Clone(h.Layout)
	if h.Parameters == nil {
		return h
	}
	params := make([]helpparse.Parameter, len(h.Parameters))
	for i, p := range h.Parameters {
		p.Name, p.Short, p.Type = strings.Clone(p.Name), strings.Clone(p.Short), strings.Clone(p.Type)
		p.Description, p.Default = strings.Clone(p.Description), strings.Clone(p.Default)
		p.OptionalValue, p.ValueName = strings.Clone(p.OptionalValue), strings.Clone(p.ValueName)
		params[i] = p
	}
	h.Parameters = params
	return h
}

// goneFiles are the plugins of prev whose file next no longer lists.
func goneFiles(prev, next map[string]*Plugin) []*Plugin {
	var gone []*Plugin
	for name, p := range prev {
		if q, ok := next[name]; !ok || q.ResolvedPath != p.ResolvedPath {
			gone = append(gone, p)
		}
	}
	return gone
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
	want := pluginname.Normalize(name)
	var matches []*Plugin
	for _, n := range m.order {
		if pluginname.Normalize(n) == want {
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
