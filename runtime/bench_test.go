package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// BenchmarkThroughput keeps max_concurrent calls of a 100 ms plugin in
// flight on the container backend (default warm pool) and compares the
// calls a second with max_concurrent / the time of one call alone,
// measured in the same run. Goal: at least 0.8x.
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("max_concurrent=%d", n), func(b *testing.B) {
			rt := benchRuntime(b, fmt.Sprintf("kmcp-bench-tp%d", n), n, "")
			ctx := context.Background()
			var warm atomic.Int64
			once := func() time.Duration {
				start := time.Now()
				res, err := rt.Execute(ctx, Call{Plugin: "nap"})
				if err != nil || res.Status != StatusOK {
					b.Fatalf("call: %v %+v", err, res)
				}
				if res.Warm {
					warm.Add(1)
				}
				return time.Since(start)
			}
			var single []time.Duration
			for range 6 {
				single = append(single, once())
				time.Sleep(300 * time.Millisecond) // a warm pool refills
			}
			one := benchMedian(single)
			calls := max(16, 6*n)
			run := func(total int) time.Duration {
				var next atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for range n {
					wg.Go(func() {
						for next.Add(1) <= int64(total) {
							once()
						}
					})
				}
				wg.Wait()
				return time.Since(start)
			}
			run(n) // warm up every slot
			time.Sleep(300 * time.Millisecond)
			warm.Store(0)
			busy := hostBusy()
			b.ResetTimer()
			elapsed := run(calls)
			b.StopTimer()
			busy = hostBusy() - busy
			got, want := float64(calls)/elapsed.Seconds(), float64(n)/one.Seconds()
			b.ReportMetric(got, "calls/s")
			b.ReportMetric(want, "anchor-calls/s")
			b.ReportMetric(got/want, "ratio")
			b.ReportMetric(float64(one.Microseconds())/1000, "single-ms")
			b.ReportMetric(float64(warm.Load())/float64(calls), "warm-hit-ratio")
			b.ReportMetric(float64(busy.Microseconds())/1000/float64(calls), "host-cpu-ms-per-call")
			b.Logf("max_concurrent %d: %d calls in %v = %.1f calls/s (%d warm, %v of the host's CPU a call); one call alone %v, so %d/%v = %.1f calls/s; %.2fx",
				n, calls, elapsed.Round(time.Millisecond), got, warm.Load(), (busy / time.Duration(calls)).Round(time.Millisecond),
				one.Round(time.Millisecond), n, one.Round(time.Millisecond), want, got/want)
		})
	}
}

