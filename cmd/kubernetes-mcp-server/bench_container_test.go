package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container/runscexec"
)

// BenchmarkMCPCallRunc compares, interleaved in one run, the overhead of
// a container call over MCP (tools/call of a static plugin with
// `backend = "container"` minus the same call with `backend = "none"`)
// with the overhead of `ctr run --rm` of the same binary on the same image
// (minus a direct exec), on the cold path (warm_pool = 0) and the warm one
// (the default pool). Goal: at most 0.3x ctr's overhead, p95 at most 0.5x.
func BenchmarkMCPCallRunc(b *testing.B) {
	benchMCPCall(b, "container", 60, 300*time.Millisecond, nil)
}

// BenchmarkMCPCallGVisor is BenchmarkMCPCallRunc under runsc
// (`isolation = "gvisor"`), against `ctr run --rm` with runsc as the runc
// shim's binary, run as the backend runs it. Goal: at most 0.5x.
func BenchmarkMCPCallGVisor(b *testing.B) {
	ctrd := testenv.TestContainerd(b)
	// The backend's own stand-in: the server's executable linked as
	// runscexec.Name execs runsc with the flags of sandbox/container/gvisor.go.
	link, err := runscexec.Install(filepath.Join(filepath.Dir(ctrd.Address), "bench-runsc"), binary,
		runscexec.Config{Runsc: testenv.Runsc(b), Flags: []string{"--platform=ptrace", "--network=host", "--oci-seccomp"}})
	if err != nil {
		b.Fatalf("runsc stand-in for ctr: %v", err)
	}
	benchMCPCall(b, "gvisor", 40, 600*time.Millisecond, []string{"--runc-binary", link})
}

