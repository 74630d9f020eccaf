package mcpserver

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// The tests in this file run plugins: they need runtime.Execute.

// A plugin_* call's arguments reach the plugin as exactly the argv they
// say, with no shell in between.
func TestPluginArgv(t *testing.T) {
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	for _, tt := range []struct {
		name string
		tool string
		args map[string]any
		want []string
	}{
		{
			name: "typed flags in help order, then positionals",
			tool: "plugin_echo",
			args: map[string]any{
				"args":           []any{"pods", "a b; rm -rf /", "$(id)", "`id`", "-rf", "--", "héllo wörld", "line1\nline2", ""},
				"namespace":      "kube-system",
				"all-namespaces": true,
				"count":          3,
				"ratio":          0.25,
				"timeout":        "1m30s",
				"label":          []any{"app=x", "tier=web,db"},
			},
			want: []string{"--all-namespaces", "--count=3", "--label=app=x", "--label=tier=web,db", "--namespace=kube-system",
				"--ratio=0.25", "--timeout=1m30s", "pods", "a b; rm -rf /", "$(id)", "`id`", "-rf", "--", "héllo wörld", "line1\nline2", ""},
		},
		{name: "bool false", tool: "plugin_echo", args: map[string]any{"all-namespaces": false}, want: []string{"--all-namespaces=false"}},
		{name: "no arguments", tool: "plugin_echo", args: nil, want: nil},
		{name: "raw args through plugins_execute", tool: "plugins_execute",
			args: map[string]any{"plugin": "echo", "args": []any{"--namespace", "x y", "*"}},
			want: []string{"--namespace", "x y", "*"}},
		{name: "any spelling through plugins_execute", tool: "plugins_execute",
			args: map[string]any{"plugin": "kubectl-echo", "args": []any{"a"}}, want: []string{"a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, c, tt.tool, tt.args)
			if res.IsError {
				t.Fatalf("isError: %s", text(res))
			}
			r := structured[runtime.Result](t, res)
			want := ""
			if tt.want != nil {
				want = strings.Join(tt.want, "\n") + "\n"
			}
			if r.Output != want {
				t.Errorf("the plugin got\n%q\nwant\n%q", r.Output, want)
			}
			if r.Status != runtime.StatusOK || r.ExitCode != 0 || r.Sandbox != "none" || r.Plugin != "echo" || r.Cluster != "c1" || r.CallID == "" {
				t.Errorf("result %+v", r)
			}
			txt := text(res)
			if !strings.HasPrefix(txt, "plugin echo on cluster c1: exit 0 in ") || !strings.Contains(txt, "(sandbox: none)") {
				t.Errorf("summary: %q", txt)
			}
			if !strings.Contains(txt, "Ran without a sandbox") {
				t.Errorf("text should say there was no sandbox: %q", txt)
			}
		})
	}
}

func TestExitCodeAndClusters(t *testing.T) {
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)

	res := call(t, c, "plugin_fail", map[string]any{"args": []any{"x"}})
	r := structured[runtime.Result](t, res)
	if !res.IsError || r.Status != runtime.StatusFailed || r.ExitCode != 3 || r.Output != "partial output\n" || r.Error != "boom: something broke\n" {
		t.Errorf("isError %v, result %+v", res.IsError, r)
	}
	for _, want := range []string{"plugin fail on cluster c1: failed, exit 3 in ", "stdout:\npartial output", "stderr:\nboom: something broke", "message: "} {
		if !strings.Contains(text(res), want) {
			t.Errorf("text lacks %q:\n%s", want, text(res))
		}
	}

	// The plugin's kubeconfig names the call's gateway, never the cluster itself.
	for _, tt := range []struct{ cluster, want string }{{"", "c1"}, {"c2", "c2"}} {
		res := call(t, c, "plugin_whereami", map[string]any{"cluster": tt.cluster})
		r := structured[runtime.Result](t, res)
		if res.IsError || r.Cluster != tt.want || !strings.HasPrefix(strings.TrimSpace(r.Output), "server: https://127.0.0.1:") {
			t.Errorf("cluster %q: %s", tt.cluster, text(res))
		}
	}

	// Refused by the runtime: nothing runs, and the result says why.
	for _, tt := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"plugins_execute", map[string]any{"plugin": "secret"}, "secret"},
		{"plugins_execute", map[string]any{"plugin": "nope"}, `plugin "nope" not found`},
		{"plugins_execute", map[string]any{"plugin": "echo", "args": []any{"--kubeconfig=/etc/x"}}, "not allowed"},
		{"plugins_execute", map[string]any{"plugin": "echo", "args": []any{"--context", "x"}}, "not allowed"},
		{"plugin_echo", map[string]any{"cluster": "c9"}, "c9"},
		{"plugin_echo", map[string]any{"args": []any{"--token=abc"}}, "not allowed"},
	} {
		res := call(t, c, tt.tool, tt.args)
		r := structured[runtime.Result](t, res)
		if !res.IsError || r.Status != "refused" || !strings.Contains(text(res), "was refused before it ran") || !strings.Contains(text(res), tt.want) {
			t.Errorf("%s %v: isError %v, status %q, text %q", tt.tool, tt.args, res.IsError, r.Status, text(res))
		}
	}
	info, err := f.rt.Plugin("echo")
	if err != nil || info.ExecutionCount != 0 {
		t.Errorf("refused calls ran echo: %+v %v", info.ExecutionCount, err)
	}
}

