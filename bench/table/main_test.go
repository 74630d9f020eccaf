package main

import (
	"strings"
	"testing"
	"time"
)

const sample = `# command: go test -run '^$' -bench . ./gateway
goos: linux
pkg: github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway
BenchmarkAddedLatency-2   	       1	2345678 ns/op	         0.210 added-p50-ms	         1.400 added-p99-ms	         0.500 direct-p50-ms
BenchmarkThroughput/max_concurrent=8-2         	       1	   1 ns/op	        30.00 calls/s	        40.00 anchor-calls/s
BenchmarkSmallModule	     100	   1 ns/op	         5.0 p50-ms	         1.0 native-p50-ms	         9.0 p95-ms	         2.0 native-p95-ms
--- FAIL: BenchmarkKubeScore
BenchmarkDiscovery1000-2   	discovery of 1000 plugins, median of 15:
  kubectl plugin list                                 97.85ms
      15	 185999083 ns/op	        23.80 cli-ms	         0.2432 cli/kubectl	        97.85 kubectl-ms
FAIL	github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm	1.2s
`

// Benchmark lines become metrics by name and unit, with or without the
// GOMAXPROCS suffix, also when the benchmark printed between its name and
// its figures, and each row's cells follow from them.
func TestTheTableReadsBenchmarkLines(t *testing.T) {
	r := &runs{results: map[string]*result{}, failed: map[string]bool{}}
	if err := r.read(strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	if got := r.results["BenchmarkAddedLatency"]; got == nil || got.metrics["added-p99-ms"] != 1.4 || !strings.HasSuffix(got.pkg, "/gateway") {
		t.Fatalf("BenchmarkAddedLatency: %+v", got)
	}
	cells := func(bench string) []string {
		for _, row := range rows {
			if row.bench == bench {
				return cellsOf(row, r)
			}
		}
		t.Fatalf("no row for %s", bench)
		return nil
	}
	tests := []struct {
		bench string
		want  []string // cells 1 (median), 2 (tail), 4 (ratio) and 6 (met)
	}{
		{"BenchmarkAddedLatency", []string{"0.210 ms", "p99 1.40 ms", "0.42x", "**no**"}},
		{"BenchmarkThroughput/max_concurrent=8", []string{"30.0 calls/s", "—", "0.75x", "**no**"}},
		{"BenchmarkSmallModule", []string{"4.00 ms", "7.00 ms", "4.00x, p95 7.00x", "**no**"}},
		{"BenchmarkKubeScore", []string{"failed", "", "", "—"}},
		{"BenchmarkDiscovery1000", []string{"23.8 ms", "—", "0.24x", "**no**"}},
		{"BenchmarkIdleRSS1000/help-cached", []string{"not measured", "", "", "—"}},
		{"BenchmarkPodListExample", []string{"not measured (a run of its package failed)", "", "", "—"}},
	}
	for _, tt := range tests {
		c := cells(tt.bench)
		if got := []string{c[1], c[2], c[4], c[6]}; strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%s: cells %q, want %q", tt.bench, got, tt.want)
		}
	}
	doc := document(render(rows, r), r, []string{"cores: 2"}, "make bench", time.Minute, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	for _, want := range []string{"2026-12-01 00:00 UTC", "- cores: 2", "go test -run '^$' -bench . ./gateway", "BenchmarkAddedLatency-2"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the document does not say %q:\n%s", want, doc)
		}
	}
}
