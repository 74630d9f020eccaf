// Package clusters resolves the Kubernetes clusters a server may reach, each
// to a client-go rest.Config, from a folder of kubeconfig files, the contexts
// of a kubeconfig and a Rancher server.
package clusters

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Cluster is one reachable cluster.
type Cluster struct {
	Name string
	// Source says where the cluster was defined: a file, or a kubeconfig's context.
	Source string
	// Server is the API server's URL.
	Server string
	// REST is what clients of this cluster use, credentials included.
	REST *rest.Config
	// Kubeconfig holds only this cluster's context, with file references
	// inlined, for handing one cluster (and no other) to a plugin.
	Kubeconfig *clientcmdapi.Config
}

// Options says where clusters come from.
type Options struct {
	// KubeconfigDir holds one kubeconfig file per cluster; the file name
	// without its extension is the cluster's name.
	KubeconfigDir string
	// Kubeconfig is a kubeconfig path (or a KUBECONFIG-style list) whose
	// contexts are clusters too. When empty, ~/.kube/config is used if it
	// exists and KubeconfigDir is not set.
	Kubeconfig string
	// DefaultCluster is used when a call names none.
	DefaultCluster string
	// Rancher, when set, adds the clusters of a Rancher server (NewRancher):
	// at once those it wrote to its folder on an earlier run, then what each
	// Refresh finds. Its files are its own: when its folder is KubeconfigDir
	// too, they are not read as files. DefaultCluster may then be one of its
	// clusters, so it is not checked here.
	Rancher *Rancher
}

// Registry is the set of clusters a server knows, by name. It is safe for
// concurrent use: the clusters of a source such as Rancher are replaced as
// a whole while calls run, and a call keeps the *Cluster it got.
type Registry struct {
	mu sync.RWMutex
	// static are the clusters of kubeconfig_dir and kubeconfig, fixed at Load.
	static map[string]*Cluster
	// sources are the clusters of each other source, clashes left out.
	sources map[string]map[string]*Cluster
	status  map[string]SourceStatus
	// configured is default_cluster; current is the kubeconfig's current
	// context when it is a cluster.
	configured, current string
	subscribers         []func()
}

// SourceStatus is how the last refresh of a source of clusters went.
type SourceStatus struct {
	// Status is "ok", "error" (the last refresh failed, in whole or for
	// some clusters; the last good set is kept) or "pending" (no refresh
	// has ended yet).
	Status string `json:"status"`
	// Error says what failed; never a credential.
	Error string `json:"error,omitempty"`
	// LastSuccess is when a refresh last ended without an error, also in
	// an earlier run.
	LastSuccess *time.Time `json:"last_success,omitempty"`
	// LastAttempt is when the last refresh ended.
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	// Clusters is how many clusters the source provides now.
	Clusters int `json:"clusters"`
	// Warnings are clusters left out and why: a name clash, a name that
	// cannot be a file name, a cluster that is not active yet.
	Warnings []string `json:"warnings,omitempty"`
}

// Load builds the registry. A folder that cannot be read, a file that does
// not parse, a name defined twice or an unknown default cluster is an error.
func Load(opts Options) (*Registry, error) {
	r := Empty()
	r.configured = opts.DefaultCluster
	if opts.KubeconfigDir != "" {
		var skip func(string) bool
		if opts.Rancher != nil {
			skip = opts.Rancher.owns
		}
		if err := r.loadDir(opts.KubeconfigDir, skip); err != nil {
			return nil, err
		}
	}
	current, err := r.loadKubeconfig(opts)
	if err != nil {
		return nil, err
	}
	r.current = current
	if opts.DefaultCluster != "" && opts.Rancher == nil {
		if _, ok := r.static[opts.DefaultCluster]; !ok {
			return nil, fmt.Errorf("default_cluster %q is not a known cluster (known: %s)", opts.DefaultCluster, r.known())
		}
	}
	if opts.Rancher != nil {
		opts.Rancher.attach(r)
	}
	return r, nil
}

