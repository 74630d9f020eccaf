package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// e2eFixtures are plugins of our own, each with one behaviour.
var e2eFixtures = map[string]string{
	"kubectl-echo": `if [ "$1" = --help ]; then cat <<'HELP'
Prints its arguments, one per line.

Usage:
  kubectl echo [flags] [args]

Flags:
      --name string     who to greet
      --count int       how often (default 1)
      --loud            shout
      --label strings   labels to attach
HELP
exit 0; fi
for a in "$@"; do echo "$a"; done`,
	"kubectl-exit3": `echo "something broke" >&2; exit 3`,
	// The sleeper reports when it ran on stdout: no sandbox can write our files.
	"kubectl-sleeper": `[ "$1" = --help ] && exit 0; echo "start $(date +%s%N)"; sleep "$1"; echo "end $(date +%s%N)"`,
	// The hang's sleep carries a unique duration, so the host can find it.
	"kubectl-hang":      `[ "$1" = --help ] && exit 0; trap '' TERM; sleep "$1" & wait`,
	"kubectl-flood":     `[ "$1" = --help ] && exit 0; yes flood`,
	"kubectl-delete_it": `echo deleted`,
	"kubectl-touch":     `touch "$1"`,
}

type e2eEnv struct {
	dir, config string
	env         []string
	clusters    *testenv.Clusters
}

// backends are the sandbox backends every end-to-end test runs under:
// the container sandbox, one Pod per call on the test node, and, as the
// operator's explicit choice, none.
var backends = []string{"container", "kubernetes", "none"}

// newE2E prepares the plugins (our fixtures, real kubens and kube-score),
// the two real clusters and a configuration as an operator writes it.
func newE2E(t *testing.T, backend, extra string) *e2eEnv {
	t.Helper()
	tc := testenv.TestClusters(t)
	dir := t.TempDir()
	for name, body := range e2eFixtures {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plugins := testenv.RealPlugins(t)
	for _, name := range []string{"kubectl-ns", "kubectl-score"} {
		os.Symlink(filepath.Join(plugins, name), filepath.Join(dir, name))
	}
	config := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(config, []byte(fmt.Sprintf(`
[plugins]
plugin_paths = []
auto_discovery = false
allowed_plugins = ["echo", "exit3", "sleeper", "hang", "flood", "delete_it", "touch", "ns", "score", "new*"]
%s
[clusters]
kubeconfig_dir = %q
default_cluster = "alpha"
%s`, extra, tc.KubeconfigDir, testenv.SandboxTOML(t, backend, "kmcp-e2e"))), 0o600)
	return &e2eEnv{dir: dir, config: config, clusters: tc, env: []string{
		// Our plugins first; kubectl (kubens calls it) from the machine's PATH.
		"PATH=" + dir + ":" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(), "KREW_ROOT=" + t.TempDir(), "XDG_CACHE_HOME=" + t.TempDir(),
	}}
}

type session struct {
	*mcp.ClientSession
	mu          sync.Mutex
	listChanged int
	progress    []float64
}

func connectStdio(t *testing.T, e *e2eEnv) *session {
	t.Helper()
	cmd := exec.Command(binary, "--config", e.config, "--log-level", "debug")
	cmd.Env = e.env
	cmd.Stderr = serverLog(t)
	return connect(t, &mcp.CommandTransport{Command: cmd})
}

// serverLog is a file for a server's log, printed if the test fails.
func serverLog(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(f.Name())
			t.Logf("server log:\n%s", data)
		}
	})
	return f
}

func connect(t *testing.T, transport mcp.Transport) *session {
	t.Helper()
	s := &session{}
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			s.mu.Lock()
			s.listChanged++
			s.mu.Unlock()
		},
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			s.mu.Lock()
			s.progress = append(s.progress, r.Params.Progress)
			s.mu.Unlock()
		},
	})
	// The SSE transport's stream lives as long as this context: end it with the session.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cs, err := client.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	s.ClientSession = cs
	return s
}

func tools(t *testing.T, s *session) map[string]*mcp.Tool {
	t.Helper()
	res, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		out[tool.Name] = tool
	}
	return out
}

// callResult is a tool result's structuredContent.
type callResult struct {
	CallID   string `json:"call_id"`
	Plugin   string `json:"plugin"`
	Cluster  string `json:"cluster"`
	Output   string `json:"output"`
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
	Sandbox  string `json:"sandbox"`
	Status   string `json:"status"`
	Message  string `json:"message"`
}