// BenchmarkMemoryPerCall holds K calls of a sleeping plugin in flight on
// the container backend and reports the host memory they add, per call:
// the PSS (smaps_rollup) of the processes under this namespace's shims
// (shim, runc, the plugin), plus the growth of containerd and of this
// process (the runtime, gateways). Goal: at most 15 MB a call. With no
// warm pool, so every container of the K calls is new; a pool's
// containers are the same, made ahead.
func BenchmarkMemoryPerCall(b *testing.B) {
	const k = 8
	ns := "kmcp-bench-mem"
	rt := benchRuntime(b, ns, k, "warm_pool = 0\n")
	ctrd := testenv.TestContainerd(b)
	ctrdConfig := filepath.Join(filepath.Dir(ctrd.Address), "config.toml")
	if res, err := rt.Execute(context.Background(), Call{Plugin: "hold", Args: []string{"0"}}); err != nil || res.Status != StatusOK {
		b.Fatalf("call: %v %+v", err, res)
	}
	var pss, rss, shims, ctrdGrowth, self []float64
	b.ResetTimer()
	for range 3 {
		time.Sleep(500 * time.Millisecond) // a warm pool refills
		goruntime.GC()
		before := hostMemory(ns, ctrdConfig)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range k {
			wg.Go(func() { rt.Execute(ctx, Call{Plugin: "hold", Args: []string{"60"}}) })
		}
		deadline := time.Now().Add(time.Minute)
		for hostMemory(ns, ctrdConfig).sleeping < k {
			if time.Now().After(deadline) {
				b.Fatalf("%d calls did not all start within a minute", k)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		during := hostMemory(ns, ctrdConfig)
		b.Logf("shims %d -> %d, processes under them %d -> %d; their PSS %d -> %d KiB, RSS %d -> %d KiB",
			before.shims, during.shims, before.procs, during.procs, before.shimsPSS, during.shimsPSS, before.shimsRSS, during.shimsRSS)
		cancel()
		wg.Wait()
		perCall := func(kib int64) float64 { return float64(kib) / 1024 / k }
		pss = append(pss, perCall(during.total()-before.total()))
		rss = append(rss, perCall(during.shimsRSS+during.containerd.rss+during.self.rss-before.shimsRSS-before.containerd.rss-before.self.rss))
		shims = append(shims, perCall(during.shimsPSS-before.shimsPSS))
		ctrdGrowth = append(ctrdGrowth, perCall(during.containerd.pss-before.containerd.pss))
		self = append(self, perCall(during.self.pss-before.self.pss))
	}
	b.StopTimer()
	b.ReportMetric(benchMedianF(pss), "pss-MiB-per-call")
	b.ReportMetric(benchMedianF(rss), "rss-MiB-per-call")
	b.ReportMetric(benchMedianF(shims), "shims-pss-MiB-per-call")
	b.ReportMetric(benchMedianF(ctrdGrowth), "containerd-pss-MiB-per-call")
	b.ReportMetric(benchMedianF(self), "server-pss-MiB-per-call")
	b.Logf("%d calls in flight, median of 3 rounds, per call: PSS %.2f MiB (shims and below %.2f, containerd %.2f, server %.2f); RSS %.2f MiB",
		k, benchMedianF(pss), benchMedianF(shims), benchMedianF(ctrdGrowth), benchMedianF(self), benchMedianF(rss))
}

// benchRuntime composes a runtime as the server does, on the container
// backend in containerd namespace ns, with max_concurrent calls, sandbox
// (more of the [sandbox] table), the test clusters and two plugins: nap
// (sleeps 100 ms) and hold (sleeps $1 s).
func benchRuntime(b *testing.B, ns string, maxConcurrent int, sandbox string) *Runtime {
	b.Helper()
	tc := testenv.TestClusters(b)
	dir := b.TempDir()
	for name, body := range map[string]string{
		"kubectl-nap":  `[ "$1" = --help ] && exit 0; sleep 0.1`,
		"kubectl-hold": `[ "$1" = --help ] && exit 0; sleep "$1"`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	file := filepath.Join(b.TempDir(), "config.toml")
	toml := fmt.Sprintf("[plugins]\nplugin_paths = []\nallow_any_plugin = true\nauto_discovery = false\nmax_concurrent = %d\n"+
		"[clusters]\nkubeconfig_dir = %q\ndefault_cluster = \"alpha\"\n%s%s", maxConcurrent, tc.KubeconfigDir, testenv.SandboxTOML(b, "container", ns), sandbox)
	if err := os.WriteFile(file, []byte(toml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(config.Options{File: file, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		b.Fatal(err)
	}
	reg, err := clusters.Load(clusters.Options{KubeconfigDir: cfg.Clusters.KubeconfigDir, DefaultCluster: cfg.Clusters.DefaultCluster})
	if err != nil {
		b.Fatal(err)
	}
	// Server: the long-running server's parts, with its warm pool.
	parts, err := compose.Build(context.Background(), cfg, compose.Env{PathEnv: dir, KrewRoot: b.TempDir(), Server: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := New(cfg, Options{Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container, Wasm: parts.Wasm, Clusters: reg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	if _, err := rt.Discover(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"nap", "hold"} {
		if p, err := rt.Plugin(name); err != nil || !p.Allowed {
			b.Fatalf("plugin %s is not served: %v %v", name, err, rt.Warnings())
		}
	}
	return rt
}

// hostBusy is the CPU time the host's processors spent on anything but
// idling so far (/proc/stat, in USER_HZ ticks of 10 ms).
func hostBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] { // user nice system idle iowait irq softirq steal ...
		v, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 && i < 8 {
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// memory is the PSS and RSS of some processes, in KiB.
type memory struct{ pss, rss int64 }

// hostSnapshot is the memory of what a call on the host is made of.
type hostSnapshot struct {
	shimsPSS, shimsRSS int64  // containerd shims of the namespace and every process under them
	containerd, self   memory // containerd, and this process (the server's part)
	shims, procs       int    // the shims, and every process under them too
	sleeping           int    // processes named sleep under the shims
}

func (h hostSnapshot) total() int64 { return h.shimsPSS + h.containerd.pss + h.self.pss }

// hostMemory measures, from /proc, the shims whose command line names
// containerd namespace ns and their descendants, the containerd started
// with ctrdConfig, and this process.
func hostMemory(ns, ctrdConfig string) hostSnapshot {
	var h hostSnapshot
	children := map[int][]int{}
	var shims []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], pid)
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		switch {
		case len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, ns):
			shims = append(shims, pid)
		case len(args) > 0 && filepath.Base(args[0]) == "containerd" && slices.Contains(args, ctrdConfig):
			h.containerd = procMemory(pid)
		}
	}
	h.self = procMemory(os.Getpid())
	h.shims = len(shims)
	for queue := shims; len(queue) > 0; queue = queue[1:] {
		pid := queue[0]
		h.procs++
		m := procMemory(pid)
		h.shimsPSS += m.pss
		h.shimsRSS += m.rss
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
			h.sleeping++
		}
		queue = append(queue, children[pid]...)
	}
	return h
}

// procMemory reads a process's Pss and Rss from smaps_rollup; zero when
// it has gone.
func procMemory(pid int) memory {
	var m memory
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Pss:":
			m.pss = v
		case "Rss:":
			m.rss = v
		}
	}
	return m
}

func benchMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchMedianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
