package container

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// BenchmarkCallOverhead runs the same static binary (busybox true) four
// ways in one run: a direct exec, `ctr run --rm` on the sandbox image, and
// a full sandboxed call (profile, gateway-less, removal after the result)
// on the cold path (the call creates its container) and on the warm path
// (the call starts one created ahead). It prints the medians and p95s and
// each path's overhead over the direct exec next to ctr's.
func BenchmarkCallOverhead(b *testing.B) {
	ctrd := testenv.TestContainerd(b)
	cold := newBackend(b, ctrd)
	warmCfg := testConfig(b, ctrd)
	warmCfg.Namespace += "-warm"
	warmCfg.StateDir += "-warm"
	warmCfg.WarmPool = 1
	warm := newBackendFrom(b, warmCfg)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	call := func(backend *Backend, wantWarm bool) time.Duration {
		backend.Quiesce() // the previous call's removal and the pool's refill are not this call's
		start := time.Now()
		res, err := backend.Run(ctx, sandbox.Spec{ID: "bench", Plugin: busybox, Args: []string{"true"}, KeepWarm: true})
		d := time.Since(start)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("sandboxed call: %v %+v", err, res)
		}
		if res.Warm != wantWarm {
			b.Fatalf("warm %v, want %v", res.Warm, wantWarm)
		}
		return d
	}
	call(warm, false) // fills the pool
	var direct, ctr, coldCalls, warmCalls []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if err := exec.Command(busybox, "true").Run(); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(start))

		start = time.Now()
		out, err := exec.Command("ctr", "--address", ctrd.Address, "--namespace", "kmcp-bench", "run", "--rm",
			"--rootfs", cold.cfg.Rootfs, fmt.Sprintf("bench-%d", i), "/bin/true").CombinedOutput()
		if err != nil {
			b.Fatalf("ctr run: %v\n%s", err, out)
		}
		ctr = append(ctr, time.Since(start))
		coldCalls = append(coldCalls, call(cold, false))
		warmCalls = append(warmCalls, call(warm, true))
	}
	b.StopTimer()
	d, c := quantile(direct, 0.5), quantile(ctr, 0.5)
	reportMS(b, map[string]time.Duration{
		"direct-ms": d, "ctr-run-ms": c, "ctr-run-p95-ms": quantile(ctr, 0.95),
		"cold-ms": quantile(coldCalls, 0.5), "cold-p95-ms": quantile(coldCalls, 0.95),
		"warm-ms": quantile(warmCalls, 0.5), "warm-p95-ms": quantile(warmCalls, 0.95),
	})
	over := func(ds []time.Duration, q float64) string {
		o := quantile(ds, q) - quantile(direct, q)
		return fmt.Sprintf("%9s = %.2fx ctr's", o.Round(10*time.Microsecond), float64(o)/float64(quantile(ctr, q)-quantile(direct, q)))
	}
	fmt.Printf("per-call cost of busybox true, %d rounds (overhead over the direct exec):\n"+
		"  direct exec             p50 %9s\n"+
		"  ctr run --rm            p50 %9s, overhead p50 %9s, p95 %9s\n"+
		"  sandboxed call, cold    p50 %9s, overhead p50 %s, p95 %s\n"+
		"  sandboxed call, warm    p50 %9s, overhead p50 %s, p95 %s\n",
		b.N, d.Round(10*time.Microsecond),
		c.Round(10*time.Microsecond), (c - d).Round(10*time.Microsecond), (quantile(ctr, 0.95) - quantile(direct, 0.95)).Round(10*time.Microsecond),
		quantile(coldCalls, 0.5).Round(10*time.Microsecond), over(coldCalls, 0.5), over(coldCalls, 0.95),
		quantile(warmCalls, 0.5).Round(10*time.Microsecond), over(warmCalls, 0.5), over(warmCalls, 0.95))
}

// BenchmarkGVisorCallOverhead runs the same static binary (busybox true)
// as a direct exec and as a full sandboxed call under each isolation tier,
// in one run, and prints the medians: what gVisor costs per call over runc.
func BenchmarkGVisorCallOverhead(b *testing.B) {
	ctrd := testenv.TestContainerd(b)
	runc, gvisor := newTierBackend(b, ctrd, IsolationRunc), newTierBackend(b, ctrd, IsolationGVisor)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var direct, runcCalls, gvisorCalls []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := exec.Command(busybox, "true").Run(); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(start))
		for _, tier := range []struct {
			backend *Backend
			times   *[]time.Duration
		}{{runc, &runcCalls}, {gvisor, &gvisorCalls}} {
			start = time.Now()
			res, err := tier.backend.Run(ctx, sandbox.Spec{ID: "bench", Plugin: busybox, Args: []string{"true"}})
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("sandboxed call under %s: %v %+v", tier.backend.cfg.Isolation, err, res)
			}
			*tier.times = append(*tier.times, time.Since(start))
		}
	}
	b.StopTimer()
	d, r, g := medianOf(direct), medianOf(runcCalls), medianOf(gvisorCalls)
	reportMS(b, map[string]time.Duration{"direct-ms": d, "runc-ms": r, "gvisor-ms": g})
	fmt.Printf("per-call cost of busybox true, median of %d:\n"+
		"  direct exec                       %9s\n"+
		"  sandboxed call, isolation runc    %9s\n"+
		"  sandboxed call, isolation gvisor  %9s = %.2fx runc, %s more per call\n",
		b.N, d.Round(10*time.Microsecond), r.Round(10*time.Microsecond), g.Round(10*time.Microsecond),
		float64(g)/float64(r), (g - r).Round(10*time.Microsecond))
}

// reportMS reports each duration as a metric in milliseconds, by unit.
func reportMS(b *testing.B, metrics map[string]time.Duration) {
	for unit, d := range metrics {
		b.ReportMetric(float64(d.Microseconds())/1000, unit)
	}
}

func medianOf(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }

func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*q)]
}