func call(t *testing.T, s *session, ctx context.Context, tool string, args map[string]any) (*mcp.CallToolResult, callResult) {
	t.Helper()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var r callResult
	if res.StructuredContent != nil {
		data, _ := json.Marshal(res.StructuredContent)
		json.Unmarshal(data, &r)
	}
	return res, r
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestE2EStdio(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testStdio(t, backend) })
	}
}

func testStdio(t *testing.T, backend string) {
	e := newE2E(t, backend, "")
	s := connectStdio(t, e)
	ctx := context.Background()

	all := tools(t, s)
	for _, name := range []string{"plugins_list", "plugins_info", "plugins_discover", "plugins_execute"} {
		if all[name] == nil {
			t.Errorf("no management tool %s", name)
		}
	}
	if all["plugins_install"] != nil {
		t.Error("plugins_install is listed before it works")
	}
	for _, name := range []string{"echo", "exit3", "sleeper", "hang", "flood", "delete_it", "touch", "ns", "score"} {
		tool := all["plugin_"+name]
		if tool == nil {
			t.Errorf("no tool plugin_%s", name)
			continue
		}
		a := tool.Annotations
		if a == nil || a.Title != "Plugin: "+name || a.ReadOnlyHint || a.OpenWorldHint == nil || !*a.OpenWorldHint ||
			a.DestructiveHint == nil || *a.DestructiveHint != (name == "delete_it") {
			t.Errorf("plugin_%s annotations: %+v", name, a)
		}
	}
	if len(all) != 4+9 {
		t.Errorf("%d tools: %v", len(all), slices.Sorted(func(yield func(string) bool) {
			for k := range all {
				if !yield(k) {
					return
				}
			}
		}))
	}
	schema, _ := json.Marshal(all["plugin_echo"].InputSchema)
	for _, prop := range []string{`"name"`, `"count"`, `"loud"`, `"label"`, `"args"`, `"cluster"`} {
		if !strings.Contains(string(schema), prop) {
			t.Errorf("plugin_echo's input schema has no %s: %s", prop, schema)
		}
	}

	// plugins_execute and a plugin_* tool both run a plugin.
	res, r := call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "echo", "args": []string{"a b", "$(id)"}})
	if res.IsError || r.ExitCode != 0 || r.Output != "a b\n$(id)\n" || r.Sandbox != backend || r.Cluster != "alpha" {
		t.Errorf("plugins_execute: isError=%v %+v\n%s", res.IsError, r, text(res))
	}
	res, r = call(t, s, ctx, "plugin_echo", map[string]any{"name": "x y", "count": 2, "loud": true, "label": []string{"a", "b"}, "args": []string{"pos"}})
	want := "--name=x y\n--count=2\n--loud\n--label=a\n--label=b\npos\n"
	if res.IsError || r.Output != want {
		t.Errorf("plugin_echo: isError=%v output %q, want %q\n%s", res.IsError, r.Output, want, text(res))
	}
	if !strings.Contains(text(res), "sandbox: "+backend) || r.Sandbox != backend {
		t.Errorf("the result does not say which sandbox ran it (%s):\n%s", backend, text(res))
	}

	// Real plugins: kubens on each real cluster, kube-score on a manifest.
	for _, c := range e.clusters.All {
		res, r = call(t, s, ctx, "plugin_ns", map[string]any{"cluster": c.Name})
		if res.IsError || !strings.Contains(r.Output, c.Namespace) || r.Cluster != c.Name {
			t.Errorf("kubens on %s: %+v", c.Name, r)
		}
		for _, other := range e.clusters.All {
			if other.Name != c.Name && strings.Contains(r.Output, other.Namespace) {
				t.Errorf("kubens on %s sees %s", c.Name, other.Namespace)
			}
		}
	}
	// The manifest travels on stdin: a sandboxed plugin reads no file of ours.
	_, r = call(t, s, ctx, "plugin_score", map[string]any{"args": []string{"score", "-"}, "stdin": testenv.ScoredManifest})
	if !strings.Contains(r.Output, "apps/v1/Deployment web") {
		t.Errorf("kube-score: exit %d\n%s\n%s", r.ExitCode, r.Output, r.Error)
	}

	// A plugin that fails is an error result with the reason in words.
	res, r = call(t, s, ctx, "plugin_exit3", nil)
	if !res.IsError || r.ExitCode != 3 || r.Status != "failed" || !strings.Contains(text(res), "something broke") {
		t.Errorf("exit3: isError=%v %+v\n%s", res.IsError, r, text(res))
	}

	// Redirecting cluster access is refused before anything runs.
	marker := filepath.Join(t.TempDir(), "ran")
	res, _ = call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "touch", "args": []string{marker, "--kubeconfig=/etc/x"}})
	if !res.IsError || !strings.Contains(text(res), "--kubeconfig=/etc/x") {
		t.Errorf("--kubeconfig not refused: %s", text(res))
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a refused call ran its plugin")
	}

	// Bad input gets a clear error and the server keeps serving.
	bad := []struct {
		tool string
		args map[string]any
	}{
		{"plugins_execute", map[string]any{"plugin": "../../bin/sh"}},
		{"plugins_execute", map[string]any{"plugin": "echo\x00"}},
		{"plugins_execute", map[string]any{"plugin": "échо"}},
		{"plugins_execute", map[string]any{"plugin": "echo", "args": []any{"ok", 5}}},
		{"plugins_execute", map[string]any{"plugin": "echo", "args": []string{strings.Repeat("x", 1<<20)}}},
		{"plugins_execute", map[string]any{"plugin": "echo", "cluster": "gamma"}},
		{"plugins_execute", map[string]any{}},
		{"plugins_info", map[string]any{"plugin": 42}},
		{"plugin_echo", map[string]any{"count": "many"}},
		{"plugin_echo", map[string]any{"nope": "x"}},
	}
	for _, b := range bad {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: b.tool, Arguments: b.args})
		if err == nil && !res.IsError {
			t.Errorf("%s %v: no error:\n%s", b.tool, b.args, text(res))
		}
	}
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "no_such_tool"}); err == nil {
		t.Error("an unknown tool did not fail")
	}
	if res, r := call(t, s, ctx, "plugin_echo", map[string]any{"args": []string{"still here"}}); res.IsError || r.Output != "still here\n" {
		t.Errorf("the server does not serve after bad input: %+v", r)
	}

	// A new plugin file and plugins_discover: list_changed, and the tool appears.
	os.WriteFile(filepath.Join(e.dir, "kubectl-newone"), []byte("#!/bin/sh\necho new\n"), 0o755)
	res, _ = call(t, s, ctx, "plugins_discover", map[string]any{"force": true})
	if res.IsError || !strings.Contains(text(res), "newone") {
		t.Errorf("plugins_discover: %s", text(res))
	}
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.listChanged > 0 }, "notifications/tools/list_changed")
	if tools(t, s)["plugin_newone"] == nil {
		t.Error("plugin_newone is not listed after plugins_discover")
	}

	// plugins_list and plugins_info answer with structured data.
	res, _ = call(t, s, ctx, "plugins_info", map[string]any{"plugin": "get-all"})
	if !res.IsError {
		t.Errorf("plugins_info of a missing plugin: %s", text(res))
	}
	res, _ = call(t, s, ctx, "plugins_info", map[string]any{"plugin": "delete-it"})
	if res.IsError || !strings.Contains(text(res), "destructive") {
		t.Errorf("plugins_info delete-it: %s", text(res))
	}
	res, _ = call(t, s, ctx, "plugins_list", map[string]any{"filter": "ec*", "show_details": true})
	if res.IsError || !strings.Contains(text(res), "echo") || strings.Contains(text(res), "exit3") {
		t.Errorf("plugins_list filter: %s", text(res))
	}
}

