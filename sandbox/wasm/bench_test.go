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

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// benchRuns runs plugin with args b.N times on one backend, its module
// compiled beforehand, and reports p50 and p95 beside a direct exec of the
// native build, measured in the same run, when native is not "".
func benchRuns(b *testing.B, plugin string, args []string, stdin []byte, native string) {
	benchRunsWith(b, plugin, args, stdin, native, nil, nil)
}

// benchRunsWith is benchRuns with the guest's cluster access and the
// native build's environment.
func benchRunsWith(b *testing.B, plugin string, args []string, stdin []byte, native string, cluster *sandbox.ClusterAccess, nativeEnv []string) {
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
		res, err := backend.Run(context.Background(), sandbox.Spec{ID: "bench", Plugin: plugin, Args: args, Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &out, Cluster: cluster})
		d := time.Since(start)
		if err != nil || res.ExitCode != 0 && native == "" || res.Stopped || res.Signal != "" {
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
			cmd.Env = nativeEnv
			start := time.Now()
			cmd.Run()
			nativeTimes = append(nativeTimes, time.Since(start))
		}
		b.ReportMetric(ms(quantile(nativeTimes, 0.5)), "native-p50-ms")
		b.ReportMetric(ms(quantile(nativeTimes, 0.95)), "native-p95-ms")
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
// compiled module: instantiate, run, close; beside a direct exec of its
// native build.
func BenchmarkSmallModule(b *testing.B) {
	benchRuns(b, testenv.WasmGuest(b, "sandbox/wasm/testdata/small", "small"), []string{"hello"}, nil,
		buildNative(b, "./sandbox/wasm/testdata/small", "kubectl-small"))
}

// buildNative builds the Go package pkg (relative to the repository root)
// for this machine, static, and returns the program's path.
func buildNative(b *testing.B, pkg, name string) string {
	native := filepath.Join(b.TempDir(), name)
	root, err := images.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", native, pkg)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the native %s: %v\n%s", pkg, err, out)
	}
	return native
}

// BenchmarkNetHTTPModule is the same for the hostile guest (15 MB, with
// net/http and the guest SDK linked in).
func BenchmarkNetHTTPModule(b *testing.B) {
	benchRuns(b, testenv.WasmGuest(b, "sandbox/wasm/testdata/hostile", "hostile"), []string{"exit", "0"}, nil, "")
}

// BenchmarkKubeScore is kube-score v1.20.0 built for wasip1 scoring a
// manifest from stdin, beside a direct exec of its native build.
func BenchmarkKubeScore(b *testing.B) {
	benchRuns(b, filepath.Join(testenv.WasmPlugins(b), "kubectl-score.wasm"), []string{"score", "-"}, []byte(testenv.ScoredManifest),
		filepath.Join(testenv.RealPlugins(b), "kubectl-score"))
}

// BenchmarkPodListExample is the client-go example listing a namespace's
// pods of a real cluster through a real gateway, beside a direct exec of
// its native build talking to the same cluster straight.
func BenchmarkPodListExample(b *testing.B) {
	alpha := testenv.TestClusters(b).All[0]
	gw, err := gateway.New(gateway.Config{CallID: "bench", Plugin: "pod_list", Cluster: alpha.Name, Upstream: alpha.REST,
		Decide: func(gateway.Request) gateway.Decision { return gateway.Decision{Allowed: true, Rule: "bench"} }})
	if err != nil {
		b.Fatal(err)
	}
	defer gw.Close()
	native := buildNative(b, "./examples/wasm/pod-list", "kubectl-pod_list")
	benchRunsWith(b, filepath.Join(testenv.WasmPlugins(b), "kubectl-pod_list.wasm"), []string{"-n", alpha.Namespace}, nil, native,
		&sandbox.ClusterAccess{Serve: gw.Serve, Handler: gw.Handler(), Kubeconfig: gw.Kubeconfig}, []string{"KUBECONFIG=" + alpha.Kubeconfig})
}
