package main

import (
	"fmt"
	"math"
	"strings"
)

// A figure is a number read from one benchmark's metrics; ok is false
// when a unit it needs was not reported.
type figure func(m map[string]float64) (v float64, ok bool)

// unit is the metric reported under u.
func unit(u string) figure {
	return func(m map[string]float64) (float64, bool) { v, ok := m[u]; return v, ok }
}

// minus is a − b: an overhead over an anchor.
func minus(a, b string) figure {
	return func(m map[string]float64) (float64, bool) {
		x, ok1 := m[a]
		y, ok2 := m[b]
		return x - y, ok1 && ok2
	}
}

// What a check compares with its limit.
const (
	ofMedian    = "median"
	ofTail      = "tail"
	ofRatio     = "ratio"      // median / anchor
	ofTailRatio = "tail ratio" // tail / anchor
)

// A check is one part of a goal: of ≤ limit, or ≥ when atLeast.
type check struct {
	of      string
	limit   float64
	atLeast bool
}

// A row is one figure of the table.
type row struct {
	figure string // what is measured
	bench  string // the benchmark, as `go test` names it
	pkg    string // its package folder
	median figure
	tail   figure // nil: no tail
	// tailName is the tail's quantile when it is not the p95.
	tailName string
	anchor   figure // nil: none
	// anchorName says what the anchor is.
	anchorName string
	kind       string // ms, calls/s, MiB, B
	goal       string
	checks     []check
	// note returns a remark for the row from its metrics, or "".
	note func(m map[string]float64) string
}

const (
	mb = 1e6 / (1 << 20) // MiB in a megabyte
)

func warmNote(m map[string]float64) string {
	if v, ok := m["warm-hit-ratio"]; ok {
		return fmt.Sprintf("%.0f%% of its calls found a warm container", 100*v)
	}
	return ""
}

