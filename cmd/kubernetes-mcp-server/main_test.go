package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// binary is the server built once for this test binary, run as operators run it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kmcp-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kubernetes-mcp-server")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testenv.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary with only the given environment (plus PATH and HOME).
func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHelpListsTheProposalFlags(t *testing.T) {
	out, _, code := run(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, flag := range []string{"--config", "--port", "--plugins-enabled", "--plugins-allowed", "--plugins-timeout", "--plugins-auto-discovery",
		"--kubeconfig", "--log-level", "--log-format"} {
		if !strings.Contains(out, flag) {
			t.Errorf("--help does not list %s:\n%s", flag, out)
		}
	}
}

func TestConfigShowPrecedence(t *testing.T) {
	file := writeFile(t, "[plugins]\nexecution_timeout = \"30s\"\n")
	env := []string{"PLUGINS_EXECUTION_TIMEOUT=45s"}
	tests := []struct {
		name       string
		env        []string
		args       []string
		wantValue  string
		wantSource string
	}{
		{"flag beats env and file", env, []string{"--plugins-timeout", "60s"}, "60s", "flag"},
		{"env beats file", env, nil, "45s", "env"},
		{"file beats default", nil, nil, "30s", "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"config", "show", "--output", "json", "--config", file}, tt.args...)
			out, stderr, code := run(t, tt.env, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var shown struct {
				Values map[string]struct {
					Value  any    `json:"value"`
					Source string `json:"source"`
				} `json:"values"`
			}
			if err := json.Unmarshal([]byte(out), &shown); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := shown.Values["plugins.execution_timeout"]
			if got.Value != tt.wantValue || got.Source != tt.wantSource {
				t.Errorf("plugins.execution_timeout = %v from %s, want %s from %s", got.Value, got.Source, tt.wantValue, tt.wantSource)
			}
		})
	}
	out, _, code := run(t, nil, "config", "show")
	if code != 0 || !strings.Contains(out, `execution_timeout = "30s" # default`) {
		t.Errorf("config show without a file, exit %d:\n%s", code, out)
	}
}

func TestBadConfigurationExitsNamingTheKey(t *testing.T) {
	clusterDir := t.TempDir()
	tests := []struct {
		name    string
		file    string
		env     []string
		want    []string
		command []string
	}{
		{name: "unknown key", file: "[plugins]\nenabled = true\nmax_concurent = 3\n",
			want: []string{"config.toml:3", "plugins.max_concurent", "unknown key", "did you mean plugins.max_concurrent"}},
		{name: "unparsable duration", file: "[plugins]\nexecution_timeout = \"soon\"\n",
			want: []string{"config.toml:2", "plugins.execution_timeout", `invalid duration "soon"`}},
		{name: "negative max_concurrent", file: "[plugins]\nmax_concurrent = -1\n",
			want: []string{"plugins.max_concurrent", "at least 1"}},
		{name: "wrong type", file: "[plugins]\nenabled = \"yes\"\n",
			want: []string{"config.toml:2", "plugins.enabled", "want a boolean, got a string"}},
		{name: "bad env", file: "", env: []string{"PLUGINS_MAX_CONCURRENT=many"},
			want: []string{"PLUGINS_MAX_CONCURRENT", "plugins.max_concurrent"}},
		{name: "unknown default cluster", file: fmt.Sprintf("[clusters]\nkubeconfig_dir = %q\ndefault_cluster = \"prod\"\n", clusterDir),
			want: []string{`default_cluster "prod" is not a known cluster`}, command: []string{}},
		{name: "unreadable kubeconfig_dir", file: "[clusters]\nkubeconfig_dir = \"/nonexistent/clusters\"\n",
			want: []string{"kubeconfig_dir", "/nonexistent/clusters"}, command: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			command := []string{"config", "show"}
			if tt.command != nil {
				command = tt.command
			}
			args := append(command, "--config", writeFile(t, tt.file))
			out, stderr, code := run(t, tt.env, args...)
			if code == 0 {
				t.Fatalf("exit 0, want an error; stdout:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// `config show` fails exactly where serving would, with the same message,
// naming the file and line where it can.
func TestConfigShowFailsWhereServingWould(t *testing.T) {
	clusterDir := t.TempDir()
	pin := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		name, file string
		want       []string
	}{
		{"a glob that names no plugin", "[plugins]\nallowed_plugins = [\"kubectl-\"]\n",
			[]string{"config.toml:2", "plugins.allowed_plugins", `"kubectl-" names no plugin`}},
		{"a blocked glob that names no plugin", "[plugins]\nblocked_plugins = [\"ok\", \" kubectl- \"]\n",
			[]string{"config.toml:2", "plugins.blocked_plugins", "names no plugin"}},
		{"two pins for one plugin", fmt.Sprintf("[plugins.pins]\nget_all = %q\nget-all = %q\n", pin, pin),
			[]string{"config.toml:", "pins.", "names the same plugin"}},
		{"a bad pin", "[plugins.pins]\nevict = \"sha256:xyz\"\n",
			[]string{"config.toml:", "plugins.pins", `want "sha256:" and 64 lowercase hex digits`}},
		{"two rules of one name", "[[plugins.rules]]\nname = \"a\"\nplugins = [\"x\"]\nverbs = [\"get\"]\nresources = [\"pods\"]\n" +
			"[[plugins.rules]]\nname = \"a\"\nplugins = [\"y\"]\nverbs = [\"get\"]\nresources = [\"pods\"]\n",
			[]string{"config.toml:", `"a" is also the name of`}},
		{"an unknown default cluster", fmt.Sprintf("[clusters]\nkubeconfig_dir = %q\ndefault_cluster = \"prod\"\n", clusterDir),
			[]string{`default_cluster "prod" is not a known cluster`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, tt.file)
			_, showErr, showCode := run(t, nil, "config", "show", "--config", file)
			_, serveErr, serveCode := run(t, nil, "--config", file)
			if showCode == 0 || serveCode == 0 {
				t.Fatalf("config show exited %d, serving %d; want both to fail", showCode, serveCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(showErr, w) {
					t.Errorf("config show does not say %q:\n%s", w, showErr)
				}
			}
			if last := lastLine(serveErr); !strings.Contains(showErr, last) {
				t.Errorf("serving failed with\n%s\nwhich config show did not say:\n%s", last, showErr)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// The server finds the real test clusters, reports them, serves, and stops
// cleanly on SIGTERM.
func TestServeReportsClustersAndStopsOnSignal(t *testing.T) {
	env := testenv.TestClusters(t)
	file := writeFile(t, fmt.Sprintf("[nsk]\nkubeconfig_dir = %q\ndefault_cluster = \"beta\"\n", env.KubeconfigDir))
	cmd := exec.Command(binary, "--config", file, "--port", fmt.Sprint(freePort(t)))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "XDG_CACHE_HOME=" + t.TempDir()}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()
	var seen []string
	found := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for !found["waiting"] {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("server ended early:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			for _, c := range env.All {
				if strings.Contains(line, "cluster: name="+c.Name) && strings.Contains(line, c.Server) {
					found[c.Name] = true
					if c.Name == "beta" && !strings.Contains(line, "default=true") {
						t.Errorf("beta is not reported as the default: %s", line)
					}
				}
			}
			if strings.Contains(line, "MCP server listening") {
				found["waiting"] = true
			}
		case <-timeout:
			t.Fatalf("no ready line after 30s:\n%s", strings.Join(seen, "\n"))
		}
	}
	if !found["alpha"] || !found["beta"] {
		t.Errorf("clusters not reported:\n%s", strings.Join(seen, "\n"))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for range lines {
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server still running 10s after SIGTERM")
	}
}

// With backend "none" the server says at start-up that plugins run without
// a sandbox (every result says it too: TestSandboxTexts, TestPluginArgv).
func TestNoneIsAnnouncedAtStartup(t *testing.T) {
	file := writeFile(t, "[plugins]\nplugin_paths = []\n[sandbox]\nbackend = \"none\"\n")
	_, stderr, code := run(t, nil, "--config", file)
	if code != 0 || !strings.Contains(stderr, `sandbox backend is "none": native plugins run as plain processes with this server's own rights, files and network`) {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}

// A server refuses to start, saying what each choice needs, when it would
// serve native plugins that nothing can sandbox: under "auto" with no
// containerd, or "container" without one. Serving WebAssembly plugins
// only, or backend "wasm" (the operator's word that native plugins stay
// unrun), starts.
func TestStartupRefusesWhatItCannotSandbox(t *testing.T) {
	native := t.TempDir()
	if err := os.WriteFile(filepath.Join(native, "kubectl-hello"), []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// One small WebAssembly plugin, so that each start compiles one module.
	wasm := t.TempDir()
	lint, err := os.ReadFile(filepath.Join(testenv.WasmPlugins(t), "kubectl-manifest_lint.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wasm, "kubectl-manifest_lint.wasm"), lint, 0o644); err != nil {
		t.Fatal(err)
	}
	noContainerd := filepath.Join(t.TempDir(), "containerd.sock")
	tests := []struct {
		name, backend string
		allowed       string
		refused       bool
		want          []string
	}{
		{"auto with a native plugin allowed", "auto", `"hello", "manifest_lint"`, true,
			[]string{"allows native plugins (hello) but cannot sandbox them: no container sandbox",
				`backend = "wasm"`, `backend = "none"`, "Which sandbox works where"}},
		{"auto with WebAssembly plugins only", "auto", `"manifest_lint"`, false, nil},
		{"wasm with a native plugin allowed", "wasm", `"hello", "manifest_lint"`, false,
			[]string{`sandbox backend is "wasm": only WebAssembly plugins run`}},
		{"container without a containerd", "container", `"manifest_lint"`, true,
			[]string{"sandbox backend container:", "needs a containerd the server can reach"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, fmt.Sprintf("[plugins]\nplugin_paths = [%q, %q]\nallowed_plugins = [%s]\n[sandbox]\nbackend = %q\ncontainerd_address = %q\n",
				native, wasm, tc.allowed, tc.backend, noContainerd))
			stderr, code := runBounded(t, nil, "--config", file)
			if tc.refused != (code != 0) {
				t.Fatalf("exit %d, want refused=%v; stderr:\n%s", code, tc.refused, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if !tc.refused && strings.Contains(stderr, "cannot sandbox") {
				t.Errorf("a start-up that serves only what it sandboxes warns of a refusal:\n%s", stderr)
			}
		})
	}
}
