package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAuditTail(t *testing.T) {
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	e := newE2E(t, "none", fmt.Sprintf("[audit]\nfile = %q\n", audit))
	var ids []string
	for _, arg := range []string{"one", "two", "three"} {
		stdout, stderr, code := run(t, e.env, "--config", e.config, "plugins", "run", "-o", "json", "echo", arg)
		var res struct {
			CallID string `json:"call_id"`
		}
		if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.CallID == "" {
			t.Fatalf("plugins run: exit %d\n%s\n%s", code, stdout, stderr)
		}
		ids = append(ids, res.CallID)
	}
	stdout, stderr, code := run(t, e.env, "--config", e.config, "audit", "tail")
	if code != 0 || strings.Count(stdout, `"type":"call"`) != 3 {
		t.Errorf("audit tail: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, _, _ = run(t, e.env, "--config", e.config, "audit", "tail", "--call", ids[1])
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 1 || !strings.Contains(lines[0], ids[1]) || !strings.Contains(lines[0], `"two"`) {
		t.Errorf("audit tail --call: %s", stdout)
	}
	stdout, _, _ = run(t, e.env, "--config", e.config, "audit", "tail", "-n", "1")
	if !strings.Contains(stdout, ids[2]) || strings.Count(stdout, "\n") != 1 {
		t.Errorf("audit tail -n 1: %s", stdout)
	}

	// --follow prints records as they come, until interrupted.
	cmd := exec.Command(binary, "--config", e.config, "audit", "tail", "-n", "0", "--follow", "--call", "")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, e.env...)
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	run(t, e.env, "--config", e.config, "plugins", "run", "echo", "four")
	waitFor(t, func() bool { return strings.Contains(out.String(), `"four"`) }, "the followed record")
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("audit tail --follow after SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Error("audit tail --follow did not stop at SIGINT")
	}

	os.Remove(audit)
	if _, stderr, code := run(t, e.env, "--config", e.config, "audit", "tail"); code != 1 || !strings.Contains(stderr, "audit file") {
		t.Errorf("a missing audit file: exit %d, %s", code, stderr)
	}
}
