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

// BenchmarkCallOverhead runs the same static binary (busybox true) three
// ways in one run: a direct exec, `ctr run --rm` on the sandbox image, and
// a full sandboxed call (fresh container, profile, removal). It prints the
// medians and the sandbox's overhead; the goal is at most ctr's time.
func BenchmarkCallOverhead(b *testing.B) {
	ctrd := testenv.TestContainerd(b)
	backend := newBackend(b, ctrd)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var direct, ctr, call []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if err := exec.Command(busybox, "true").Run(); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(start))

		start = time.Now()
		out, err := exec.Command("ctr", "--address", ctrd.Address, "--namespace", "kmcp-bench", "run", "--rm",
			"--rootfs", backend.cfg.Rootfs, fmt.Sprintf("bench-%d", i), "/bin/true").CombinedOutput()
		if err != nil {
			b.Fatalf("ctr run: %v\n%s", err, out)
		}
		ctr = append(ctr, time.Since(start))

		start = time.Now()
		res, err := backend.Run(ctx, sandbox.Spec{ID: "bench", Plugin: busybox, Args: []string{"true"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("sandboxed call: %v %+v", err, res)
		}
		call = append(call, time.Since(start))
	}
	b.StopTimer()
	d, c, s := medianOf(direct), medianOf(ctr), medianOf(call)
	reportMS(b, map[string]time.Duration{"direct-ms": d, "ctr-run-ms": c, "sandbox-ms": s})
	fmt.Printf("per-call cost of busybox true, median of %d (goal: sandbox <= ctr run --rm):\n"+
		"  direct exec                         %9s\n"+
		"  ctr run --rm (same image)           %9s\n"+
		"  sandboxed call (container backend)  %9s = %.2fx ctr, overhead over direct %s\n",
		b.N, d.Round(10*time.Microsecond), c.Round(10*time.Microsecond), s.Round(10*time.Microsecond),
		float64(s)/float64(c), (s - d).Round(10*time.Microsecond))
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

func medianOf(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