// Empty returns a registry with no cluster.
func Empty() *Registry {
	return &Registry{static: map[string]*Cluster{}, sources: map[string]map[string]*Cluster{}, status: map[string]SourceStatus{}}
}

// Names lists the clusters in order.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.namesLocked()
}

func (r *Registry) namesLocked() []string {
	names := make([]string, 0, len(r.static))
	for name := range r.static {
		names = append(names, name)
	}
	for _, set := range r.sources {
		for name := range set {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Default is the cluster used when a call names none, or "" if there is
// none: default_cluster (which may be missing for now, when it is to come
// from Rancher), else the kubeconfig's current context, else the only
// cluster.
func (r *Registry) Default() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.defaultLocked()
}

func (r *Registry) defaultLocked() string {
	switch {
	case r.configured != "":
		return r.configured
	case r.current != "":
		return r.current
	}
	if names := r.namesLocked(); len(names) == 1 {
		return names[0]
	}
	return ""
}

// Get returns the named cluster, or the default one for "".
func (r *Registry) Get(name string) (*Cluster, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if name == "" {
		if name = r.defaultLocked(); name == "" {
			return nil, fmt.Errorf("no cluster named and no default cluster set (known: %s)", r.known())
		}
		if c := r.lookup(name); c == nil {
			return nil, fmt.Errorf("the default cluster %q is not available now (known: %s)", name, r.known())
		}
	}
	c := r.lookup(name)
	if c == nil {
		return nil, fmt.Errorf("unknown cluster %q (known: %s)", name, r.known())
	}
	return c, nil
}

func (r *Registry) lookup(name string) *Cluster {
	if c, ok := r.static[name]; ok {
		return c
	}
	for _, set := range r.sources {
		if c, ok := set[name]; ok {
			return c
		}
	}
	return nil
}

// Subscribe calls f after the names of the clusters or the default changed.
func (r *Registry) Subscribe(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subscribers = append(r.subscribers, f)
}

// Sources reports each source of clusters beyond files, by name ("rancher").
func (r *Registry) Sources() map[string]SourceStatus {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]SourceStatus, len(r.status))
	for name, st := range r.status {
		st.Warnings = append([]string(nil), st.Warnings...)
		out[name] = st
	}
	return out
}

// replace makes set the clusters of source, as a whole, and returns how
// many it kept. A cluster whose name another source (files first) already
// has is left out; the errors say which. Subscribers hear of it when the
// names or the default changed.
func (r *Registry) replace(source string, set []*Cluster) (int, error) {
	var errs []error
	r.mu.Lock()
	before, beforeDefault := r.namesLocked(), r.defaultLocked()
	own := make(map[string]*Cluster, len(set))
	for _, c := range set {
		if prev := r.lookupOther(source, c.Name); prev != nil {
			errs = append(errs, fmt.Errorf("cluster %q of %s is left out: the name is taken by %s", c.Name, c.Source, prev.Source))
			continue
		}
		if prev, dup := own[c.Name]; dup {
			errs = append(errs, fmt.Errorf("cluster %q is defined twice: in %s and in %s", c.Name, prev.Source, c.Source))
			continue
		}
		own[c.Name] = c
	}
	r.sources[source] = own
	changed := !slices.Equal(before, r.namesLocked()) || beforeDefault != r.defaultLocked()
	subs := append([]func(){}, r.subscribers...)
	r.mu.Unlock()
	if changed {
		for _, f := range subs {
			f()
		}
	}
	return len(own), errors.Join(errs...)
}

// lookupOther finds name among the files and the sources other than source.
func (r *Registry) lookupOther(source, name string) *Cluster {
	if c, ok := r.static[name]; ok {
		return c
	}
	for s, set := range r.sources {
		if c, ok := set[name]; ok && s != source {
			return c
		}
	}
	return nil
}

// taken is the cluster of another source (or a file) that has name, or nil.
func (r *Registry) taken(source, name string) *Cluster {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.lookupOther(source, name)
}

