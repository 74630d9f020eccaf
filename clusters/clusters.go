// Package clusters resolves the Kubernetes clusters a server may reach, each
// to a client-go rest.Config, from a folder of kubeconfig files and the
// contexts of a kubeconfig.
package clusters

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

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
	// DefaultCluster is used when a call names no cluster.
	DefaultCluster string
}

// Registry is the set of clusters a server knows, by name.
type Registry struct {
	clusters    map[string]*Cluster
	defaultName string
}

// Load builds the registry. A folder that cannot be read, a file that does
// not parse, a name defined twice or an unknown default cluster is an error.
func Load(opts Options) (*Registry, error) {
	r := &Registry{clusters: map[string]*Cluster{}}
	if opts.KubeconfigDir != "" {
		if err := r.loadDir(opts.KubeconfigDir); err != nil {
			return nil, err
		}
	}
	current, err := r.loadKubeconfig(opts)
	if err != nil {
		return nil, err
	}
	switch {
	case opts.DefaultCluster != "":
		if _, ok := r.clusters[opts.DefaultCluster]; !ok {
			return nil, fmt.Errorf("default_cluster %q is not a known cluster (known: %s)", opts.DefaultCluster, r.known())
		}
		r.defaultName = opts.DefaultCluster
	case current != "":
		r.defaultName = current
	case len(r.clusters) == 1:
		for name := range r.clusters {
			r.defaultName = name
		}
	}
	return r, nil
}

// Empty returns a registry with no cluster.
func Empty() *Registry { return &Registry{clusters: map[string]*Cluster{}} }

// Names lists the clusters in order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.clusters))
	for name := range r.clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Default is the cluster used when a call names none, or "" if there is none.
func (r *Registry) Default() string { return r.defaultName }

// Get returns the named cluster, or the default one for "".
func (r *Registry) Get(name string) (*Cluster, error) {
	if name == "" {
		if r.defaultName == "" {
			return nil, fmt.Errorf("no cluster named and no default cluster set (known: %s)", r.known())
		}
		name = r.defaultName
	}
	c, ok := r.clusters[name]
	if !ok {
		return nil, fmt.Errorf("unknown cluster %q (known: %s)", name, r.known())
	}
	return c, nil
}

func (r *Registry) known() string {
	if len(r.clusters) == 0 {
		return "none"
	}
	return strings.Join(r.Names(), ", ")
}

func (r *Registry) add(c *Cluster) error {
	if prev, ok := r.clusters[c.Name]; ok {
		return fmt.Errorf("cluster %q is defined twice: in %s and in %s", c.Name, prev.Source, c.Source)
	}
	r.clusters[c.Name] = c
	return nil
}

func (r *Registry) loadDir(dir string) error {
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
	if _, ok := r.clusters[current]; !ok {
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
