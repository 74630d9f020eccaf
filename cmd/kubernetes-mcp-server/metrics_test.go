package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// /metrics counts what the server did, by the labels operators alert on,
// behind the same authentication as MCP.
func TestMetrics(t *testing.T) {
	e := newE2E(t, "container", "")
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("metrics-test-token-0123456789abcdef\n"), 0o600)
	port := freePort(t)
	cmd := exec.Command(binary, "--config", e.config, "--port", strconv.Itoa(port), "--auth-token-file", token)
	cmd.Env = e.env
	cmd.Stderr = serverLog(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "/health")
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d", code)
	}

	s := connect(t, &mcp.StreamableClientTransport{Endpoint: base + "/mcp", HTTPClient: &http.Client{Transport: bearer{"metrics-test-token-0123456789abcdef"}}})
	ctx := context.Background()
	call(t, s, ctx, "plugin_echo", map[string]any{"args": []any{"x"}})
	call(t, s, ctx, "plugin_exit3", nil)
	call(t, s, ctx, "plugin_ns", map[string]any{"cluster": "beta"})
	call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "not-a-plugin-" + strconv.Itoa(port)})

	code, body := get("metrics-test-token-0123456789abcdef")
	if code != 200 {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`kubernetes_mcp_server_calls_total{backend="container",cluster="alpha",outcome="ok",plugin="echo"} 1`,
		`kubernetes_mcp_server_calls_total{backend="container",cluster="alpha",outcome="failed",plugin="exit3"} 1`,
		`kubernetes_mcp_server_calls_total{backend="container",cluster="beta",outcome="ok",plugin="ns"} 1`,
		// A name no plugin has is not a label.
		`kubernetes_mcp_server_calls_total{backend="",cluster="alpha",outcome="refused",plugin=""} 1`,
		`kubernetes_mcp_server_call_duration_seconds_count{backend="container",outcome="ok"} 2`,
		`kubernetes_mcp_server_sandbox_start_seconds_count{backend="container",warm=`,
		`kubernetes_mcp_server_gateway_requests_total{decision="allow",resource="namespaces",verb="list"}`,
		`kubernetes_mcp_server_calls_in_flight 0`,
		`kubernetes_mcp_server_calls_waiting 0`,
		`kubernetes_mcp_server_discovery_duration_seconds_count`,
		`kubernetes_mcp_server_plugins{allowed="true"} 9`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "not-a-plugin") {
		t.Error("an agent's made-up plugin name became a label")
	}
}

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
