package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// The pin tests count the copies pinned calls leave in the temporary folder.
func TestMain(m *testing.M) { os.Exit(testenv.RunWithPrivateTemp(m)) }

// fixtures are small plugins of our own; each one does one thing.
var fixtures = map[string]string{
	"kubectl-echo":      `for a in "$@"; do echo "$a"; done; echo "KUBECONFIG=$KUBECONFIG"; echo "HOME=$HOME"`,
	"kubectl-showkube":  `cat "$KUBECONFIG"`,
	"kubectl-exit3":     `echo failing >&2; exit 3`,
	"kubectl-sleeper":   `echo "start $(date +%s%N)" >> "$SLEEP_LOG"; sleep "${1:-1}"; echo "end $(date +%s%N)" >> "$SLEEP_LOG"`,
	"kubectl-flood":     `yes 0123456789`,
	"kubectl-hang":      `[ "$1" = --help ] && exit 0; sleep 300 & echo $! > "$1"; wait`,
	"kubectl-env":       `env`,
	"kubectl-delete_it": `echo deleted`,
	"kubectl-nap":       `[ "$1" = --help ] && exit 0; sleep "$1"; echo woke`,
}

type env struct {
	dir      string
	clusters *testenv.Clusters
}

// newRuntime builds a runtime over the fixture plugins, the real kubens and
// the two real test clusters, from a configuration file as operators write it.
func newRuntime(t *testing.T, toml string) (*Runtime, *env) {
	return newRuntimeWith(t, "none", toml)
}

// newRuntimeWith is newRuntime on a given sandbox backend.
func newRuntimeWith(t *testing.T, backend, toml string) (*Runtime, *env) {
	t.Helper()
	return newWrappedRuntime(t, backend, toml, nil)
}