// benchMCPCall runs one server per path (none, cold, warm) over stdio and,
// in random order each round, a direct exec, ctr run --rm (with ctrFlags)
// and one tools/call on each server, the warm one followed by refill for
// its pool; it reports the quantiles of the per-round differences.
func benchMCPCall(b *testing.B, backend string, samples int, refill time.Duration, ctrFlags []string) {
	ctrd := testenv.TestContainerd(b)
	tc := testenv.TestClusters(b)
	rootfs, err := images.PluginRootfs()
	if err != nil {
		b.Fatalf("sandbox image: %v", err)
	}
	plugins := b.TempDir()
	native := filepath.Join(plugins, "kubectl-small")
	if err := buildStatic(native, "./sandbox/wasm/testdata/small"); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	server := func(name, sandboxTOML string) *mcp.ClientSession {
		cfg := filepath.Join(b.TempDir(), "config.toml")
		body := fmt.Sprintf("[plugins]\nplugin_paths = []\nauto_discovery = false\nallowed_plugins = [\"small\"]\n"+
			"[clusters]\nkubeconfig_dir = %q\ndefault_cluster = \"alpha\"\n%s", tc.KubeconfigDir, sandboxTOML)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(binary, "--config", cfg, "--log-level", "error")
		cmd.Env = []string{"PATH=" + plugins + ":" + os.Getenv("PATH"), "HOME=" + b.TempDir(), "KREW_ROOT=" + b.TempDir(), "XDG_CACHE_HOME=" + b.TempDir()}
		logFile, err := os.Create(filepath.Join(b.TempDir(), "server.log"))
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = logFile
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
		if err != nil {
			b.Fatalf("%s server: %v", name, err)
		}
		b.Cleanup(func() { cs.Close() })
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) { // discovery runs at start-up
			if res, err := cs.ListTools(ctx, nil); err == nil && slices.ContainsFunc(res.Tools, func(t *mcp.Tool) bool { return t.Name == "plugin_small" }) {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logFile.Name())
				b.Fatalf("%s server lists no plugin_small after a minute:\n%s", name, log)
			}
		}
		return cs
	}
	prefix := "kmcp-bench-" + backend
	none := server("none", testenv.SandboxTOML(b, "none", prefix+"-none"))
	coldSrv := server("cold", testenv.SandboxTOML(b, backend, prefix+"-cold")+"warm_pool = 0\n") // [sandbox] is the last table
	warmSrv := server("warm", testenv.SandboxTOML(b, backend, prefix+"-warm"))

	warmHits := map[*mcp.ClientSession]int{} // in the timed rounds
	timed := false
	callOnce := func(cs *mcp.ClientSession) time.Duration {
		start := time.Now()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "plugin_small", Arguments: map[string]any{"args": []string{"hello"}}})
		d := time.Since(start)
		if err != nil || res.IsError {
			b.Fatalf("tools/call plugin_small: %v %+v", err, res)
		}
		if r, _ := res.StructuredContent.(map[string]any); timed && r["warm"] == true {
			warmHits[cs]++
		}
		return d
	}
	direct := func() time.Duration {
		start := time.Now()
		if out, err := exec.Command(native, "hello").Output(); err != nil || string(out) != "hello\n" {
			b.Fatalf("direct exec: %v %q", err, out)
		}
		return time.Since(start)
	}
	ctrN := 0
	ctrRun := func() time.Duration {
		ctrN++
		argv := append([]string{"--address", ctrd.Address, "--namespace", prefix + "-ctr", "run", "--rm", "--read-only"}, ctrFlags...)
		// --rootfs is a switch: the image's folder is the first argument.
		argv = append(argv, "--mount", "type=bind,src="+plugins+",dst=/plugin,options=rbind:ro", "--rootfs", rootfs,
			fmt.Sprintf("bench-%d-%d", os.Getpid(), ctrN), "/plugin/kubectl-small", "hello")
		start := time.Now()
		out, err := exec.Command("ctr", argv...).CombinedOutput()
		d := time.Since(start)
		if err != nil || !strings.Contains(string(out), "hello") {
			b.Fatalf("ctr run: %v\n%s", err, out)
		}
		return d
	}

	type step struct {
		name string
		run  func() time.Duration
	}
	steps := []step{
		{"direct", direct},
		{"ctr", ctrRun},
		{"none", func() time.Duration { return callOnce(none) }},
		{"cold", func() time.Duration { return callOnce(coldSrv) }},
		{"warm", func() time.Duration {
			d := callOnce(warmSrv)
			time.Sleep(refill) // the pool refills before anything else is timed
			return d
		}},
	}
	times := map[string][]time.Duration{}
	rng := rand.New(rand.NewPCG(1, 2))
	const warmup = 3
	b.ResetTimer()
	for i := 0; i < warmup+max(b.N, samples); i++ {
		timed = i >= warmup
		rng.Shuffle(len(steps), func(a, c int) { steps[a], steps[c] = steps[c], steps[a] })
		for _, s := range steps {
			if d := s.run(); timed {
				times[s.name] = append(times[s.name], d)
			}
		}
	}
	b.StopTimer()

	diff := func(a, c []time.Duration) []time.Duration {
		out := make([]time.Duration, len(a))
		for i := range a {
			out[i] = a[i] - c[i]
		}
		return out
	}
	report := func(unit string, ds []time.Duration) {
		b.ReportMetric(benchMS(benchQuantile(ds, 0.5)), unit+"-p50-ms")
		b.ReportMetric(benchMS(benchQuantile(ds, 0.95)), unit+"-p95-ms")
	}
	for _, name := range []string{"direct", "ctr", "none", "cold", "warm"} {
		report(name, times[name])
	}
	report("ctr-overhead", diff(times["ctr"], times["direct"]))
	report("cold-overhead", diff(times["cold"], times["none"]))
	report("warm-overhead", diff(times["warm"], times["none"]))
	rounds := len(times["warm"])
	if warmHits[coldSrv] > 0 {
		b.Fatalf("%d calls with warm_pool = 0 found a warm container", warmHits[coldSrv])
	}
	b.ReportMetric(float64(warmHits[warmSrv])/float64(rounds), "warm-hit-ratio")
	ctrO := benchQuantile(diff(times["ctr"], times["direct"]), 0.5)
	coldO := benchQuantile(diff(times["cold"], times["none"]), 0.5)
	warmO := benchQuantile(diff(times["warm"], times["none"]), 0.5)
	b.Logf("%s, %d rounds: overhead over a direct exec, median: ctr run --rm %.1f ms; MCP call cold %.1f ms (%.2fx), warm %.1f ms (%.2fx); %d of %d warm calls found a warm container",
		backend, len(times["direct"]), benchMS(ctrO), benchMS(coldO), float64(coldO)/float64(ctrO), benchMS(warmO), float64(warmO)/float64(ctrO), warmHits[warmSrv], rounds)
}

// buildStatic builds the Go package pkg of this repository, static, at out.
func buildStatic(out, pkg string) error {
	root, err := images.RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, msg)
	}
	return nil
}

func benchQuantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

func benchMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