// rows are the table's figures, in order.
var rows = []row{
	{figure: "container call overhead over MCP, runc, cold (warm_pool = 0)", bench: "BenchmarkMCPCallRunc", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("cold-overhead-p50-ms"), tail: unit("cold-overhead-p95-ms"),
		anchor: unit("ctr-overhead-p50-ms"), anchorName: "ctr run --rm − direct exec", kind: "ms",
		goal: "≤ 0.3x, p95 ≤ 0.5x", checks: []check{{of: ofRatio, limit: 0.3}, {of: ofTailRatio, limit: 0.5}}},
	{figure: "container call overhead over MCP, runc, warm (default pool)", bench: "BenchmarkMCPCallRunc", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("warm-overhead-p50-ms"), tail: unit("warm-overhead-p95-ms"),
		anchor: unit("ctr-overhead-p50-ms"), anchorName: "ctr run --rm − direct exec", kind: "ms",
		goal: "≤ 0.3x, p95 ≤ 0.5x", checks: []check{{of: ofRatio, limit: 0.3}, {of: ofTailRatio, limit: 0.5}}, note: warmNote},
	{figure: "container call overhead over MCP, gVisor, cold (warm_pool = 0)", bench: "BenchmarkMCPCallGVisor", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("cold-overhead-p50-ms"), tail: unit("cold-overhead-p95-ms"),
		anchor: unit("ctr-overhead-p50-ms"), anchorName: "ctr run --rm (runsc) − direct exec", kind: "ms",
		goal: "≤ 0.5x", checks: []check{{of: ofRatio, limit: 0.5}}},
	{figure: "container call overhead over MCP, gVisor, warm (default pool)", bench: "BenchmarkMCPCallGVisor", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("warm-overhead-p50-ms"), tail: unit("warm-overhead-p95-ms"),
		anchor: unit("ctr-overhead-p50-ms"), anchorName: "ctr run --rm (runsc) − direct exec", kind: "ms",
		goal: "≤ 0.5x", checks: []check{{of: ofRatio, limit: 0.5}}, note: warmNote},
	{figure: "wasm call overhead, small module (compiled)", bench: "BenchmarkSmallModule", pkg: "./sandbox/wasm",
		median: minus("p50-ms", "native-p50-ms"), tail: minus("p95-ms", "native-p95-ms"),
		anchor: unit("native-p50-ms"), anchorName: "direct exec of the native build", kind: "ms",
		goal: "≤ 3 ms", checks: []check{{of: ofMedian, limit: 3}}},
	{figure: "wasm call overhead, client-go pod-list example (compiled)", bench: "BenchmarkPodListExample", pkg: "./sandbox/wasm",
		median: minus("p50-ms", "native-p50-ms"), tail: minus("p95-ms", "native-p95-ms"),
		anchor: unit("native-p50-ms"), anchorName: "direct exec of the native build", kind: "ms",
		goal: "≤ 10 ms", checks: []check{{of: ofMedian, limit: 10}}},
	{figure: "kube-score as wasm on a manifest (compiled)", bench: "BenchmarkKubeScore", pkg: "./sandbox/wasm",
		median: unit("p50-ms"), tail: unit("p95-ms"),
		anchor: unit("native-p50-ms"), anchorName: "direct exec of the native build", kind: "ms",
		goal: "≤ 2x", checks: []check{{of: ofRatio, limit: 2}}},
	{figure: "discovery of 1,000 plugins, help cached: `plugins list` (a process)", bench: "BenchmarkDiscovery1000", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("cli-ms"), tail: unit("cli-p95-ms"),
		anchor: unit("kubectl-ms"), anchorName: "kubectl plugin list", kind: "ms",
		goal: "≤ 0.2x", checks: []check{{of: ofRatio, limit: 0.2}}},
	{figure: "discovery of 1,000 plugins, help cached: the server's refresh (in process)", bench: "BenchmarkDiscovery1000", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("refresh-ms"), tail: unit("refresh-p95-ms"),
		anchor: unit("kubectl-ms"), anchorName: "kubectl plugin list", kind: "ms",
		goal: "≤ 0.2x", checks: []check{{of: ofRatio, limit: 0.2}}},
	{figure: "tools/list with 1,000 plugin tools, stdio", bench: "BenchmarkToolsList1000", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("stdio-p50-ms"), tail: unit("stdio-p95-ms"), kind: "ms",
		goal: "≤ 15 ms", checks: []check{{of: ofMedian, limit: 15}}},
	{figure: "tools/list with 1,000 plugin tools, streamable HTTP", bench: "BenchmarkToolsList1000", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("http-p50-ms"), tail: unit("http-p95-ms"), kind: "ms",
		goal: "≤ 15 ms", checks: []check{{of: ofMedian, limit: 15}}},
	{figure: "tools/list with 1,000 plugin tools, size a tool", bench: "BenchmarkToolsList1000", pkg: "./cmd/kubernetes-mcp-server",
		median: unit("bytes-per-tool"), kind: "B",
		goal: "≤ 1.5 KB (1,500 B)", checks: []check{{of: ofMedian, limit: 1500}}},
	{figure: "gateway latency added per API request", bench: "BenchmarkAddedLatency", pkg: "./gateway",
		median: unit("added-p50-ms"), tail: unit("added-p99-ms"), tailName: "p99",
		anchor: unit("direct-p50-ms"), anchorName: "the same request straight to the API server", kind: "ms",
		goal: "≤ 0.5 ms, p99 ≤ 1 ms", checks: []check{{of: ofMedian, limit: 0.5}, {of: ofTail, limit: 1}}},
	{figure: "kubernetes backend, cold call (warm_pool = 0)", bench: "BenchmarkPodCall", pkg: "./sandbox/kubernetes",
		median: unit("cold-p50-ms"), tail: unit("cold-p95-ms"),
		anchor: unit("bare-pod-p50-ms"), anchorName: "a bare Pod, create → Succeeded", kind: "ms",
		goal: "≤ 1.2x", checks: []check{{of: ofRatio, limit: 1.2}}},
	{figure: "kubernetes backend, warm call overhead over a direct exec", bench: "BenchmarkPodCall", pkg: "./sandbox/kubernetes",
		median: unit("warm-overhead-p50-ms"), tail: unit("warm-overhead-p95-ms"),
		anchor: unit("direct-p50-ms"), anchorName: "direct exec of the plugin", kind: "ms",
		goal: "≤ 150 ms", checks: []check{{of: ofMedian, limit: 150}}},
	{figure: "kubernetes backend, throughput, 8 calls in flight, warm pool of 8", bench: "BenchmarkPodCall", pkg: "./sandbox/kubernetes",
		median: unit("warm-8-in-flight-calls/s"), kind: "calls/s", goal: "reported"},
	{figure: "kubernetes backend, throughput, 8 calls in flight, no pool", bench: "BenchmarkPodCall", pkg: "./sandbox/kubernetes",
		median: unit("cold-8-in-flight-calls/s"), kind: "calls/s", goal: "reported"},
	throughputRow(1), throughputRow(2), throughputRow(4), throughputRow(8),
	idleRow("help cached (a restart)", "help-cached"),
	idleRow("help not cached (a first start)", "help-not-cached"),
	{figure: "host memory a call in flight, container backend (8 in flight)", bench: "BenchmarkMemoryPerCall", pkg: "./runtime",
		median: unit("pss-MiB-per-call"), kind: "MiB",
		goal: "≤ 15 MB (14.3 MiB)", checks: []check{{of: ofMedian, limit: 15 * mb}},
		note: func(m map[string]float64) string {
			s, ok1 := m["shims-pss-MiB-per-call"]
			c, ok2 := m["containerd-pss-MiB-per-call"]
			v, ok3 := m["server-pss-MiB-per-call"]
			r, ok4 := m["rss-MiB-per-call"]
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return ""
			}
			return fmt.Sprintf("PSS: shim and below %.1f, containerd %.1f, server %.1f MiB; RSS %.1f MiB", s, c, v, r)
		}},
}

