package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `plugins run` is one call as the MCP tool makes it: same sandbox, policy,
// argument checks and gateway, with the plugin's exit code as its own.
func TestPluginsRun(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newE2E(t, backend, "")
			for _, tc := range []struct {
				name           string
				args           []string
				code           int
				stdout, stderr string
			}{
				{name: "arguments after the name are the plugin's", args: []string{"echo", "--name", "a b", "--", "x"}, stdout: "--name\na b\n--\nx\n"},
				{name: "a leading -- is dropped", args: []string{"echo", "--", "--count=2"}, stdout: "--count=2\n"},
				{name: "the plugin's exit code", args: []string{"exit3"}, code: 3, stderr: "something broke"},
				{name: "policy refuses", args: []string{"nosuch"}, code: exitNotRun, stderr: "refused"},
				{name: "a credential flag is refused", args: []string{"echo", "--kubeconfig=/etc/x"}, code: exitNotRun, stderr: "--kubeconfig"},
				{name: "an unknown cluster is refused", args: []string{"--cluster", "gamma", "echo"}, code: exitNotRun, stderr: "gamma"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					stdout, stderr, code := run(t, e.env, append([]string{"--config", e.config, "plugins", "run"}, tc.args...)...)
					if code != tc.code || (tc.stdout != "" && stdout != tc.stdout) || !strings.Contains(stderr, tc.stderr) {
						t.Errorf("exit %d, want %d\nstdout %q\nstderr %s", code, tc.code, stdout, stderr)
					}
				})
			}
		})
	}
}

func TestPluginsRunJSONHasTheAPIRequests(t *testing.T) {
	e := newE2E(t, "container", "")
	manifest := filepath.Join(t.TempDir(), "deploy.yaml")
	os.WriteFile(manifest, []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: nginx:latest\n"), 0o644)
	stdout, stderr, code := run(t, e.env, "--config", e.config, "plugins", "run", "--cluster", "beta", "-o", "json", "ns")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var res struct {
		Cluster     string `json:"cluster"`
		Output      string `json:"output"`
		Sandbox     string `json:"sandbox"`
		Status      string `json:"status"`
		APIRequests []struct {
			Verb, Resource, Decision string
		} `json:"api_requests"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if res.Cluster != "beta" || res.Status != "ok" || res.Sandbox != "container" || !strings.Contains(res.Output, "kube-system") || len(res.APIRequests) == 0 {
		t.Errorf("result: %s", stdout)
	}
	for _, r := range res.APIRequests {
		if r.Verb != "list" && r.Verb != "get" {
			t.Errorf("kubens made a %s request", r.Verb)
		}
	}

	// stdin from a file reaches the plugin; kube-score exits 1 on a critical finding.
	stdout, stderr, code = run(t, e.env, "--config", e.config, "plugins", "run", "--stdin", manifest, "score", "score", "-")
	if code != 1 || !strings.Contains(stdout, "CRITICAL") {
		t.Errorf("kube-score on stdin: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}

// An interrupted run cancels its call, as a cancelled tool call does: the
// sandbox goes and the exit code says so.
func TestPluginsRunInterrupted(t *testing.T) {
	e := newE2E(t, "container", "")
	cmd := exec.Command(binary, "--config", e.config, "--log-level", "debug", "plugins", "run", "sleeper", "30")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, e.env...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt the call, not the discovery before it.
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "running the plugin in its sandbox") }, "the call to start")
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != exitCancelled || !strings.Contains(stderr.String(), "cancelled by the caller") {
			t.Errorf("exit %d, want %d\n%s", code, exitCancelled, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("plugins run went on after SIGINT\n%s", stderr.String())
	}
}

// An interrupt before the plugin runs (during discovery) ends the run as
// cancelled too, not as a failed command.
func TestPluginsRunInterruptedBeforeItRan(t *testing.T) {
	e := newE2E(t, "none", "")
	// Discovery runs every plugin's --help; a help that takes its time
	// keeps the command in discovery.
	os.WriteFile(filepath.Join(e.dir, "kubectl-slowhelp"), []byte("#!/bin/sh\nsleep 4\n"), 0o755)
	cmd := exec.Command(binary, "--config", e.config, "--plugins-allowed", "slowhelp,echo", "plugins", "run", "echo", "x")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, e.env...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitCancelled || !strings.Contains(stderr.String(), "cancelled before it ran") {
		t.Errorf("exit %d, want %d\n%s", code, exitCancelled, stderr.String())
	}
}
