package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
		Env:    []string{"ONLY=this", "PATH=/usr/bin:/bin"},
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
		res, _ := None{}.Run(ctx, Spec{Plugin: plugin, Env: []string{"PATH=/usr/bin:/bin"}})
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
		if !alive(child) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's child %d is still alive", child)
		}
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

// alive reports whether a process runs. A zombie does not: it is dead and
// only waits for a parent (here, possibly a PID 1 that never reaps) to reap it.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestNoneRunsInItsOwnDirectory(t *testing.T) {
	plugin := script(t, "pwd; touch litter")
	dir := t.TempDir()
	var out LimitedBuffer
	out.Limit = 1024
	if _, err := (None{}).Run(context.Background(), Spec{Plugin: plugin, Dir: dir, Stdout: &out, Env: []string{"PATH=/usr/bin:/bin"}}); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != dir {
		t.Errorf("ran in %q, want %q", out.String(), dir)
	}
	if _, err := os.Stat("litter"); err == nil {
		os.Remove("litter")
		t.Error("the plugin wrote into the server's working directory")
	}
}
