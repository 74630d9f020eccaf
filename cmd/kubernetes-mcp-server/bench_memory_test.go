package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idleSettle is how long the server is left alone after its first
// tools/list before its memory is read: long enough for the garbage of
// start-up to be collected, as it is at any later moment of an idle server.
const idleSettle = 2 * time.Second

// BenchmarkIdleRSS1000 starts the server binary on stdio with 1,000
// plugins, all allowed (BenchmarkDiscovery1000's), and no sandbox; once it
// answered a tools/list and sat idle for idleSettle, it reads the server's
// resident memory (VmRSS) and proportional share (Pss of smaps_rollup).
// help-not-cached starts with an empty cache, so the server runs 1,000
// helps first; help-cached starts on the cache such a start leaves. It
// reports the median of each, and the anonymous part of VmRSS (what is not
// the binary's own pages); the goal is at most 40 MiB.
func BenchmarkIdleRSS1000(b *testing.B) {
	s := newBenchSetup(b, benchAllowed)
	for _, cached := range []bool{false, true} {
		name := "help-not-cached"
		if cached {
			name = "help-cached"
		}
		b.Run(name, func(b *testing.B) {
			if cached { // the cache one start leaves
				s.serveStdio(b).close(b)
				b.ResetTimer()
			}
			var rss, pss, anon []float64
			for range b.N {
				if !cached {
					b.StopTimer()
					if err := os.RemoveAll(s.cacheHome()); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				r, p, a := idleMemory(b, s)
				rss, pss, anon = append(rss, r), append(pss, p), append(anon, a)
			}
			b.ReportMetric(medianOf(rss), "rss-MiB")
			b.ReportMetric(medianOf(pss), "pss-MiB")
			b.ReportMetric(medianOf(anon), "anon-MiB")
			fmt.Printf("idle server with 1000 plugin tools, %s, median of %d (goal <= 40 MiB): rss %.1f MiB, pss %.1f MiB, of which anonymous %.1f MiB\n",
				name, b.N, medianOf(rss), medianOf(pss), medianOf(anon))
		})
	}
}

// idleMemory starts a server, lists its tools, lets it settle and returns
// its VmRSS, Pss and RssAnon in MiB.
func idleMemory(b *testing.B, s *benchSetup) (rss, pss, anon float64) {
	b.Helper()
	srv := s.serveStdio(b)
	defer srv.close(b)
	res, err := srv.ListTools(context.Background(), nil)
	if err != nil || len(res.Tools) != 1004 {
		b.Fatalf("tools/list: %v", err)
	}
	time.Sleep(idleSettle)
	pid := srv.cmd.Process.Pid
	status := procFields(b, fmt.Sprintf("/proc/%d/status", pid))
	rollup := procFields(b, fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	return status["VmRSS"], rollup["Pss"], status["RssAnon"]
}

// procFields reads the "Name: N kB" lines of a /proc file, in MiB.
func procFields(b *testing.B, path string) map[string]float64 {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[name] = kb / 1024
		}
	}
	return out
}

func medianOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