func throughputRow(n int) row {
	return row{figure: fmt.Sprintf("throughput, 100 ms plugin, container backend, max_concurrent %d", n),
		bench: fmt.Sprintf("BenchmarkThroughput/max_concurrent=%d", n), pkg: "./runtime",
		median: unit("calls/s"), anchor: unit("anchor-calls/s"), anchorName: fmt.Sprintf("%d / one call's time", n), kind: "calls/s",
		goal: "≥ 0.8x", checks: []check{{of: ofRatio, limit: 0.8, atLeast: true}},
		note: func(m map[string]float64) string {
			note := warmNote(m)
			if v, ok := m["host-cpu-ms-per-call"]; ok {
				note += fmt.Sprintf("; %.0f ms of host CPU a call", v)
			}
			return note
		}}
}

func idleRow(what, sub string) row {
	return row{figure: "server RSS, idle, 1,000 plugins discovered, " + what, bench: "BenchmarkIdleRSS1000/" + sub, pkg: "./cmd/kubernetes-mcp-server",
		median: unit("rss-MiB"), kind: "MiB",
		goal: "≤ 40 MB (38.1 MiB)", checks: []check{{of: ofMedian, limit: 40 * mb}},
		note: func(m map[string]float64) string {
			if p, ok := m["pss-MiB"]; ok {
				return fmt.Sprintf("PSS %.1f MiB", p)
			}
			return ""
		}}
}

// notes explain how the rows are measured; document prints them.
var notes = []string{
	"Container rows: overhead = (MCP tools/call of a static Go program over stdio with the container backend) − (the same call with `backend = \"none\"`, a direct exec by the server); " +
		"the anchor = (`ctr run --rm --read-only` of the same binary on the same image) − (a direct exec); every round runs the five in random order, " +
		"and the median and p95 are of the per-round differences. A cluster is configured, so every call gets its gateway (and, in the container, its network namespace). " +
		"Each warm sample is followed by a pause for the pool to refill (300 ms runc, 600 ms gVisor); 60 rounds (runc), 40 (gVisor). Ratio = median / anchor median; the p95 goal is p95 / anchor median.",
	"gVisor anchor: ctr runs runsc through the runc shim as the backend does (`--runc-binary` = the server's runscexec link, which execs runsc --platform=ptrace --network=host --oci-seccomp).",
	"wasm rows: the module is compiled before timing; overhead = wasm p50 − native p50 (p95 − native p95), the native build run as a direct exec right after, with the same arguments and stdin.",
	"Gateway: 1,000 GETs of a namespace straight to the API server and 1,000 through the gateway, interleaved in pairs over kept-alive connections; the added latency's quantiles are those of the per-pair differences.",
	"Throughput: the runtime composed as the server composes it (default warm pool), max_concurrent calls always in flight (one worker a slot) over max(16, 6 × max_concurrent) calls; " +
		"the anchor is max_concurrent / the median of 6 calls run alone, 300 ms apart (so warm). Host CPU a call is the whole machine's busy time (/proc/stat) over the timed calls / their number, so anything else running counts too.",
	"Memory a call: 8 calls of a sleeping shell plugin in flight, `warm_pool = 0` so that every container is new (a pool's containers are the same ones, made ahead); per call = (the PSS, from /proc/PID/smaps_rollup, of the namespace's containerd shims and every process under them — runc init, the plugin — " +
		"plus containerd's and the server's growth) / 8, median of 3 rounds. Kernel memory (page tables, cgroups, namespaces, tmpfs) is not counted. MB = 10^6 bytes; the goals are converted to MiB.",
	"Kubernetes rows: on the test node (etcd, kube-apiserver, containerd's CRI and a kubelet, one node). The anchor is a bare Pod of the sandbox image running /bin/true, timed from its create to the watch event that says Succeeded; " +
		"a cold call is the backend's whole Run of a plugin that exits at once (Pod, NetworkPolicy, exec, result; the Pod's deletion after the result is not counted); the warm overhead is the warm call's p50 − a direct exec of the same plugin on the host (p95 − p95), " +
		"the pool refilled before each warm sample; 15 rounds, interleaved. Throughput: 8 workers always calling, 48 calls on a pool of 8 (refilling as they go) and 24 with no pool.",
	"Load averages beside the commands: the 1-minute load when each step started and ended; the benchmarks' own processes count in them too (8 calls in flight raise it to about 5).",
	"\"not measured\": the benchmark did not report the figure in this run (not written yet, or it failed).",
}

