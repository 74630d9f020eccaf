#!/usr/bin/env bash
# Runs the benchmarks behind the speed table one package at a time (never
# two at once: on 2 cores timings get noisy), each with its output shown
# and kept, then prints the table (bench/table) and writes it, with the
# date and the machine, to bench/results.md. A benchmark that fails leaves
# its rows "failed"; the run goes on. About 5 minutes on 2 cores once
# `make test-deps` has built what the benchmarks need.
#
# Benchmarks report into the table with b.ReportMetric, one unit per
# figure (e.g. "cold-overhead-p50-ms"); bench/table/rows.go says which
# benchmark and units make each row.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
GO=${GO:-go}
out=$(mktemp -d "${TMPDIR:-/tmp}/kmcp-bench.XXXXXX")
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
read -r load _ </proc/loadavg
if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
	echo "bench: load average $load on $(nproc) cores: something else runs, timings will be noisy" >&2
fi

# shown prints argv as a shell would read it back.
shown() {
	local a s=()
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./=:,+-]+$ ]]; then s+=("$a"); else s+=("'$a'"); fi
	done
	echo "${s[*]}"
}

# step NAME BENCHTIME REGEX PACKAGE runs the package's benchmarks matching
# REGEX. Those that take a fixed number of samples of their own run once
# (1x): a longer -benchtime would run their set-up twice; the others take
# b.N samples (or rounds).
steps=0
step() {
	local name=$1 benchtime=$2 regex=$3 pkg=$4
	local cmd=("$GO" test -count=1 -timeout 30m -run '^$' -bench "$regex" -benchtime "$benchtime" "$pkg")
	local file=$out/$((++steps))-$name.txt before after
	read -r before _ </proc/loadavg
	echo "# command: $(shown "${cmd[@]}")" >"$file"
	echo "bench: $(shown "${cmd[@]}")" >&2
	"${cmd[@]}" 2>&1 | tee -a "$file" >&2 || echo "bench: $name failed; its rows say so" >&2
	read -r after _ </proc/loadavg
	# The table prints it beside the command: what else ran meanwhile.
	echo "# load: $before at the start, $after at the end" >>"$file"
}

step container 1x '^(BenchmarkMCPCallRunc|BenchmarkMCPCallGVisor)$' ./cmd/kubernetes-mcp-server
step discovery 15x '^BenchmarkDiscovery1000$' ./cmd/kubernetes-mcp-server
step toolslist 20x '^BenchmarkToolsList1000$' ./cmd/kubernetes-mcp-server
step idle 5x '^BenchmarkIdleRSS1000$' ./cmd/kubernetes-mcp-server
step runtime 1x '^(BenchmarkThroughput|BenchmarkMemoryPerCall)$' ./runtime
step gateway 1x '^BenchmarkAddedLatency$' ./gateway
step kubernetes 1x '^BenchmarkPodCall$' ./sandbox/kubernetes
step wasm 100x '^(BenchmarkSmallModule|BenchmarkPodListExample|BenchmarkKubeScore)$' ./sandbox/wasm

"$GO" run ./bench/table -out bench/results.md -command "make bench" -elapsed "$(($(date +%s) - start))s" -load "$load" "$out"/*.txt
# The profile of one call, measured once and kept by hand (bench/breakdown.md).
{ echo; cat bench/breakdown.md; } >>bench/results.md
