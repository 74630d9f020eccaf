package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Every collector a method feeds is served, under its documented name and
// labels; a nil *Metrics takes every call and records nothing.
func TestMetricsServeWhatTheyCount(t *testing.T) {
	var none *Metrics
	none.CallDone("p", "c", "container", "ok", time.Second)
	none.SandboxStart("container", true, time.Millisecond)
	none.Request("list", "pods", "allow")
	none.Running(1)
	none.Waiting(1)
	none.Discovered(time.Millisecond, 1, 2)
	none.Installed("installed")

	m := New()
	m.CallDone("echo", "alpha", "container", "ok", 20*time.Millisecond)
	m.CallDone("", "", "", "refused", 0)
	m.SandboxStart("container", true, 15*time.Millisecond)
	m.SandboxStart("container", false, -time.Millisecond) // a clock step: not observed
	m.Request("list", "pods", "allow")
	m.Request("delete", "pods", "deny")
	m.Running(2)
	m.Running(-1)
	m.Waiting(1)
	m.Discovered(30*time.Millisecond, 3, 4)
	m.Installed("installed")
	m.Installed("failed")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`kubernetes_mcp_server_calls_total{backend="container",cluster="alpha",outcome="ok",plugin="echo"} 1`,
		`kubernetes_mcp_server_calls_total{backend="",cluster="",outcome="refused",plugin=""} 1`,
		`kubernetes_mcp_server_call_duration_seconds_count{backend="container",outcome="ok"} 1`,
		`kubernetes_mcp_server_sandbox_start_seconds_count{backend="container",warm="true"} 1`,
		`kubernetes_mcp_server_gateway_requests_total{decision="deny",resource="pods",verb="delete"} 1`,
		`kubernetes_mcp_server_calls_in_flight 1`,
		`kubernetes_mcp_server_calls_waiting 1`,
		`kubernetes_mcp_server_discovery_duration_seconds_count 1`,
		`kubernetes_mcp_server_plugins{allowed="false"} 4`,
		`kubernetes_mcp_server_installs_total{outcome="failed"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s in\n%s", want, body)
		}
	}
	if strings.Contains(string(body), `warm="false"`) || strings.Contains(string(body), `call_duration_seconds_count{backend="",outcome="refused"}`) {
		t.Error("a negative sandbox time or a refusal's zero duration was observed")
	}
}