// render is the table in Markdown.
func render(rows []row, r *runs) string {
	var b strings.Builder
	b.WriteString("| # | figure | median | p95 | anchor (same run) | ratio | goal | met | benchmark |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for i, row := range rows {
		cells := cellsOf(row, r)
		fmt.Fprintf(&b, "| %d | %s |\n", i+1, strings.Join(cells, " | "))
	}
	return b.String()
}

// cellsOf is a row's cells after the number.
func cellsOf(row row, r *runs) []string {
	src := fmt.Sprintf("`%s` (%s)", row.bench, row.pkg)
	res := r.results[row.bench]
	var med float64
	ok := res != nil
	if ok {
		med, ok = row.median(res.metrics)
	}
	if !ok {
		why := "not measured"
		top, _, _ := strings.Cut(row.bench, "/")
		if r.failed[row.bench] || r.failed[top] {
			why = "failed"
		} else {
			for key := range r.failed {
				if strings.HasSuffix(key, strings.TrimPrefix(row.pkg, ".")) {
					why = "not measured (a run of its package failed)"
				}
			}
		}
		return []string{row.figure, why, "", "", "", row.goal, "—", src}
	}
	m := res.metrics
	values := map[string]float64{ofMedian: med}
	tail := "—"
	if row.tail != nil {
		if t, ok := row.tail(m); ok {
			values[ofTail] = t
			tail = format(t, row.kind)
			if row.tailName != "" {
				tail = row.tailName + " " + tail
			}
		}
	}
	anchor, ratio := "—", "—"
	if row.anchor != nil {
		if a, ok := row.anchor(m); ok && a != 0 {
			anchor = format(a, row.kind) + " (" + row.anchorName + ")"
			values[ofRatio] = med / a
			ratio = formatRatio(med / a)
			if t, ok := values[ofTail]; ok {
				values[ofTailRatio] = t / a
				if row.tailName == "" {
					ratio += fmt.Sprintf(", p95 %s", formatRatio(t/a))
				}
			}
		}
	}
	missed, unknown := false, false
	for _, c := range row.checks {
		v, ok := values[c.of]
		switch {
		case !ok:
			unknown = true
		case c.atLeast && v < c.limit, !c.atLeast && v > c.limit:
			missed = true
		}
	}
	met := "yes"
	if missed {
		met = "**no**"
	} else if unknown || len(row.checks) == 0 {
		met = "—" // nothing to meet: a figure reported only
	}
	figure := row.figure
	if row.note != nil {
		if n := row.note(m); n != "" {
			figure += " — " + n
		}
	}
	return []string{figure, format(med, row.kind), tail, anchor, ratio, row.goal, met, src}
}

func format(v float64, kind string) string {
	switch kind {
	case "ms":
		switch a := math.Abs(v); {
		case a >= 100:
			return fmt.Sprintf("%.0f ms", v)
		case a >= 10:
			return fmt.Sprintf("%.1f ms", v)
		case a >= 1:
			return fmt.Sprintf("%.2f ms", v)
		default:
			return fmt.Sprintf("%.3f ms", v)
		}
	case "calls/s":
		return fmt.Sprintf("%.1f calls/s", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "B":
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%g %s", v, kind)
}

func formatRatio(x float64) string {
	if math.Abs(x) < 0.1 {
		return fmt.Sprintf("%.3fx", x)
	}
	return fmt.Sprintf("%.2fx", x)
}
