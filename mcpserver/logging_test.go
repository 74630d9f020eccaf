package mcpserver

//lint:file-ignore SA1019 MCP logging is deprecated by 2026-07-28 (SEP-2577) but still part of both revisions served; these tests check it.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// deleteAPIPlugin asks its cluster, through the call's gateway, to delete
// a pod: the read-only default denies it before the cluster hears of it.
const deleteAPIPlugin = `#!/bin/sh
if [ "$1" = "--help" ]; then printf 'Delete a pod through the API.\n\nUsage:\n  kubectl delete-api\n'; exit 0; fi
kubectl delete --raw /api/v1/namespaces/default/pods/victim
exit 0
`

// logMessages are the notifications/message a client got.
func (c *testClient) logMessages() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, n := range c.notifications {
		if n.Method == string(mcp.MethodNotificationMessage) {
			out = append(out, n.Params.AdditionalFields)
		}
	}
	return out
}

// A client gets log notifications only when it asked for them: with
// logging/setLevel on the 2025-11-25 revision, with the request's _meta on
// 2026-07-28 (mcp-go's client sends the level it was set to there), and
// then only at or above its level. A call's notifications say how it
// ended and name each API request the gateway denied.
func TestLogNotificationsOnlyWhereAsked(t *testing.T) {
	f := newFixture(t)
	f.writePlugin(t, "delete-api", deleteAPIPlugin)
	if _, err := f.rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{mcp.LATEST_LEGACY_PROTOCOL_VERSION, mcp.LATEST_PROTOCOL_VERSION} {
		t.Run(version, func(t *testing.T) {
			silent := connect(t, f.srv, version)
			res := call(t, silent, "plugin_delete_api", map[string]any{})
			r := structured[runtime.Result](t, res)
			if !slices.ContainsFunc(r.APIRequests, func(rec gateway.Record) bool { return rec.Method == "DELETE" && rec.Decision == "deny" }) {
				t.Fatalf("the plugin's delete was not denied by the gateway: %+v\n%s", r.APIRequests, text(res))
			}

			asked := connect(t, f.srv, version)
			if err := asked.SetLevel(context.Background(), mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelInfo}}); err != nil {
				t.Fatal(err)
			}
			r = structured[runtime.Result](t, call(t, asked, "plugin_delete_api", map[string]any{}))
			call(t, asked, "plugins_execute", map[string]any{"plugin": "no-such-plugin"})
			// Notifications reach an in-process client on a goroutine of
			// their own: wait for the three.
			var denied, ran, refused bool
			for deadline := time.Now().Add(10 * time.Second); !(denied && ran && refused) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				denied, ran, refused = false, false, false
				for _, m := range asked.logMessages() {
					// In process, fields arrive as Go values: the level is an
					// mcp.LoggingLevel.
					level := fmt.Sprint(m["level"])
					data, _ := m["data"].(map[string]any)
					msg, _ := data["message"].(string)
					switch {
					case level == "warning" && strings.Contains(msg, "API request denied: DELETE /api/v1/namespaces/default/pods/victim") && data["call_id"] == r.CallID:
						denied = true
					case level == "info" && strings.Contains(msg, "plugin delete-api ran in sandbox none (NOT isolated): ok") && strings.Contains(msg, "(1 denied)"):
						ran = true
					case level == "warning" && strings.Contains(msg, `call of plugin "no-such-plugin" refused`):
						refused = true
					}
					if fmt.Sprint(m["logger"]) != loggerName {
						t.Fatalf("logger %v, want %s", m["logger"], loggerName)
					}
				}
			}
			if !denied || !ran || !refused {
				b, _ := json.MarshalIndent(asked.logMessages(), "", " ")
				t.Errorf("denied %v, ran %v, refused %v; notifications:\n%s", denied, ran, refused, b)
			}

			quiet := connect(t, f.srv, version)
			if err := quiet.SetLevel(context.Background(), mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelError}}); err != nil {
				t.Fatal(err)
			}
			call(t, quiet, "plugin_delete_api", map[string]any{})
			// A last notification to a client that asked, sent after the
			// others: once it is in, anything sent to the others would be too.
			call(t, asked, "plugins_execute", map[string]any{"plugin": "no-such-plugin-either"})
			waitForLog(t, asked, "no-such-plugin-either")
			if got := silent.logMessages(); len(got) != 0 {
				t.Errorf("a client that never asked got log notifications: %v", got)
			}
			if got := quiet.logMessages(); len(got) != 0 {
				t.Errorf("a client at level error got warnings and info: %v", got)
			}
		})
	}
}

func waitForLog(t *testing.T, c *testClient, text string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, m := range c.logMessages() {
			if data, _ := m["data"].(map[string]any); strings.Contains(fmt.Sprint(data["message"]), text) {
				return
			}
		}
	}
	t.Fatalf("no log notification with %q", text)
}