// With max_concurrent = 2, four concurrent calls never overlap more than
// two at a time; a cancelled call's process is gone within a second.
func TestE2EConcurrencyAndCancellation(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testConcurrencyAndCancellation(t, backend) })
	}
}

func testConcurrencyAndCancellation(t *testing.T, backend string) {
	e := newE2E(t, backend, "max_concurrent = 2")
	s := connectStdio(t, e)
	var mu sync.Mutex
	var log strings.Builder
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, r := call(t, s, context.Background(), "plugins_execute", map[string]any{"plugin": "sleeper", "args": []string{"0.5"}})
			if res.IsError {
				t.Errorf("sleeper: %+v", r)
			}
			mu.Lock()
			log.WriteString(r.Output)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if most := maxOverlap(t, log.String()); most != 2 {
		t.Errorf("at most %d calls overlapped, want 2", most)
	}

	// Progress while a call runs, when the client asks for it.
	params := &mcp.CallToolParams{Name: "plugins_execute", Arguments: map[string]any{"plugin": "sleeper", "args": []string{"2.5"}}}
	params.SetProgressToken("p1")
	if _, err := s.CallTool(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	progress := len(s.progress)
	s.mu.Unlock()
	if progress < 1 {
		t.Errorf("no progress notification during a 2.5s call")
	}

	// A unique duration tells the hang's sleep from every other process.
	marker := fmt.Sprintf("300.%d", time.Now().UnixNano()%1000000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.CallTool(ctx, &mcp.CallToolParams{Name: "plugin_hang", Arguments: map[string]any{"args": []string{marker}}})
	}()
	running := func() bool { return exec.Command("pgrep", "-f", "sleep "+marker).Run() == nil }
	waitFor(t, running, "the hang plugin's sleep")
	cancel()
	<-done
	cancelled := time.Now()
	for running() {
		if time.Since(cancelled) > time.Second {
			t.Fatalf("the cancelled call's process still runs after a second")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if res, r := call(t, s, context.Background(), "plugin_echo", map[string]any{"args": []string{"next"}}); res.IsError || r.Output != "next\n" {
		t.Errorf("after a cancellation: %+v", r)
	}
}

func TestE2EHTTP(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testHTTP(t, backend) })
	}
}

