package discovery

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// cannedHelp answers every --help with the same cobra help without running
// anything, so that benchmarks time discovery, not a thousand shells.
type cannedHelp struct{}

func (cannedHelp) Name() string { return "none" }

func (cannedHelp) Run(_ context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	fmt.Fprint(spec.Stdout, "Plugin.\n\nFlags:\n  -n, --namespace string   where\n      --count int   how many (default 3)\n")
	return sandbox.Result{}, nil
}

// BenchmarkRefreshCached is one refresh of 1,000 unchanged plugins: what a
// server does every refresh_interval.
func BenchmarkRefreshCached(b *testing.B) {
	m := NewManager(Options{Dirs: testenv.ThousandPlugins(b), Backends: sandbox.Backends{Native: cannedHelp{}}})
	ctx := context.Background()
	if _, err := m.Refresh(ctx); err != nil || len(m.List()) != 1000 {
		b.Fatalf("%d plugins: %v", len(m.List()), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m.Refresh(ctx)
	}
}

// BenchmarkFirstRefreshFromCacheFile is a new Manager's first refresh of
// 1,000 plugins whose hashes and help the cache file has: what
// `plugins list` and a server's start do.
func BenchmarkFirstRefreshFromCacheFile(b *testing.B) {
	dirs := testenv.ThousandPlugins(b)
	cache := filepath.Join(b.TempDir(), "cache.json")
	opts := Options{Dirs: dirs, Backends: sandbox.Backends{Native: cannedHelp{}}, CacheFile: cache}
	ctx := context.Background()
	if _, err := NewManager(opts).Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m := NewManager(opts)
		if _, err := m.Refresh(ctx); err != nil || len(m.List()) != 1000 {
			b.Fatalf("%d plugins: %v", len(m.List()), err)
		}
	}
}
