package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// nobody is the unprivileged user the server runs as in this test.
const nobody = 65534

// A WebAssembly plugin needs no containerd and no root: a server started as
// nobody, with no containerd to reach, discovers a .wasm plugin, lists it
// as a plugin_* tool, and runs it, on a real cluster through its gateway,
// with "sandbox": "wasm" in the result; a native plugin beside it is listed
// and refused (backend "wasm": under "auto" such a server would refuse to
// start, TestStartupRefusesWhatItCannotSandbox).
func TestE2EWasmPluginAsNonRootWithoutContainerd(t *testing.T) {
	tc := testenv.TestClusters(t)
	alpha := tc.All[0]
	// Everything the server reads, in folders nobody may enter.
	root, err := os.MkdirTemp("", "kmcp-wasm-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	plugins, home, kubeconfigs := filepath.Join(root, "plugins"), filepath.Join(root, "home"), filepath.Join(root, "kubeconfigs")
	for _, d := range []string{plugins, home, kubeconfigs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(home, nobody, nobody)
	copyFile(t, testenv.WasmGuest(t, "sandbox/wasm/testdata/hostile", "hostile"), filepath.Join(plugins, "kubectl-hostile.wasm"), 0o644)
	os.WriteFile(filepath.Join(plugins, "kubectl-native"), []byte("#!/bin/sh\necho native\n"), 0o755)
	copyFile(t, alpha.Kubeconfig, filepath.Join(kubeconfigs, "alpha.yaml"), 0o644)
	server := filepath.Join(root, "kubernetes-mcp-server")
	copyFile(t, binary, server, 0o755)
	config := filepath.Join(root, "config.toml")
	os.WriteFile(config, []byte(fmt.Sprintf(`
[plugins]
plugin_paths = [%q]
auto_discovery = false
allowed_plugins = ["hostile", "native"]
[clusters]
kubeconfig_dir = %q
default_cluster = "alpha"
[sandbox]
backend = "wasm"
containerd_address = %q
`, plugins, kubeconfigs, filepath.Join(root, "no-containerd.sock"))), 0o644)

	cmd := exec.Command(server, "--config", config, "--log-level", "debug")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	logFile := serverLog(t)
	cmd.Stderr = logFile
	s := connect(t, &mcp.CommandTransport{Command: cmd})
	ctx := context.Background()

	all := tools(t, s)
	if all["plugin_hostile"] == nil || all["plugin_native"] == nil {
		t.Fatalf("tools: %v", keys(all))
	}
	res, r := call(t, s, ctx, "plugin_hostile", map[string]any{"args": []string{"get", "/api/v1/namespaces/" + alpha.Namespace}})
	if res.IsError || r.Sandbox != "wasm" || r.Status != "ok" || !strings.Contains(r.Output, "status 200") || r.Cluster != "alpha" {
		t.Errorf("plugin_hostile: isError=%v %+v\n%s", res.IsError, r, text(res))
	}
	if !strings.Contains(text(res), "sandbox: wasm") {
		t.Errorf("the result does not say the wasm sandbox ran it:\n%s", text(res))
	}
	res, r = call(t, s, ctx, "plugin_native", nil)
	if !res.IsError || r.Output != "" || !strings.Contains(text(res), "no sandbox") {
		t.Errorf("a native plugin without containerd: isError=%v %+v\n%s", res.IsError, r, text(res))
	}
	log, _ := os.ReadFile(logFile.Name())
	if !strings.Contains(string(log), `sandbox backend is "wasm": only WebAssembly plugins run; native plugins are listed but do not run`) {
		t.Errorf("the server did not say that native plugins do not run:\n%s", log)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]*mcp.Tool) []string { return slices.Sorted(maps.Keys(m)) }

// profile show prints a .wasm plugin's guest settings: memory limit,
// timeout, argv, environment, folders, host functions and request rules.
func TestProfileShowWasm(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, testenv.WasmGuest(t, "sandbox/wasm/testdata/hostile", "hostile"), filepath.Join(dir, "kubectl-hostile.wasm"), 0o644)
	env := []string{"PATH=" + dir, "KREW_ROOT=" + t.TempDir(), "XDG_CACHE_HOME=" + t.TempDir()}
	cache, _ := os.UserCacheDir() // compiled modules shared with other tests
	file := writeFile(t, fmt.Sprintf("[plugins]\nplugin_paths = []\nallow_any_plugin = true\nexecution_timeout = \"7s\"\n"+
		"[sandbox]\nwasm_memory_mib = 96\nwasm_cache_dir = %q\n", filepath.Join(cache, "kubernetes-mcp-server", "wasm")))
	out, stderr, code := run(t, env, "profile", "show", "hostile", "--explain", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"# sandbox profile of plugin hostile", "host functions: wasi_snapshot_preview1 and kubernetes_mcp_server_http_v1.round_trip",
		"at most 96 MiB of linear memory", "# API requests", `"memory_limit_mib": 96`, `"timeout": "7s"`,
		`"kubectl-hostile"`, `"HOME=/tmp"`, `"guest": "/tmp"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("profile show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"ociVersion"`) {
		t.Errorf("a wasm plugin's profile prints an OCI spec:\n%s", out)
	}
}
