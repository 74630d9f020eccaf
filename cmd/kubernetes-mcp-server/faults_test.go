package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// TestAnAuditFileThatCannotBeWrittenStopsTheServer: a server whose audit
// file cannot be opened, or has no room, exits non-zero at once naming it.
func TestAnAuditFileThatCannotBeWrittenStopsTheServer(t *testing.T) {
	disk := testenv.SmallDisk(t, 8)
	release := testenv.FillDisk(t, disk)
	defer release()
	for _, c := range []struct{ name, file, want string }{
		{"missing folder", filepath.Join(t.TempDir(), "missing", "audit.jsonl"), "no such file or directory"},
		{"full disk", filepath.Join(disk, "audit.jsonl"), "no room for audit records"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newE2E(t, "none", fmt.Sprintf("\n[audit]\nfile = %q\n", c.file))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "--config", e.config)
			cmd.Env = e.env
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("the server did not exit: %s", out)
			}
			exit, ok := err.(*exec.ExitError)
			if !ok || exit.ExitCode() == 0 || !strings.Contains(string(out), "audit file") || !strings.Contains(string(out), c.file) ||
				!strings.Contains(string(out), c.want) {
				t.Errorf("exit %v, output:\n%s\nwant a non-zero exit naming the audit file and %q", err, out, c.want)
			}
		})
	}
}

// TestAFullAuditDiskIsReportedAndServingGoesOn: over MCP, with the audit
// file's disk full, a plugin's cluster requests are refused and its call
// is an error saying they could not be audited, a call whose record does
// not fit is an error saying the audit failed, the log and /health say
// so, and the server goes on serving; with room again calls succeed,
// /health says ok, and SIGTERM still exits 0 with whole audit lines.
func TestAFullAuditDiskIsReportedAndServingGoesOn(t *testing.T) {
	disk := testenv.SmallDisk(t, 8)
	audit := filepath.Join(disk, "audit.jsonl")
	e := newE2E(t, "none", fmt.Sprintf("\n[audit]\nfile = %q\n", audit))
	p, s := startStopServer(t, e, "streamable")
	base := ""
	for i, a := range p.cmd.Args {
		if a == "--port" {
			base = "http://127.0.0.1:" + p.cmd.Args[i+1]
		}
	}
	health := func() map[string]any {
		t.Helper()
		resp, err := http.Get(base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h map[string]any
		json.NewDecoder(resp.Body).Decode(&h)
		return h
	}
	ctx := context.Background()
	if res, r := call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "ns"}); res.IsError || r.Status != "ok" {
		t.Fatalf("kubens with room for the audit: %+v\n%s", r, text(res))
	}
	if h := health(); h["audit"] != "ok" {
		t.Errorf("/health with room for the audit: %v", h)
	}

	release := testenv.FillDisk(t, disk)
	res, r := call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "ns"})
	if !res.IsError || r.Status != "failed" || !strings.Contains(r.Message, "could not be audited") || !strings.Contains(text(res), "no space left on device") {
		t.Errorf("kubens with the audit disk full: isError %v %+v\n%s", res.IsError, r, text(res))
	}
	big := strings.Repeat("x", 40<<10)
	res, r = call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "echo", "args": []string{big, big}})
	if !res.IsError || !strings.HasPrefix(r.Message, "audit failed") || strings.Contains(r.Output, big) {
		t.Errorf("a call whose record does not fit: isError %v %.300q", res.IsError, r.Message)
	}
	if h := health(); h["status"] != "ok" || !strings.Contains(fmt.Sprint(h["audit"]), "no space left on device") {
		t.Errorf("/health with the audit disk full: %v", h)
	}
	logged, _ := os.ReadFile(p.log)
	for _, want := range []string{"no room for audit records", "call not audited"} {
		if !strings.Contains(string(logged), want) {
			t.Errorf("the server log does not say %q", want)
		}
	}

	release()
	if res, r := call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "ns"}); res.IsError || r.Status != "ok" {
		t.Errorf("kubens once there is room again: %+v\n%s", r, text(res))
	}
	if h := health(); h["audit"] != "ok" {
		t.Errorf("/health once there is room again: %v", h)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t, time.Minute); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	data, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Fatalf("the audit file does not end with a whole line")
	}
	gap := false
	for _, raw := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(raw), &line); err != nil {
			t.Errorf("audit line is not JSON: %v: %.200s", err, raw)
		}
		gap = gap || line["type"] == "audit_gap"
	}
	if !gap {
		t.Errorf("no audit_gap line says records were lost")
	}
}