func testHTTP(t *testing.T, backend string) {
	e := newE2E(t, backend, "")
	port := freePort(t)
	cmd := exec.Command(binary, "--config", e.config, "--port", strconv.Itoa(port))
	cmd.Env = e.env
	logFile, _ := os.Create(filepath.Join(t.TempDir(), "server.log"))
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			data, _ := os.ReadFile(logFile.Name())
			t.Logf("server log:\n%s", data)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var health map[string]any
	waitFor(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&health) == nil
	}, "/health")
	if health["status"] != "ok" || health["sandbox"] != backend || fmt.Sprint(health["clusters"]) != "[alpha beta]" {
		t.Errorf("/health = %v", health)
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz: %v", err)
	}
	// Malformed JSON-RPC gets an error, and the server goes on.
	resp, err := http.Post(base+"/mcp", "application/json", strings.NewReader("{not json"))
	if err != nil || resp.StatusCode < 400 {
		t.Errorf("malformed JSON-RPC over HTTP: %v %v", resp, err)
	}

	for name, transport := range map[string]mcp.Transport{
		"streamable": &mcp.StreamableClientTransport{Endpoint: base + "/mcp"},
		"sse":        &mcp.SSEClientTransport{Endpoint: base + "/sse"},
	} {
		t.Run(name, func(t *testing.T) {
			s := connect(t, transport)
			if tools(t, s)["plugin_echo"] == nil {
				t.Fatal("no plugin_echo")
			}
			res, r := call(t, s, context.Background(), "plugin_echo", map[string]any{"args": []string{name}})
			if res.IsError || r.Output != name+"\n" {
				t.Errorf("%+v", r)
			}
		})
	}

	// The MCP Inspector's CLI lists the tools.
	inspector := filepath.Join(npmCache(t), "node_modules", ".bin", "mcp-inspector")
	out, err := exec.Command(inspector, "--cli", base+"/mcp", "--method", "tools/list").CombinedOutput()
	if err != nil {
		t.Fatalf("inspector: %v\n%s", err, out)
	}
	var listed struct {
		Tools []struct{ Name string } `json:"tools"`
	}
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatalf("inspector output: %v\n%s", err, out)
	}
	var names []string
	for _, tool := range listed.Tools {
		names = append(names, tool.Name)
	}
	if !slices.Contains(names, "plugins_list") || !slices.Contains(names, "plugin_ns") {
		t.Errorf("the inspector lists %v", names)
	}
	out, err = exec.Command(inspector, "--cli", base+"/mcp", "--method", "tools/call", "--tool-name", "plugin_ns", "--tool-arg", "cluster=beta").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "only-beta") {
		t.Errorf("inspector tools/call: %v\n%s", err, out)
	}
}

func npmCache(t *testing.T) string {
	dir := os.Getenv("KMCP_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(base, "kubernetes-mcp-server")
	}
	return filepath.Join(dir, "npm")
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("no %s after 20s", what)
}

func maxOverlap(t *testing.T, log string) int {
	t.Helper()
	data := log
	most, runs, err := testenv.MaxOverlap(data)
	if err != nil || runs != 4 {
		t.Fatalf("%d runs, %v:\n%s", runs, err, data)
	}
	return most
}
