package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubectl-fixture")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNoneRunsArgvWithExactlyTheGivenEnvironment(t *testing.T) {
	t.Setenv("SERVER_SECRET", "must-not-leak")
	plugin := script(t, `printf '%s|' "$@"; echo; env | sort; exit 7`)
	var out LimitedBuffer
	out.Limit = 1 << 20
	res, err := None{}.Run(context.Background(), Spec{
		Plugin: plugin,
		Args:   []string{"$(touch /tmp/pwned)", "a b", ";ls", ""},
		Env:    []string{"ONLY=this"},
		Stdout: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if lines[0] != "$(touch /tmp/pwned)|a b|;ls||" {
		t.Errorf("argv reached the plugin as %q", lines[0])
	}
	env := strings.Join(lines[1:], "\n")
	if strings.Contains(env, "must-not-leak") || !strings.Contains(env, "ONLY=this") {
		t.Errorf("environment:\n%s", env)
	}
	if res.ExitCode != 7 || res.Stopped {
		t.Errorf("result = %+v", res)
	}
}

// Cancelling a run ends the plugin and what it started, at once.
func TestNoneCancellationKillsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	plugin := script(t, "sleep 300 &\necho $! > "+pidFile+"\ntrap '' TERM\nwait\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() {
		res, _ := None{}.Run(ctx, Spec{Plugin: plugin})
		done <- res
	}()
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		data, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if child == 0 {
		t.Fatal("the plugin did not start its child")
	}
	cancel()
	select {
	case res := <-done:
		if !res.Stopped || res.ExitCode != -1 || res.Signal != "killed" {
			t.Errorf("result = %+v", res)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of the cancellation")
	}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		if !testenv.ProcessAlive(child) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's child %d is still alive", child)
		}
	}
}

// The plugin runs in an empty folder of its own, HOME too, gone afterwards.
func TestNoneRunsInItsOwnDirectory(t *testing.T) {
	plugin := script(t, `pwd; echo "$HOME"; touch litter`)
	var out LimitedBuffer
	out.Limit = 1024
	if _, err := (None{}).Run(context.Background(), Spec{Plugin: plugin, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(out.String())
	if len(lines) != 2 || lines[0] != lines[1] || !strings.Contains(lines[0], "kmcp-call-") {
		t.Fatalf("ran in %q", out.String())
	}
	if _, err := os.Stat(lines[0]); err == nil {
		t.Errorf("the call's folder %s is left behind", lines[0])
	}
	if _, err := os.Stat("litter"); err == nil {
		os.Remove("litter")
		t.Error("the plugin wrote into the server's working directory")
	}
}

func TestLimitedBuffer(t *testing.T) {
	full := 0
	b := &LimitedBuffer{Limit: 4, OnFull: func() { full++ }}
	b.Write([]byte("abc"))
	b.Write([]byte("defg"))
	b.Write([]byte("h"))
	if b.String() != "abcd" || b.Truncated() != 4 || full != 1 {
		t.Fatalf("kept %q, truncated %d, OnFull called %d times", b.String(), b.Truncated(), full)
	}
}

// RunTimeout bounds the plugin's own run: it is killed when it passes.
func TestNoneRunTimeoutStopsThePlugin(t *testing.T) {
	start := time.Now()
	res, err := None{}.Run(context.Background(), Spec{Plugin: script(t, "trap '' TERM\nsleep 30\n"), RunTimeout: 300 * time.Millisecond})
	if err != nil || !res.Stopped || res.ExitCode != -1 {
		t.Fatalf("result %+v, err %v", res, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stopped after %s", took)
	}
}