func (r *Registry) report(source string, st SourceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status[source] = st
}

func (r *Registry) known() string {
	names := r.namesLocked()
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (r *Registry) add(c *Cluster) error {
	if prev, ok := r.static[c.Name]; ok {
		return fmt.Errorf("cluster %q is defined twice: in %s and in %s", c.Name, prev.Source, c.Source)
	}
	r.static[c.Name] = c
	return nil
}

func (r *Registry) loadDir(dir string, skip func(file string) bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("kubeconfig_dir: %w", err)
	}
	for _, e := range entries {
		// Hidden entries include the ..data links of mounted ConfigMaps and Secrets.
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		file := filepath.Join(dir, e.Name())
		if skip != nil && skip(file) {
			continue
		}
		if info, err := os.Stat(file); err != nil {
			return fmt.Errorf("kubeconfig_dir: %w", err)
		} else if !info.Mode().IsRegular() {
			continue
		}
		name := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
		cfg, err := (&clientcmd.ClientConfigLoadingRules{ExplicitPath: file}).Load()
		if err != nil {
			return fmt.Errorf("kubeconfig_dir: cluster %q: %w", name, err)
		}
		ctx := cfg.CurrentContext
		if ctx == "" && len(cfg.Contexts) == 1 {
			for only := range cfg.Contexts {
				ctx = only
			}
		}
		if ctx == "" {
			return fmt.Errorf("kubeconfig_dir: %s has %d contexts and no current-context: say which one is cluster %q", file, len(cfg.Contexts), name)
		}
		c, err := newCluster(name, file, cfg, ctx)
		if err != nil {
			return fmt.Errorf("kubeconfig_dir: %w", err)
		}
		if err := r.add(c); err != nil {
			return err
		}
	}
	return nil
}

// loadKubeconfig adds every context of the kubeconfig and returns its current context.
func (r *Registry) loadKubeconfig(opts Options) (string, error) {
	paths := filepath.SplitList(opts.Kubeconfig)
	if opts.Kubeconfig == "" {
		if opts.KubeconfigDir != "" {
			return "", nil
		}
		def := clientcmd.RecommendedHomeFile
		if _, err := os.Stat(def); err != nil {
			return "", nil
		}
		paths = []string{def}
	}
	var existing []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			existing = append(existing, p)
		}
	}
	if len(existing) == 0 {
		return "", fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, os.ErrNotExist)
	}
	cfg, err := (&clientcmd.ClientConfigLoadingRules{Precedence: existing}).Load()
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	var errs []error
	for _, ctx := range sortedContexts(cfg) {
		c, err := newCluster(ctx, fmt.Sprintf("context %q of %s", ctx, strings.Join(existing, ":")), cfg, ctx)
		if err == nil {
			err = r.add(c)
		}
		errs = append(errs, err)
	}
	current := cfg.CurrentContext
	if _, ok := r.static[current]; !ok {
		current = ""
	}
	return current, errors.Join(errs...)
}

func newCluster(name, source string, cfg *clientcmdapi.Config, ctx string) (*Cluster, error) {
	rest, err := clientcmd.NewNonInteractiveClientConfig(*cfg, ctx, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("cluster %q (%s): %w", name, source, err)
	}
	one := cfg.DeepCopy()
	one.CurrentContext = ctx
	if err := clientcmdapi.MinifyConfig(one); err != nil {
		return nil, fmt.Errorf("cluster %q (%s): %w", name, source, err)
	}
	if err := clientcmdapi.FlattenConfig(one); err != nil {
		return nil, fmt.Errorf("cluster %q (%s): %w", name, source, err)
	}
	return &Cluster{Name: name, Source: source, Server: rest.Host, REST: rest, Kubeconfig: one}, nil
}

func sortedContexts(cfg *clientcmdapi.Config) []string {
	names := make([]string, 0, len(cfg.Contexts))
	for name := range cfg.Contexts {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