func TestProgress(t *testing.T) {
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	req := mcp.CallToolRequest{Params: mcp.CallToolParams{
		Name:      "plugin_sleepy",
		Arguments: map[string]any{"args": []any{"2.5"}},
		Meta:      &mcp.Meta{ProgressToken: "tok-1"},
	}}
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError {
		t.Fatal(text(res))
	}
	got := c.progress("tok-1")
	if len(got) < 1 || len(got) > 3 {
		t.Fatalf("%d progress notifications, want about one a second: %v", len(got), got)
	}
	last := 0.0
	for _, p := range got {
		v, _ := p["progress"].(float64)
		if v <= last {
			t.Errorf("progress does not increase: %v", got)
		}
		last = v
		if m, _ := p["message"].(string); !strings.Contains(m, "sleepy running for") {
			t.Errorf("message %q", m)
		}
	}
	// Without a token, no progress.
	before := c.count(string(mcp.MethodNotificationProgress))
	call(t, c, "plugin_sleepy", map[string]any{"args": []any{"1.2"}})
	if after := c.count(string(mcp.MethodNotificationProgress)); after != before {
		t.Errorf("progress without a progress token: %d", after-before)
	}
}

// Cancelling the request ends the plugin at once: in-process the request's
// context is the handler's; over stdio mcp-go's client sends
// notifications/cancelled, and mcp-go's server cancels the handler's.
func TestCancel(t *testing.T) {
	f := newFixture(t)
	t.Run("in-process", func(t *testing.T) {
		c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
		testCancel(t, f, c)
	})
	t.Run("stdio", func(t *testing.T) {
		c := connectStdio(t, f.srv)
		testCancel(t, f, c)
	})
}

func testCancel(t *testing.T, f *fixture, c *testClient) {
	os.Remove(f.pidFile)
	ctx, cancel := context.WithCancel(context.Background())
	type outcome struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{
			Name: "plugin_sleepy", Arguments: map[string]any{"args": []any{"60"}},
		}})
		done <- outcome{res, err}
	}()
	var pid int
	waitFor(t, "the plugin to start", func() bool {
		b, err := os.ReadFile(f.pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	start := time.Now()
	cancel()
	// The client gives up at once, or (in-process, where the request's
	// context is the handler's) gets the cancelled result.
	switch o := <-done; {
	case errors.Is(o.err, context.Canceled):
	case o.err == nil:
		r := structured[runtime.Result](t, o.res)
		if !o.res.IsError || r.Status != runtime.StatusCancelled || !strings.Contains(text(o.res), "plugin sleepy on cluster c1: cancelled") {
			t.Errorf("isError %v, result %+v, text %q", o.res.IsError, r, text(o.res))
		}
	default:
		t.Errorf("call: %v, want context.Canceled or a cancelled result", o.err)
	}
	waitFor(t, "the plugin process to end", func() bool {
		return syscall.Kill(pid, 0) != nil
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the plugin ran %s after the cancellation", d)
	}
	// The server serves on.
	if res := call(t, c, "plugins_list", nil); res.IsError {
		t.Error(text(res))
	}
}