// newWrappedRuntime is newRuntimeWith with the native backend wrapped by
// wrap, when it is not nil, so a test can watch what runs.
func newWrappedRuntime(t *testing.T, backend, toml string, wrap func(sandbox.Backend) sandbox.Backend) (*Runtime, *env) {
	t.Helper()
	tc := testenv.TestClusters(t)
	dir := t.TempDir()
	for name, body := range fixtures {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kubens, err := exec.LookPath("kubens")
	if err != nil {
		t.Fatalf("kubens (Debian's kubectx) is needed: %v", err)
	}
	os.Symlink(kubens, filepath.Join(dir, "kubectl-ns"))
	file := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
[plugins]
plugin_paths = []
allow_any_plugin = true
%s
[clusters]
kubeconfig_dir = %q
default_cluster = "alpha"
%s`, toml, tc.KubeconfigDir, testenv.SandboxTOML(t, backend, "kmcp-runtime"))), 0o600)
	cfg, err := config.Load(config.Options{File: file, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := clusters.Load(clusters.Options{KubeconfigDir: cfg.Clusters.KubeconfigDir, DefaultCluster: cfg.Clusters.DefaultCluster})
	if err != nil {
		t.Fatal(err)
	}
	// Plugins find kubectl (kubens calls it) on the machine's PATH, after ours.
	rt := composeRuntime(t, cfg, compose.Env{PathEnv: dir + ":" + os.Getenv("PATH"), KrewRoot: t.TempDir()}, reg, wrap)
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, &env{dir: dir, clusters: tc}
}

// composeRuntime builds a runtime as the server does, through the
// composition root's code; the test closes it.
func composeRuntime(t *testing.T, cfg *config.Config, env compose.Env, reg *clusters.Registry, wrap func(sandbox.Backend) sandbox.Backend) *Runtime {
	t.Helper()
	parts, err := compose.Build(context.Background(), cfg, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		parts.Backends.Native = wrap(parts.Backends.Native)
	}
	rt, err := New(cfg, Options{Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container, Wasm: parts.Wasm, Clusters: reg})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestExecuteGivesThePluginOnlyItsCluster(t *testing.T) {
	rt, e := newRuntime(t, "")
	ctx := context.Background()
	// The plugin's kubeconfig names the call's gateway and holds no secret;
	// the gateway adds the credentials.
	for _, target := range e.clusters.All {
		res, err := rt.Execute(ctx, Call{Plugin: "showkube", Cluster: target.Name})
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{e.clusters.All[0].Token, e.clusters.All[1].Token, "token", "password", "client-key", "exec", "auth-provider"} {
			if strings.Contains(res.Output, secret) {
				t.Errorf("call on %s: the plugin's kubeconfig contains %q:\n%s", target.Name, secret, res.Output)
			}
		}
		if !strings.Contains(res.Output, "server: https://127.0.0.1:") || strings.Contains(res.Output, target.Server) {
			t.Errorf("call on %s: kubeconfig does not name the gateway:\n%s", target.Name, res.Output)
		}
		if res.Status != StatusOK || res.Sandbox != "none" || res.Cluster != target.Name || res.CallID == "" {
			t.Errorf("result = %+v", res)
		}
	}
	// The real kubens lists the target cluster's namespaces, through kubectl.
	for _, target := range e.clusters.All {
		res, err := rt.Execute(ctx, Call{Plugin: "ns", Cluster: target.Name})
		if err != nil {
			t.Fatal(err)
		}
		for _, other := range e.clusters.All {
			if strings.Contains(res.Output, other.Namespace) != (other.Name == target.Name) {
				t.Errorf("kubens on %s (exit %d):\n%s\n%s", target.Name, res.ExitCode, res.Output, res.Error)
			}
		}
	}
	// The default cluster is used when a call names none.
	if res, err := rt.Execute(ctx, Call{Plugin: "ns"}); err != nil || res.Cluster != "alpha" || !strings.Contains(res.Output, "only-alpha") {
		t.Errorf("default cluster: %v %+v", err, res)
	}
}

func TestExecutePassesArgvAndAMinimalEnvironment(t *testing.T) {
	t.Setenv("SERVER_SECRET", "never-in-a-plugin")
	rt, _ := newRuntime(t, "")
	args := []string{"--namespace=kube-system", "$(id)", "a b; rm -rf /", ""}
	res, err := rt.Execute(context.Background(), Call{Plugin: "echo", Args: args})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(res.Output, "\n")
	for i, a := range args {
		if lines[i] != a {
			t.Errorf("argument %d reached the plugin as %q, want %q", i, lines[i], a)
		}
	}
	res, _ = rt.Execute(context.Background(), Call{Plugin: "env"})
	if strings.Contains(res.Output, "never-in-a-plugin") {
		t.Errorf("the server's environment leaked:\n%s", res.Output)
	}
	for _, v := range []string{"PATH=", "HOME=", "KUBECONFIG="} {
		if !strings.Contains(res.Output, v) {
			t.Errorf("no %s in the plugin's environment:\n%s", v, res.Output)
		}
	}
}

func TestExecuteRefusesBeforeRunning(t *testing.T) {
	rt, _ := newRuntime(t, `blocked_plugins = ["exit3"]`)
	var cases []struct {
		name string
		call Call
		want string
	}
	add := func(name string, call Call, want string) {
		cases = append(cases, struct {
			name string
			call Call
			want string
		}{name, call, want})
	}
	for _, flag := range clusterFlags {
		add("--"+flag+"=v", Call{Plugin: "echo", Args: []string{"--" + flag + "=/etc/x"}}, "not allowed")
		add("--"+flag+" v", Call{Plugin: "echo", Args: []string{"--" + flag, "/etc/x"}}, "not allowed")
	}
	add("-s", Call{Plugin: "echo", Args: []string{"-s", "https://evil"}}, "-s is kubectl's --server")
	add("-s=", Call{Plugin: "echo", Args: []string{"-s=https://evil"}}, "-s is kubectl's --server")
	add("-sURL", Call{Plugin: "echo", Args: []string{"-shttps://evil"}}, "-s is kubectl's --server")
	add("NUL in argument", Call{Plugin: "echo", Args: []string{"a\x00b"}}, "NUL")
	add("unknown plugin", Call{Plugin: "nope"}, `plugin "nope" not found`)
	add("path in name", Call{Plugin: "../echo"}, "may not contain a path")
	add("slash in name", Call{Plugin: "/bin/sh"}, "may not contain a path")
	add("NUL in name", Call{Plugin: "echo\x00"}, "NUL")
	add("non-ASCII name", Call{Plugin: "échо"}, "outside printable ASCII")
	add("unknown cluster", Call{Plugin: "echo", Cluster: "gamma"}, `unknown cluster "gamma" (known: alpha, beta)`)
	add("blocked", Call{Plugin: "exit3"}, "blocked")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := rt.Execute(context.Background(), c.call)
			if res != nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("result %+v, err %v; want a refusal containing %q", res, err, c.want)
			}
		})
	}
	if info, _ := rt.Plugin("echo"); info.ExecutionCount != 0 {
		t.Errorf("refused calls were counted as runs: %d", info.ExecutionCount)
	}
}

func TestExecuteWithoutASandboxRefusesAndSaysHow(t *testing.T) {
	cfg, err := config.Load(config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	os.WriteFile(filepath.Join(dir, "kubectl-spy"), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755)
	cfg.Plugins.AllowAnyPlugin = true
	pol, err := compose.Policy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(cfg, Options{Policy: pol, Dirs: []string{dir}}) // no backend
	if err != nil {
		t.Fatal(err)
	}
	rt.Discover(context.Background())
	_, err = rt.Execute(context.Background(), Call{Plugin: "spy"})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `backend = "none"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the plugin ran without a sandbox")
	}
}

