package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// benchSetup is what the 1,000-plugin benchmarks share: 1,000 plugins on
// PATH (10 folders of 100, each printing a help with two flags), a
// configuration with no sandbox and no clusters, and an environment whose
// HOME, KREW_ROOT and cache are the benchmark's own.
type benchSetup struct {
	pathEnv string
	home    string
	config  string
	env     []string
}

// newBenchSetup writes the plugins and a configuration with extra in its
// [plugins] table.
func newBenchSetup(b *testing.B, extra string) *benchSetup {
	b.Helper()
	dirs := testenv.ThousandPlugins(b)
	s := &benchSetup{pathEnv: strings.Join(dirs, ":"), home: b.TempDir()}
	s.config = filepath.Join(s.home, "config.toml")
	toml := "[plugins]\nplugin_paths = []\nauto_discovery = false\n" + extra + "\n[sandbox]\nbackend = \"none\"\n"
	if err := os.WriteFile(s.config, []byte(toml), 0o600); err != nil {
		b.Fatal(err)
	}
	s.env = []string{"PATH=" + s.pathEnv, "HOME=" + s.home, "KREW_ROOT=" + s.home, "XDG_CACHE_HOME=" + s.cacheHome()}
	return s
}

// cacheHome is XDG_CACHE_HOME: the help cache lives below it.
func (s *benchSetup) cacheHome() string { return filepath.Join(s.home, "cache") }

// BenchmarkDiscovery1000 discovers 1,000 plugins on PATH (10 folders of
// 100, help cached) and, in the same run, times `kubectl plugin list` on the
// same folders. It reports the median of each and their ratio; the goal is
// at most 0.2x kubectl's time.
func BenchmarkDiscovery1000(b *testing.B) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		b.Fatalf("kubectl is needed to compare with: %v", err)
	}
	s := newBenchSetup(b, "")

	runCmd := func(argv ...string) time.Duration {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = s.env
		start := time.Now()
		out, err := cmd.Output()
		d := time.Since(start)
		if len(out) == 0 {
			b.Fatalf("%v printed nothing: %v", argv, err)
		}
		return d
	}
	// The table is what kubectl prints too; JSON is reported beside it.
	ours := []string{binary, "plugins", "list", "--config", s.config, "--log-level", "error"}
	oursJSON := append(append([]string(nil), ours...), "--output", "json")
	runCmd(ours...) // fills the help cache: "with help cached"

	cfg, err := config.Load(config.Options{File: s.config, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		b.Fatal(err)
	}
	parts, err := compose.Build(context.Background(), cfg, compose.Env{PathEnv: s.pathEnv, KrewRoot: s.home}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := runtime.New(cfg, runtime.Options{Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container, Wasm: parts.Wasm,
		CacheFile: filepath.Join(s.cacheHome(), "kubernetes-mcp-server", "plugins-cache.json")})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := rt.Discover(context.Background()); err != nil || len(rt.Plugins()) != 1000 {
		b.Fatalf("discovered %d plugins: %v", len(rt.Plugins()), err)
	}

	var kubectlTimes, cliTimes, jsonTimes, refreshTimes []time.Duration
	b.ResetTimer()
	for range b.N {
		kubectlTimes = append(kubectlTimes, runCmd(kubectl, "plugin", "list"))
		cliTimes = append(cliTimes, runCmd(ours...))
		jsonTimes = append(jsonTimes, runCmd(oursJSON...))
		start := time.Now()
		rt.Discover(context.Background())
		refreshTimes = append(refreshTimes, time.Since(start))
	}
	b.StopTimer()
	k, c, j, r := median(kubectlTimes), median(cliTimes), median(jsonTimes), median(refreshTimes)
	b.ReportMetric(float64(k.Microseconds())/1000, "kubectl-ms")
	b.ReportMetric(float64(c.Microseconds())/1000, "cli-ms")
	b.ReportMetric(float64(r.Microseconds())/1000, "refresh-ms")
	b.ReportMetric(float64(j.Microseconds())/1000, "cli-json-ms")
	b.ReportMetric(float64(c)/float64(k), "cli/kubectl")
	b.ReportMetric(float64(r)/float64(k), "refresh/kubectl")
	fmt.Printf("discovery of 1000 plugins, median of %d (goal <= 0.2x kubectl):\n"+
		"  kubectl plugin list                              %10s\n"+
		"  kubernetes-mcp-server plugins list (process)     %10s = %.2fx\n"+
		"  kubernetes-mcp-server plugins list -o json       %10s = %.2fx\n"+
		"  in-process refresh (what the server does)        %10s = %.3fx\n",
		b.N, k.Round(time.Microsecond), c.Round(time.Microsecond), float64(c)/float64(k),
		j.Round(time.Microsecond), float64(j)/float64(k), r.Round(time.Microsecond), float64(r)/float64(k))
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// percentile is the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n), 1-based
	return s[max(rank, 1)-1]
}
