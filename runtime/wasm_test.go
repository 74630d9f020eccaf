package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

// withWasmPlugin puts the hostile test guest among the runtime's plugins as
// kubectl-hostile.wasm and discovers again.
func withWasmPlugin(t *testing.T, rt *Runtime, e *env) {
	t.Helper()
	guest := testenv.WasmGuest(t, "sandbox/wasm/testdata/hostile", "hostile")
	data, err := os.ReadFile(guest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "kubectl-hostile.wasm"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A WebAssembly plugin reaches its cluster through the call's gateway, with
// the same policy and audit as a container's: reads pass, a delete is
// denied by default and audited, upgrades are refused, and the other
// cluster is out of reach.
func TestWasmPluginReachesItsClusterOnlyThroughTheGateway(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	rt, e := newRuntimeWith(t, "none", `
[[plugins.rules]]
name = "exec-for-the-test"
plugins = ["hostile"]
verbs = ["get", "create"]
resources = ["pods/exec"]
`)
	rt.audit, _ = openAudit(auditFile, rt.log)
	withWasmPlugin(t, rt, e)
	alpha, beta := e.clusters.All[0], e.clusters.All[1]
	victim := "wasm-victim"
	client := createPod(t, e, victim)
	ctx := context.Background()
	get := func(path string, more ...string) *Result {
		t.Helper()
		res, err := rt.Execute(ctx, Call{Plugin: "hostile", Args: append([]string{"get", path}, more...)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Sandbox != "wasm" {
			t.Fatalf("sandbox = %q, want wasm: %+v", res.Sandbox, res)
		}
		for _, token := range []string{alpha.Token, beta.Token} {
			if strings.Contains(res.Output+res.Error, token) {
				t.Errorf("a cluster token is in the guest's output")
			}
		}
		return res
	}
	only := func(res *Result) gateway.Record {
		t.Helper()
		if len(res.APIRequests) != 1 {
			t.Fatalf("api_requests = %+v, want one", res.APIRequests)
		}
		return res.APIRequests[0]
	}

	res := get("/api/v1/namespaces/" + alpha.Namespace + "/pods")
	if rec := only(res); res.Status != StatusOK || !strings.Contains(res.Output, "status 200") || !strings.Contains(res.Output, victim) ||
		rec.Decision != gateway.Allow || rec.Verb != "list" || rec.Resource != "pods" || rec.Status != 200 {
		t.Errorf("list pods: %+v", res)
	}

	res = get("/api/v1/namespaces/"+alpha.Namespace+"/pods/"+victim, "DELETE")
	if rec := only(res); !strings.Contains(res.Output, "status 403") || rec.Decision != gateway.Deny || rec.Verb != "delete" || rec.Rule != "default_deny" {
		t.Errorf("delete: %+v", res)
	}
	if _, err := client.CoreV1().Pods(alpha.Namespace).Get(ctx, victim, metav1.GetOptions{}); err != nil {
		t.Errorf("the pod is gone after a denied delete: %v", err)
	}
	lines, call := auditLines(t, auditFile, res.CallID)
	if len(lines) != 1 || lines[0].Verb != "delete" || lines[0].Decision != gateway.Deny || call == nil || call["requests_denied"] != float64(1) {
		t.Errorf("audit of the delete: %+v %v", lines, call)
	}

	res = get("/api/v1/namespaces/" + alpha.Namespace + "/secrets")
	if rec := only(res); !strings.Contains(res.Output, "status 403") || rec.Decision != gateway.Deny {
		t.Errorf("list secrets: %+v", res)
	}

	// exec is allowed by a rule, yet a guest cannot upgrade a connection.
	res = get("/api/v1/namespaces/"+alpha.Namespace+"/pods/"+victim+"/exec?command=ls&stdout=true", "GET", "upgrade")
	if rec := only(res); !strings.Contains(res.Output, "status 400") || rec.Decision != gateway.Deny || rec.Rule != gateway.RuleNoUpgrade {
		t.Errorf("exec: %+v", res)
	}

	// The gateway is alpha's only: beta's namespace does not exist there.
	res = get("/api/v1/namespaces/" + beta.Namespace)
	if rec := only(res); !strings.Contains(res.Output, "status 404") || rec.Status != 404 {
		t.Errorf("beta's namespace through alpha's gateway: %+v", res)
	}
	res, err := rt.Execute(ctx, Call{Plugin: "hostile", Cluster: "beta", Args: []string{"get", "/api/v1/namespaces/" + beta.Namespace}})
	if err != nil || !strings.Contains(res.Output, "status 200") || res.Cluster != "beta" {
		t.Errorf("beta's namespace on beta: %v %+v", err, res)
	}
	data, _ := os.ReadFile(auditFile)
	for _, token := range []string{alpha.Token, beta.Token} {
		if strings.Contains(string(data), token) {
			t.Error("a cluster token is in the audit file")
		}
	}
}

// Without a cluster a guest's requests go nowhere, and say so.
func TestWasmPluginWithoutAClusterReachesNothing(t *testing.T) {
	rt, e := newRuntimeWith(t, "none", "")
	withWasmPlugin(t, rt, e)
	none, err := clusters.Load(clusters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rt.clusters = none
	res, err := rt.Execute(context.Background(), Call{Plugin: "hostile", Args: []string{"get", "/api/v1/pods"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status == StatusOK || !strings.Contains(res.Output, "this call has no cluster") || len(res.APIRequests) != 0 {
		t.Errorf("a call without a cluster: %+v", res)
	}
}

// A module is compiled once, at discovery, not at its first call; its calls
// find it compiled; it goes when its file goes. Asserted through the
// backend's counters, not timing.
func TestWasmModuleIsCompiledAtDiscoveryOnly(t *testing.T) {
	rt, e := newRuntimeWith(t, "none", "")
	withWasmPlugin(t, rt, e)
	stats := rt.backends.Wasm.(*wasm.Backend).Stats()
	if n := stats.Compiles.Load(); n != 1 {
		t.Fatalf("%d compilations after discovery, want 1", n)
	}
	hits := stats.Hits.Load()
	for range 2 {
		if res, err := rt.Execute(context.Background(), Call{Plugin: "hostile", Args: []string{"exit", "0"}}); err != nil || res.Status != StatusOK {
			t.Fatalf("call: %v %+v", err, res)
		}
	}
	if n, h := stats.Compiles.Load(), stats.Hits.Load(); n != 1 || h != hits+2 {
		t.Errorf("after two calls: %d compilations (want 1), %d hits (want %d)", n, h, hits+2)
	}
	// Discovering again finds the module compiled too.
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := stats.Compiles.Load(); n != 1 {
		t.Errorf("%d compilations after a second discovery, want 1", n)
	}
	// A plugin that is gone takes its compiled module with it.
	if held := stats.Held.Load(); held != 1 {
		t.Errorf("%d modules held for one plugin", held)
	}
	if err := os.Remove(filepath.Join(e.dir, "kubectl-hostile.wasm")); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if held := stats.Held.Load(); held != 0 {
		t.Errorf("%d modules held after the plugin's file went away, want 0", held)
	}
}

// profile show prints what a guest runs with, from the code the backend
// runs it with: the argv and environment a guest sees are the profile's.
func TestWasmProfileIsWhatTheGuestGets(t *testing.T) {
	rt, e := newRuntimeWith(t, "none", "")
	withWasmPlugin(t, rt, e)
	p, err := rt.Profile(context.Background(), "hostile", "")
	if err != nil {
		t.Fatal(err)
	}
	w := p.Wasm
	if p.Sandbox != "wasm" || w == nil || p.Spec != nil || p.Note != "" {
		t.Fatalf("profile: %+v", p)
	}
	if w.MemoryLimitMiB != int64(rt.cfg.Sandbox.WasmMemoryMiB) || w.Timeout != rt.cfg.Plugins.ExecutionTimeout.String() ||
		!slices.Equal(w.Args, []string{"kubectl-hostile", "ARGS"}) || w.Cluster != "gateway" ||
		!slices.Equal(w.HostFunctions, []string{wasm.Wasi, abi.Module}) || len(p.RequestRules) == 0 {
		t.Errorf("wasm settings: %+v", w)
	}
	var guests []string
	for _, m := range w.Mounts {
		guests = append(guests, m.Guest)
	}
	if !slices.Equal(guests, []string{"/tmp", "/run/kube"}) {
		t.Errorf("mounts: %+v", w.Mounts)
	}
	res, err := rt.Execute(context.Background(), Call{Plugin: "hostile", Args: []string{"hello"}})
	if err != nil || res.Status != StatusOK {
		t.Fatalf("hello: %v %+v", err, res)
	}
	wantArgv := fmt.Sprintf("argv=%q", []string{"kubectl-hostile", "hello"})
	wantEnv := fmt.Sprintf("env=%q", w.Env)
	if !strings.Contains(res.Output, wantArgv) || !strings.Contains(res.Output, wantEnv) {
		t.Errorf("the guest got\n%s\nthe profile says\n%s\n%s", res.Output, wantArgv, wantEnv)
	}
}

// kube-score, a real third-party plugin built unchanged for wasip1, finds in
// the wasm sandbox what its native build finds on the same manifest (its
// output order varies from run to run, natively too, so findings are
// compared as sets).
func TestKubeScoreAsWasmFindsWhatItsNativeBuildFinds(t *testing.T) {
	rt, e := newRuntimeWith(t, "none", "")
	copyPlugin(t, filepath.Join(testenv.WasmPlugins(t), "kubectl-score.wasm"), filepath.Join(e.dir, "kubectl-score.wasm"))
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	args := []string{"score", "--output-format", "ci", "-"}
	res, err := rt.Execute(context.Background(), Call{Plugin: "score", Args: args, Stdin: testenv.ScoredManifest})
	if err != nil {
		t.Fatal(err)
	}
	native := exec.Command(filepath.Join(testenv.RealPlugins(t), "kubectl-score"), args...)
	native.Stdin = strings.NewReader(testenv.ScoredManifest)
	out, err := native.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	wasmFindings, nativeFindings := findings(res.Output), findings(string(out))
	if res.Sandbox != "wasm" || len(nativeFindings) < 5 || !slices.Equal(wasmFindings, nativeFindings) || res.ExitCode != native.ProcessState.ExitCode() {
		t.Errorf("sandbox %s, exit %d (native %d)\nwasm findings:\n%s\nnative findings:\n%s\nstderr: %s", res.Sandbox, res.ExitCode,
			native.ProcessState.ExitCode(), strings.Join(wasmFindings, "\n"), strings.Join(nativeFindings, "\n"), res.Error)
	}
}

// findings are kube-score's ci lines, sorted.
func findings(out string) []string {
	var lines []string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "[") {
			lines = append(lines, line)
		}
	}
	slices.Sort(lines)
	return lines
}

// The pod-list example, client-go over the guest SDK, lists the target
// cluster's pods through the gateway, with its flags as parameters.
func TestPodListExampleListsPodsThroughTheGateway(t *testing.T) {
	rt, e := newRuntimeWith(t, "none", "")
	copyPlugin(t, filepath.Join(testenv.WasmPlugins(t), "kubectl-pod_list.wasm"), filepath.Join(e.dir, "kubectl-pod_list.wasm"))
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	alpha := e.clusters.All[0]
	createPod(t, e, "listed-by-wasm")
	info, err := rt.Plugin("pod_list")
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, p := range info.Parameters {
		flags = append(flags, p.Name)
	}
	if !slices.Contains(flags, "namespace") || !slices.Contains(flags, "selector") {
		t.Errorf("parameters from --help: %v (%s)", flags, info.HelpWarning)
	}
	res, err := rt.Execute(context.Background(), Call{Plugin: "pod_list", Args: []string{"-n", alpha.Namespace}})
	if err != nil || res.Status != StatusOK || !strings.Contains(res.Output, "listed-by-wasm") || res.Sandbox != "wasm" {
		t.Fatalf("pod-list: %v %+v", err, res)
	}
	if len(res.APIRequests) == 0 || res.APIRequests[0].Verb != "list" || res.APIRequests[0].Resource != "pods" || res.APIRequests[0].Decision != gateway.Allow {
		t.Errorf("api_requests: %+v", res.APIRequests)
	}
}

func copyPlugin(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// importsEnvFoo is a WASI command that imports env.foo, which no host offers.
var importsEnvFoo = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type 0: () -> ()
	0x02, 0x0b, 0x01, 0x03, 'e', 'n', 'v', 0x03, 'f', 'o', 'o', 0x00, 0x00, // import env.foo
	0x03, 0x02, 0x01, 0x00, // function 1 of type 0
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x01, // export _start
	0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // its body: end
}

// A module that imports what the host does not offer is listed with a
// warning naming the import, its help is not run, and a call of it fails
// with that error.
func TestWasmPluginWithAnUnknownImportSaysWhich(t *testing.T) {
	rt, e := newRuntimeWith(t, "none", "")
	if err := os.WriteFile(filepath.Join(e.dir, "kubectl-needs_foo.wasm"), importsEnvFoo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := rt.Plugin("needs_foo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info.HelpWarning, "cannot run") || !strings.Contains(info.HelpWarning, "env.foo") {
		t.Errorf("warning: %q", info.HelpWarning)
	}
	res, err := rt.Execute(context.Background(), Call{Plugin: "needs_foo"})
	if err == nil && (res.Status == StatusOK || !strings.Contains(res.Message+res.Error, "env.foo")) {
		t.Errorf("call: %+v", res)
	}
	if err != nil && !strings.Contains(err.Error(), "env.foo") {
		t.Errorf("call: %v", err)
	}
}