func TestExecuteEndings(t *testing.T) {
	rt, _ := newRuntime(t, `execution_timeout = "500ms"`+"\nmax_output = 4096")
	ctx := context.Background()

	res, err := rt.Execute(ctx, Call{Plugin: "exit3"})
	if err != nil || res.Status != StatusFailed || res.ExitCode != 3 || res.Error != "failing\n" || !strings.Contains(res.Message, "code 3") {
		t.Errorf("exit3: %v %+v", err, res)
	}
	start := time.Now()
	res, err = rt.Execute(ctx, Call{Plugin: "sleeper", Args: []string{"30"}})
	if err != nil || res.Status != StatusTimeout || res.ExitCode != -1 || !strings.Contains(res.Message, "timed out after 500ms") {
		t.Errorf("sleeper: %v %+v", err, res)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a 500ms timeout took %s", d)
	}
	res, err = rt.Execute(ctx, Call{Plugin: "flood"})
	if err != nil || !res.Truncated || len(res.Output) != 4096 || !strings.Contains(res.Message, "truncated") {
		t.Errorf("flood: %v truncated=%v len=%d %q", err, res.Truncated, len(res.Output), res.Message)
	}
	if info, _ := rt.Plugin("exit3"); info.ExecutionCount != 1 || info.FailureCount != 1 || info.LastUsed == nil {
		t.Errorf("stats: %+v", info)
	}
}

// A cancelled call's plugin, and what it started, are gone within a second.
func TestExecuteCancellation(t *testing.T) {
	rt, _ := newRuntime(t, "")
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Result)
	go func() {
		res, _ := rt.Execute(ctx, Call{Plugin: "hang", Args: []string{pidFile}})
		done <- res
	}()
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		data, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if child == 0 {
		t.Fatal("the plugin did not start")
	}
	cancelled := time.Now()
	cancel()
	select {
	case res := <-done:
		if res == nil || res.Status != StatusCancelled {
			t.Errorf("result = %+v", res)
		}
	case <-time.After(time.Second):
		t.Fatal("Execute did not return within a second of the cancellation")
	}
	for testenv.ProcessAlive(child) {
		if time.Since(cancelled) > time.Second {
			t.Fatalf("process %d still runs a second after the cancellation", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecuteConcurrencyLimit(t *testing.T) {
	rt, _ := newRuntime(t, "max_concurrent = 2")
	logFile := filepath.Join(t.TempDir(), "sleep.log")
	// The plugin's environment is minimal, so a wrapper tells the sleeper where to log.
	wrapper := filepath.Join(filepath.Dir(rt.discovery.List()[0].ResolvedPath), "kubectl-sleeplog")
	os.WriteFile(wrapper, []byte("#!/bin/sh\n[ \"$1\" = --help ] && exit 0\nSLEEP_LOG="+logFile+" exec kubectl-sleeper 0.4\n"), 0o755)
	rt.Discover(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, err := rt.Execute(context.Background(), Call{Plugin: "sleeplog"}); err != nil || res.Status != StatusOK {
				t.Errorf("%v %+v", err, res)
			}
		}()
	}
	wg.Wait()
	data, _ := os.ReadFile(logFile)
	most, runs, err := testenv.MaxOverlap(string(data))
	if err != nil || runs != 4 {
		t.Fatalf("%d runs, %v:\n%s", runs, err, data)
	}
	if most != 2 {
		t.Errorf("at most %d calls overlapped, want exactly 2 (max_concurrent)", most)
	}
}
