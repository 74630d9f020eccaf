package wasm_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// benchRuns runs plugin with args b.N times on one backend, its module
// compiled beforehand, and reports p50 and p95 beside a direct exec of the
// native build, measured in the same run, when native is not "".
func benchRuns(b *testing.B, plugin string, args []string, stdin []byte, native string) {
	cacheRoot, _ := os.UserCacheDir()
	backend, err := wasm.New(context.Background(), wasm.Config{CacheDir: filepath.Join(cacheRoot, "kubernetes-mcp-server", "wasm")})
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	if err := backend.Prepare(context.Background(), plugin); err != nil {
		b.Fatal(err)
	}
	once := func() time.Duration {
		var out bytes.Buffer
		start := time.Now()
		res, err := backend.Run(context.Background(), sandbox.Spec{ID: "bench", Plugin: plugin, Args: args, Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &out})
		d := time.Since(start)
		if err != nil || res.ExitCode != 0 && native == "" {
			b.Fatalf("run: %v %+v\n%s", err, res, out.String())
		}
		return d
	}
	once() // warm
	var wasmTimes, nativeTimes []time.Duration
	b.ResetTimer()
	for range b.N {
		wasmTimes = append(wasmTimes, once())
	}
	b.StopTimer()
	if native != "" {
		for range b.N {
			cmd := exec.Command(native, args...)
			cmd.Stdin = bytes.NewReader(stdin)
			start := time.Now()
			cmd.Run()
			nativeTimes = append(nativeTimes, time.Since(start))
		}
		b.ReportMetric(ms(quantile(nativeTimes, 0.5)), "native-p50-ms")
	}
	b.ReportMetric(ms(quantile(wasmTimes, 0.5)), "p50-ms")
	b.ReportMetric(ms(quantile(wasmTimes, 0.95)), "p95-ms")
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*q)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkSmallModule is one call of a small Go guest (2 MB), from its
// compiled module: instantiate, run, close.
func BenchmarkSmallModule(b *testing.B) {
	benchRuns(b, testenv.WasmGuest(b, "sandbox/wasm/testdata/small", "small"), []string{"hello"}, nil, "")
}

// BenchmarkNetHTTPModule is the same for the hostile guest (15 MB, with
// net/http and the guest SDK linked in).
func BenchmarkNetHTTPModule(b *testing.B) {
	benchRuns(b, testenv.WasmGuest(b, "sandbox/wasm/testdata/hostile", "hostile"), []string{"exit", "0"}, nil, "")
}
